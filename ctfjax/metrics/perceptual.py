"""Perceptual metrics on VGG-16: LPIPS and the VGG embedding distance.

Melistas et al. ("Benchmarking Counterfactual Image Generation", 2024)
score CelebA composition on VGG-16 embeddings and monitor LPIPS (Zhang et
al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", 2018, version 0.1). Nothing is downloaded at run time, so both run
here in JAX from weight files the user names (docs/evaluation.md,
"Perceptual metrics (VGG-16, LPIPS)"):

* `load_vgg16`: torchvision's ImageNet VGG-16 (`vgg16-397923af.pth`, the
  network LPIPS uses) converted to .npz with its own key names;
* `load_lpips_weights`: LPIPS v0.1's linear layers (`vgg.pth`) as .npz.

What each function computes, after the peers' code:

* `vgg16_features`: torchvision's ImageNet normalisation, then the 13
  convolutions; returns LPIPS's five taps and the embedding of Melistas et
  al.'s `vgg` composition metric: torchvision's `vgg16` with its last
  linear layer removed, i.e. relu(fc7), 4096 values per image. Their model
  is left in training mode, so its dropout is active and their embeddings
  are random; ours are the deterministic (eval-mode) values;
* `vgg_l1`: their distance on those embeddings, the mean over dimensions
  of |a - b| (`embedding_l1`);
* `lpips`: LPIPS v0.1 as torchmetrics' `LearnedPerceptualImagePatchSimilarity
  (net_type="vgg", normalize=True)` computes it, per image rather than
  averaged over the batch.

Images are NHWC, 1 or 3 channels (grey is repeated to RGB, as Melistas et
al.'s `rgbify` does), at least 32 x 32 (VGG-16 halves them five times),
with values on `pixel_range`. Both networks are fully convolutional up to
fc6, whose input torchvision fixes with an adaptive average pool to 7 x 7,
so any size from 32 up works. Weight layouts are converted once at load:
convolutions to HWIO, fc6's rows from torch's (C, 7, 7) flattening order
to NHWC's (7, 7, C).

The loaders accept any channel widths that are consistent with each other
(the published files have 64-512 channels and 4096 hidden units), so the
tests can run a narrow VGG-16 against an independent reference.
"""

from __future__ import annotations

import functools
import os
import pathlib
import zipfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ctfjax.errors import UserError
from ctfjax.metrics.distances import embedding_l1
from ctfjax.metrics.errors import MetricError

# torchvision's `features` indices of VGG-16's convolutions, per block; the
# index skipped after each conv is its ReLU, after each block its max pool.
# LPIPS taps each block's last ReLU: relu1_2, relu2_2, relu3_3, relu4_3,
# relu5_3.
CONV_LAYERS = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
# torchvision's `classifier` indices of fc6 and fc7 (fc8, index 6, unused).
FC_LAYERS = (0, 3)
TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
# torchvision's AdaptiveAvgPool2d((7, 7)) before the classifier.
POOL_SIZE = 7
# VGG-16 halves the image after each of its five blocks.
MIN_SIZE = 32

# torchvision's ImageNet normalisation of [0, 1] RGB.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# LPIPS v0.1's ScalingLayer, applied to [-1, 1] RGB.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
# LPIPS's normalize_tensor: x / (||x||_channels + eps).
LPIPS_EPS = 1e-10

# Converts a PyTorch state dict to .npz with the same keys (needs torch).
CONVERT = ("python -c \"import sys, numpy as np, torch; np.savez(sys.argv[2], "
           "**{k: v.numpy() for k, v in torch.load(sys.argv[1], "
           "map_location='cpu').items()})\" IN.pth OUT.npz")

# Dense and convolution precision: full float32 on every backend (GPUs
# would otherwise multiply in TF32, with a 10-bit mantissa), so a metric
# does not depend on the machine it ran on.
_PRECISION = jax.lax.Precision.HIGHEST


class VGGFeatures(NamedTuple):
  """What `vgg16_features` returns.

  Attributes:
    taps: the five LPIPS taps `TAPS`, each [N, H_k, W_k, C_k] with
      H_k = H // 2^k (k = 0..4).
    embedding: [N, F] relu(fc7), Melistas et al.'s VGG embedding (F = 4096
      for the published weights).
  """
  taps: tuple[jax.Array, ...]
  embedding: jax.Array


