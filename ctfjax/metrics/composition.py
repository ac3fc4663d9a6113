"""Composition and reversibility: distances after repeated edits.

Both metrics come from the axioms of counterfactuals (Galles & Pearl;
Melistas et al. 2024, section 3.3, after Monteiro et al. 2023):

* composition^m: the null intervention applied m times should return the
  image unchanged;
* reversibility^m: do(pa*) followed by do(pa) back, m times over, should
  return the image unchanged.

The model enters as a callable, so these functions know nothing about it:

    edit_fn(images, labels, do) -> images | (images, labels)

`images` is [N, ...], `labels` maps each parent name to a [N] array and `do`
maps intervened parents to a scalar or a [N] array. An edit_fn may also
return the counterfactual labels (descendants updated by the model); when it
returns images only, the labels of the edited images are taken to be the
input labels with the intervened values substituted. Those labels go with
the images into the next call.

Every cycle is recorded, so one call yields composition^1 and ^10.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from ctfjax.metrics.distances import embedding_l1, pixel_l1
from ctfjax.metrics.errors import MetricError, check_lengths

EditFn = Callable[..., object]
# perceptual_fn(a, b) -> [N] distances, e.g. LPIPS.
PairDistanceFn = Callable[[object, object], object]


def composition(edit_fn: EditFn, images, labels: Mapping[str, object],
                cycles: int = 10, *,
                embed_fn: Callable[[object], object] | None = None,
                perceptual_fn: PairDistanceFn | None = None,
                pixel_range: tuple[float, float] = (0.0, 255.0),
                clip: bool = True,
                factual_do: bool = False,
                pair_fns: Mapping[str, PairDistanceFn] | None = None
                ) -> dict[str, np.ndarray]:
  """Distances to the original after 1..`cycles` null interventions.

  Args:
    edit_fn: the model's edit, see the module docstring.
    images: factual images [N, ...] on `pixel_range`.
    labels: {parent: [N]} factual parent values of `images`.
    cycles: number of null interventions m (>= 1).
    embed_fn: optional `embed_fn(images) -> [N, D]`; adds "embedding_l1".
    perceptual_fn: optional `perceptual_fn(a, b) -> [N]` (e.g. LPIPS); adds
      "perceptual".
    pixel_range: (lo, hi) of the pixel values; see `pixel_l1`.
    clip: clip to `pixel_range` before the pixel distance; see `pixel_l1`.
    factual_do: the null intervention is do() with nothing set (abduct, skip
      the action: Melistas et al.'s protocol) when False; every parent set
      to its own factual value (the composition axiom read literally) when
      True.
    pair_fns: more named `fn(a, b) -> [N]` distances (e.g. {"vgg16_l1":
      ..., "lpips": ...}); each adds its name.

  Returns:
    {"l1": [cycles, N], and "embedding_l1" / "perceptual" when their
    functions are given}: row t holds each image's distance to the original
    after t + 1 edits. `cycle_summary` turns it into report numbers.
  """
  _check(images, labels, cycles)

  def step(x, lab):
    do = dict(lab) if factual_do else {}
    return _edit(edit_fn, x, lab, do)

  pairs = dict(pair_fns or {})
  if perceptual_fn is not None:
    pairs["perceptual"] = perceptual_fn
  return _cycle_distances(step, images, labels, cycles, embed_fn, pairs,
                          pixel_range, clip)


def reversibility(edit_fn: EditFn, images, labels: Mapping[str, object],
                  do: Mapping[str, object], cycles: int = 10, *,
                  embed_fn: Callable[[object], object] | None = None,
                  perceptual_fn: PairDistanceFn | None = None,
                  pixel_range: tuple[float, float] = (0.0, 255.0),
                  clip: bool = True) -> dict[str, np.ndarray]:
  """Distances to the original after 1..`cycles` rounds of do(pa*), do(pa).

  Each cycle edits with `do` and then edits the result back, setting the
  intervened parents to their factual values.

  Args:
    edit_fn: the model's edit, see the module docstring.
    images: factual images [N, ...] on `pixel_range`.
    labels: {parent: [N]} factual parent values of `images`.
    do: {parent: scalar or [N]} the forward intervention pa*.
    cycles: number of round trips m (>= 1).
    embed_fn: as in `composition`.
    perceptual_fn: as in `composition`.
    pixel_range: as in `composition`.
    clip: as in `composition`.

  Returns:
    As `composition`: {"l1": [cycles, N], ...}, row t after t + 1 round
    trips.
  """
  _check(images, labels, cycles)
  if not do:
    raise MetricError("reversibility needs a non-empty intervention")
  unknown = sorted(set(do) - set(labels))
  if unknown:
    raise MetricError(f"intervened parent(s) {', '.join(unknown)} have no "
                      f"labels; known: {', '.join(labels)}")
  back = {k: labels[k] for k in do}

  def step(x, lab):
    x, lab = _edit(edit_fn, x, lab, do)
    return _edit(edit_fn, x, lab, back)

  pairs = {} if perceptual_fn is None else {"perceptual": perceptual_fn}
  return _cycle_distances(step, images, labels, cycles, embed_fn, pairs,
                          pixel_range, clip)


def cycle_summary(distances: Mapping[str, np.ndarray],
                  at: Sequence[int] = (1, 10)) -> dict[str, float]:
  """Means over images at chosen cycle counts, named for report.json.

  Args:
    distances: the result of `composition` or `reversibility`.
    at: cycle counts m to report (1-based).

  Returns:
    {f"{name}_{m}": mean distance after m cycles}, e.g. {"l1_1": ...,
    "l1_10": ...}.
  """
  out = {}
  for name, d in distances.items():
    d = np.asarray(d)
    for m in at:
      if not 1 <= m <= d.shape[0]:
        raise MetricError(f"cycle {m} was not recorded; {name} has cycles "
                          f"1..{d.shape[0]}")
      out[f"{name}_{m}"] = float(np.mean(d[m - 1]))
  return out


def _check(images, labels, cycles):
  if int(cycles) < 1:
    raise MetricError(f"cycles must be >= 1, got {cycles}")
  check_lengths({"images": images, **{f"labels[{k!r}]": v
                                      for k, v in labels.items()}})


def _edit(edit_fn, images, labels, do):
  """One call of edit_fn; returns (images, labels of the edited images)."""
  n = jnp.shape(images)[0]
  out = edit_fn(images, labels, do)
  if isinstance(out, tuple):
    new_images, new_labels = out
    new_labels = {**labels, **new_labels}
  else:
    new_images = out
    new_labels = {**labels,
                  **{k: jnp.broadcast_to(jnp.asarray(v), (n,))
                     for k, v in do.items()}}
  if jnp.shape(new_images) != jnp.shape(images):
    raise MetricError(f"edit_fn returned images of shape "
                      f"{jnp.shape(new_images)} for inputs of shape "
                      f"{jnp.shape(images)}")
  return new_images, new_labels


def _cycle_distances(step, images, labels, cycles, embed_fn, pair_fns,
                     pixel_range, clip):
  names = ["l1"]
  if embed_fn is not None:
    names.append("embedding_l1")
    e0 = embed_fn(images)
  names += list(pair_fns)
  rows = {k: [] for k in names}
  x, lab = images, dict(labels)
  for _ in range(int(cycles)):
    x, lab = step(x, lab)
    rows["l1"].append(pixel_l1(images, x, pixel_range, clip))
    if embed_fn is not None:
      rows["embedding_l1"].append(embedding_l1(e0, embed_fn(x)))
    for name, fn in pair_fns.items():
      rows[name].append(jnp.reshape(fn(images, x), (-1,)))
  return {k: np.stack([np.asarray(r, np.float64) for r in v])
          for k, v in rows.items()}
