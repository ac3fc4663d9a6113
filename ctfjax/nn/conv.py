"""Conditional convolutional encoder and decoder for image mechanisms.

The default shapes follow the Deep-SCM VAE of seed 004 (Appendix A.2,
Tables 7-8, MorphoMNIST 32x32): three stride-2 convolutions down to 4x4, two
dense layers with the parents concatenated after the first, and a decoder of
dense layers then (2x upsample, conv) blocks back to full size, ending in a
Gaussian head that outputs a per-pixel mean and log standard deviation.
Differences from the paper's tables, on purpose: no activation on the latent
mean / log-variance head (a ReLU there would forbid negative means), and no
batch norm or dropout (they would make mechanisms stateful, and abduction and
prediction must be pure functions of the parameters).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def _resize2x(x):  # [B, H, W, C] -> [B, 2H, 2W, C], nearest neighbour
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _conv_trunk(image_shape, convs, rngs):
  """Strided conv layers and the flattened size of their output."""
  h, w, c = image_shape
  layers = []
  for features, kernel, stride, pad in convs:
    layers.append(nnx.Conv(c, features, (kernel, kernel),
                           strides=(stride, stride),
                           padding=((pad, pad), (pad, pad)), rngs=rngs))
    h = (h + 2 * pad - kernel) // stride + 1
    w = (w + 2 * pad - kernel) // stride + 1
    c = features
  return nnx.List(layers), h * w * c


def _apply_trunk(convs, x):  # [B, H, W, C] -> [B, flat]
  for conv in convs:
    x = jax.nn.relu(conv(x))
  return x.reshape(x.shape[0], -1)


class ConvEncoder(nnx.Module):
  """q(z | image, cond): [B, H, W, C], [B, K] -> mean, log-variance [B, Z]."""

  def __init__(self, image_shape: Sequence[int], cond_dim: int,
               latent_dim: int, *, rngs: nnx.Rngs,
               convs: Sequence[tuple[int, int, int, int]] = (
                   (32, 5, 2, 1), (32, 3, 2, 1), (32, 3, 2, 1)),
               hidden: int = 128):
    self.convs, flat = _conv_trunk(image_shape, convs, rngs)
    self.dense1 = nnx.Linear(flat, hidden, rngs=rngs)
    self.dense2 = nnx.Linear(hidden + cond_dim, hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, 2 * latent_dim, rngs=rngs)

  def __call__(self, image: jax.Array, cond: jax.Array):
    x = jax.nn.relu(self.dense1(_apply_trunk(self.convs, image)))
    # Parents join after the first dense layer (seed 004, A.2).
    x = jax.nn.relu(self.dense2(jnp.concatenate([x, cond], axis=-1)))
    mean, logvar = jnp.split(self.head(x), 2, axis=-1)
    return mean, logvar


class ConvDecoder(nnx.Module):
  """p(image | z, cond): [B, Z], [B, K] -> mean, log-std [B, H, W, C]."""

  def __init__(self, image_shape: Sequence[int], cond_dim: int,
               latent_dim: int, *, rngs: nnx.Rngs,
               base: tuple[int, int, int] = (4, 4, 32),
               convs: Sequence[tuple[int, int]] = ((32, 3), (32, 3), (16, 5)),
               hidden: int = 128, head_kernel: int = 3):
    h, w, c = image_shape
    bh, bw, bc = base
    if (bh << len(convs), bw << len(convs)) != (h, w):
      raise ValueError(f"base {base} with {len(convs)} 2x upsamplings does "
                       f"not reach image size {h}x{w}")
    self.base = tuple(base)
    self.dense1 = nnx.Linear(latent_dim + cond_dim, hidden, rngs=rngs)
    self.dense2 = nnx.Linear(hidden, bh * bw * bc, rngs=rngs)
    layers, cin = [], bc
    for features, kernel in convs:
      layers.append(nnx.Conv(cin, features, (kernel, kernel), padding="SAME",
                             rngs=rngs))
      cin = features
    self.convs = nnx.List(layers)
    # Gaussian head: per-pixel mean and log standard deviation.
    self.head = nnx.Conv(cin, 2 * c, (head_kernel, head_kernel),
                         padding="SAME", rngs=rngs)

  def __call__(self, z: jax.Array, cond: jax.Array):
    x = jax.nn.relu(self.dense1(jnp.concatenate([z, cond], axis=-1)))
    x = jax.nn.relu(self.dense2(x)).reshape((z.shape[0],) + self.base)
    for conv in self.convs:
      x = jax.nn.relu(conv(_resize2x(x)))
    mean, log_std = jnp.split(self.head(x), 2, axis=-1)
    return mean, log_std


class ConvClassifier(nnx.Module):
  """Anti-causal label reader h(image): [B, H, W, C] -> logits per variable.

  One shared conv trunk and one linear head per variable; the heads' logits
  are returned concatenated in `num_classes` order, [B, sum(num_classes)].
  """

  def __init__(self, image_shape: Sequence[int], num_classes: Sequence[int],
               *, rngs: nnx.Rngs,
               convs: Sequence[tuple[int, int, int, int]] = (
                   (32, 3, 2, 1), (64, 3, 2, 1), (64, 3, 2, 1)),
               hidden: int = 128):
    self.convs, flat = _conv_trunk(image_shape, convs, rngs)
    self.dense = nnx.Linear(flat, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, int(sum(num_classes)), rngs=rngs)

  def features(self, image: jax.Array) -> jax.Array:
    """The penultimate features [B, hidden] the heads read."""
    return jax.nn.relu(self.dense(_apply_trunk(self.convs, image)))

  def __call__(self, image: jax.Array) -> jax.Array:
    return self.out(self.features(image))
