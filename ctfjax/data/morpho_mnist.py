"""MorphoMNIST with thickness and intensity: the deepscm generator, with noise.

The causal model every peer benchmarks on (Pawlowski et al. 2020, the
`create_synth_thickness_intensity_data` script of deepscm), written as an
explicit ASCM so that the true counterfactual of any do() is computable:

    u_thickness ~ Gamma(concentration 10, rate 5)        (mean 2, so t ~ 2.5)
    u_intensity ~ Normal(0, 0.5)                         (0.5 is the std)
    source      ~ index of an MNIST digit                (the image's noise)
    thickness   := 0.5 + u_thickness
    intensity   := 64 + 191 * sigmoid(2 (thickness - 2.5) + u_intensity)
    digit       := label[source]
    image       := render(digit image[source], thickness, intensity)

Graph: thickness -> intensity; thickness, intensity, digit -> image.

`render` is the Morpho-MNIST SetThickness perturbation followed by the deepscm
intensity rescaling: upsample the 28x28 digit 16x (cubic pyramid expansion),
binarise at half its range, measure its thickness t0 (twice the mean
medial-axis distance), dilate (t > t0) or erode (t < t0) with a disk of radius
int(16 |t - t0| / 2), downsample 16x (pyramid reduction), scale it so the
median of its foreground pixels (those above half the range) equals the
intensity, and pad 28 -> 32.

Deviations from the peer script, each on purpose:
  * the disk is the exact Euclidean disk of that radius (deepscm uses an
    anti-aliased disk whose faint rim widens it by about one pixel);
  * the downsampled image is kept in float until the final rounding (deepscm
    truncates to uint8 twice), so the measured intensity is unbiased;
  * the medial axis uses a fixed tie-breaking seed (skimage draws a fresh
    one per call by default), so every measurement and image is repeatable.

`measure_thickness` is the Morpho-MNIST measure (scale 4) and
`measure_intensity` the deepscm one; both work on any batch of images.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from typing import Mapping

import numpy as np
from scipy import ndimage as ndi
from scipy import special
from skimage import morphology
from skimage import transform

from ctfjax.data import base, mnist, storage
from ctfjax.data.errors import DataError

try:
  # The inner loop of skimage's own medial_axis. Private, hence guarded:
  # without it _medial_axis falls back to the public (slower) function.
  from skimage.morphology._skeletonize import _skeletonize_loop
except ImportError:  # pragma: no cover
  _skeletonize_loop = None

# The feature-level diagram in ctfjax.causal.Graph.parse syntax; the image is
# a child of every variable.
GRAPH = "thickness -> intensity; digit"
VARIABLES = ("thickness", "intensity", "digit")
INTERVENABLE = ("thickness", "intensity")
# Each variable's kind (`MorphoMNIST.kinds`, read by the ANCM) in plain
# data: a kind name of `ctfjax.causal.kinds.KINDS` with its fields, or an
# int K (categorical).
# loc/scale standardise with the generator's own law, not the sample's:
# thickness = 0.5 + Gamma(10, rate 5) has mean 2.5 and sd sqrt(10) / 5 =
# 0.632; intensity in [64, 255] has mean 157.8 and sd 48.4 (2M draws of the
# mechanisms below). The splines are the flows of Melistas et al. (2024,
# Appendix A.1).
FEATURES = {
    "thickness": {"kind": "spline", "loc": 2.5, "scale": 0.632},
    "intensity": {"kind": "spline", "loc": 157.8, "scale": 48.4},
    "digit": 10,
}
# Bump when the same (digits, seed, n) would produce different data: the
# registry's cache key includes it.
VERSION = 1

# Display (`MorphoMNIST.display`): one panel, thin to thick.
GROUP_BY = ()
SORT_BY = "thickness"

GAMMA_CONCENTRATION = 10.0
GAMMA_RATE = 5.0
INTENSITY_NOISE_STD = 0.5

# Upsampling factor of the morphology (deepscm) and of the measure (the
# Morpho-MNIST default).
RENDER_SCALE = 16
MEASURE_SCALE = 4
# Foreground = pixels at or above min + THRESHOLD * (max - min).
THRESHOLD = 0.5
SOURCE_SIZE = 28
IMAGE_SIZE = 32

# Images are shaped one per task on this many threads: the distance
# transforms, Gaussian filters and skeleton loop release the GIL.
_WORKERS = min(os.cpu_count() or 1, 8)
# Seed of the medial-axis tie-breaking order.
_MEDIAL_AXIS_SEED = 0


# Mechanisms ------------------------------------------------------------------


def thickness_mechanism(u_thickness) -> np.ndarray:
  """thickness := 0.5 + u_thickness, as float32 [N]."""
  u = np.asarray(u_thickness, np.float64)
  return (0.5 + u).astype(np.float32)


def intensity_mechanism(thickness, u_intensity) -> np.ndarray:
  """intensity := 64 + 191 sigmoid(2 (thickness - 2.5) + u), float32 [N]."""
  t = np.asarray(thickness, np.float64)
  u = np.asarray(u_intensity, np.float64)
  return (64.0 + 191.0 * special.expit(2.0 * (t - 2.5) + u)).astype(
      np.float32)


# Generator -------------------------------------------------------------------


def generate(images, labels, seed: int, n: int | None = None) -> dict:
  """Samples MorphoMNIST from real digits, keeping every exogenous value.

  Args:
    images: uint8 [M, 28, 28] MNIST digits (the image noise pool).
    labels: int [M] their classes.
    seed: seed of the numpy generator that draws all exogenous values.
    n: number of samples; None uses every digit once, in order. Otherwise
      the source digits are drawn uniformly (with replacement only if n > M).

  Returns:
    {"image": uint8 [n, 32, 32, 1], "thickness": float32 [n],
     "intensity": float32 [n], "digit": int32 [n], "exogenous":
     {"u_thickness": float32 [n], "u_intensity": float32 [n],
      "source": int64 [n] index into `images`}}.
  """
  images, labels = _check_digits(images, labels)
  m = len(images)
  if n is not None and (isinstance(n, bool) or not isinstance(
      n, (int, np.integer)) or n < 1):
    raise DataError(f"n must be a positive integer or None, got {n!r}")
  rng = np.random.default_rng(seed)
  if n is None:
    source = np.arange(m, dtype=np.int64)
  else:
    source = rng.choice(m, size=int(n), replace=n > m).astype(np.int64)
  k = len(source)
  exogenous = {
      "u_thickness": rng.gamma(
          GAMMA_CONCENTRATION, 1.0 / GAMMA_RATE, size=k).astype(np.float32),
      "u_intensity": rng.normal(
          0.0, INTENSITY_NOISE_STD, size=k).astype(np.float32),
      "source": source,
  }
  thickness = thickness_mechanism(exogenous["u_thickness"])
  intensity = intensity_mechanism(thickness, exogenous["u_intensity"])
  return {
      "image": render(images[source], thickness, intensity),
      "thickness": thickness,
      "intensity": intensity,
      "digit": labels[source].astype(np.int32),
      "exogenous": exogenous,
  }


def counterfactual(sample: Mapping, images, do: Mapping) -> dict:
  """The true counterfactual of `sample` under do(), from its own noise.

  Non-intervened variables keep their exogenous values: do(thickness) changes
  intensity through its mechanism with the same u_intensity; do(intensity)
  leaves thickness as it was. `do={}` reproduces the factual images exactly.

  Args:
    sample: a dict returned by `generate` (or a row-subset of one with the
      same keys).
    images: the uint8 [M, 28, 28] digits `sample` was generated from.
    do: {"thickness": value, "intensity": value} (either or both); each value
      a scalar or an array [n].

  Returns:
    A dict like `generate`'s for the counterfactual world, sharing the
    factual exogenous values.
  """
  images, _ = _check_digits(images, None)
  try:
    exogenous = sample["exogenous"]
    source = np.asarray(exogenous["source"])
    u_t = exogenous["u_thickness"]
    u_i = exogenous["u_intensity"]
    digit = np.asarray(sample["digit"])
  except (KeyError, TypeError) as e:
    raise DataError(
        "sample must be a dict from morpho_mnist.generate with 'digit' and "
        f"'exogenous' (u_thickness, u_intensity, source); missing {e}"
    ) from None
  n = len(source)
  if n and (source.min() < 0 or source.max() >= len(images)):
    raise DataError(
        f"sample's source indices reach {source.max()} but images has "
        f"{len(images)} digits; pass the digits the sample was generated from")
  if not isinstance(do, Mapping):
    raise DataError(f"do must be a dict of variable -> value, got {do!r}")
  if "digit" in do:
    raise DataError(
        "do(digit) has no ground truth in MorphoMNIST: the source digit is "
        "the image's exogenous noise; intervene on thickness or intensity")
  values = _check_values(do, n)
  thickness = values.get("thickness", thickness_mechanism(u_t))
  intensity = values.get("intensity", intensity_mechanism(thickness, u_i))
  return {
      "image": render(images[source], thickness, intensity),
      "thickness": thickness,
      "intensity": intensity,
      "digit": digit.astype(np.int32),
      "exogenous": exogenous,
  }


def render(digits, thickness, intensity) -> np.ndarray:
  """The image mechanism: sets each digit's thickness and intensity.

  Args:
    digits: uint8 [N, 28, 28] source digits.
    thickness: [N] target thicknesses in pixels (> 0).
    intensity: [N] target foreground medians in (0, 255].

  Returns:
    uint8 [N, 32, 32, 1].
  """
  digits, _ = _check_digits(digits, None)
  n = len(digits)
  values = _check_values({"thickness": thickness, "intensity": intensity}, n)
  thickness = values["thickness"].astype(np.float64)
  intensity = values["intensity"].astype(np.float64)
  shaped = np.empty((n, SOURCE_SIZE, SOURCE_SIZE), np.float32)

  def one(k):
    binary = _binarise(_upsample(digits[k:k + 1], RENDER_SCALE))[0]
    shaped[k] = _set_thickness(binary, thickness[k])

  _map_images(one, n)
  out = _set_intensity(255.0 * shaped, intensity)
  pad = (IMAGE_SIZE - SOURCE_SIZE) // 2
  out = np.pad(out, ((0, 0), (pad, pad), (pad, pad)))
  return out[..., None]


# Measurements ----------------------------------------------------------------


def measure_thickness(images, scale: int = MEASURE_SCALE) -> np.ndarray:
  """Mean stroke thickness in pixels (the Morpho-MNIST measure).

  Twice the mean distance-to-background over the medial axis of the image
  upsampled `scale` times and binarised at half its range, divided by scale.

  Args:
    images: [N, H, W] or [N, H, W, 1] grey images with values in 0-255.
    scale: upsampling factor (4 in Morpho-MNIST).

  Returns:
    float32 [N]; NaN for a blank image.
  """
  images = _check_grey(images)
  out = np.full(len(images), np.nan, np.float32)

  def one(k):
    if images[k].max() > images[k].min():
      binary = _binarise(_upsample(images[k:k + 1], scale))[0]
      out[k] = _mean_thickness(binary, scale)

  _map_images(one, len(images))
  return out


def measure_intensity(images) -> np.ndarray:
  """Median of the foreground pixels (those at or above half the range).

  Args:
    images: [N, H, W] or [N, H, W, 1] grey images with values in 0-255.

  Returns:
    float32 [N].
  """
  return _foreground_median(_check_grey(images)).astype(np.float32)


# Internals -------------------------------------------------------------------


def _check_digits(images, labels):
  """Validates the digit pool; returns (uint8 [M,28,28], int [M] or None)."""
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (
      SOURCE_SIZE, SOURCE_SIZE) or not len(images):
    raise DataError(
        "MorphoMNIST digits must be uint8 [N, 28, 28] with N > 0, got "
        f"{images.dtype} {tuple(images.shape)}")
  blank = np.flatnonzero(images.max(axis=(1, 2)) == images.min(axis=(1, 2)))
  if len(blank):
    raise DataError(f"digit {blank[0]} is blank: it has no stroke to reshape")
  if labels is None:
    return images, None
  labels = np.asarray(labels)
  if labels.shape != (len(images),) or not np.issubdtype(
      labels.dtype, np.integer):
    raise DataError(
        f"labels must be int [{len(images)}], got {labels.dtype} "
        f"{tuple(labels.shape)}")
  return images, labels


def _check_grey(images) -> np.ndarray:
  """Validates images to measure; returns float32 [N, H, W]."""
  images = np.asarray(images)
  if images.ndim == 4 and images.shape[-1] == 1:
    images = images[..., 0]
  if images.ndim != 3 or min(images.shape[1:], default=0) < 3:
    raise DataError(
        "images to measure must be [N, H, W] or [N, H, W, 1] grey images, "
        f"got shape {tuple(images.shape)}")
  images = images.astype(np.float32)
  if not np.isfinite(images).all():
    raise DataError("images to measure contain NaN or infinite values")
  return images


def _check_values(values: Mapping, n: int) -> dict[str, np.ndarray]:
  """Validates thickness / intensity values; returns {name: float32 [n]}."""
  out = {}
  for name, value in values.items():
    if name not in INTERVENABLE:
      raise DataError(
          f"unknown MorphoMNIST variable {name!r}; expected one of "
          f"{', '.join(INTERVENABLE)}")
    try:
      v = np.broadcast_to(np.asarray(value, np.float32), (n,)).copy()
    except (TypeError, ValueError):
      raise DataError(
          f"{name} must be a number or an array of {n} numbers, got shape "
          f"{np.shape(value)}") from None
    hi = np.inf if name == "thickness" else 255.0
    bad = ~(np.isfinite(v) & (v > 0) & (v <= hi))
    if bad.any():
      raise DataError(f"{name}={v[bad][0]:g} is out of range: {name} must "
                      f"lie in (0, {hi:g}]")
    out[name] = v
  return out


@functools.cache
def _zoom_operator(size: int, scale: int) -> np.ndarray:
  """[size * scale, size] float32: the cubic-spline zoom of pyramid_expand."""
  # The spline zoom is linear and separable, so one call on an identity
  # (its size-1 middle axis is left alone) yields the whole 1-D operator.
  eye = np.eye(size)[:, None, :]
  z = transform.resize(
      eye, (size * scale, 1, size), order=3, mode="reflect",
      anti_aliasing=False, clip=False, preserve_range=True)
  return z[:, 0, :].astype(np.float32)


@functools.cache
def _reduce_operator(size: int, scale: int) -> np.ndarray:
  """[size, size * scale] float32: pyramid_reduce without its final clip.

  pyramid_reduce (Gaussian, then spline resize) ends by clipping to the range
  of the smoothed image; on a smoothed binary digit the spline barely
  overshoots, so dropping the clip moves values by ~1e-5 (of 1) and makes
  the whole reduction one linear map.
  """
  eye = np.eye(size * scale)[:, None, :]
  r = transform.pyramid_reduce(
      eye, downscale=scale, order=3, channel_axis=2, preserve_range=True)
  return r[:, 0, :].astype(np.float32)


def _upsample(images: np.ndarray, scale: int) -> np.ndarray:
  """skimage pyramid_expand(order=3) of each image, batched: [N, sH, sW].

  Equal to 255 * pyramid_expand(image / 255, scale, order=3) up to float32
  rounding: the spline zoom as two matmuls, the clip to each image's range
  that skimage's resize applies, then the same Gaussian.
  """
  x = np.asarray(images, np.float32)
  n, h, w = x.shape
  zr = _zoom_operator(h, scale)
  zc = _zoom_operator(w, scale)
  up = _product(_product(zr, x), zc.T)
  up = np.clip(up, x.min(axis=(1, 2), keepdims=True),
               x.max(axis=(1, 2), keepdims=True))
  sigma = 2.0 * scale / 6.0
  return ndi.gaussian_filter(up, (0, sigma, sigma), mode="reflect")


def _binarise(hires: np.ndarray) -> np.ndarray:
  """Morpho-MNIST binarisation of upsampled images: [N, H, W] bool."""
  # The reference casts the upsampled image to uint8 before thresholding.
  levels = np.floor(np.clip(hires, 0.0, 255.0))
  lo = levels.min(axis=(1, 2), keepdims=True)
  hi = levels.max(axis=(1, 2), keepdims=True)
  return levels >= lo + (hi - lo) * THRESHOLD


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """a @ b (either may carry a leading batch axis), without BLAS.

  These products are small (a few M multiply-adds); OpenBLAS would spread
  them over threads that then spin-wait, doubling the CPU a render costs
  and fighting the worker threads. einsum's own loop is single-threaded.
  """
  return np.einsum("...ij,...jk->...ik", a, b)


def _map_images(fn, n: int) -> None:
  """Calls fn(k) for k in range(n), spread over _WORKERS threads."""
  if _WORKERS < 2 or n < 2:
    for k in range(n):
      fn(k)
    return
  with concurrent.futures.ThreadPoolExecutor(min(_WORKERS, n)) as pool:
    # list() re-raises the first exception of any task.
    list(pool.map(fn, range(n)))


def _bounding_box(binary: np.ndarray, margin: int) -> tuple[slice, slice]:
  """Slices of the foreground's bounding box grown by `margin`, clipped."""
  rows = np.flatnonzero(binary.any(axis=1))
  cols = np.flatnonzero(binary.any(axis=0))
  h, w = binary.shape
  return (slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, h)),
          slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, w)))


