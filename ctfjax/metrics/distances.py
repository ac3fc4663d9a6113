"""Per-sample distances between images and between embeddings.

Composition, reversibility and ground-truth error all read "L1 on the 0-255
scale" through `pixel_l1`, so they agree on scaling and clipping.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ctfjax.metrics.errors import MetricError

# The scale every pixel distance is reported on (8-bit images).
PIXEL_SCALE = 255.0


def pixel_l1(a, b, pixel_range: tuple[float, float] = (0.0, 255.0),
             clip: bool = True) -> jax.Array:
  """Per-image mean absolute pixel difference on the 0-255 scale.

  Args:
    a: images [N, ...] (uint8 or float) with values on `pixel_range`.
    b: images of the same shape and range.
    pixel_range: (lo, hi) that the pixel values span: (0, 255) for uint8,
      (-1, 1) or (0, 1) for a model's output. Differences are multiplied by
      255 / (hi - lo). Values are not rounded to integers.
    clip: clip both images to `pixel_range` first, as saving them as 8-bit
      images would. An edit that pushes an already saturated pixel further
      out then counts as no change on that pixel.

  Returns:
    [N] float32: for each image, the mean over its pixels and channels of
    |a - b| on the 0-255 scale.

  Raises:
    MetricError: if the shapes differ, there are no images, or hi <= lo.
  """
  lo, hi = (float(v) for v in pixel_range)
  if not hi > lo:
    raise MetricError(f"pixel_range must have hi > lo, got {pixel_range}")
  if jnp.shape(a) != jnp.shape(b):
    raise MetricError(f"images to compare have different shapes "
                      f"{jnp.shape(a)} and {jnp.shape(b)}")
  if len(jnp.shape(a)) < 1 or jnp.shape(a)[0] == 0:
    raise MetricError("no images to compare")
  return _pixel_l1(a, b, lo, hi, clip)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _pixel_l1(a, b, lo, hi, clip):
  # Promote first: uint8 - uint8 wraps around instead of going negative.
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  if clip:
    a, b = jnp.clip(a, lo, hi), jnp.clip(b, lo, hi)
  diff = jnp.abs(a - b).reshape(a.shape[0], -1)
  return jnp.mean(diff, axis=1) * (PIXEL_SCALE / (hi - lo))


def embedding_l1(a, b) -> jax.Array:
  """Per-sample mean absolute difference of two embeddings.

  The mean over dimensions (not the sum) follows the benchmark of Melistas
  et al. (2024), so values do not grow with the embedding width.

  Args:
    a: embeddings [N, D].
    b: embeddings [N, D].

  Returns:
    [N] float32.

  Raises:
    MetricError: if the inputs are not [N, D] arrays of one shape.
  """
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  if a.ndim != 2 or a.shape != b.shape:
    raise MetricError(f"embeddings must be [N, D] arrays of one shape, got "
                      f"{a.shape} and {b.shape}")
  return jnp.mean(jnp.abs(a - b), axis=1)
