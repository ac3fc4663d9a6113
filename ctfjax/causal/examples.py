"""The theory's witness models (docs/concepts.md), as exact `DiscreteSCM`s.

Images are small tuples of bits, stored as one endogenous variable `I` whose
value is the tuple read as a binary number, first element most significant
(`bits_to_int` / `int_to_bits` convert).

* Witness A (no diagram): two ASCMs with the same P(V, I) whose edits of the
  same image under do(X=1) differ (impossibility 1).
* Witness B (diagram X -> Y known): same P(X, Y), different layer-3 values
  P(Y_{X=1}=1 | X=0, Y=0) = 1/2 and 3/4, the optimal bounds (impossibility 2a).
* Witness C (image level): same P(X, I), different edits (impossibility 2b).
* The 4-pixel ASCM of Sardesai ("Ctf-editing using a diffusion NCM"): one
  observed image arises from three exogenous states that do(X=1) sends to
  three different images.

Witness B and the 4-pixel ASCM are also written as NumPyro models
(`witness_b_model`, `four_pixel_model`) for `DiscreteSCM.from_numpyro`.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import distributions as dist

from ctfjax.causal.discrete import DiscreteSCM
from ctfjax.errors import UserError

_HALF = [0.5, 0.5]


def bits_to_int(bits: Sequence[int]) -> int:
  """(1, 0, 1) -> 5: the first bit is the most significant."""
  out = 0
  for b in bits:
    out = 2 * out + int(b)
  return out


def int_to_bits(value: int, width: int) -> tuple[int, ...]:
  """5, 3 -> (1, 0, 1)."""
  return tuple((int(value) >> (width - 1 - k)) & 1 for k in range(width))


def _bits(*arrays):
  """Vectorised bits_to_int over broadcast integer arrays."""
  out = 0
  for a in arrays:
    out = 2 * out + a
  return out


def witness_a() -> tuple[DiscreteSCM, DiscreteSCM]:
  """A1: Y := X; A2: Y := U_X (confounded). I = (X, Y, U_I)."""
  exo = {"u_x": _HALF, "u_i": _HALF}
  x = (2, ["u_x"], lambda u: u)
  image = (8, ["X", "Y", "u_i"], _bits)
  a1 = DiscreteSCM.from_functions(
      exo, {"X": x, "Y": (2, ["X"], lambda v: v), "I": image})
  a2 = DiscreteSCM.from_functions(
      exo, {"X": x, "Y": (2, ["u_x"], lambda u: u), "I": image})
  return a1, a2


def witness_b() -> tuple[DiscreteSCM, DiscreteSCM]:
  """X ~ Bern(1/2), U_Y ~ Unif{0..9}; same P(Y | X), different couplings."""
  exo = {"u_x": _HALF, "u_y": [0.1] * 10}
  x = (2, ["u_x"], lambda u: u)
  b1 = lambda x, u: np.where(x == 0, u <= 1, u <= 5).astype(int)
  b2 = lambda x, u: np.where(x == 0, u <= 1, u >= 4).astype(int)
  return (DiscreteSCM.from_functions(exo, {"X": x, "Y": (2, ["X", "u_y"], b1)}),
          DiscreteSCM.from_functions(exo, {"X": x, "Y": (2, ["X", "u_y"], b2)}))


def witness_b_model(variant: int):
  """Witness B's model `variant` (1 or 2) as a NumPyro program.

  `DiscreteSCM.from_numpyro(witness_b_model(1))` is `witness_b()[0]`.
  """
  def model():
    u_x = numpyro.sample("u_x", dist.Bernoulli(probs=0.5))
    u_y = numpyro.sample("u_y", dist.Categorical(probs=jnp.full(10, 0.1)))
    x = numpyro.deterministic("X", u_x)
    high = u_y <= 5 if variant == 1 else u_y >= 4
    numpyro.deterministic("Y", jnp.where(x == 0, u_y <= 1, high))
  return model


def witness_c() -> tuple[DiscreteSCM, DiscreteSCM]:
  """V = {X}; C1: I = (X, U_I); C2: I = (X, U_I xor X)."""
  exo = {"u_x": _HALF, "u_i": _HALF}
  x = (2, ["u_x"], lambda u: u)
  c1 = DiscreteSCM.from_functions(
      exo, {"X": x, "I": (4, ["X", "u_i"], _bits)})
  c2 = DiscreteSCM.from_functions(
      exo, {"X": x, "I": (4, ["X", "u_i"], lambda x, u: _bits(x, u ^ x))})
  return c1, c2


def four_pixel_ascm() -> DiscreteSCM:
  """The 4-pixel ASCM of Sardesai, exactly as the paper states it.

  X = u_x xor u_xy, Y = u_y xor u_xy; pixels I1 = u_x and X, I2 = Y,
  I3 = X xor u_I, I4 = X xor Y xor u_I; I is I1 I2 I3 I4 read as a 4-bit
  number. P(u_x=0) = 0.4, P(u_y=0) = 0.6, P(u_xy=0) = P(u_I=0) = 0.5.
  """
  exo = {"u_x": [0.4, 0.6], "u_y": [0.6, 0.4], "u_xy": _HALF, "u_I": _HALF}
  pixels = lambda ux, x, y, ui: _bits(ux & x, y, x ^ ui, x ^ y ^ ui)
  return DiscreteSCM.from_functions(exo, {
      "X": (2, ["u_x", "u_xy"], np.bitwise_xor),
      "Y": (2, ["u_y", "u_xy"], np.bitwise_xor),
      "I": (16, ["u_x", "X", "Y", "u_I"], pixels),
  })


def four_pixel_model():
  """The 4-pixel ASCM as a NumPyro program (`four_pixel_ascm` from it)."""
  u_x = numpyro.sample("u_x", dist.Categorical(probs=jnp.array([0.4, 0.6])))
  u_y = numpyro.sample("u_y", dist.Categorical(probs=jnp.array([0.6, 0.4])))
  u_xy = numpyro.sample("u_xy", dist.Bernoulli(probs=0.5))
  u_i = numpyro.sample("u_I", dist.Bernoulli(probs=0.5))
  x = numpyro.deterministic("X", u_x ^ u_xy)
  y = numpyro.deterministic("Y", u_y ^ u_xy)
  numpyro.deterministic("I", _bits(u_x & x, y, x ^ u_i, x ^ y ^ u_i))


def exogenous_table(scm: DiscreteSCM, order: Sequence[str] | None = None):
  """Every exogenous state with its endogenous values and probability.

  Args:
    scm: the model (small: one row per exogenous state).
    order: exogenous names in the order rows vary (first slowest).

  Returns:
    (columns, rows): column names (exogenous, then endogenous, then 'P') and
    a list of row tuples, the last entry of each the state's probability.
  """
  order = list(order or scm.exogenous)
  grids = np.meshgrid(*[np.arange(len(scm.exogenous[u])) for u in order],
                      indexing="ij")
  u = {name: g.ravel() for name, g in zip(order, grids)}
  v = scm.evaluate(u)
  p = np.prod([scm.exogenous[name][u[name]] for name in order], axis=0)
  columns = order + list(scm.endogenous) + ["P"]
  rows = [tuple(int(u[n][k]) for n in order) +
          tuple(int(v[n][k]) for n in scm.endogenous) + (float(p[k]),)
          for k in range(len(p))]
  return columns, rows


# Built-in models by name (the CLIs' --example flag).
BY_NAME = {
    "four_pixel": four_pixel_ascm,
    "witness_a1": lambda: witness_a()[0],
    "witness_a2": lambda: witness_a()[1],
    "witness_b1": lambda: witness_b()[0],
    "witness_b2": lambda: witness_b()[1],
    "witness_c1": lambda: witness_c()[0],
    "witness_c2": lambda: witness_c()[1],
}


def by_name(name: str):
  """The built-in model `name` (a key of `BY_NAME`), freshly built."""
  if name not in BY_NAME:
    raise UserError(f"unknown example {name!r}; known: {', '.join(BY_NAME)}")
  return BY_NAME[name]()
