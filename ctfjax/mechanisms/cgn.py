"""A counterfactual generative network (CGN) as an image mechanism.

Sauer & Geiger, "Counterfactual Generative Networks" (ICLR 2021): three
independent mechanisms, shape -> mask m, texture -> foreground f and
background -> b, each conditioned only on its own attribute, composed
analytically into the image

    x = m * f + (1 - m) * b        # m [B, H, W, 1], f and b [B, H, W, C]

Adapted to Colored MNIST (docs/models.md, "CGN"): the shape mechanism
reads the digit D only (the digit's stroke mask), the texture mechanism
the colour C only (the stroke colour) and the background mechanism the bar
B only (the bar region). Each mechanism has its own slice of U_I (its own
latent), so changing one attribute re-renders that mechanism alone and the
other two layers stay bit-identical.

Where ours differs from the paper: no pretrained BigGAN and no
ImageNet-specific losses (mask size prior, texture patch shuffling). The
three decoders train from scratch as one VAE with a single encoder
q(u_shape, u_texture, u_background | i, v) for abduction (posterior means,
as `vae`), so the family fits the `ImageMechanism` protocol: a one-pass
`predict`, an exact prior N(0, I) independent of the features and a cheap
`relabel`.

The mechanism sees the features only as their concatenated encoding
`cond`; `blocks` (the widths of the features' encodings in the model's
feature order) and the `shape`, `texture` and `background` block indices
say which slice each mechanism reads. Causally, CGN ignores every edge
between attributes: it runs under the edgeless diagram (`cvae_noncausal`),
so an edit changes the intervened attribute's mechanism only.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ctfjax.mechanisms.base import MechanismError, Stage
from ctfjax.mechanisms.vae import FIXED_LOG_STD
from ctfjax.nn import gaussian
from ctfjax.nn.conv import ConvDecoder, ConvEncoder, block_scales

# The three mechanisms, in the order their latents sit in the encoder's
# output.
MECHANISMS = ("shape", "texture", "background")


def compose(mask, foreground, background):
  """CGN's composition x = m * f + (1 - m) * b.

  Args:
    mask: [B, H, W, 1] in [0, 1].
    foreground, background: [B, H, W, C] in [0, 1].

  Returns:
    [B, H, W, C] in [0, 1].
  """
  return mask * foreground + (1.0 - mask) * background


def block_slices(blocks: Sequence[int]) -> tuple[slice, ...]:
  """Each feature's slice of `cond` from the widths of the encodings."""
  out, start = [], 0
  for width in blocks:
    out.append(slice(start, start + width))
    start += width
  return tuple(out)


