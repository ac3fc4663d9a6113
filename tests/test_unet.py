"""The U-Net's GroupNorm against flax's and against the formula by hand."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ctfjax.nn import unet


def test_group_norm_equals_flax_and_the_formula():
  norm = nnx.GroupNorm(12, num_groups=3, epsilon=1e-5, rngs=nnx.Rngs(0))
  keys = jax.random.split(jax.random.key(0), 3)
  norm.scale[...] = jax.random.normal(keys[0], (12,))
  norm.bias[...] = jax.random.normal(keys[1], (12,))
  # An offset and uneven scales per channel, as activations have.
  x = 3.0 + jax.random.normal(keys[2], (2, 4, 5, 12)) * jnp.arange(1, 13)
  got = unet.group_norm(norm, x)
  np.testing.assert_allclose(got, norm(x), rtol=1e-4, atol=1e-4)
  xs = np.asarray(x, np.float64).reshape(2, 20, 3, 4)
  mean = xs.mean(axis=(1, 3), keepdims=True)
  var = xs.var(axis=(1, 3), keepdims=True)
  want = ((xs - mean) / np.sqrt(var + 1e-5)).reshape(2, 4, 5, 12)
  want = want * np.asarray(norm.scale[...]) + np.asarray(norm.bias[...])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # Its gradient is flax's too.
  cot = jax.random.normal(jax.random.key(1), x.shape)
  ours = jax.grad(lambda x: jnp.sum(cot * unet.group_norm(norm, x)))(x)
  theirs = jax.grad(lambda x: jnp.sum(cot * norm(x)))(x)
  np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)
