"""Conditional convolutional encoder and decoder for image mechanisms.

The default shapes follow the Deep-SCM VAE of Melistas et al.,
"Benchmarking Counterfactual Image Generation" (2024; Appendix A.2, Tables
7-8, MorphoMNIST 32x32): three stride-2 convolutions down to 4x4, two
dense layers with the parents concatenated after the first, and a decoder of
dense layers then (2x upsample, conv) blocks back to full size, ending in a
Gaussian head that outputs a per-pixel mean and log standard deviation.
Differences from the paper's tables, on purpose: no activation on the latent
mean / log-variance head (a ReLU there would forbid negative means), and no
batch norm or dropout (they would make mechanisms stateful, and abduction and
prediction must be pure functions of the parameters).

The same classes hold the paper's CelebA network (64x64, Tables 9-10): its
encoder trunk as `convs`, LeakyReLU(0.01) as `slope`, its decoder's
full-resolution last conv as a decoder block with no upsampling.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def resize2x(x):  # [B, H, W, C] -> [B, 2H, 2W, C], nearest neighbour
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _phase_taps(kernel: int, reads) -> tuple[np.ndarray, int, int]:
  """Which input offset each kernel tap reads, per output phase, for a
  layer whose output is twice its input's size.

  `reads(a, d)` is the offset (relative to j) of the input column that tap
  d reads for output column 2j + a, or None when it reads a zero. Returns
  M [2, L, kernel] with M[a, u, d] = 1 where tap d of phase a reads offset
  lo + u, and (lo, hi), the offsets' range (L = hi - lo + 1).
  """
  hits = [(a, d, reads(a, d)) for a in range(2) for d in range(kernel)]
  offsets = [o for _, _, o in hits if o is not None]
  lo, hi = min(offsets), max(offsets)
  taps = np.zeros((2, hi - lo + 1, kernel), np.float32)
  for a, d, o in hits:
    if o is not None:
      taps[a, o - lo, d] = 1.0
  return taps, lo, hi


def _phase_conv(x, w, bias, taps, lo, hi):
  """The four output phases as one convolution of the low-resolution input
  (4x the output channels, summed taps), then depth-to-space."""
  ci, co, size = w.shape[2], w.shape[3], hi - lo + 1
  phased = jnp.einsum("aud,bve,deio->uviabo", taps, taps, w).reshape(
      size, size, ci, 4 * co)
  y = jax.lax.conv_general_dilated(
      x, phased, (1, 1), ((-lo, hi), (-lo, hi)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  b, h, wd, _ = y.shape
  y = y.reshape(b, h, wd, 2, 2, co).transpose(0, 1, 3, 2, 4, 5).reshape(
      b, 2 * h, 2 * wd, co)
  return y if bias is None else y + bias[...]


def pointwise(conv: nnx.Conv, *xs: jax.Array,
              columns: slice = slice(None)) -> jax.Array:
  """A 1x1 convolution `conv` of the channel-wise concatenation of `xs`
  ([B, H, W, C_i] each), as matrix products over the channels; with
  `columns`, only those output channels (no slice of the output is taken).

  The same function and parameters as `conv(jnp.concatenate(xs, -1))`, up
  to summation order. XLA's CPU backend runs a 1x1 convolution, and above
  all its weight gradient, through layout transposes of the activations;
  as products the paper-size HVAE's train step runs faster
  (docs/speed.md, "Where the CPU time goes"), and the concatenation is
  never built.
  """
  kernel = conv.kernel[..., columns]
  if kernel.shape[:2] != (1, 1):
    raise ValueError(f"pointwise needs a 1x1 kernel, got {kernel.shape}")
  widths = [x.shape[-1] for x in xs]
  if sum(widths) != kernel.shape[2]:
    raise ValueError(f"inputs of {widths} channels for a kernel of "
                     f"{kernel.shape[2]}")
  y, start = None, 0
  for x, width in zip(xs, widths):
    part = x.reshape(-1, width) @ kernel[0, 0, start:start + width]
    y, start = part if y is None else y + part, start + width
  if conv.bias is not None:
    y = y + conv.bias[columns]
  return y.reshape(xs[0].shape[:-1] + (kernel.shape[3],))


def _square_kernel(layer) -> int:
  k = layer.kernel_size[0]
  return k if tuple(layer.kernel_size) == (k, k) else -1


def upsample_conv(conv: nnx.Conv, x: jax.Array) -> jax.Array:
  """`conv(resize2x(x))` for a stride-1, SAME, odd-kernel `nnx.Conv`,
  computed on the low-resolution input.

  The four output phases of a convolution after nearest-neighbour 2x
  upsampling are each a convolution of the original input with summed taps
  (sub-pixel convolution): one convolution with 4x the output channels and
  a depth-to-space shuffle. Output column 2j + a reads upsampled column
  2j + a + d - k // 2, that is input column j + (a + d - k // 2) // 2.
  Same parameters and same result as upsampling first, up to float
  summation order; for a 5x5 kernel it costs 36% of the multiply-adds, and
  on XLA's CPU backend the 3x3 case is faster too (docs/speed.md).
  """
  k = _square_kernel(conv)
  p = k // 2
  same = conv.padding == "SAME" or (
      not isinstance(conv.padding, str)
      and tuple(map(tuple, conv.padding)) == ((p, p), (p, p)))
  if k < 0 or k % 2 == 0 or not same or conv.strides not in (None, 1,
                                                             (1, 1)):
    raise ValueError(f"upsample_conv needs a stride-1 SAME convolution with "
                     f"an odd square kernel, got kernel {conv.kernel_size}, "
                     f"padding {conv.padding!r}, strides {conv.strides}")
  taps, lo, hi = _phase_taps(k, lambda a, d: (a + d - p) // 2)
  return _phase_conv(x, conv.kernel[...], conv.bias, taps, lo, hi)


def transpose_conv2x(conv: nnx.ConvTranspose, x: jax.Array) -> jax.Array:
  """`conv(x)` for a stride-2, SAME `nnx.ConvTranspose` (kernel not
  transposed), as a sub-pixel convolution.

  A stride-2 transposed convolution convolves the input dilated with zeros
  (x at even positions) padded by pad = ceil(k / 2) (lax's SAME rule for
  k >= 3): output column 2j + a reads dilated column 2j + a + d - pad, an input
  column only when a + d - pad is even. XLA's CPU backend runs the dilated
  form and, much worse, its gradient on a slow path (seconds per layer of
  Melistas et al.'s (2024) GAN generator at batch 128; docs/speed.md,
  "Where the CPU time goes"); this form is plain convolutions.
  """
  k = _square_kernel(conv)
  if (k < 3 or conv.padding != "SAME" or tuple(conv.strides) != (2, 2)
      or conv.transpose_kernel or tuple(conv.kernel_dilation or (1, 1))
      != (1, 1)):
    raise ValueError(f"transpose_conv2x needs a stride-2 SAME transposed "
                     f"convolution with a square kernel of 3 or more, got "
                     f"kernel {conv.kernel_size}, padding {conv.padding!r}, "
                     f"strides {conv.strides}")
  pad = -(-k // 2)  # lax's SAME: ceil((k + s - 2) / 2) with s = 2 <= k - 1

  def reads(a, d):
    j = a + d - pad
    return j // 2 if j % 2 == 0 else None

  taps, lo, hi = _phase_taps(k, reads)
  return _phase_conv(x, conv.kernel[...], conv.bias, taps, lo, hi)


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


def activation(x, slope: float = 0.0):
  """ReLU (slope 0) or LeakyReLU with that negative slope."""
  return jax.nn.relu(x) if slope == 0.0 else jax.nn.leaky_relu(x, slope)


def _apply_trunk(convs, x, slope=0.0):  # [B, H, W, C] -> [B, flat]
  for conv in convs:
    x = activation(conv(x), slope)
  return x.reshape(x.shape[0], -1)


# The encoder trunk of Melistas et al.'s MorphoMNIST VAE (Table 7):
# (features, kernel, stride, padding) per convolution.
MORPHO_ENCODER_CONVS = ((32, 5, 2, 1), (32, 3, 2, 1), (32, 3, 2, 1))


class ConvEncoder(nnx.Module):
  """q(z | image, cond): [B, H, W, C], [B, K] -> mean, log-variance [B, Z].

  `convs` are (features, kernel, stride, padding) per layer; `slope` is the
  negative slope of every hidden activation (0: ReLU).
  """

  def __init__(self, image_shape: Sequence[int], cond_dim: int,
               latent_dim: int, *, rngs: nnx.Rngs,
               convs: Sequence[tuple[int, int, int, int]] = (
                   MORPHO_ENCODER_CONVS),
               hidden: int = 128, slope: float = 0.0):
    self.slope = slope
    self.convs, flat = _conv_trunk(image_shape, convs, rngs)
    self.dense1 = nnx.Linear(flat, hidden, rngs=rngs)
    self.dense2 = nnx.Linear(hidden + cond_dim, hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, 2 * latent_dim, rngs=rngs)

  def __call__(self, image: jax.Array, cond: jax.Array):
    act = lambda x: activation(x, self.slope)
    x = act(self.dense1(_apply_trunk(self.convs, image, self.slope)))
    # Parents join after the first dense layer (Melistas et al. 2024, A.2).
    x = act(self.dense2(jnp.concatenate([x, cond], axis=-1)))
    mean, logvar = jnp.split(self.head(x), 2, axis=-1)
    return mean, logvar


def block_scales(convs: Sequence[Sequence[int]]) -> tuple[int, ...]:
  """Each decoder block's upsampling factor (`ConvDecoder`): 2 for
  (features, kernel), the third entry for (features, kernel, 1 or 2).

  Raises:
    ValueError: a block of another form.
  """
  scales = []
  for block in map(tuple, convs):
    if len(block) not in (2, 3) or block[2:] not in ((), (1,), (2,)):
      raise ValueError(f"decoder blocks {tuple(map(tuple, convs))} must be "
                       "(features, kernel) or (features, kernel, 1 or 2)")
    scales.append(block[2] if len(block) == 3 else 2)
  return tuple(scales)


class ConvDecoder(nnx.Module):
  """p(image | z, cond): [B, Z], [B, K] -> mean, log-std [B, H, W, C].

  `convs` are (features, kernel) blocks, each a 2x nearest-neighbour
  upsampling then a SAME convolution, or (features, kernel, 1): a
  convolution at the same size (the "Upsample 1x" rows of Melistas et
  al.'s CelebA decoder). `slope` is the blocks' activation's negative slope
  (0: ReLU); the dense layers keep ReLU.
  """

  def __init__(self, image_shape: Sequence[int], cond_dim: int,
               latent_dim: int, *, rngs: nnx.Rngs,
               base: tuple[int, int, int] = (4, 4, 32),
               convs: Sequence[Sequence[int]] = ((32, 3), (32, 3), (16, 5)),
               hidden: int = 128, head_kernel: int = 3, slope: float = 0.0):
    h, w, c = image_shape
    bh, bw, bc = base
    scales = block_scales(convs)
    ups = scales.count(2)
    if (bh << ups, bw << ups) != (h, w):
      raise ValueError(f"base {base} with {ups} 2x upsamplings does "
                       f"not reach image size {h}x{w}")
    self.base = tuple(base)
    self.slope = slope
    self.dense1 = nnx.Linear(latent_dim + cond_dim, hidden, rngs=rngs)
    self.dense2 = nnx.Linear(hidden, bh * bw * bc, rngs=rngs)
    layers, cin = [], bc
    for features, kernel, *_ in convs:
      layers.append(nnx.Conv(cin, features, (kernel, kernel), padding="SAME",
                             rngs=rngs))
      cin = features
    self.convs = nnx.List(layers)
    # Whether each block upsamples first (static structure, not state).
    self.upsample = tuple(scale == 2 for scale in scales)
    # Gaussian head: per-pixel mean and log standard deviation.
    self.head = nnx.Conv(cin, 2 * c, (head_kernel, head_kernel),
                         padding="SAME", rngs=rngs)

  def __call__(self, z: jax.Array, cond: jax.Array):
    x = jax.nn.relu(self.dense1(jnp.concatenate([z, cond], axis=-1)))
    x = jax.nn.relu(self.dense2(x)).reshape((z.shape[0],) + self.base)
    for conv, up in zip(self.convs, self.upsample):
      x = activation(upsample_conv(conv, x) if up else conv(x), self.slope)
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