def load_vgg16(path: str | os.PathLike) -> dict:
  """Reads torchvision's VGG-16 weights from an .npz with torchvision's keys.

  Args:
    path: an .npz holding `features.{i}.weight` [O, I, 3, 3] and
      `features.{i}.bias` [O] for each convolution i in `CONV_LAYERS`, and
      `classifier.{0,3}.weight` [F, I] / `.bias` [F] (fc6, fc7). Other keys
      (fc8) are ignored. `CONVERT` makes it from `vgg16-397923af.pth`.

  Returns:
    {"blocks": 5 lists of {"w": [3, 3, I, O], "b": [O]}, "fc": [fc6, fc7]
    each {"w": [I, F], "b": [F]}}, float32; fc6's rows in NHWC order.

  Raises:
    UserError: naming the file and the key, if the file cannot be read as
      .npz, a key is missing or an array's shape does not fit the network.
  """
  what = "VGG-16 weights"
  with _open_npz(path, what) as npz:
    read = functools.partial(_array, npz, f"{what} {path}")
    blocks, channels = [], 3
    for block in CONV_LAYERS:
      layers = []
      for i in block:
        w = read(f"features.{i}.weight", (None, channels, 3, 3))
        channels = w.shape[0]
        layers.append({"w": w.transpose(2, 3, 1, 0),
                       "b": read(f"features.{i}.bias", (channels,))})
      blocks.append(layers)
    fc, width = [], POOL_SIZE * POOL_SIZE * channels
    for i in FC_LAYERS:
      w = read(f"classifier.{i}.weight", (None, width))
      width = w.shape[0]
      fc.append({"w": w.T, "b": read(f"classifier.{i}.bias", (width,))})
  # torch flattens fc6's input as (C, 7, 7); reorder its rows to (7, 7, C).
  w6 = fc[0]["w"].reshape(channels, POOL_SIZE, POOL_SIZE, -1)
  fc[0]["w"] = w6.transpose(1, 2, 0, 3).reshape(-1, w6.shape[-1])
  return jax.tree.map(jnp.asarray, {"blocks": blocks, "fc": fc})


def load_lpips_weights(path: str | os.PathLike) -> tuple[jax.Array, ...]:
  """Reads LPIPS v0.1's linear layers from an .npz with LPIPS's keys.

  Args:
    path: an .npz holding `lin{k}.model.1.weight` [1, C_k, 1, 1] for
      k = 0..4 (`CONVERT` makes it from LPIPS's `weights/v0.1/vgg.pth`).

  Returns:
    Five float32 arrays [C_k], the weights of each tap's channels.

  Raises:
    UserError: naming the file and the key, as `load_vgg16`.
  """
  what = "LPIPS weights"
  with _open_npz(path, what) as npz:
    return tuple(jnp.asarray(_array(npz, f"{what} {path}",
                                    f"lin{k}.model.1.weight",
                                    (1, None, 1, 1)).reshape(-1))
                 for k in range(len(TAPS)))


def vgg16_features(params: dict, images,
                   pixel_range: tuple[float, float] = (0.0, 255.0),
                   clip: bool = True) -> VGGFeatures:
  """VGG-16's LPIPS taps and embedding of images.

  Args:
    params: from `load_vgg16`.
    images: [N, H, W, C] with C in (1, 3) and H, W >= 32; uint8 or float.
    pixel_range: (lo, hi) that the values span: (0, 255) for uint8, (0, 1)
      or (-1, 1) for a model's output. Mapped linearly to [0, 1] before
      torchvision's ImageNet normalisation.
    clip: clip to `pixel_range` first, as saving 8-bit images (and Melistas
      et al.'s `rgbify`) would.

  Returns:
    `VGGFeatures` (taps and embedding), float32.

  Raises:
    MetricError: if the images or `pixel_range` are unusable.
  """
  lo, hi = _check(pixel_range, images)
  return _features(params, images, lo, hi, clip)