def _mean_thickness(binary: np.ndarray, scale: int) -> float:
  """2 * mean medial-axis distance / scale of one binary image."""
  # Cropping to the box plus one background pixel changes neither the
  # distances nor the skeleton (see _medial_axis) and saves half the work.
  crop = binary[_bounding_box(binary, 1)]
  skeleton, distance = _medial_axis(crop)
  return 2.0 * float(distance[skeleton].mean()) / scale


def _set_thickness(binary: np.ndarray, target: float) -> np.ndarray:
  """SetThickness on one 16x binary digit, downsampled: float [28, 28]."""
  box = _bounding_box(binary, 1)
  skeleton, distance = _medial_axis(binary[box])
  delta = target - 2.0 * float(distance[skeleton].mean()) / RENDER_SCALE
  radius = int(RENDER_SCALE * abs(delta) / 2.0)
  if delta < 0:
    # Erosion by a disk of radius r keeps the pixels farther than r from
    # the background: the medial-axis distance map already holds that.
    region, shaped = box, distance > radius
  else:
    # Dilation by the disk = pixels within r of the foreground, one exact
    # distance transform instead of a (slow) large-footprint dilation.
    region = _bounding_box(binary, radius + 1)
    shaped = ndi.distance_transform_edt(~binary[region]) <= radius
  # Outside `region` the shaped digit is empty, so only those columns of the
  # reduction operator contribute.
  d = _reduce_operator(SOURCE_SIZE, RENDER_SCALE)
  down = _product(_product(d[:, region[0]], shaped.astype(np.float32)),
                  d[:, region[1]].T)
  return np.clip(down, 0.0, 1.0)


