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

What ties each layer to its role is the paper's device on its MNISTs: the
foreground and background there are shuffled 2x2 patches, so they carry
no shape and only the mask can draw the digit. Ours limits the detail
instead (`coarsen`): the foreground is one colour per image
(`texture_size` 1 cell) and the background a grid of 8 x 8 cells of 4
pixels (`background_size`), which draws Colored MNIST's bar (its top 4
rows) exactly and no digit stroke. Without it nothing identifies the
layers: the background's latent drew the coloured digit and the texture
mechanism painted a blob beside it, so do(C) changed no stroke.

Where ours differs from the paper: no pretrained BigGAN, no
ImageNet-specific losses (mask size prior) and no binary loss on the mask,
which their MNISTs use (MNIST strokes are grey-level; our mask carries
their intensity). The
three decoders train from scratch as one VAE with a single encoder
q(u_shape, u_texture, u_background | i, v) for abduction (a posterior
draw; `vae` takes the mean), so the family fits the `ImageMechanism`
protocol: a one-pass `predict`, an exact prior N(0, I) independent of the
features and a cheap `relabel`.

Each mechanism reads its feature's slice of `cond`, found by the feature's
name in the model's layout (`base.Features`): `shape_feature`,
`texture_feature` and `background_feature` name them; a role left empty
takes the next feature no role names, in the model's order (Colored MNIST:
D, C, B), or none when none is left (its layer then depends on its latent
alone). Causally, CGN ignores every edge between attributes: it runs under
the edgeless diagram (`cvae_noncausal`), so an edit changes the intervened
attribute's mechanism only.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ctfjax.mechanisms.base import Features, MechanismError, Stage
from ctfjax.mechanisms.vae import FIXED_LOG_STD
from ctfjax.nn import gaussian
from ctfjax.nn.conv import ConvDecoder, ConvEncoder, block_scales

# The three mechanisms, in the order their latents sit in the encoder's
# output.
MECHANISMS = ("shape", "texture", "background")
# Each mechanism's config key: the name of the feature it reads.
ROLE_KEYS = {name: f"{name}_feature" for name in MECHANISMS}


def compose(mask, foreground, background):
  """CGN's composition x = m * f + (1 - m) * b.

  Args:
    mask: [B, H, W, 1] in [0, 1].
    foreground, background: [B, H, W, C] in [0, 1].

  Returns:
    [B, H, W, C] in [0, 1].
  """
  return mask * foreground + (1.0 - mask) * background