def vgg_l1(params: dict, x, y, pixel_range: tuple[float, float] = (0.0, 255.0),
           clip: bool = True) -> jax.Array:
  """Melistas et al.'s VGG distance: mean |a - b| over the embeddings' values.

  Args:
    params: from `load_vgg16`.
    x: images, as in `vgg16_features`.
    y: images of the same shape.
    pixel_range: as in `vgg16_features`.
    clip: as in `vgg16_features`.

  Returns:
    [N] float32, one distance per image pair.

  Raises:
    MetricError: if the images or `pixel_range` are unusable.
  """
  lo, hi = _check(pixel_range, x, y)
  return _vgg_l1(params, x, y, lo, hi, clip)


def lpips(vgg_params: dict, lin_params, x, y,
          pixel_range: tuple[float, float] = (0.0, 255.0),
          clip: bool = True) -> jax.Array:
  """LPIPS v0.1 (VGG) between two batches of images, per image pair.

  Each tap's activations are divided by their norm over channels; their
  squared difference is weighted by the linear layer, averaged over the
  tap's positions and summed over the five taps. 0 for identical images
  (up to float32 rounding, ~1e-16), symmetric in x and y.

  Args:
    vgg_params: from `load_vgg16`.
    lin_params: from `load_lpips_weights`.
    x: images, as in `vgg16_features`.
    y: images of the same shape.
    pixel_range: as in `vgg16_features`; the images are mapped to [-1, 1]
      and through LPIPS's scaling layer (not ImageNet's normalisation).
    clip: as in `vgg16_features`.

  Returns:
    [N] float32.

  Raises:
    MetricError: if the images are unusable, or the linear layers' widths
      differ from the taps' channels.
  """
  lo, hi = _check(pixel_range, x, y)
  widths = tuple(layer[-1]["b"].shape[0] for layer in vgg_params["blocks"])
  lin_widths = tuple(np.shape(w)[0] for w in lin_params)
  if lin_widths != widths:
    raise MetricError(f"the LPIPS weights' widths {lin_widths} do not match "
                      f"the VGG-16 taps' channels {widths}")
  return _lpips(vgg_params, tuple(lin_params), x, y, lo, hi, clip)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _features(params, images, lo, hi, clip):
  x = _normalise(_unit_rgb(images, lo, hi, clip), IMAGENET_MEAN, IMAGENET_STD)
  taps = _taps(params, x)
  return VGGFeatures(taps, _embedding(params, taps[-1]))


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _vgg_l1(params, x, y, lo, hi, clip):
  return embedding_l1(_features(params, x, lo, hi, clip).embedding,
                      _features(params, y, lo, hi, clip).embedding)


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _lpips(vgg_params, lin_params, x, y, lo, hi, clip):
  def taps(images):
    # LPIPS's scaling layer acts on [-1, 1].
    u = 2.0 * _unit_rgb(images, lo, hi, clip) - 1.0
    return _taps(vgg_params, _normalise(u, LPIPS_SHIFT, LPIPS_SCALE))

  total = 0.0
  for fx, fy, w in zip(taps(x), taps(y), lin_params):
    d = (_unit_norm(fx) - _unit_norm(fy)) ** 2  # [N, H_k, W_k, C_k]
    total = total + jnp.mean(
        jnp.einsum("nhwc,c->nhw", d, w, precision=_PRECISION), axis=(1, 2))
  return total


def _unit_rgb(images, lo, hi, clip):  # -> [N, H, W, 3] float32 on [0, 1]
  x = jnp.asarray(images, jnp.float32)
  if clip:
    x = jnp.clip(x, lo, hi)
  x = (x - lo) / (hi - lo)
  return jnp.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def _normalise(x, shift, scale):
  return (x - jnp.asarray(shift)) / jnp.asarray(scale)


def _unit_norm(f):  # LPIPS's normalize_tensor, over the channel axis
  norm = jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True))
  return f / (norm + LPIPS_EPS)


def _taps(params, x) -> tuple[jax.Array, ...]:
  """The last ReLU of each block (`TAPS`) of normalised images [N, H, W, 3]."""
  taps = []
  for k, block in enumerate(params["blocks"]):
    if k:
      x = _max_pool(x)
    for layer in block:
      x = jax.lax.conv_general_dilated(
          x, layer["w"], (1, 1), ((1, 1), (1, 1)),
          dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_PRECISION)
      x = jax.nn.relu(x + layer["b"])
    taps.append(x)
  return tuple(taps)