def _set_intensity(images: np.ndarray, intensity: np.ndarray) -> np.ndarray:
  """Scales each image so its foreground median is `intensity`: uint8."""
  median = _foreground_median(images)
  # An image eroded to nothing has median 0 and stays black.
  gain = np.where(median > 0, intensity / np.maximum(median, 1e-12), 0.0)
  out = np.clip(images * gain[:, None, None], 0.0, 255.0)
  return np.rint(out).astype(np.uint8)


def _foreground_median(images: np.ndarray) -> np.ndarray:
  """deepscm get_intensity for a batch [N, H, W]: float64 [N]."""
  x = images.reshape(len(images), -1).astype(np.float64)
  lo = x.min(axis=1, keepdims=True)
  hi = x.max(axis=1, keepdims=True)
  masked = np.where(x >= lo + (hi - lo) * THRESHOLD, x, np.nan)
  return np.nanmedian(masked, axis=1)


@functools.cache
def _skeleton_tables() -> tuple[np.ndarray, np.ndarray]:
  """skimage medial_axis' 3x3 lookup tables: (keep uint8 [512], corner)."""
  # Bit k of a table index is neighbour (k // 3, k % 3) of the centre pixel.
  index = np.arange(512)
  patterns = ((index[:, None] >> np.arange(9)) & 1).astype(bool)
  patterns = patterns.reshape(512, 3, 3)
  eight = np.ones((3, 3), bool)
  without = patterns.copy()
  without[:, 1, 1] = False
  n_with = np.array([ndi.label(p, eight)[1] for p in patterns])
  n_without = np.array([ndi.label(p, eight)[1] for p in without])
  count = patterns.sum(axis=(1, 2))
  keep = patterns[:, 1, 1] & ((n_with != n_without) | (count < 3))
  return keep.astype(np.uint8), 9 - count


