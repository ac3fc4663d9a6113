"""The conditional GAN image mechanism with an encoder (BiGAN / ALI style).

The third Deep-SCM family of Melistas et al., "Benchmarking Counterfactual
Image Generation" (2024; section 3.2, Appendix A.4, Tables 11-13 for
MorphoMNIST): a generator G(z, pa) -> image, an encoder E(x, pa) -> z
and a joint discriminator D(x, z, pa) that tells real pairs (x, E(x, pa))
from generated pairs (G(z, pa), z), z ~ N(0, I). U_I = z.

* abduction: z = E(x, pa) (deterministic);
* prediction: G(z, pa') (one pass, no sampler settings, rng unused);
* prior: N(0, I) of width `latent_dim`;
* relabel (the ANCM's label-faithfulness decode): G(E(x, pa), pa'), which
  is exactly the counterfactual decode of the paper's eq. (6), so the frozen
  reader checks the images an edit would produce; the term is a
  class-consistency loss on G (as in an auxiliary-classifier GAN) and also
  pushes E to leave the features out of z.

Training stages:

1. "gan": two parameter groups with their own Adam(1e-4, b1 = 0.5) (the
   paper's): "generator" (G and E) and "discriminator" (D), each descending
   its own loss from the same forward pass (paper eq. (5), the
   non-saturating form that the peer code uses: G and E minimise the
   cross-entropy with the labels swapped). Losses are written with
   softplus, -log sigmoid(l) = softplus(-l), so no probability is ever
   formed. Since the first group has its own optimizer, the ANCM trains the
   feature NCM and the reader in a group of their own with the run's
   optimizer.
2. "cyclic" (only when `finetune_steps` > 0): cyclic cost minimisation of
   the encoder alone, G and D frozen (paper section 3.2, after Dogan and
   Keles), Adam with a cosine decay: the image L1 between x and
   G(E(x, pa), pa), plus `embed_weight` times the L1 between the frozen
   reader's embeddings of x and of G(E(x, pa), pa) (the embedding distance
   the paper monitors this fine-tuning with; always logged) and
   `latent_weight` times the squared error between z and E(G(z, pa), pa)
   (the peer code's latent term). The defaults weight the image term
   (0.1 and 0): each extra term raised the composition L1 measured.

Differences from the paper's tables, on purpose:

* a pixel norm after each hidden layer of G (`pixel_norm`, Karras et al.
  2018). Without it G falls to an all-black image within a few hundred
  steps at CPU budgets and never leaves it (measured on MorphoMNIST at
  Adam 2e-4 and 5e-4, with and without dropout in D, even with D blind to
  z); with it the same config draws digits by step 1,000;
* dropout on the input of every layer of D while training, one rate
  (`discriminator_dropout`, 0.2) where the paper's tables use 0.2-0.5, and
  no batch norm in D (batch statistics would make D's logit for one pair
  depend on the rest of the batch);
* dense layers where the tables use 1x1 convolutions on 1x1 maps (the
  same maps), and a sigmoid output in [0, 1] where they use tanh on
  [-1, 1].
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from ctfjax.mechanisms.base import Features, Group, MechanismError, Stage
from ctfjax.mechanisms.base import celeba_sized
from ctfjax.nn.conv import transpose_conv2x

GAN_STAGE = "gan"
CYCLIC_STAGE = "cyclic"
GENERATOR = "generator"  # Group of G and E in the first stage.
DISCRIMINATOR = "discriminator"  # Group of D in the first stage.
CYCLIC = "cyclic"  # Group of E in the cyclic stage.


def _cond_map(x, cond):
  """Concatenates `cond` [B, K] to `x` [B, H, W, C] as K constant channels."""
  b, h, w, _ = x.shape
  return jnp.concatenate(
      [x, jnp.broadcast_to(cond[:, None, None, :], (b, h, w, cond.shape[-1]))],
      axis=-1)


def _down(in_channels, convs, rngs):
  """Stride-2, 4x4 'SAME' convolutions: each halves the image side."""
  layers, c = [], in_channels
  for features in convs:
    layers.append(nnx.Conv(c, features, (4, 4), strides=(2, 2),
                           padding="SAME", rngs=rngs))
    c = features
  return nnx.List(layers)


class Encoder(nnx.Module):
  """E(x, pa) -> z [B, Z]: strided convs on the image with the parents as
  channels (paper Table 11), LReLU(0.2), a hidden dense layer of width
  `hidden` with LReLU(0.2) (the table's first 1x1 conv on the 1x1 map;
  0 = none), then a linear head."""

  def __init__(self, image_shape, cond_dim, latent_dim, convs, *, rngs,
               hidden: int = 0):
    h, w, c = image_shape
    self.convs = _down(c + cond_dim, convs, rngs)
    flat = (h >> len(convs)) * (w >> len(convs)) * convs[-1]
    self.hidden = nnx.Linear(flat, hidden, rngs=rngs) if hidden else None
    self.head = nnx.Linear(hidden or flat, latent_dim, rngs=rngs)

  def __call__(self, x, cond):
    x = _cond_map(x, cond)
    for conv in self.convs:
      x = jax.nn.leaky_relu(conv(x), 0.2)
    x = x.reshape(x.shape[0], -1)
    if self.hidden is not None:
      x = jax.nn.leaky_relu(self.hidden(x), 0.2)
    return self.head(x)


def pixel_norm(x, eps: float = 1e-8):
  """Each position's feature vector (last axis) scaled to unit RMS."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), -1, keepdims=True) + eps)


