"""Sample grids grouped by factor values, like the paper's Figure 6.

One panel per combination of the grouping factors (for Colored MNIST: C x B,
"Green/Without Bars (C = 0, B = 0)" ...), the panel's images sorted by another
factor (the digit). Samples are drawn at random from the split, so the panel
sizes show how often each combination occurs.
"""

from __future__ import annotations

import itertools
import os
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ctfjax import data, files
from ctfjax.data.errors import DataError
from ctfjax.data.pipeline import num_examples, take

# Layout in inches.
_CELL = 0.42  # one image plus its gap
_GAP_PX = 2  # white pixels between images in a panel
_PANEL_SEP = 0.45
_TITLE_H = 0.6
_HEADER_H = 0.55
_MARGIN = 0.25
_MAX_PANELS_PER_ROW = 4
_DPI = 200


def _factors(ds: Mapping[str, Any]) -> list[str]:
  """Top-level 1-D integer arrays: the discrete factors."""
  return [k for k, v in ds.items() if k != "image" and
          isinstance(v, np.ndarray) and v.ndim == 1 and
          np.issubdtype(v.dtype, np.integer)]


def _auto_group_by(ds: Mapping[str, Any]) -> tuple[str, ...]:
  # Binary-ish factors make readable panels; a 10-valued digit does not.
  return tuple(k for k in _factors(ds) if len(np.unique(ds[k])) <= 4)[:3]


def _as_rgb(images: np.ndarray) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  if images.dtype != np.uint8:
    images = np.clip(np.nan_to_num(images), 0, 255).astype(np.uint8)
  return images


