"""An NCM whose variables are high-dimensional codes (Sardesai's diffusion NCM).

Sardesai, "Ctf-editing using a diffusion NCM", makes every generative
factor V_i a high-dimensional variable: a mechanism network computes its
code from its parents' codes and the exogenous latents, a per-variable
autoencoder maps between the code and the discrete value (so that do() is
applied in value space), and a diffusion U-Net is conditioned on the codes.
`CodeNCM` is that feature model on the world engine
(`ctfjax.causal.scm`), a G-constrained NCM like `ctfjax.ncm.NCM`:

* per categorical variable V_i with K_i values, an autoencoder
  (`Autoencoder`): A_i(v) = E_i[v], a learned code in R^k for each value
  (a table: every function of a discrete value is one), and the read-out
  R_i(c)_u = -|c - E_i[u]|^2, logits of the value u given a code c;
* the mechanism g_i, an MLP from the parents' codes A_p(v_p) and the
  latents V_i reads (one per C^2-component it is in, one of its own; two
  variables joined by <-> read the same latent) to a code h_i in R^k;
* V_i := argmax_u(R_i(h_i)_u + G_iu) with the node's Gumbel noise G_i: the
  feature likelihood P(v_i | pa_i, u) = softmax(R_i(g_i(A(v_pa), u)))_v_i,
  and the NCM's exact truncated-Gumbel abduction of G_i;
* the code a variable passes to its children and to the image is
  C_i = A_i(V_i); do(V_i = v) sets C_i = A_i(v).

The round trip R_i(A_i(v)) = v holds by construction: its logit of v is
-|E_i[v] - E_i[v]|^2 = 0 exactly and every other one is negative while the
values' codes differ (they start apart at random and nothing in training
pulls two of them together: the likelihood and the image would then lose
the value).

Deviation from the paper, and why. Sardesai's codes leave a mechanism
without a discrete bottleneck (a loss pulls them towards A(R(code))). Here
the code that leaves a variable is exactly A_i(V_i):

* a code carrying more than its value would carry the variable's exogenous
  latents into its children, an edge the diagram does not have: on the
  front door (D -> C -> B, D <-> B) C's code would hold U(D,B) read through
  D's, making C and B confounded, and the model would no longer be
  G-constrained over V (nor its counterfactuals bounded by the diagram's);
* the rest of such a code is a function of the feature latents, which the
  ASCM keeps independent of the image's own noise U_I: it carries no image
  content to preserve (in Sardesai's code it did because every U_i read
  the image itself, an encoder, not an exogenous variable);
* a value drawn with Gumbel noise is not a function of h_i, so an image
  conditioned on h_i could not know it; conditioned on A_i(V_i) it can.

Hence interventions act on codes exactly as the brief of the model asks:
non-descendants of do() keep their values (the engine copies them from
the factual world) and so their codes, bit for bit; descendants are
recomputed by their mechanisms from the abducted latents and noise; the
intervened code is A_i(v).

Categorical features only (a continuous value would need a read-out of
its own); every stage is a pure function of (params, inputs, rng) like the
NCM's.
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from ctfjax.causal import kinds as kinds_lib
from ctfjax.ncm.model import NCM, NCMError, Params, broadcast_concat
from ctfjax.nn.mlp import MLP

Array = jax.Array


class Autoencoder(nnx.Module):
  """A_i: value -> code and R_i: code -> logits of one categorical variable.

  The codes are the rows of `table` [K, k]; the read-out scores a code by
  its squared distance to each row (a nearest-code decoder), so that
  R_i(A_i(v)) is maximal at v exactly.
  """

  def __init__(self, size: int, code_dim: int, *, rngs: nnx.Rngs):
    # Rows of norm about 1: read-out logits of order 1 at initialisation.
    self.table = nnx.Param(jax.random.normal(
        rngs.params(), (size, code_dim)) / math.sqrt(code_dim))

  def code(self, value: Array) -> Array:
    """A_i(v): the rows of the table [..., k] for integer values [...]."""
    return jnp.take(self.table[...], value, axis=0)

  def encode(self, onehot: Array) -> Array:
    """A_i of a (possibly relaxed) one-hot [..., K]: the mixture of codes
    [..., k] (the engine's parent encodings; exact rows for one-hots)."""
    return onehot @ self.table[...]

  def decode(self, code: Array) -> Array:
    """R_i(c): logits [..., K], -|c - A_i(u)|^2 for each value u."""
    return -jnp.sum(jnp.square(code[..., None, :] - self.table[...]), -1)


class CodeMechanisms(nnx.Module):
  """Per node its autoencoder and its mechanism MLP g_i (to a code)."""

  def __init__(self, domains: Mapping[str, int],
               input_dims: Mapping[str, int], code_dim: int,
               hidden, *, rngs: nnx.Rngs):
    self.autoencoders = nnx.Dict({
        v: Autoencoder(k, code_dim, rngs=rngs) for v, k in domains.items()})
    self.nets = nnx.Dict({
        v: MLP(input_dims[v], hidden, code_dim, rngs=rngs) for v in domains})


class CodeNCM(NCM):
  """A G-constrained NCM over high-dimensional codes (module docstring).

  Built like `NCM` (`CodeNCM.create(graph, features, rng, code_dim=16)`)
  and used like it: sampling, likelihood, abduction and counterfactuals are
  the NCM's, on the world engine. `codes` and `condition` give the codes
  an image mechanism reads.

  Attributes:
    code_dim: k, the width of every variable's code.
  """

  def __init__(self, graph, features, *, code_dim: int = 16, **kwargs):
    """Describes the architecture (no parameters; see `create`).

    Args:
      graph: the causal diagram (or its text form).
      features: node -> number of values (categorical features only).
      code_dim: k, the width of every code.
      **kwargs: `latent_dim`, `hidden`, `latent_prior` (`NCM.__init__`).
    """
    super().__init__(graph, features, **kwargs)
    for v, k in self.features.items():
      if not isinstance(k, kinds_lib.Categorical):
        raise NCMError(f"the code NCM needs categorical features; {v!r} is "
                       f"{type(k).__name__.lower()}")
    if int(code_dim) < 1:
      raise NCMError(f"code_dim must be at least 1, got {code_dim}")
    self.code_dim = int(code_dim)

  def _key(self):
    return super()._key() + (self.code_dim,)

  def __hash__(self):
    return hash(self._key())

  def __repr__(self):
    return (type(self).__name__ + super().__repr__()[3:-1]
            + f", code_dim={self.code_dim})")

  def _input_dims(self) -> dict[str, int]:
    return {v: self.code_dim * len(self.graph.parents(v))
            + self.latent_dim * len(self._latents_of[v]) for v in self.order}

  def _mechanisms(self, rngs: nnx.Rngs) -> CodeMechanisms:
    return CodeMechanisms(self.domains, self._input_dims(), self.code_dim,
                          self.hidden, rngs=rngs)

  def head(self, mech: CodeMechanisms, node: str,
           parents: Mapping[str, Array],
           latents: Mapping[str, Array]) -> Array:
    """Logits R_i(g_i(A(pa), u)) [..., K] of `node`; `parents` holds the
    parents' (possibly relaxed) one-hots, read through their autoencoders."""
    parts = [mech.autoencoders[p].encode(parents[p])
             for p in self.graph.parents(node)]
    parts += [latents[n] for n in self._latents_of[node]]
    h = mech.nets[node](broadcast_concat(parts))  # [..., k]
    return mech.autoencoders[node].decode(h)

  def codes(self, params: Params, values: Mapping[str, Array]
            ) -> dict[str, Array]:
    """Each node's code A_i(v_i): node -> [..., k] for values [...]."""
    mech = self.module(params)
    return {v: mech.autoencoders[v].code(jnp.asarray(values[v], jnp.int32))
            for v in self.order}

  def read(self, params: Params, codes: Mapping[str, Array]
           ) -> dict[str, Array]:
    """The values the codes hold, argmax R_i(c_i): node -> [...]."""
    mech = self.module(params)
    return {v: jnp.argmax(mech.autoencoders[v].decode(codes[v]), -1)
            for v in codes}

  @property
  def condition_dim(self) -> int:
    return self.code_dim * len(self.order)

  def condition(self, params: Params, values: Mapping[str, Array]) -> Array:
    """The codes [..., n k] of every node, concatenated in `order`: what the
    image mechanism is conditioned on."""
    if params is None:
      raise NCMError("the code NCM's condition is learned: pass its params")
    codes = self.codes(params, values)
    return jnp.concatenate([codes[v] for v in self.order], -1)