def _embedding(params, relu5_3) -> jax.Array:
  """relu(fc7) from relu5_3: pool5, adaptive average pool to 7 x 7, fc6,
  fc7 (torchvision's `vgg16` up to its last linear layer, dropout off)."""
  x = _max_pool(relu5_3)
  rows = _adaptive_pool_matrix(x.shape[1], POOL_SIZE)
  cols = _adaptive_pool_matrix(x.shape[2], POOL_SIZE)
  x = jnp.einsum("ih,jw,nhwc->nijc", rows, cols, x, precision=_PRECISION)
  x = x.reshape(x.shape[0], -1)  # [N, 7 * 7 * C], NHWC order
  for layer in params["fc"]:
    x = jax.nn.relu(jnp.dot(x, layer["w"], precision=_PRECISION)
                    + layer["b"])
  return x


def _max_pool(x):  # 2 x 2, stride 2; an odd row or column is dropped
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                               (1, 2, 2, 1), "VALID")


def _adaptive_pool_matrix(size: int, out: int) -> np.ndarray:
  """[out, size] averaging matrix of torch's adaptive average pooling: output
  i averages inputs floor(i size / out) to ceil((i + 1) size / out) - 1."""
  m = np.zeros((out, size), np.float32)
  for i in range(out):
    start, end = (i * size) // out, -(-((i + 1) * size) // out)
    m[i, start:end] = 1.0 / (end - start)
  return m


def _check(pixel_range, *batches) -> tuple[float, float]:
  """(lo, hi) of `pixel_range`, after checking it and the image batches."""
  lo, hi = (float(v) for v in pixel_range)
  if not hi > lo:
    raise MetricError(f"pixel_range must have hi > lo, got {pixel_range}")
  shape = np.shape(batches[0])
  if any(np.shape(b) != shape for b in batches):
    raise MetricError(f"images to compare have different shapes "
                      f"{[np.shape(b) for b in batches]}")
  if (len(shape) != 4 or shape[0] == 0 or shape[3] not in (1, 3)
      or min(shape[1:3]) < MIN_SIZE):
    raise MetricError(f"VGG-16 needs images [N, H, W, C] with N >= 1, C = 1 "
                      f"or 3 and H, W >= {MIN_SIZE}, got shape {shape}")
  return lo, hi


def _open_npz(path, what):
  """The open NpzFile at `path` (a context manager), or a one-line UserError
  naming the file."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f"{what} {path} does not exist or is not a file")
  if path.suffix in (".pth", ".pt"):
    raise UserError(f"{what} {path} is a PyTorch file; convert it to .npz "
                    f"on a machine with torch: {CONVERT}")
  try:
    npz = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise UserError(f"{what} {path} cannot be read as .npz: "
                    f"{_reason(e)}") from None
  if not isinstance(npz, np.lib.npyio.NpzFile):
    raise UserError(f"{what} {path} is a single array, not an .npz of named "
                    f"arrays")
  return npz


def _array(npz, where: str, key: str, shape) -> np.ndarray:
  """npz[key] as float32, checked against `shape` (None: any size).

  Raises:
    UserError: naming `where` (what and file) and the key.
  """
  if key not in npz.files:
    found = (f"{len(npz.files)} arrays in the file, e.g. "
             f"{', '.join(npz.files[:3])}" if npz.files else "no arrays")
    raise UserError(f"{where}: key {key} is missing ({found})")
  try:
    a = npz[key]
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise UserError(f"{where}: key {key} cannot be read: {_reason(e)}"
                    ) from None
  fits = a.ndim == len(shape) and all(
      s is None or s == d for s, d in zip(shape, a.shape))
  if not fits or not np.issubdtype(a.dtype, np.floating):
    expected = "(" + ", ".join("*" if s is None else str(s) for s in shape)
    raise UserError(f"{where}: key {key} is {a.dtype} of shape {a.shape}, "
                    f"expected floats of shape {expected})")
  return a.astype(np.float32)


def _reason(e: Exception) -> str:
  """The first line of an error's message, for one-line UserErrors."""
  lines = str(e).splitlines()
  return lines[0] if lines else type(e).__name__
