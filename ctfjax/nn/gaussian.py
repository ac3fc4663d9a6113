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


def discretized_gaussian_nll(x: Array, mean: Array, log_std: Array,
                             levels: int = 256) -> Array:
  """-log P(x) per element for 8-bit data under a discretised Gaussian.

  Pixels in [0, 1] take `levels` values k / (levels - 1); pixel x owns the
  bin [x - h, x + h] with h = 0.5 / (levels - 1), the two edge bins reach
  to -inf and +inf, so the probabilities of all levels sum to one
  (Melistas et al.'s (2024) `DGaussNet`, with the exact normal CDF instead
  of its tanh approximation). Unlike a density, P(x) <= 1: a learned scale
  cannot buy unbounded likelihood by shrinking on a flat background (with a
  density it can, and the latent then goes unused).

  Args:
    x: values on the grid k / (levels - 1) (off-grid values are scored by
      the bin around them).
    mean: means, broadcasting with x.
    log_std: log standard deviations, broadcasting with x.
    levels: number of pixel values.

  Returns:
    -log P(x), elementwise (nats).
  """
  h = 0.5 / (levels - 1)
  inv = jnp.exp(-log_std)
  lo = (x - h - mean) * inv
  hi = (x + h - mean) * inv
  # log(Phi(hi) - Phi(lo)) on the side of the mean where it is accurate:
  # for lo > 0 use the upper tails Phi(-lo) - Phi(-hi).
  upper = lo > 0
  a = jnp.where(upper, -hi, lo)
  b = jnp.where(upper, -lo, hi)
  log_b = jax.scipy.special.log_ndtr(b)
  mid = log_b + jnp.log(-jnp.expm1(jnp.minimum(
      jax.scipy.special.log_ndtr(a) - log_b, -1e-30)))
  log_p = jnp.where(x <= h, jax.scipy.special.log_ndtr(hi),
                    jnp.where(x >= 1.0 - h,
                              jax.scipy.special.log_ndtr(-lo), mid))
  return -log_p