def mosaic(images: np.ndarray, ncols: int, gap: int = _GAP_PX) -> np.ndarray:
  """Tiles [n, H, W, 3] images row-major on a white canvas, `gap` px apart."""
  n, h, w, _ = images.shape
  rows = max(1, -(-n // ncols))
  canvas = np.full((rows * (h + gap) - gap, ncols * (w + gap) - gap, 3), 255,
                   np.uint8)
  for i, img in enumerate(images):
    r, c = divmod(i, ncols)
    canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = (
        img)
  return canvas


def _panel_title(keys: Sequence[str], values: Sequence[int],
                 value_names: Mapping[str, Sequence[str]],
                 sort_by: str | None) -> str:
  if not keys:
    return "all samples" + (f"\n(sorted by {sort_by})" if sort_by else "")
  names = [value_names[k][v] for k, v in zip(keys, values)
           if k in value_names and 0 <= v < len(value_names[k])]
  spec = ", ".join(f"{k} = {v}" for k, v in zip(keys, values))
  return ("/".join(names) + "\n" if names else "") + f"({spec})"


def figure(ds: Mapping[str, Any], *, group_by: Sequence[str] | None = None,
           sort_by: str | None = None,
           value_names: Mapping[str, Sequence[str]] | None = None,
           title: str = "", ncols: int | None = None) -> Figure:
  """A Figure-6-style grid of every sample of `ds`, grouped by factors.

  Args:
    ds: {"image": [N, H, W, C], factor: int [N], ...}.
    group_by: factors whose value combinations make the panels; None picks
      the integer factors with at most 4 values.
    sort_by: factor ordering the images inside a panel; None = the first
      other integer factor.
    value_names: factor -> names of its values, for panel titles.
    title: figure title.
    ncols: images per panel row; default about sqrt of the largest panel.

  Returns:
    A matplotlib Figure (not attached to pyplot).
  """
  value_names = dict(value_names or {})
  factors = _factors(ds)
  group_by = tuple(_auto_group_by(ds) if group_by is None else group_by)
  for k in group_by:
    if k not in factors:
      raise DataError(f"cannot group by {k!r}; the integer factors are "
                      f"{', '.join(factors) or 'none'}")
  if sort_by is None:
    sort_by = next((k for k in factors if k not in group_by), None)
  images = _as_rgb(ds["image"])
  # At least {0, 1}: an absent combination still gets its (empty) panel.
  domains = [range(max(2, int(ds[k].max()) + 1)) for k in group_by]
  groups = []
  for values in itertools.product(*domains):
    mask = np.ones(len(images), bool)
    for k, v in zip(group_by, values):
      mask &= ds[k] == v
    idx = np.flatnonzero(mask)
    if sort_by is not None:
      idx = idx[np.argsort(ds[sort_by][idx], kind="stable")]
    groups.append((values, images[idx]))
  largest = max(len(g) for _, g in groups)
  ncols = ncols or max(6, int(np.ceil(np.sqrt(largest))))
  per_row = min(_MAX_PANELS_PER_ROW, len(groups))
  panel_rows = [groups[i:i + per_row] for i in range(0, len(groups), per_row)]
  panel_w = ncols * _CELL
  content_w = per_row * panel_w + (per_row - 1) * _PANEL_SEP
  # Wide enough for the title (about 0.11 inch per character at 13 pt);
  # the panels are centred.
  width = 2 * _MARGIN + max(content_w, 0.11 * len(title))
  x0 = (width - content_w) / 2
  heights = [_TITLE_H + max(1, -(-max(len(g) for _, g in row) // ncols)) *
             _CELL for row in panel_rows]
  height = _HEADER_H + sum(heights) + _PANEL_SEP * (len(heights) - 1) + (
      _MARGIN)
  fig = Figure(figsize=(width, height), dpi=_DPI)
  FigureCanvasAgg(fig)
  fig.text(0.5, 1 - 0.5 * _HEADER_H / height, title, ha="center",
           va="center", fontsize=13)
  top = height - _HEADER_H
  for row, row_h in zip(panel_rows, heights):
    for j, (values, imgs) in enumerate(row):
      left = x0 + j * (panel_w + _PANEL_SEP)
      rows = max(1, -(-len(imgs) // ncols))
      bottom = top - _TITLE_H - rows * _CELL
      ax = fig.add_axes((left / width, bottom / height, panel_w / width,
                         rows * _CELL / height))
      ax.set_axis_off()
      if len(imgs):
        ax.imshow(mosaic(imgs, ncols), interpolation="nearest")
      else:
        ax.text(0.5, 0.5, "(no samples)", ha="center", va="center",
                fontsize=10, color="0.4", transform=ax.transAxes)
      name = _panel_title(group_by, values, value_names, sort_by)
      fig.text((left + panel_w / 2) / width, (top - 0.05) / height,
               f"{name}\n{len(imgs)} sample{'s' * (len(imgs) != 1)}",
               ha="center", va="top", fontsize=10, linespacing=1.3)
      if j:
        x = (left - _PANEL_SEP / 2) / width
        fig.add_artist(Line2D([x, x], [(top - row_h) / height, top / height],
                              linestyle=(0, (4, 4)), color="0.6",
                              linewidth=1.2))
    top -= row_h + _PANEL_SEP
  return fig


def save_figure(fig: Figure, out: str | os.PathLike) -> pathlib.Path:
  """Writes `fig` as PNG atomically (temporary file, then rename)."""
  return files.write_with(
      pathlib.Path(out).expanduser(),
      lambda tmp: fig.savefig(tmp, format="png", facecolor="white"))


def write_grid(name: str, out: str | os.PathLike, *, num: int = 64,
               split: str = "train", seed: int = 0, source: str | None = None,
               data_dir: str | None = None) -> pathlib.Path:
  """Writes a PNG grid of `num` random samples of a dataset's split.

  Args:
    name: dataset name (`ctfjax.data.NAMES`).
    out: PNG path; parent directories are created.
    num: number of samples shown (all of them if the split is smaller).
    split, source, data_dir: as in `ctfjax.data.load`.
    seed: generation seed of the dataset and of the sample choice.

  Returns:
    The written path.
  """
  if isinstance(num, bool) or not isinstance(num, int) or num < 1:
    raise DataError(f"num must be a positive integer, got {num!r}")
  files.writable_file(out, "output")
  if pathlib.Path(out).suffix.lower() != ".png":
    raise DataError(f"output {str(out)!r} must be a .png file")
  entry = data.resolve(name, seed=seed, source=source)
  info = entry.display()
  ds = entry.load(split, data_dir=data_dir)
  n = num_examples(ds)
  pick = np.sort(np.random.default_rng(seed).choice(n, min(num, n),
                                                    replace=False))
  shown = take({k: v for k, v in ds.items() if k != "exogenous"}, pick)
  graph = f": {info['graph']}" if info["graph"] else ""
  title = f"{name}{graph}   ({len(pick)} random {split} samples)"
  fig = figure(shown, group_by=info["group_by"], sort_by=info["sort_by"],
               value_names=info["value_names"], title=title)
  return save_figure(fig, out)
