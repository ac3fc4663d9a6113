"""Feature kinds: how one variable's mechanism turns a head into a value.

A mechanism of the world engine (`ctfjax.causal.scm`) is V := kind.apply(
head(pa, u_ctx), noise): a function of the parents and the shared context
latents computes a *head* (the output of a network, or of a hand-written
function), and the kind turns head and the variable's own exogenous noise
into a value. The kind owns everything the stages need about that map:

* `sample_noise(rng, shape)`: prior draws of the noise, [*shape, noise_size];
* `apply(head, noise)`: the value (sampling, prediction);
* `log_prob(head, value)`: log p(value | head), the log-probability of a
  class or the log-density of a real value (likelihood, importance weights);
* `abduct(rng, head, value)`: an exact draw of the noise given the value
  (the truncated-Gumbel posterior, or the inverse of an invertible map), so
  that apply(head, abduct(rng, head, v)) reproduces v;
* `encode(value)`: the float encoding [..., width] that the networks read
  (a one-hot, or the standardised value) and `relaxed_encode(head, noise,
  temperature)`, the same forward with a gradient for min/max training;
* `mode(head)`: the most likely value (a reader's prediction);
* `check(name, value, what)`: the boundary check, one line naming the
  variable.

Kinds are frozen dataclasses (hashable: models holding them are static jit
arguments). A new kind is one class here, or in its own module, plus one line
in `KINDS`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ctfjax.causal import gumbel
from ctfjax.errors import UserError

Array = jax.Array

# Lower clamp of a continuous mechanism's log-scale (standardised units): a
# collapsing scale would make the log-density and the inverse blow up.
MIN_LOG_SCALE = -7.0


class KindError(UserError):
  """A bad feature kind or a value its variable cannot take."""


class Kind(Protocol):
  """What the world engine and the models need of a feature kind."""

  width: int
  head_size: int
  noise_size: int
  dtype: Any

  def encode(self, value) -> Array: ...
  def sample_noise(self, rng: Array, shape: tuple[int, ...]) -> Array: ...
  def apply(self, head: Array, noise: Array) -> Array: ...
  def log_prob(self, head: Array, value) -> Array: ...
  def abduct(self, rng: Array, head: Array, value) -> Array: ...
  def relaxed_encode(self, head: Array, noise: Array,
                     temperature) -> Array: ...
  def mode(self, head: Array) -> Array: ...
  def check(self, name: str, value, what: str = "value") -> Array: ...


def _concrete(value) -> np.ndarray | None:
  """The host value of a concrete array; None for a tracer (not checked)."""
  if isinstance(value, jax.core.Tracer):
    return None
  return np.asarray(value)


@dataclasses.dataclass(frozen=True)
class Categorical:
  """A Gumbel-max class in 0..size-1: argmax(logits + g), g ~ Gumbel(0, 1).

  The head holds the logits [..., size]; abduction is the exact truncated-
  Gumbel posterior of `ctfjax.causal.gumbel`.
  """

  size: int

  def __post_init__(self):
    if int(self.size) < 1:
      raise KindError(f"a categorical needs a positive size, got {self.size}")
    object.__setattr__(self, "size", int(self.size))

  dtype = jnp.int32

  @property
  def width(self) -> int:
    return self.size

  @property
  def head_size(self) -> int:
    return self.size

  @property
  def noise_size(self) -> int:
    return self.size

  @staticmethod
  def draw(rng: Array, shape: tuple[int, ...]) -> Array:
    """iid Gumbel(0, 1) draws of `shape` (one call serves many nodes)."""
    return jax.random.gumbel(rng, shape)

  def encode(self, value) -> Array:
    return jax.nn.one_hot(value, self.size, dtype=jnp.float32)

  def sample_noise(self, rng: Array, shape: tuple[int, ...]) -> Array:
    return self.draw(rng, tuple(shape) + (self.size,))

  def apply(self, head: Array, noise: Array) -> Array:
    return gumbel.gumbel_max(head, noise)

  def log_prob(self, head: Array, value) -> Array:
    # A one-hot contraction broadcasts head and value batch axes freely.
    return jnp.sum(self.encode(value) * jax.nn.log_softmax(head), axis=-1)

  def abduct(self, rng: Array, head: Array, value) -> Array:
    return gumbel.posterior_noise(rng, head, value)

  def relaxed_encode(self, head: Array, noise: Array, temperature) -> Array:
    """Straight-through one-hot: the exact argmax forward, the gradient of
    softmax((head + noise) / temperature) backward."""
    z = head + noise
    hard = jax.nn.one_hot(jnp.argmax(z, -1), self.size)
    soft = jax.nn.softmax(z / temperature)
    return hard + soft - jax.lax.stop_gradient(soft)

  def mode(self, head: Array) -> Array:
    return jnp.argmax(head, -1).astype(jnp.int32)

  def check(self, name: str, value, what: str = "value") -> Array:
    host = _concrete(value)
    dtype = (host if host is not None else value).dtype
    if not jnp.issubdtype(dtype, jnp.integer):
      raise KindError(f"{what} of {name!r} must be integers, got {dtype}")
    if host is not None and host.size and (
        host.min() < 0 or host.max() >= self.size):
      raise KindError(f"{what} of {name!r} is outside its domain "
                      f"0..{self.size - 1}")
    return jnp.asarray(value, jnp.int32)


@dataclasses.dataclass(frozen=True)
class Continuous:
  """A real value from a conditional affine map of a standard normal.

  value = loc + scale * (mu + exp(log_s) * eps), eps ~ N(0, 1), with the head
  (mu, log_s) in standardised units: `loc` and `scale` fix those units (the
  data's mean and spread), so networks read and write numbers of order one.
  The map is invertible in eps, so abduction is its exact inverse; the
  log-density includes the Jacobian of both the map and the
  standardisation. log_s is clamped below at `MIN_LOG_SCALE`.
  """

  loc: float = 0.0
  scale: float = 1.0

  def __post_init__(self):
    if not (math.isfinite(self.loc) and math.isfinite(self.scale)
            and self.scale > 0):
      raise KindError("a continuous kind needs a finite loc and a positive "
                      f"scale, got loc={self.loc}, scale={self.scale}")
    object.__setattr__(self, "loc", float(self.loc))
    object.__setattr__(self, "scale", float(self.scale))

  dtype = jnp.float32
  width = 1
  head_size = 2
  noise_size = 1

  @staticmethod
  def draw(rng: Array, shape: tuple[int, ...]) -> Array:
    """iid N(0, 1) draws of `shape` (one call serves many nodes)."""
    return jax.random.normal(rng, shape)

  def _affine(self, head: Array) -> tuple[Array, Array]:
    """(mu, log_s) [...] from the head [..., 2], log_s clamped."""
    return head[..., 0], jnp.maximum(head[..., 1], MIN_LOG_SCALE)

  def standardise(self, value) -> Array:
    return (jnp.asarray(value, jnp.float32) - self.loc) / self.scale

  def encode(self, value) -> Array:
    return self.standardise(value)[..., None]

  def sample_noise(self, rng: Array, shape: tuple[int, ...]) -> Array:
    return self.draw(rng, tuple(shape) + (1,))

  def apply(self, head: Array, noise: Array) -> Array:
    mu, log_s = self._affine(head)
    return self.loc + self.scale * (mu + jnp.exp(log_s) * noise[..., 0])

  def log_prob(self, head: Array, value) -> Array:
    mu, log_s = self._affine(head)
    eps = (self.standardise(value) - mu) * jnp.exp(-log_s)
    return (-0.5 * eps**2 - 0.5 * math.log(2 * math.pi) - log_s
            - math.log(self.scale))

  def abduct(self, rng: Array, head: Array, value) -> Array:
    del rng  # the inverse is deterministic
    mu, log_s = self._affine(head)
    return ((self.standardise(value) - mu) * jnp.exp(-log_s))[..., None]

  def relaxed_encode(self, head: Array, noise: Array, temperature) -> Array:
    del temperature  # already differentiable
    mu, log_s = self._affine(head)
    return (mu + jnp.exp(log_s) * noise[..., 0])[..., None]

  def mode(self, head: Array) -> Array:
    return self.loc + self.scale * self._affine(head)[0]

  def check(self, name: str, value, what: str = "value") -> Array:
    host = _concrete(value)
    dtype = (host if host is not None else value).dtype
    if not (jnp.issubdtype(dtype, jnp.floating)
            or jnp.issubdtype(dtype, jnp.integer)):
      raise KindError(f"{what} of {name!r} must be real numbers, got {dtype}")
    if host is not None and not np.all(np.isfinite(host)):
      raise KindError(f"{what} of {name!r} is not finite (NaN or inf)")
    return jnp.asarray(value, jnp.float32)


# Kind name -> class; a config or a model spec names a kind by its key. A
# kind in its own module registers itself here (`spline.py`: one line), and
# `ctfjax/causal/__init__.py` imports that module, so this module never
# imports a kind built on its own classes (no import cycle).
KINDS = {"categorical": Categorical, "continuous": Continuous}


def resolve(spec) -> Kind:
  """A kind from a spec: an int K (categorical), a name in `KINDS` (with its
  defaults) or a kind object."""
  if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
    return Categorical(int(spec))
  if isinstance(spec, str):
    if spec not in KINDS:
      raise KindError(f"unknown feature kind {spec!r}; known kinds: "
                      f"{', '.join(KINDS)}")
    return KINDS[spec]()
  if isinstance(spec, tuple(KINDS.values())):
    return spec
  raise KindError(f"a feature is an int (categorical size), a kind name or a "
                  f"kind object, got {spec!r}")


def encode(features: Mapping[str, Kind], values: Mapping[str, Array],
           order: Sequence[str] | None = None) -> Array:
  """Concatenated encodings [..., sum of widths] of `values`.

  Args:
    features: name -> kind.
    values: name -> [...] values (every name of `order`).
    order: the names in concatenation order (default: `features`' order).

  Returns:
    float32 [..., sum width].
  """
  order = tuple(features) if order is None else tuple(order)
  return jnp.concatenate([features[k].encode(values[k]) for k in order], -1)


def sample_noise(kinds: Sequence[Kind], rng: Array, shape: tuple[int, ...]
                 ) -> list[Array]:
  """Prior noise of several variables, one random draw per kind class.

  Noise is iid within a class, so one draw split along the last axis has the
  law of separate draws and compiles to fewer random-bit kernels (the NCM's
  XLA:CPU compile time). The first class uses `rng` itself.

  Returns:
    One [*shape, noise_size] array per kind, in order.
  """
  classes = list(dict.fromkeys(type(k) for k in kinds))
  out: list[Array | None] = [None] * len(kinds)
  for c, cls in enumerate(classes):
    idx = [i for i, k in enumerate(kinds) if type(k) is cls]
    sizes = [kinds[i].noise_size for i in idx]
    key = rng if c == 0 else jax.random.fold_in(rng, c)
    draw = cls.draw(key, tuple(shape) + (sum(sizes),))
    for i, part in zip(idx, jnp.split(draw, np.cumsum(sizes)[:-1], -1)):
      out[i] = part
  return out
