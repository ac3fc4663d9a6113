"""Diagonal-Gaussian helpers shared by the VAEs (image mechanisms, CLD's VAE).
"""

import math

import jax
import jax.numpy as jnp

Array = jax.Array


def kl_to_standard_normal(mean: Array, logvar: Array) -> Array:
  """KL(N(mean, exp(logvar)) || N(0, I)), summed over the last axis.

  Args:
    mean: [..., D] posterior means.
    logvar: [..., D] posterior log-variances.

  Returns:
    [...] nats.
  """
  return 0.5 * (jnp.exp(logvar) + mean**2 - 1.0 - logvar).sum(-1)


def reparameterize(rng: Array, mean: Array, logvar: Array) -> Array:
  """A draw of N(mean, exp(logvar)) that is differentiable in both."""
  return mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape)


def gaussian_nll(x: Array, mean: Array, log_std: Array) -> Array:
  """-log N(x; mean, exp(log_std)^2) per element (broadcasting)."""
  return (0.5 * ((x - mean) / jnp.exp(log_std)) ** 2 + log_std
          + 0.5 * math.log(2 * math.pi))
