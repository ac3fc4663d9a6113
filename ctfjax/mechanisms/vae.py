"""The conditional VAE image mechanism f_I(v, u_I) with q(u_I | i, v).

The Deep-SCM VAE of Melistas et al., "Benchmarking Counterfactual Image
Generation" (2024; Appendix A.2, Tables 7-8) and the image half of the
VAE-ANCM (docs/models.md). U_I = (z, eps): z is the VAE latent, abducted as
the posterior mean of q(z | i, v) (so an edit is deterministic given its
features), and eps the standardised pixel residual
eps = (i - mu(z, v)) / sigma(z, v), kept when `pixel_noise` is on. With it
the mechanism is invertible in U_I and a null intervention returns the input
exactly; without it (the default) the edit is the decoder mean, which drops
residual detail of the old features instead of copying it into the new
image. The residual temperature is 1, never the 0.1 of the paper's code,
which breaks composition by construction.

One training stage, one loss (the negative ELBO); `predict` is one decoder
pass, so it has no sampler settings, ignores its rng and serves as the
label-faithfulness decode (`relabel`).

Image sizes: the decoder starts from a map of side (image side) /
2^(its upsamplings), 4x4 for the default three at 32x32 and 8x8 at 64x64
(CelebA), so one config serves both; the encoder's dense layer reads
whatever map its convolutions leave. `accelerator_config((64, 64, 3))` is
Melistas et al.'s CelebA network (Tables 9-10), which adds a level.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ctfjax.mechanisms.base import Features, MechanismError, Stage
from ctfjax.mechanisms.base import celeba_sized
from ctfjax.nn import gaussian
from ctfjax.nn.conv import ConvDecoder, ConvEncoder, MORPHO_ENCODER_CONVS
from ctfjax.nn.conv import block_scales

# sqrt(e^-5): the fixed likelihood scale of the Deep-SCM VAEs (Melistas et
# al. 2024).
FIXED_LOG_STD = -2.5
# Learned scales are bounded below so the likelihood cannot collapse.
MIN_LOG_STD = -6.0
# Pixel likelihoods by config name: -log p(x) elementwise.
LIKELIHOODS = {"gaussian": gaussian.gaussian_nll,
               "discretized": gaussian.discretized_gaussian_nll}
# Network settings that only the CelebA preset sets (`accelerator_config`),
# with the values that build the MorphoMNIST network (Tables 7-8) for a
# config without them: every default config and every saved run.
NETWORK_DEFAULTS = {"encoder_convs": MORPHO_ENCODER_CONVS, "hidden": 128,
                    "decoder_base": 32, "slope": 0.0}


class VAE(nnx.Module):
  """Conditional VAE image mechanism (the VAE-ANCM's; docs/models.md)."""

  SAMPLER = {}

  def __init__(self, image_shape, cond_dim: int, latent_dim: int = 16, *,
               rngs: nnx.Rngs, learned_sigma: bool = False,
               pixel_noise: bool = False, beta: float = 1.0,
               likelihood: str = "gaussian", mean: str = "sigmoid",
               encoder_convs=MORPHO_ENCODER_CONVS,
               decoder_convs=((32, 3), (32, 3), (16, 3)), hidden: int = 128,
               decoder_base: int = 32, slope: float = 0.0):
    if mean not in ("sigmoid", "linear"):
      raise MechanismError(f"unknown VAE mean {mean!r}; known: sigmoid, "
                           "linear")
    self.mean = mean
    if likelihood not in LIKELIHOODS:
      raise MechanismError(f"unknown VAE likelihood {likelihood!r}; known: "
                           f"{', '.join(LIKELIHOODS)}")
    self.likelihood = likelihood
    self.image_shape = tuple(image_shape)
    self.latent_dim = latent_dim
    self.learned_sigma = learned_sigma
    self.pixel_noise = pixel_noise
    self.beta = beta
    self.encoder = ConvEncoder(image_shape, cond_dim, latent_dim, rngs=rngs,
                               convs=tuple(map(tuple, encoder_convs)),
                               hidden=hidden, slope=slope)
    h, w, _ = self.image_shape
    try:
      # The decoder's first map: the image side over 2^(its upsamplings).
      ups = block_scales(decoder_convs).count(2)
      self.decoder = ConvDecoder(image_shape, cond_dim, latent_dim, rngs=rngs,
                                 base=(h >> ups, w >> ups, decoder_base),
                                 convs=tuple(map(tuple, decoder_convs)),
                                 hidden=hidden, slope=slope)
    except ValueError as e:  # blocks that cannot reach the image size
      raise MechanismError(f"model.image.vae: {e}") from None

  # Family -------------------------------------------------------------------

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.latent_dim = 16  # Dimension of the VAE latent z (part of U_I).
    # False: the fixed scale sqrt(e^-5) of the Deep-SCM VAEs. A learned
    # per-pixel scale lets the model explain the bar by variance instead of
    # its mean, and the bar goes missing from its reconstructions.
    c.learned_sigma = False
    # Keep the standardised pixel residual in U_I: exact null edits, but the
    # old features' residual detail is copied into every edit.
    c.pixel_noise = False
    c.beta = 1.0  # KL weight of the ELBO.
    # "gaussian": a density on [0, 1]; "discretized": the probability of the
    # pixel's 8-bit bin (Melistas et al.'s DGaussNet). With a learned scale
    # the density rewards shrinking sigma on flat background without bound
    # and the latent goes unused (as on MorphoMNIST); the bin probability is
    # at most 1.
    c.likelihood = "gaussian"
    # The decoder's pixel mean: "sigmoid" (in [0, 1] by construction) or
    # "linear" (Melistas et al.'s; predictions are clipped to [0, 1]). A
    # sigmoid that saturates passes no gradient: with the fixed scale on
    # MorphoMNIST the decoder fell into all-black images, its latent
    # unused.
    c.mean = "sigmoid"
    # Decoder (features, kernel) blocks, each after a 2x upsampling, from a
    # map of side (image side) / 2^(blocks): 4x4 at 32x32, 8x8 at 64x64.
    # (features, kernel, 1): a block at the same size.
    c.decoder_convs = ((32, 3), (32, 3), (16, 3))
    return c

  @classmethod
  def accelerator_config(cls, image_shape: Sequence[int] | None = None
                         ) -> ml_collections.ConfigDict:
    """The `accel` size preset for images of `image_shape` (None: 32x32).

    32x32: the default network with a 32-dimensional latent. 64x64:
    Melistas et al.'s CelebA VAE (Appendix A.2, Tables 9-10; about 3.6M
    parameters): four stride-2 convolutions 32-64-128-256 and a 1x1 one
    down to 4x4x256, dense layers of 256, latent 16; the decoder from
    4x4x256 through four (2x upsampling, 3x3 conv) blocks 256-128-64-32
    and a 3x3 conv to 16 at full size; LeakyReLU(0.01). Unlike the tables:
    no batch norm or dropout (`ctfjax.nn.conv`), a ReLU after both of the
    decoder's dense layers (the table: ReLU, none) and LeakyReLU on its
    last conv (the table: a sigmoid).
    """
    c = cls.default_config()
    if not celeba_sized(image_shape):
      c.latent_dim = 32
      return c
    # The fields below exist only in this preset (`NETWORK_DEFAULTS`).
    # Encoder convolutions: (features, kernel, stride, padding).
    c.encoder_convs = ((32, 3, 2, 1), (64, 3, 2, 1), (128, 3, 2, 1),
                       (256, 3, 2, 1), (256, 1, 1, 0))
    c.hidden = 256  # Width of the encoder's and decoder's dense layers.
    c.decoder_base = 256  # Channels of the decoder's first map.
    # Negative slope of the LeakyReLU after every convolution and the
    # encoder's dense layers (0: ReLU).
    c.slope = 0.01
    c.decoder_convs = ((256, 3), (128, 3), (64, 3), (32, 3), (16, 3, 1))
    return c

  @classmethod
  def create(cls, image_shape: Sequence[int], features: Features | int,
             config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> VAE:
    network = {k: config.get(k, v) for k, v in NETWORK_DEFAULTS.items()}
    return cls(image_shape, Features.of(features).cond_dim,
               config.latent_dim, rngs=rngs,
               learned_sigma=config.learned_sigma,
               pixel_noise=config.pixel_noise, beta=config.beta,
               likelihood=config.likelihood, mean=config.mean,
               decoder_convs=config.decoder_convs, **network)

  @classmethod
  def stages(cls, config: ml_collections.ConfigDict,
             steps: int) -> tuple[Stage, ...]:
    del config
    return (Stage("vae", steps),)

  # Mechanism ----------------------------------------------------------------

  def _decode(self, z, cond):
    mean, log_std = self.decoder(z, cond)
    if self.mean == "sigmoid":
      mean = jax.nn.sigmoid(mean)  # pixel means live in [0, 1]
    if self.learned_sigma:
      log_std = jnp.maximum(log_std, MIN_LOG_STD)
    else:
      log_std = jnp.full_like(mean, FIXED_LOG_STD)
    return mean, log_std

  def loss(self, images, cond, rng, stage="vae", context=None):
    """Negative ELBO of the images given their features, per example."""
    del stage, context  # one stage, which needs nothing else
    mean, logvar = self.encoder(images, cond)
    mu, log_std = self._decode(gaussian.reparameterize(rng, mean, logvar),
                               cond)
    nll = LIKELIHOODS[self.likelihood](images, mu, log_std)
    nll = nll.reshape(nll.shape[0], -1).sum(-1)
    kl = gaussian.kl_to_standard_normal(mean, logvar)
    l1 = jnp.abs(images - mu).reshape(mu.shape[0], -1).mean(-1) * 255.0
    return {"loss": nll + self.beta * kl}, {"nll": nll, "kl": kl,
                                            "recon_l1": l1}

  def abduct(self, images, cond, rng=None):
    """U_I for each image: posterior-mean latent and, optionally, residual."""
    del rng  # deterministic abduction: the posterior mean
    z, _ = self.encoder(images, cond)
    if not self.pixel_noise:
      return {"z": z}
    mu, log_std = self._decode(z, cond)
    return {"z": z, "eps": (images - mu) / jnp.exp(log_std)}

  def predict(self, cond, u, rng=None):
    """f_I(v, u_I): the image for features `cond` and exogenous `u`."""
    del rng  # one deterministic decoder pass
    mu, log_std = self._decode(u["z"], cond)
    if "eps" in u:
      return jnp.clip(mu + jnp.exp(log_std) * u["eps"], 0.0, 1.0)
    return mu if self.mean == "sigmoid" else jnp.clip(mu, 0.0, 1.0)

  def prior(self, rng, batch: int):
    z = jax.random.normal(rng, (batch, self.latent_dim))
    if not self.pixel_noise:
      return {"z": z}
    eps = jax.random.normal(jax.random.fold_in(rng, 1),
                            (batch,) + self.image_shape)
    return {"z": z, "eps": eps}

  def relabel(self, images, cond, new_cond, rng):
    """Abduct then predict under `new_cond`: one encoder and decoder pass."""
    return self.predict(new_cond, self.abduct(images, cond, rng), rng)