class CGN(nnx.Module):
  """Shape, texture and background mechanisms composed into the image."""

  SAMPLER = {}

  def __init__(self, image_shape, cond_dim: int, *, rngs: nnx.Rngs,
               blocks: Sequence[int] = (10, 2, 2), shape: int = 0,
               texture: int = 1, background: int = 2, latent_dim: int = 8,
               decoder_convs=((24, 3), (24, 3), (16, 3)), hidden: int = 128,
               beta: float = 1.0):
    blocks = tuple(int(w) for w in blocks)
    roles = (shape, texture, background)
    if sum(blocks) != cond_dim:
      raise MechanismError(
          f"model.image.cgn.blocks {blocks} sum to {sum(blocks)}, but the "
          f"features' encoding has width {cond_dim}")
    if sorted(roles) != list(range(len(blocks))):
      raise MechanismError(
          f"model.image.cgn: shape, texture and background {roles} must "
          f"name each of the {len(blocks)} feature blocks exactly once")
    self.image_shape = tuple(image_shape)
    self.latent_dim = latent_dim
    self.beta = beta
    slices = block_slices(blocks)
    # Each mechanism's (start, stop) in cond, in `MECHANISMS` order (a
    # tuple: static structure, not state).
    self.reads = tuple((slices[i].start, slices[i].stop) for i in roles)
    self.encoder = ConvEncoder(image_shape, cond_dim,
                               len(MECHANISMS) * latent_dim, rngs=rngs,
                               hidden=hidden)
    h, w, c = self.image_shape
    ups = block_scales(decoder_convs).count(2)
    convs = tuple(map(tuple, decoder_convs))

    def decoder(channels, width):
      try:
        return ConvDecoder((h, w, channels), width, latent_dim, rngs=rngs,
                           base=(h >> ups, w >> ups, convs[0][0]),
                           convs=convs, hidden=hidden)
      except ValueError as e:
        raise MechanismError(f"model.image.cgn: {e}") from None

    (s0, s1), (t0, t1), (b0, b1) = self.reads
    self.shape = decoder(1, s1 - s0)
    self.texture = decoder(c, t1 - t0)
    self.background = decoder(c, b1 - b0)

  # Family -------------------------------------------------------------------

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # Widths of the features' encodings in cond, in the model's feature
    # order (one-hot width of a categorical feature, 1 for a continuous
    # one). Colored MNIST: D (10), C (2), B (2).
    c.blocks = (10, 2, 2)
    c.shape = 0  # Block the shape (mask) mechanism reads: D.
    c.texture = 1  # Block the texture (foreground) mechanism reads: C.
    c.background = 2  # Block the background mechanism reads: B.
    c.latent_dim = 8  # Latent width of each mechanism (3 x this in U_I).
    # Decoder (features, kernel) blocks of each mechanism, each after a 2x
    # upsampling, from a map of side (image side) / 2^(blocks).
    c.decoder_convs = ((24, 3), (24, 3), (16, 3))
    c.beta = 1.0  # KL weight of the ELBO.
    return c

  @classmethod
  def create(cls, image_shape: Sequence[int], cond_dim: int,
             config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> CGN:
    return cls(image_shape, cond_dim, rngs=rngs, blocks=config.blocks,
               shape=config.shape, texture=config.texture,
               background=config.background, latent_dim=config.latent_dim,
               decoder_convs=config.decoder_convs, beta=config.beta)

  @classmethod
  def stages(cls, config: ml_collections.ConfigDict,
             steps: int) -> tuple[Stage, ...]:
    del config
    return (Stage("cgn", steps),)

  # Mechanism ----------------------------------------------------------------

  def _own(self, name: str, cond):
    """The slice of cond that mechanism `name` reads: [B, width]."""
    a, b = self.reads[MECHANISMS.index(name)]
    return cond[:, a:b]

  def layers(self, cond, u):
    """The three layers: mask [B, H, W, 1], foreground and background
    [B, H, W, C], each from its own attribute and latent only."""
    return tuple(
        jax.nn.sigmoid(getattr(self, name)(u[name], self._own(name, cond))[0])
        for name in MECHANISMS)

  def _split(self, z):
    return dict(zip(MECHANISMS, jnp.split(z, len(MECHANISMS), axis=-1)))

  def loss(self, images, cond, rng, stage="cgn", context=None):
    """Negative ELBO of the composed image, per example."""
    del stage, context  # one stage, which needs nothing else
    mean, logvar = self.encoder(images, cond)
    z = gaussian.reparameterize(rng, mean, logvar)
    x = compose(*self.layers(cond, self._split(z)))
    nll = gaussian.gaussian_nll(images, x, jnp.full_like(x, FIXED_LOG_STD))
    nll = nll.reshape(nll.shape[0], -1).sum(-1)
    kl = gaussian.kl_to_standard_normal(mean, logvar)
    l1 = jnp.abs(images - x).reshape(x.shape[0], -1).mean(-1) * 255.0
    return {"loss": nll + self.beta * kl}, {"nll": nll, "kl": kl,
                                            "recon_l1": l1}

  def abduct(self, images, cond, rng=None):
    """U_I: each mechanism's posterior-mean latent."""
    del rng  # deterministic abduction: the posterior mean
    mean, _ = self.encoder(images, cond)
    return self._split(mean)

  def predict(self, cond, u, rng=None):
    """f_I(v, u_I) = m * f + (1 - m) * b."""
    del rng  # one deterministic pass
    return compose(*self.layers(cond, u))

  def prior(self, rng, batch: int):
    keys = jax.random.split(rng, len(MECHANISMS))
    return {name: jax.random.normal(k, (batch, self.latent_dim))
            for name, k in zip(MECHANISMS, keys)}

  def relabel(self, images, cond, new_cond, rng):
    """Abduct then predict under `new_cond`: one encoder and decoder pass."""
    return self.predict(new_cond, self.abduct(images, cond, rng), rng)