def _neighbourhood_index(binary: np.ndarray) -> np.ndarray:
  """Per pixel, the 9-bit code of its 3x3 neighbourhood (outside = 0)."""
  padded = np.pad(binary, 1).astype(np.int64)
  h, w = binary.shape
  code = np.zeros((h, w), np.int64)
  for k in range(9):
    r, c = divmod(k, 3)
    code |= padded[r:r + h, c:c + w] << k
  return code


def _medial_axis(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """skimage.morphology.medial_axis(binary, return_distance=True, rng=0).

  The same algorithm and bit-identical output (tests check it), without
  rebuilding the 512-entry lookup tables on every call: that Python loop is
  ~28 ms, more than the skeleton itself costs at Morpho-MNIST sizes.
  """
  if _skeletonize_loop is None:
    return morphology.medial_axis(binary, return_distance=True,
                                  rng=_MEDIAL_AXIS_SEED)
  binary = np.asarray(binary, bool)
  keep, corner_table = _skeleton_tables()
  distance = ndi.distance_transform_edt(binary)
  ii, jj = np.nonzero(binary)
  corner = corner_table[_neighbourhood_index(binary)[ii, jj]]
  # Pixels are thinned from the background inwards, corners last, ties in a
  # seeded random order: skimage's lexsort on (distance, corner, tiebreak),
  # done as one integer argsort (3x faster). Squared distances are exact
  # integers and order like the distances.
  n = len(ii)
  tiebreak = np.random.default_rng(_MEDIAL_AXIS_SEED).permutation(n)
  squared = np.rint(distance[ii, jj] ** 2).astype(np.int64)
  key = (squared * 16 + corner) * max(n, 1) + tiebreak
  order = np.argsort(key).astype(np.int32)
  result = np.ascontiguousarray(binary, np.uint8).copy()
  _skeletonize_loop(result, ii.astype(np.intp), jj.astype(np.intp),
                    np.ascontiguousarray(order), keep)
  return result.astype(bool), distance



class MorphoMNIST(base.Dataset):
  """The dataset entry of "morpho_mnist" (`ctfjax.data`).

  Settings: `seed` (the exogenous draws), `source` (MNIST IDX folder;
  default the bundled digits). It takes no generator parameters.
  """

  EVALUATOR = "ctfjax.evaluate.datasets.morpho_mnist:MorphoMNIST"
  image_shape = (IMAGE_SIZE, IMAGE_SIZE, 1)
  graph = GRAPH

  def __init__(self, name: str, *, seed: int = 0, source: str | None = None,
               params=None):
    base.no_params(name, params)
    self.name = name
    self.seed = base.check_seed(seed)
    self.source = source
    self.kinds = {k: (dict(v) if isinstance(v, dict) else v)
                  for k, v in FEATURES.items()}

  def load(self, split="train", size=None, *, data_dir=None, cache=True):
    base.check_size(size)
    spec = {"name": self.name, "split": split, "size": size,
            "seed": self.seed, "source": mnist.source_id(self.source, split),
            "params": {}, "version": VERSION}

    def build():
      images, labels = mnist.load(self.source, split)
      return generate(images, labels,
                      seed=base.stream_seed(self.name, split, self.seed),
                      n=size)

    if not cache:
      return build()
    return storage.cached(self.name, split, spec, build, data_dir)

  def identity(self, split="train"):
    return {"data_seed": self.seed,
            "source": mnist.source_id(self.source, split)}

  def counterfactual(self, batch, do, split="train"):
    images, _ = mnist.load(self.source, split)
    return counterfactual(batch, images, do)

  def display(self):
    return {"group_by": GROUP_BY, "sort_by": SORT_BY, "value_names": {},
            "graph": GRAPH}
