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
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ctfjax.mechanisms.base import MechanismError, Stage
from ctfjax.nn import gaussian
from ctfjax.nn.conv import ConvDecoder, ConvEncoder

# sqrt(e^-5): the fixed likelihood scale of the Deep-SCM VAEs (Melistas et
# al. 2024).
FIXED_LOG_STD = -2.5
# Learned scales are bounded below so the likelihood cannot collapse.
MIN_LOG_STD = -6.0
# Pixel likelihoods by config name: -log p(x) elementwise.
LIKELIHOODS = {"gaussian": gaussian.gaussian_nll,
               "discretized": gaussian.discretized_gaussian_nll}


class VAE(nnx.Module):
  """Conditional VAE image mechanism (the VAE-ANCM's; docs/models.md)."""

  SAMPLER = {}

  def __init__(self, image_shape, cond_dim: int, latent_dim: int = 16, *,
               rngs: nnx.Rngs, learned_sigma: bool = False,
               pixel_noise: bool = False, beta: float = 1.0,
               likelihood: str = "gaussian", mean: str = "sigmoid",
               encoder_kwargs=None, decoder_kwargs=None):
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
                               **(encoder_kwargs or {}))
    self.decoder = ConvDecoder(image_shape, cond_dim, latent_dim, rngs=rngs,
                               **(decoder_kwargs or {}))

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
    # Decoder (features, kernel) blocks after each 2x upsampling from 4x4.
    c.decoder_convs = ((32, 3), (32, 3), (16, 3))
    return c

  @classmethod
  def accelerator_config(cls) -> ml_collections.ConfigDict:
    """The `accel` size preset: a 32-dimensional latent."""
    c = cls.default_config()
    c.latent_dim = 32
    return c

  @classmethod
  def create(cls, image_shape: Sequence[int], cond_dim: int,
             config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> VAE:
    return cls(image_shape, cond_dim, config.latent_dim, rngs=rngs,
               learned_sigma=config.learned_sigma,
               pixel_noise=config.pixel_noise, beta=config.beta,
               likelihood=config.likelihood, mean=config.mean,
               decoder_kwargs={"convs": tuple(
                   tuple(c) for c in config.decoder_convs)})

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
