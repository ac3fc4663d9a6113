"""Conditional conv encoder/decoder: shapes and parameter counts by hand."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ctfjax.nn.conv import ConvDecoder, ConvEncoder, resize2x
from ctfjax.nn.conv import pointwise, transpose_conv2x, upsample_conv


def count(module):
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.slow
def test_seed004_morphomnist_vae_shapes_and_sizes():
  # Melistas et al. (2024), Tables 7-8: 32x32x1 images, 12-dim parents,
  # latent 16.
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


@pytest.mark.slow
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


def assert_same_layer(layer, fast, reference):
  """fast(layer, x) == reference(layer, x) in value and in the gradients
  with respect to x and the layer's parameters, for a non-square input and
  a non-zero bias (the training step differentiates both)."""
  layer.bias[...] = jnp.arange(4.0)
  x = jax.random.normal(jax.random.key(1), (2, 5, 7, 3))
  want = reference(layer, x)
  assert want.shape == (2, 10, 14, 4)
  np.testing.assert_allclose(fast(layer, x), want, atol=1e-5)
  g = jax.random.normal(jax.random.key(2), want.shape)
  graph, params = nnx.split(layer)

  def grad(fn):
    return jax.grad(lambda x, p: (fn(nnx.merge(graph, p), x) * g).sum(),
                    (0, 1))(x, params)

  chex.assert_trees_all_close(grad(fast), grad(reference), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("kernel, padding", [(1, "SAME"), (3, "SAME"),
                                             (5, "SAME"), (7, "SAME"),
                                             (3, ((1, 1), (1, 1)))])
def test_upsample_conv_is_conv_of_the_upsampled_input(kernel, padding):
  # Against the definition: nearest 2x upsampling, then the convolution.
  conv = nnx.Conv(3, 4, (kernel, kernel), padding=padding, rngs=nnx.Rngs(0))
  assert_same_layer(conv, upsample_conv, lambda c, x: c(resize2x(x)))


@pytest.mark.slow
@pytest.mark.parametrize("kernel", [3, 4, 5])
def test_transpose_conv2x_is_the_stride_2_transposed_convolution(kernel):
  # Against flax's own ConvTranspose (lax's dilated form).
  conv = nnx.ConvTranspose(3, 4, (kernel, kernel), strides=(2, 2),
                           padding="SAME", rngs=nnx.Rngs(0))
  assert_same_layer(conv, transpose_conv2x, lambda c, x: c(x))
  with pytest.raises(ValueError, match="stride-2 SAME"):
    transpose_conv2x(nnx.ConvTranspose(3, 4, (4, 4), strides=(1, 1),
                                       padding="SAME", rngs=nnx.Rngs(0)),
                     jnp.zeros((1, 4, 4, 3)))


def test_upsample_conv_rejects_what_it_cannot_rewrite():
  x = jnp.zeros((1, 4, 4, 2))
  for conv in (nnx.Conv(2, 2, (4, 4), padding="SAME", rngs=nnx.Rngs(0)),
               nnx.Conv(2, 2, (3, 3), padding="VALID", rngs=nnx.Rngs(0)),
               nnx.Conv(2, 2, (3, 3), strides=2, padding="SAME",
                        rngs=nnx.Rngs(0))):
    with pytest.raises(ValueError, match="stride-1 SAME"):
      upsample_conv(conv, x)


@pytest.mark.slow
def test_pointwise_is_the_1x1_convolution_of_the_concatenation():
  # Against flax's Conv on the concatenated input: values and gradients.
  conv = nnx.Conv(5, 4, (1, 1), rngs=nnx.Rngs(0))
  conv.bias[...] = jnp.arange(4.0)
  a = jax.random.normal(jax.random.key(1), (2, 5, 7, 2))
  b = jax.random.normal(jax.random.key(2), (2, 5, 7, 3))
  g = jax.random.normal(jax.random.key(3), (2, 5, 7, 4))
  graph, params = nnx.split(conv)

  def grad(fn):
    return jax.grad(lambda a, b, p: (fn(nnx.merge(graph, p), a, b) * g).sum(),
                    (0, 1, 2))(a, b, params)

  reference = lambda c, a, b: c(jnp.concatenate([a, b], -1))
  np.testing.assert_allclose(pointwise(conv, a, b), reference(conv, a, b),
                             atol=1e-5)
  chex.assert_trees_all_close(grad(pointwise), grad(reference), atol=1e-5)
  # columns: the slice of the output, as its own product (no slice taken).
  cols = lambda c, a, b: pointwise(c, a, b, columns=slice(1, 3))
  sliced = lambda c, a, b: reference(c, a, b)[..., 1:3]
  np.testing.assert_allclose(cols(conv, a, b), sliced(conv, a, b),
                             atol=1e-5)
  g = g[..., 1:3]
  chex.assert_trees_all_close(grad(cols), grad(sliced), atol=1e-5)
  with pytest.raises(ValueError, match="inputs of \\[2\\] channels"):
    pointwise(conv, a)
  with pytest.raises(ValueError, match="1x1 kernel"):
    pointwise(nnx.Conv(2, 2, (3, 3), rngs=nnx.Rngs(0)), a)