class Generator(nnx.Module):
  """G(z, pa) -> image in [0, 1]: [z, pa] to a base map (a transposed conv
  of a 1x1 map), 2x transposed convs with LReLU(0.2) (paper Table 12), each
  followed by a pixel norm when `pixel_norm`, a 3x3 conv to the image
  channels and a sigmoid."""

  def __init__(self, image_shape, cond_dim, latent_dim, base, convs, *, rngs,
               pixel_norm: bool = False):
    h, w, c = image_shape
    self.pixel_norm = pixel_norm
    self.side = (h >> len(convs), w >> len(convs))
    if (self.side[0] << len(convs), self.side[1] << len(convs)) != (h, w):
      raise ValueError(f"{len(convs)} 2x upsamplings cannot reach image size "
                       f"{h}x{w}")
    self.base = base
    self.dense = nnx.Linear(latent_dim + cond_dim,
                            self.side[0] * self.side[1] * base, rngs=rngs)
    layers, ch = [], base
    for features in convs:
      layers.append(nnx.ConvTranspose(ch, features, (4, 4), strides=(2, 2),
                                      padding="SAME", rngs=rngs))
      ch = features
    self.convs = nnx.List(layers)
    self.out = nnx.Conv(ch, c, (3, 3), padding="SAME", rngs=rngs)

  def __call__(self, z, cond):
    norm = pixel_norm if self.pixel_norm else (lambda h: h)
    x = jax.nn.leaky_relu(self.dense(jnp.concatenate([z, cond], -1)), 0.2)
    x = norm(x.reshape((x.shape[0], *self.side, self.base)))
    for conv in self.convs:
      x = norm(jax.nn.leaky_relu(transpose_conv2x(conv, x), 0.2))
    return jax.nn.sigmoid(self.out(x))


def dropout(x, rate: float, rng):
  """Inverted dropout: each value kept with probability 1 - rate and scaled
  by 1 / (1 - rate), so its mean is unchanged; the identity when `rng` is
  None or `rate` is 0."""
  if rng is None or rate <= 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


class Discriminator(nnx.Module):
  """D(x, z, pa) -> logit [B] (paper Table 13): D_x (strided convs on the
  image with the parents as channels), D_z (an MLP on z) and D_xz (an MLP
  on both), all LReLU(0.1), with dropout of rate `dropout` on the input of
  every layer when called with an `rng` (the paper's D drops 0.2-0.5 of its
  inputs). Dropout alone did not stop D from winning at CPU budgets; the
  generator's pixel norm did (see the module doc)."""

  def __init__(self, image_shape, cond_dim, latent_dim, convs, z_hidden,
               joint_hidden, *, rngs, dropout: float = 0.0):
    h, w, c = image_shape
    self.dropout = dropout
    self.convs = _down(c + cond_dim, convs, rngs)
    flat = (h >> len(convs)) * (w >> len(convs)) * convs[-1]
    self.z1 = nnx.Linear(latent_dim, z_hidden, rngs=rngs)
    self.z2 = nnx.Linear(z_hidden, z_hidden, rngs=rngs)
    self.joint = nnx.Linear(flat + z_hidden, joint_hidden, rngs=rngs)
    self.out = nnx.Linear(joint_hidden, 1, rngs=rngs)

  def __call__(self, x, z, cond, rng=None):
    """Logits; `rng` (a key) switches dropout on, None (the default) off."""
    keys = iter(jax.random.split(rng, len(self.convs) + 4)
                if rng is not None else [None] * (len(self.convs) + 4))

    def layer(f, h, slope=0.1):
      return jax.nn.leaky_relu(f(dropout(h, self.dropout, next(keys))),
                               slope)

    x = _cond_map(x, cond)
    for conv in self.convs:
      x = layer(conv, x)
    z = layer(self.z2, layer(self.z1, z))
    xz = jnp.concatenate([x.reshape(x.shape[0], -1), z], -1)
    return self.out(dropout(layer(self.joint, xz), self.dropout,
                            next(keys)))[:, 0]


