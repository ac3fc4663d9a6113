"""The VAE image mechanism f_I(v, u_I) with inference network q(u_I | i, v).

An image mechanism is anything with these four methods (the ANCM stages call
nothing else, so HVAE, GAN and diffusion mechanisms plug in the same way):

    loss(images, cond, rng)   -> (per-example loss [B], metrics {name: [B]})
    abduct(images, cond, rng) -> u_I, a pytree with leading axis B
    predict(cond, u_I)        -> images [B, H, W, C] in [0, 1]
    prior(rng, batch)         -> u_I drawn from P(U_I)

`images` are floats in [0, 1]; `cond` is the feature encoding [B, K] (one-hots
of discrete labels). Here U_I = (z, eps): z is the VAE latent, abducted as the
posterior mean of q(z | i, v) (so an edit is deterministic given its
features), and eps the standardised pixel residual
eps = (i - mu(z, v)) / sigma(z, v), kept when `pixel_noise` is on. With it the
mechanism is invertible in U_I and a null intervention returns the input
exactly; without it (the default) the edit is the decoder mean, which drops
residual detail of the old features instead of copying it into the new image.
The residual temperature is 1, never the peers' 0.1 (science.md §5).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ctfjax.nn.conv import ConvDecoder, ConvEncoder

# sqrt(e^-5): the fixed likelihood scale used by the Deep-SCM VAEs (seed 004).
FIXED_LOG_STD = -2.5
# Learned scales are bounded below so the likelihood cannot collapse.
MIN_LOG_STD = -6.0


class VAEImageMechanism(nnx.Module):
  """Conditional VAE image mechanism (science.md §4, VAE-ANCM)."""

  def __init__(self, image_shape, cond_dim: int, latent_dim: int = 16, *,
               rngs: nnx.Rngs, learned_sigma: bool = False,
               pixel_noise: bool = False, beta: float = 1.0,
               encoder_kwargs=None, decoder_kwargs=None):
    self.image_shape = tuple(image_shape)
    self.latent_dim = latent_dim
    self.learned_sigma = learned_sigma
    self.pixel_noise = pixel_noise
    self.beta = beta
    self.encoder = ConvEncoder(image_shape, cond_dim, latent_dim, rngs=rngs,
                               **(encoder_kwargs or {}))
    self.decoder = ConvDecoder(image_shape, cond_dim, latent_dim, rngs=rngs,
                               **(decoder_kwargs or {}))

  def _decode(self, z, cond):
    mean, log_std = self.decoder(z, cond)
    mean = jax.nn.sigmoid(mean)  # pixel means live in [0, 1]
    if self.learned_sigma:
      log_std = jnp.maximum(log_std, MIN_LOG_STD)
    else:
      log_std = jnp.full_like(mean, FIXED_LOG_STD)
    return mean, log_std

  def loss(self, images, cond, rng):
    """Negative ELBO of the images given their features, per example."""
    mean, logvar = self.encoder(images, cond)
    eps = jax.random.normal(rng, mean.shape)
    z = mean + jnp.exp(0.5 * logvar) * eps
    mu, log_std = self._decode(z, cond)
    nll = 0.5 * ((images - mu) / jnp.exp(log_std)) ** 2 + log_std + 0.5 * (
        math.log(2 * math.pi))
    nll = nll.reshape(nll.shape[0], -1).sum(-1)
    kl = 0.5 * (jnp.exp(logvar) + mean**2 - 1.0 - logvar).sum(-1)
    l1 = jnp.abs(images - mu).reshape(mu.shape[0], -1).mean(-1) * 255.0
    return nll + self.beta * kl, {"nll": nll, "kl": kl, "recon_l1": l1}

  def abduct(self, images, cond, rng):
    """U_I for each image: posterior-mean latent and, optionally, residual."""
    del rng  # deterministic abduction: the posterior mean
    z, _ = self.encoder(images, cond)
    if not self.pixel_noise:
      return {"z": z}
    mu, log_std = self._decode(z, cond)
    return {"z": z, "eps": (images - mu) / jnp.exp(log_std)}

  def predict(self, cond, u):
    """f_I(v, u_I): the image for features `cond` and exogenous `u`."""
    mu, log_std = self._decode(u["z"], cond)
    if "eps" in u:
      return jnp.clip(mu + jnp.exp(log_std) * u["eps"], 0.0, 1.0)
    return mu

  def prior(self, rng, batch: int):
    z = jax.random.normal(rng, (batch, self.latent_dim))
    if not self.pixel_noise:
      return {"z": z}
    eps = jax.random.normal(jax.random.fold_in(rng, 1),
                            (batch,) + self.image_shape)
    return {"z": z, "eps": eps}
