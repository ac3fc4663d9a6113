"""Conditional conv encoder/decoder: shapes and parameter counts by hand."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from ctfjax.nn.conv import ConvDecoder, ConvEncoder


def count(module):
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_seed004_morphomnist_vae_shapes_and_sizes():
  # Tables 7-8 of seed 004: 32x32x1 images, 12-dim parents, latent 16.
  enc = ConvEncoder((32, 32, 1), 12, 16, rngs=nnx.Rngs(0))
  dec = ConvDecoder((32, 32, 1), 12, 16, rngs=nnx.Rngs(1))
  mean, logvar = enc(jnp.zeros((3, 32, 32, 1)), jnp.zeros((3, 12)))
  assert mean.shape == logvar.shape == (3, 16)
  mu, log_std = dec(mean, jnp.zeros((3, 12)))
  assert mu.shape == log_std.shape == (3, 32, 32, 1)
  # conv 5x5 1->32, 3x3 32->32 (x2), dense 512->128, (128+12)->128, 128->32.
  assert count(enc) == (25 * 32 + 32) + 2 * (9 * 32 * 32 + 32) + (
      512 * 128 + 128) + (140 * 128 + 128) + (128 * 32 + 32)
  # dense 28->128, 128->512, conv 3x3 32->32 (x2), 5x5 32->16, head 16->2.
  assert count(dec) == (28 * 128 + 128) + (128 * 512 + 512) + 2 * (
      9 * 32 * 32 + 32) + (25 * 32 * 16 + 16) + (9 * 16 * 2 + 2)


def test_colour_images_and_conditioning_matters():
  enc = ConvEncoder((32, 32, 3), 4, 8, rngs=nnx.Rngs(0))
  dec = ConvDecoder((32, 32, 3), 4, 8, rngs=nnx.Rngs(1))
  z = jax.random.normal(jax.random.key(0), (2, 8))
  a, _ = dec(z, jnp.eye(4)[:2])
  b, _ = dec(z, jnp.eye(4)[2:])
  assert a.shape == (2, 32, 32, 3)
  assert not jnp.allclose(a, b)
  m, _ = enc(a, jnp.eye(4)[:2])
  assert m.shape == (2, 8)


def test_decoder_rejects_sizes_it_cannot_reach():
  with pytest.raises(ValueError, match="does not reach image size 64x64"):
    ConvDecoder((64, 64, 3), 4, 8, rngs=nnx.Rngs(0))