def bce_with_logits(logits, label: float):
  """-[y log sigmoid(l) + (1 - y) log(1 - sigmoid(l))] for y in {0, 1}, in
  the softplus form: finite for every finite logit."""
  return jax.nn.softplus(-logits) if label else jax.nn.softplus(logits)


def discriminator_loss(real_logits, fake_logits):
  """D's loss per example: real pairs (x, E(x)) labelled 1, generated pairs
  (G(z), z) labelled 0 (the negated value of the paper's eq. (5))."""
  return bce_with_logits(real_logits, 1) + bce_with_logits(fake_logits, 0)


def generator_loss(real_logits, fake_logits):
  """G and E's loss per example: the labels swapped (non-saturating)."""
  return bce_with_logits(fake_logits, 1) + bce_with_logits(real_logits, 0)


def collapse_guard(threshold: float):
  """The first stage's `Stage.guard`: a message when the discriminator's
  mean loss over a logging window falls below `threshold` nats (it tells
  every real pair from every generated one, so G and E learn nothing)."""

  def guard(metrics):
    value = metrics.get(f"loss_{DISCRIMINATOR}")
    if value is not None and value < threshold:
      return (f"discriminator collapse: loss_{DISCRIMINATOR} = {value:.3g} "
              f"< {threshold:g} (model.image.gan.collapse_loss); lower the "
              "discriminator's capacity or model.image.gan.learning_rate")
    return None

  return guard