def coarsen(x, cells: int):
  """Each channel's mean over a grid of `cells` x `cells` blocks, spread
  back over the block: no detail finer than a block survives.

  Args:
    x: [B, H, W, C]; `cells` divides H and W.
    cells: blocks per side; 0 leaves x as it is.

  Returns:
    [B, H, W, C].
  """
  if not cells:
    return x
  b, h, w, c = x.shape
  blocks = x.reshape(b, cells, h // cells, cells, w // cells, c)
  means = blocks.mean(axis=(2, 4), keepdims=True)
  return jnp.broadcast_to(means, blocks.shape).reshape(x.shape)


def assign_roles(features: Features, names: Mapping[str, str]
                 ) -> tuple[str | None, ...]:
  """The feature each mechanism reads, in `MECHANISMS` order.

  Args:
    features: the model's features.
    names: {mechanism: feature name, or "" to take the next feature that no
      mechanism names, in the model's order}.

  Returns:
    A feature name, or None where no feature is left, per mechanism.

  Raises:
    MechanismError: an unknown name, a feature named by two mechanisms, or
      a feature no mechanism reads (more than three features).
  """
  given = {}
  for mechanism in MECHANISMS:
    name = names.get(mechanism) or ""
    if not name:
      continue
    key = f"model.image.cgn.{ROLE_KEYS[mechanism]}"
    features.index(name, key)
    if name in given.values():
      other = [m for m, n in given.items() if n == name][0]
      raise MechanismError(
          f"config key '{key}': feature {name!r} is already read by the "
          f"{other} mechanism ('model.image.cgn.{ROLE_KEYS[other]}'); each "
          "feature drives one mechanism")
    given[mechanism] = name
  rest = [n for n in features.names if n not in given.values()]
  out = tuple(given[m] if m in given else (rest.pop(0) if rest else None)
              for m in MECHANISMS)
  if rest:
    raise MechanismError(
        f"model.image.cgn: no mechanism reads feature(s) {', '.join(rest)}; "
        f"CGN has three ({', '.join(ROLE_KEYS.values())}) and the model "
        f"{len(features.names)} features")
  return out


class CGN(nnx.Module):
  """Shape, texture and background mechanisms composed into the image."""

  SAMPLER = {}
  # The hand-written layout of configs before the features' layout came
  # from the model (block widths, block indices of the three roles).
  RETIRED = ("blocks", "shape", "texture", "background")

  def __init__(self, image_shape, features: Features | int, *,
               rngs: nnx.Rngs, shape_feature: str = "",
               texture_feature: str = "", background_feature: str = "",
               latent_dim: int = 8,
               decoder_convs=((24, 3), (24, 3), (16, 3)), hidden: int = 128,
               beta: float = 1.0, texture_size: int = 1,
               background_size: int = 8):
    features = Features.of(features)
    cond_dim = features.cond_dim
    self.image_shape = tuple(image_shape)
    for key, cells in (("texture_size", texture_size),
                       ("background_size", background_size)):
      if cells < 0 or (cells and (image_shape[0] % cells
                                  or image_shape[1] % cells)):
        raise MechanismError(
            f"config key 'model.image.cgn.{key}': {cells} cells per side "
            f"do not divide the {image_shape[0]}x{image_shape[1]} image "
            "(0: full resolution)")
    # Cells per side of each layer (0: full resolution), `MECHANISMS` order.
    self.cells = (0, texture_size, background_size)
    self.latent_dim = latent_dim
    self.beta = beta
    # The feature each mechanism reads (None: none), in `MECHANISMS` order,
    # and its (start, stop) in cond (tuples: static structure, not state).
    self.roles = assign_roles(features, {
        "shape": shape_feature, "texture": texture_feature,
        "background": background_feature})
    slices = dict(zip(features.names, features.slices))
    self.reads = tuple(
        (0, 0) if name is None else (slices[name].start, slices[name].stop)
        for name in self.roles)
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
    # The feature each mechanism reads, by name; "" takes the next feature
    # no mechanism names, in the model's order (none when none is left).
    # Colored MNIST by default: D (shape), C (texture), B (background).
    c.shape_feature = ""  # The shape (mask) mechanism's feature.
    c.texture_feature = ""  # The texture (foreground) mechanism's feature.
    c.background_feature = ""  # The background mechanism's feature.
    c.latent_dim = 8  # Latent width of each mechanism (3 x this in U_I).
    # Decoder (features, kernel) blocks of each mechanism, each after a 2x
    # upsampling, from a map of side (image side) / 2^(blocks).
    c.decoder_convs = ((24, 3), (24, 3), (16, 3))
    c.beta = 1.0  # KL weight of the ELBO.
    # Cells per side of the foreground and the background: each layer is
    # constant on blocks of (side / cells) pixels, 0 = full resolution
    # (`coarsen`). Colored MNIST: one colour, and the bar's 4-pixel rows.
    c.texture_size = 1
    c.background_size = 8
    return c

  @classmethod
  def create(cls, image_shape: Sequence[int], features: Features | int,
             config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> CGN:
    return cls(image_shape, features, rngs=rngs,
               shape_feature=config.shape_feature,
               texture_feature=config.texture_feature,
               background_feature=config.background_feature,
               latent_dim=config.latent_dim,
               decoder_convs=config.decoder_convs, beta=config.beta,
               texture_size=config.texture_size,
               background_size=config.background_size)

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
    [B, H, W, C], each from its own attribute and latent only, the latter
    two coarsened to their cells."""
    return tuple(
        coarsen(jax.nn.sigmoid(
            getattr(self, name)(u[name], self._own(name, cond))[0]), cells)
        for name, cells in zip(MECHANISMS, self.cells))

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
    """U_I ~ q(u | i, v): a posterior draw of each mechanism's latent.

    A draw, not the posterior mean (as `vae` takes): the decoders train on
    draws of a wide posterior and are off their training manifold at its
    mean (docs/models.md, "CGN"). Without `rng`, the mean.
    """
    mean, logvar = self.encoder(images, cond)
    if rng is None:
      return self._split(mean)
    return self._split(gaussian.reparameterize(rng, mean, logvar))

  def predict(self, cond, u, rng=None):
    """f_I(v, u_I) = m * f + (1 - m) * b."""
    del rng  # one deterministic pass
    return compose(*self.layers(cond, u))

  def prior(self, rng, batch: int):
    keys = jax.random.split(rng, len(MECHANISMS))
    return {name: jax.random.normal(k, (batch, self.latent_dim))
            for name, k in zip(MECHANISMS, keys)}

  def relabel(self, images, cond, new_cond, rng):
    """Abduct then predict under `new_cond`: one encoder and decoder pass,
    through the same posterior draw as an edit, so that the training's
    label-faithfulness term shapes the decodes an edit makes."""
    return self.predict(new_cond, self.abduct(images, cond, rng), rng)
