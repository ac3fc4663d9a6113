"""DEAR as an image mechanism: a generative model with an SCM prior.

Shen, Liu, Dong, Lian, Chen & Zhang, "Weakly Supervised Disentangled
Generative Causal Representation Learning" (JMLR 2022; code:
github.com/xwshen51/DEAR, `causal_model.SCM`, `bgm.BGM`, `train.py`). The
latent z = (z_codes, z_rest): one code per supervised factor, whose prior
is an SCM over the codes on a known super-graph, and the rest N(0, I). A
generator G(z) reads z alone (never the labels); an encoder E(x) infers z,
and a supervised loss makes each factor's code equal its label.

The SCM layer (DEAR's `linscm`, here with vector codes): with row vectors
and A the adjacency masked by the super-graph (A[i, j] != 0 only for an
edge i -> j),

    pre = eps (I - A)^-1,  z_codes = exp(log_scale) * pre + shift

so pre_j = sum_i pre_i A[i, j] + eps_j; abduction inverts it:
eps = f^-1(z) (I - A) with f^-1(z) = (z - shift) exp(-log_scale). An
intervention sets the intervened factors' codes, recomputes the codes of
their descendants from their abducted eps in topological order and leaves
every other code as it was (bit-identical): `SCMLayer.intervene`.

Mapped onto the `ImageMechanism` protocol:

* U_I = the abducted codes and rest (the encoder's means, as DEAR's
  `infer_mean`) and the factual features `cond`. `predict(cond', u)`
  treats the factors whose encoding in cond' differs from the factual one
  as intervened, sets their codes to their new encodings (the supervised
  loss is DEAR's l2 one, `sup_type="l2"`, with the encodings as labels: a
  one-hot for a categorical factor) and propagates to the descendants by
  the SCM. Run under the edgeless diagram (`cvae_noncausal`) the feature
  model changes the intervened factor alone, so the SCM over the codes is
  the only causal propagation, as in DEAR. A prior draw of U_I has no
  factual features (NaN): every factor counts as intervened.
* Trained as a VAE, not DEAR's bidirectional GAN: one ELBO whose prior on
  the codes is the SCM's density (the exact log-density of an invertible
  map: log N(eps) - sum log_scale; the triangular I - A has determinant 1),
  estimated with one posterior sample, plus `sup_coef` x the l2
  supervision of the encoder's code means. The SCM's parameters train with
  the rest in one group (DEAR uses separate optimizers for A and the
  elementwise maps).

The factors are the model's features (`base.Features`): each code has its
feature's encoding width, in the model's (topological) order. The
super-graph is `super_graph` (text over the features' names, "D -> B;
C -> B"), by default the directed edges of the dataset's true diagram:
DEAR assumes a known super-graph of the true causal structure, prior
knowledge that holds whatever diagram the feature model assumes (it runs
under the edgeless one, so its SCM is the only propagation). Without a
known true diagram, the model's own diagram's directed edges.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from ctfjax.causal.graph import Graph, GraphError
from ctfjax.mechanisms.base import Features, MechanismError, Stage
from ctfjax.mechanisms.base import block_slices
from ctfjax.mechanisms.vae import FIXED_LOG_STD
from ctfjax.nn import gaussian
from ctfjax.nn.conv import ConvDecoder, ConvEncoder, block_scales

LOG_2PI = float(np.log(2.0 * np.pi))
SUPER_GRAPH_KEY = "model.image.dear.super_graph"


def super_graph_edges(features: Features, text: str = ""
                      ) -> tuple[tuple[int, int], ...]:
  """DEAR's super-graph as (parent, child) positions in `features.names`.

  Args:
    features: the model's features, in its topological order.
    text: directed edges over the features' names ("D -> B; C -> B"); ""
      for the directed edges of `features.true_graph`, or of
      `features.graph` where the true diagram is unknown (none if neither
      is known).

  Returns:
    The edges, sorted, each with parent < child.

  Raises:
    MechanismError: the text does not parse, names an unknown feature or
      has a bidirected edge (DEAR's exogenous codes are independent), or
      an edge goes against the model's feature order.
  """
  if text:
    try:
      graph = Graph.parse(text)
    except GraphError as e:
      raise MechanismError(f"config key '{SUPER_GRAPH_KEY}': {e}") from None
    if graph.bidirected:
      raise MechanismError(
          f"config key '{SUPER_GRAPH_KEY}': {text!r} has a bidirected edge; "
          "DEAR's SCM has independent exogenous codes, so only directed "
          "edges are allowed")
    for name in graph.nodes:
      features.index(name, SUPER_GRAPH_KEY)
  else:
    graph = features.true_graph or features.graph
  edges = sorted((features.names.index(a), features.names.index(b))
                 for a, b in (graph.directed if graph else ()))
  for i, j in edges:
    if i > j:
      raise MechanismError(
          f"config key '{SUPER_GRAPH_KEY}': edge {features.names[i]} -> "
          f"{features.names[j]} goes against the model's feature order "
          f"{', '.join(features.names)} (DEAR's SCM sets parents before "
          "children)")
  return tuple(edges)


class SCMLayer(nnx.Module):
  """DEAR's linear SCM over the factors' codes (`causal_model.SCM`).

  Attributes:
    adjacency: [d, d] weights; only entries of the super-graph's edges are
      used (`weights`), as DEAR zeroes the other entries' gradients.
    log_scale, shift: [d] the elementwise affine map f of DEAR's `linscm`
      (its scale kept positive, so f is invertible).
  """

  def __init__(self, blocks: Sequence[int],
               edges: Sequence[tuple[int, int]]):
    self.blocks = tuple(int(w) for w in blocks)
    self.edges = tuple((int(i), int(j)) for i, j in edges)
    for i, j in self.edges:
      if not 0 <= i < j < len(self.blocks):
        raise MechanismError(
            f"DEAR's SCM: edge {(i, j)} must be (parent, child) block "
            f"indices with parent < child < {len(self.blocks)} (blocks in "
            "topological order)")
    d = sum(self.blocks)
    self.adjacency = nnx.Param(jnp.zeros((d, d)))
    self.log_scale = nnx.Param(jnp.zeros((d,)))
    self.shift = nnx.Param(jnp.zeros((d,)))

  def mask(self) -> np.ndarray:
    """[d, d] 1 on the blocks of the super-graph's edges, else 0."""
    slices = block_slices(self.blocks)
    out = np.zeros((sum(self.blocks),) * 2, np.float32)
    for i, j in self.edges:
      out[slices[i], slices[j]] = 1.0
    return out

  def weights(self):
    """A: the adjacency masked by the super-graph, [d, d]."""
    return self.adjacency[...] * self.mask()

  def parents(self, k: int) -> tuple[int, ...]:
    return tuple(i for i, j in self.edges if j == k)

  def f(self, pre):
    return jnp.exp(self.log_scale[...]) * pre + self.shift[...]

  def f_inverse(self, z):
    return (z - self.shift[...]) * jnp.exp(-self.log_scale[...])

  def forward(self, eps):
    """Codes from exogenous noise: f(eps (I - A)^-1), [B, d]."""
    d = eps.shape[-1]
    return self.f(eps @ jnp.linalg.inv(jnp.eye(d) - self.weights()))

  def abduct(self, z):
    """The exogenous noise of codes z: f^-1(z) (I - A), [B, d]."""
    pre = self.f_inverse(z)
    return pre - pre @ self.weights()

  def log_prob(self, z):
    """log p(z) under the SCM prior, eps ~ N(0, I): [B]."""
    eps = self.abduct(z)
    return (-0.5 * (eps ** 2 + LOG_2PI)).sum(-1) - self.log_scale[...].sum()

  def intervene(self, z, do, value):
    """Codes after do(): set, descendants recomputed, the rest kept.

    Args:
      z: [B, d] factual codes.
      do: [B, blocks] bool, which factors each row intervenes on.
      value: [B, d] the intervened codes (read where `do`).

    Returns:
      [B, d]: intervened blocks = `value`; descendants of an intervened
      block f(sum over parents of pre_parent A + eps) with eps abducted
      from z; every other block is z itself, bit for bit.
    """
    a = self.weights()
    eps = self.abduct(z)
    pre = self.f_inverse(z)
    pre_do = self.f_inverse(value)
    slices = block_slices(self.blocks)
    moved, out_pre, out = [], [], []
    for k, sl in enumerate(slices):  # blocks are in topological order
      parents = self.parents(k)
      hit = do[:, k]
      for i in parents:
        hit = hit | moved[i]
      propagated = eps[:, sl]
      for i in parents:
        propagated = propagated + out_pre[i] @ a[slices[i], sl]
      new_pre = jnp.where(do[:, k:k + 1], pre_do[:, sl], propagated)
      out_pre.append(jnp.where(hit[:, None], new_pre, pre[:, sl]))
      f_k = (jnp.exp(self.log_scale[sl]) * new_pre + self.shift[sl])
      out.append(jnp.where(hit[:, None], f_k, z[:, sl]))
      moved.append(hit)
    return jnp.concatenate(out, axis=-1)


class DEAR(nnx.Module):
  """Encoder, SCM prior over the factors' codes, generator G(z)."""

  SAMPLER = {}
  # The hand-written layout of configs before the features' layout came
  # from the model (block widths, the super-graph as block indices).
  RETIRED = ("blocks", "edges")

  def __init__(self, image_shape, features: Features | int, *,
               rngs: nnx.Rngs, super_graph: str = "", rest_dim: int = 8,
               sup_coef: float = 100.0,
               decoder_convs=((24, 3), (24, 3), (16, 3)), hidden: int = 128,
               beta: float = 1.0):
    features = Features.of(features)
    cond_dim = features.cond_dim
    self.image_shape = tuple(image_shape)
    self.code_dim = cond_dim
    self.rest_dim = rest_dim
    self.sup_coef = sup_coef
    self.beta = beta
    self.scm = SCMLayer(features.widths,
                        super_graph_edges(features, super_graph))
    latent = cond_dim + rest_dim
    # DEAR's encoder and generator read the image and z only.
    self.encoder = ConvEncoder(image_shape, 0, latent, rngs=rngs,
                               hidden=hidden)
    h, w, _ = self.image_shape
    ups = block_scales(decoder_convs).count(2)
    convs = tuple(map(tuple, decoder_convs))
    try:
      self.decoder = ConvDecoder(image_shape, 0, latent, rngs=rngs,
                                 base=(h >> ups, w >> ups, convs[0][0]),
                                 convs=convs, hidden=hidden)
    except ValueError as e:
      raise MechanismError(f"model.image.dear: {e}") from None

  # Family -------------------------------------------------------------------

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # The SCM's super-graph over the factors' codes: directed edges over
    # the features' names ("D -> B; C -> B"), parents before children in
    # the model's order; "" = the dataset's true diagram's directed edges
    # (Colored MNIST backdoor: D -> B, C -> B; D <-> C has no counterpart,
    # DEAR's exogenous codes being independent).
    c.super_graph = ""
    c.rest_dim = 8  # Width of the unsupervised part of z.
    # Weight of the l2 supervision of the code means (nats per image).
    c.sup_coef = 100.0
    # Generator (features, kernel) blocks, each after a 2x upsampling.
    c.decoder_convs = ((24, 3), (24, 3), (16, 3))
    c.beta = 1.0  # KL weight of the ELBO.
    return c

  @classmethod
  def create(cls, image_shape: Sequence[int], features: Features | int,
             config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> DEAR:
    return cls(image_shape, features, rngs=rngs,
               super_graph=config.super_graph, rest_dim=config.rest_dim,
               sup_coef=config.sup_coef, decoder_convs=config.decoder_convs,
               beta=config.beta)

  @classmethod
  def stages(cls, config: ml_collections.ConfigDict,
             steps: int) -> tuple[Stage, ...]:
    del config
    return (Stage("dear", steps),)

  # Mechanism ----------------------------------------------------------------

  def _generate(self, codes, rest):
    mean, _ = self.decoder(jnp.concatenate([codes, rest], axis=-1),
                           codes[:, :0])
    return jax.nn.sigmoid(mean)

  def _encode(self, images):
    return self.encoder(images, images[:, 0, 0, :0])

  def loss(self, images, cond, rng, stage="dear", context=None):
    """Negative ELBO under the SCM prior plus the codes' supervision."""
    del stage, context  # one stage, which needs nothing else
    mean, logvar = self._encode(images)
    z = gaussian.reparameterize(rng, mean, logvar)
    d = self.code_dim
    x = self._generate(z[:, :d], z[:, d:])
    nll = gaussian.gaussian_nll(images, x, jnp.full_like(x, FIXED_LOG_STD))
    nll = nll.reshape(nll.shape[0], -1).sum(-1)
    # The codes' KL by one posterior sample; the rest's in closed form.
    log_q = (-0.5 * ((z[:, :d] - mean[:, :d]) ** 2 * jnp.exp(-logvar[:, :d])
                     + logvar[:, :d] + LOG_2PI)).sum(-1)
    kl_codes = log_q - self.scm.log_prob(z[:, :d])
    kl_rest = gaussian.kl_to_standard_normal(mean[:, d:], logvar[:, d:])
    sup = ((mean[:, :d] - cond) ** 2).sum(-1)
    kl = kl_codes + kl_rest
    l1 = jnp.abs(images - x).reshape(x.shape[0], -1).mean(-1) * 255.0
    return ({"loss": nll + self.beta * kl + self.sup_coef * sup},
            {"nll": nll, "kl": kl, "sup": sup, "recon_l1": l1})

  def abduct(self, images, cond, rng=None):
    """U_I: the encoder's mean codes and rest, and the factual features."""
    del rng  # deterministic abduction: the posterior mean
    mean, _ = self._encode(images)
    d = self.code_dim
    return {"codes": mean[:, :d], "rest": mean[:, d:], "cond": cond}

  def intervened(self, cond, factual):
    """[B, blocks] bool: the factors whose encoding differs (a NaN factual
    encoding, a prior draw's, differs from every value)."""
    return jnp.stack([jnp.any(cond[:, sl] != factual[:, sl], axis=-1)
                      for sl in block_slices(self.scm.blocks)], axis=-1)

  def predict(self, cond, u, rng=None):
    """G(codes after do(), rest): the changed factors intervened on."""
    del rng  # one deterministic pass
    do = self.intervened(cond, u["cond"])
    return self._generate(self.scm.intervene(u["codes"], do, cond), u["rest"])

  def prior(self, rng, batch: int):
    k_eps, k_rest = jax.random.split(rng)
    eps = jax.random.normal(k_eps, (batch, self.code_dim))
    return {"codes": self.scm.forward(eps),
            "rest": jax.random.normal(k_rest, (batch, self.rest_dim)),
            "cond": jnp.full((batch, self.code_dim), jnp.nan)}

  def relabel(self, images, cond, new_cond, rng):
    """Abduct then predict under `new_cond`: one encoder and decoder pass."""
    return self.predict(new_cond, self.abduct(images, cond, rng), rng)