class GAN(nnx.Module):
  """Conditional GAN with an encoder (Melistas et al. 2024, A.4); see the
  module doc."""

  SAMPLER = {}

  def __init__(self, image_shape, cond_dim: int, latent_dim: int = 32, *,
               rngs: nnx.Rngs, encoder_convs=(64, 128, 128),
               encoder_hidden: int = 512, generator_base: int = 64,
               generator_convs=(64, 32, 16),
               discriminator_convs=(32, 64, 64), z_hidden: int = 128,
               joint_hidden: int = 256, discriminator_dropout: float = 0.2,
               pixel_norm: bool = True, latent_weight: float = 0.0,
               embed_weight: float = 0.1):
    self.image_shape = tuple(image_shape)
    self.latent_dim = latent_dim
    self.latent_weight = latent_weight
    self.embed_weight = embed_weight
    self.encoder = Encoder(image_shape, cond_dim, latent_dim,
                           tuple(encoder_convs), rngs=rngs,
                           hidden=encoder_hidden)
    self.generator = Generator(image_shape, cond_dim, latent_dim,
                               generator_base, tuple(generator_convs),
                               rngs=rngs, pixel_norm=pixel_norm)
    self.discriminator = Discriminator(
        image_shape, cond_dim, latent_dim, tuple(discriminator_convs),
        z_hidden, joint_hidden, rngs=rngs, dropout=discriminator_dropout)

  # Family -------------------------------------------------------------------

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.latent_dim = 32  # Width of z = U_I (paper: 512).
    # Encoder conv widths, each a 4x4 stride-2 conv (paper Table 11:
    # 64, 128, 256), then a hidden dense layer (the table's 1x1 conv to 512
    # on the 1x1 map; 0 = none) and the linear head to z. The cyclic stage
    # fits E to G's inverse better with wider convs and the hidden layer
    # (a lower test L1 of G(E(x)) on a trained MorphoMNIST G).
    c.encoder_convs = (64, 128, 128)
    c.encoder_hidden = 512
    # Generator: channels of its first map (side / 2^len(convs)), then the
    # widths of its 2x transposed convs (paper Table 12: 256, 512, 256,
    # 128, 64).
    c.generator_base = 64
    c.generator_convs = (64, 32, 16)
    # Pixel norm after every hidden layer of G (each position's feature
    # vector scaled to unit RMS; Karras et al. 2018). Not in the paper,
    # which trains ~1M GPU steps; without it G falls to an all-black image
    # within a few hundred steps at CPU budgets (on MorphoMNIST, even with D
    # blind to z) and never leaves it.
    c.pixel_norm = True
    # Discriminator: D_x conv widths (paper Table 13: 32 ... 512), D_z and
    # D_xz hidden widths (paper: 512 and 1024).
    c.discriminator_convs = (32, 64, 64)
    c.z_hidden = 128
    c.joint_hidden = 256
    # Dropout rate on the input of every layer of D while training (paper
    # Table 13: 0.2 on its inputs, 0.2-0.5 inside).
    c.discriminator_dropout = 0.2
    # Adam of both adversarial groups and of the cyclic stage (paper: 1e-4,
    # b1 = 0.5, b2 = 0.999).
    c.learning_rate = 1e-4
    c.b1 = 0.5
    c.b2 = 0.999
    # Steps of the cyclic fine-tuning of the encoder; 0 = no such stage
    # (the row "GAN"; > 0 gives "GAN fine-tuned").
    c.finetune_steps = 0
    # Adam of the cyclic stage, its rate decayed to 0 along a cosine over
    # the stage's steps.
    c.finetune_learning_rate = 1e-4
    # Cyclic loss = image L1 + latent_weight * |z - E(G(z))|^2 (mean over z)
    # + embed_weight * L1 of the reader's embeddings (always logged, as the
    # paper monitors it). Both extra terms cost composition (each raised the
    # L1 of G(E(x)) on a trained MorphoMNIST G), so the image term leads.
    c.latent_weight = 0.0
    c.embed_weight = 0.1
    # Stop training when the discriminator's mean loss over a logging window
    # falls below this (nats; it separates real from generated pairs
    # almost perfectly); 0 = never.
    c.collapse_loss = 1e-3
    return c

  @classmethod
  def accelerator_config(cls, image_shape: Sequence[int] | None = None
                         ) -> ml_collections.ConfigDict:
    """The `accel` size preset for images of `image_shape` (None: 32x32).

    32x32: the paper's MorphoMNIST widths (Tables 11-13) in this
    architecture: latent 512, encoder 64-128-256, generator from a 4x4x512
    map through 256-128-64, D_x 32 ... 512 down to 1x1, D_z 512, D_xz 1024.
    64x64: their CelebA widths (Tables 14-16) in it, 4x4 stride-2 layers
    where the tables use odd kernels and no padding: latent 512, encoder
    64-128-256-256 to 4x4 then 512, generator from 4x4x512 through
    256-256-128-64, D_x 64-128-256-256-1024 down to 2x2, D_z 1024, D_xz
    2048.
    """
    c = cls.default_config()
    c.latent_dim = 512
    if celeba_sized(image_shape):
      c.encoder_convs = (64, 128, 256, 256)
      c.encoder_hidden = 512
      c.generator_base = 512
      c.generator_convs = (256, 256, 128, 64)
      c.discriminator_convs = (64, 128, 256, 256, 1024)
      c.z_hidden = 1024
      c.joint_hidden = 2048
      return c
    c.encoder_convs = (64, 128, 256)
    c.encoder_hidden = 512
    c.generator_base = 512
    c.generator_convs = (256, 128, 64)
    c.discriminator_convs = (32, 64, 128, 256, 512)
    c.z_hidden = 512
    c.joint_hidden = 1024
    return c

  @classmethod
  def create(cls, image_shape: Sequence[int], features: Features | int,
             config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> GAN:
    if not 0.0 <= config.discriminator_dropout < 1.0:
      raise MechanismError("model.image.gan.discriminator_dropout must be in "
                           f"[0, 1), got {config.discriminator_dropout}")
    return cls(image_shape, Features.of(features).cond_dim,
               config.latent_dim, rngs=rngs,
               encoder_convs=tuple(config.encoder_convs),
               encoder_hidden=config.encoder_hidden,
               generator_base=config.generator_base,
               generator_convs=tuple(config.generator_convs),
               discriminator_convs=tuple(config.discriminator_convs),
               z_hidden=config.z_hidden, joint_hidden=config.joint_hidden,
               discriminator_dropout=config.discriminator_dropout,
               pixel_norm=config.pixel_norm,
               latent_weight=config.latent_weight,
               embed_weight=config.embed_weight)

  @classmethod
  def stages(cls, config: ml_collections.ConfigDict,
             steps: int) -> tuple[Stage, ...]:
    def adam(lr):
      return lambda train: optax.adam(lr, b1=config.b1, b2=config.b2)

    cyclic_steps = int(config.finetune_steps)

    gan = Stage(GAN_STAGE, steps, (
        Group(GENERATOR, lambda p: p[0] in ("generator", "encoder"),
              adam(config.learning_rate)),
        Group(DISCRIMINATOR, lambda p: p[0] == "discriminator",
              adam(config.learning_rate))),
                guard=(collapse_guard(config.collapse_loss)
                       if config.collapse_loss > 0 else None))
    if config.finetune_steps <= 0:
      return (gan,)
    return (gan, Stage(CYCLIC_STAGE, cyclic_steps, (
        Group(CYCLIC, lambda p: p[0] == "encoder",
              adam(optax.cosine_decay_schedule(config.finetune_learning_rate,
                                               cyclic_steps))),)))

  # Mechanism ----------------------------------------------------------------

  def _dims(self) -> float:
    return float(np.prod(self.image_shape))

  def loss(self, images, cond, rng, stage=GAN_STAGE, context=None):
    """Per-example losses by group and metrics (see the module doc).

    The adversarial and cyclic losses are per image, not sums over pixels,
    so they are returned times the number of pixel values, which the ANCM
    divides by: its `loss_<group>` metrics are then the plain per-image
    losses, on the scale of the reader and faithfulness terms.
    """
    dims = self._dims()
    z = jax.random.normal(rng, (images.shape[0], self.latent_dim))
    z_real = self.encoder(images, cond)
    recon = self.generator(z_real, cond)
    recon_l1 = jnp.abs(images - recon).reshape(images.shape[0], -1).mean(-1)
    if stage == CYCLIC_STAGE:
      cyclic, metrics = recon_l1, {"recon_l1": recon_l1 * 255.0}
      if self.latent_weight:
        latent = jnp.square(
            z - self.encoder(self.generator(z, cond), cond)).mean(-1)
        cyclic = cyclic + self.latent_weight * latent
        metrics["latent_l2"] = latent
      if context is not None:
        embed = jnp.abs(context.embed(images)
                        - context.embed(recon)).mean(-1)
        cyclic = cyclic + self.embed_weight * embed
        metrics["embed_l1"] = embed
      elif self.embed_weight:
        raise ValueError("the cyclic stage's embedding term needs the "
                         "ANCM's context (its frozen reader)")
      return {CYCLIC: cyclic * dims}, metrics
    if stage != GAN_STAGE:
      raise ValueError(f"GAN has no stage {stage!r}")
    fake = self.generator(z, cond)
    drop_real, drop_fake = jax.random.split(jax.random.fold_in(rng, 1))
    real_logits = self.discriminator(images, z_real, cond, drop_real)
    fake_logits = self.discriminator(fake, z, cond, drop_fake)
    loss_d = discriminator_loss(real_logits, fake_logits)

    loss_g = generator_loss(real_logits, fake_logits)
    return ({GENERATOR: loss_g * dims, DISCRIMINATOR: loss_d * dims},
            {"d_real": jax.nn.sigmoid(real_logits),
             "d_fake": jax.nn.sigmoid(fake_logits),
             "recon_l1": recon_l1 * 255.0})

  def abduct(self, images, cond, rng=None):
    """u_I = {"z": E(x, pa)}."""
    del rng  # deterministic abduction
    return {"z": self.encoder(images, cond)}

  def predict(self, cond, u, rng=None):
    """G(z, pa'): images in [0, 1]."""
    del rng  # one deterministic generator pass
    return self.generator(u["z"], cond)

  def prior(self, rng, batch: int):
    return {"z": jax.random.normal(rng, (batch, self.latent_dim))}

  def relabel(self, images, cond, new_cond, rng):
    """G(E(x, pa), pa'): the counterfactual decode (paper eq. (6))."""
    return self.predict(new_cond, self.abduct(images, cond, rng), rng)
