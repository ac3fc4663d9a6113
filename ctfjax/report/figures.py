"""Figures of a run: edits.png (image grid) and bounds.png (ctf-consistency).

Both are drawn with matplotlib's Agg backend (no display needed) and saved
atomically. `edits_figure` takes plain arrays, `bounds_figure` a report, so
either can be redrawn from saved results without a model.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import textwrap
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # Headless: runs on CI and over ssh.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ctfjax.metrics.consistency import ALPHA, PairQuery  # noqa: E402
from ctfjax.metrics.consistency import wilson_interval  # noqa: E402
from ctfjax import files  # noqa: E402

# Model colours (colour-blind safe, Okabe-Ito); cycled past eight models.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00",
           "#56B4E9", "#F0E442", "#000000")
DPI = 100
# bounds.png: longer panels are split in parts of at most this many rows.
MAX_PANEL_ROWS = 24


@dataclasses.dataclass(frozen=True)
class EditBlock:
  """One titled block of columns in edits.png.

  Attributes:
    title: e.g. the model's name and assumed diagram.
    images: uint8 [R, K, H, W, C]: R test images, K columns.
    captions: [R][K] short text under each image (e.g. its read features).
    columns: K column titles.
  """

  title: str
  images: np.ndarray
  captions: Sequence[Sequence[str]]
  columns: Sequence[str]


def _save(fig, path) -> pathlib.Path:
  def writer(tmp):
    fig.savefig(tmp, format="png", dpi=DPI)
  try:
    return files.write_with(path, writer)
  finally:
    plt.close(fig)


def edits_figure(blocks: Sequence[EditBlock], path: str | os.PathLike,
                 title: str = "") -> pathlib.Path:
  """Writes the edit grid: blocks side by side, rows = the same test images.

  Args:
    blocks: e.g. [factual], [true counterfactuals], then one per model; all
      with the same number of rows R.
    path: output PNG.
    title: figure title.

  Returns:
    The path written.
  """
  rows = {b.images.shape[0] for b in blocks}
  if len(rows) != 1:
    raise ValueError(f"blocks have different numbers of rows {sorted(rows)}")
  (r,) = rows
  # Layout in inches, placed by hand so every block's rows line up.
  cell, caption, col_gap, row_gap, block_gap = 1.0, 0.22, 0.08, 0.06, 0.35
  widths = [b.images.shape[1] * (cell + col_gap) - col_gap for b in blocks]
  fig_w = sum(widths) + block_gap * (len(blocks) - 1) + 0.3
  # A title wider than a narrow grid wraps (about 0.085 in per character
  # at 11 pt); each extra line takes 0.2 in of head room.
  width = max(20, int(fig_w / 0.085))
  if len(title) > width:
    title = "\n".join(textwrap.wrap(title, width))
  extra = 0.2 * title.count("\n")
  head = 0.3 + (0.45 + extra if title else 0.1)  # column (+ figure) titles
  block_head = 0.42  # block titles (two lines)
  fig_h = head + block_head + r * (cell + caption + row_gap) + 0.1
  fig = plt.figure(figsize=(fig_w, fig_h))
  if title:
    fig.text(0.5, 1 - 0.2 / fig_h, title, ha="center", va="top", fontsize=11)
  x0 = 0.15
  for block, width in zip(blocks, widths):
    top = fig_h - head
    fig.text((x0 + width / 2) / fig_w, (top + block_head - 0.05) / fig_h,
             block.title, ha="center", va="top", fontsize=9,
             fontweight="bold")
    top -= block_head
    for i in range(r):
      y = top - (i + 1) * cell - i * (caption + row_gap)
      for j in range(block.images.shape[1]):
        x = x0 + j * (cell + col_gap)
        ax = fig.add_axes((x / fig_w, y / fig_h, cell / fig_w, cell / fig_h))
        img = block.images[i, j]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img,
                  cmap="gray" if img.shape[-1] == 1 else None,
                  interpolation="nearest", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(block.captions[i][j], fontsize=7.5, labelpad=2)
        if i == 0:
          ax.set_title(block.columns[j], fontsize=8, pad=3)
    x0 += width + block_gap
  return _save(fig, path)


# bounds.png -------------------------------------------------------------------


@dataclasses.dataclass
class _Row:
  """One line of bounds.png: a query, its exact side, and each series'
  (estimate, 95% interval, consistent as `metrics.decide` judged it)."""

  label: str
  bounds: tuple[float, float] | None
  truth: float | None
  per_model: list[tuple[float | None, tuple[float, float], bool | None]]


def _degenerate(row: Mapping[str, Any]) -> bool:
  b = row.get("bounds")
  return b is not None and b[0] >= 1.0 - 1e-9


def _vacuous(row: Mapping[str, Any]) -> bool:
  """Bounds [0, 1]: no estimate can violate them, so the row is not drawn."""
  b = row.get("bounds")
  return b is not None and b[0] <= 1e-9 and b[1] >= 1.0 - 1e-9


def _pooled_label(query: str) -> str:
  """The label of a [1, 1] row pooled over the intervened values."""
  q = PairQuery.parse(query)
  ((x, _),) = q.world
  ((w, value),) = q.outcome
  if value is None:
    return f"do({x}): P({w}' = {w}), preserved"
  return f"do({x}): P({x}' = {x.lower()}'), intervened value"


def _pooled_verdict(verdicts: Sequence[bool | None]) -> bool | None:
  """False if any pooled row failed, None if none was judged, else True."""
  judged = [v for v in verdicts if v is not None]
  return all(judged) if judged else None


def _panels(series: Sequence[Mapping[str, Any]]
            ) -> list[tuple[str, list[_Row]]]:
  """Rows to draw, grouped into titled panels.

  [1, 1] rows (preservation, effectiveness) are pooled over the intervened
  values: their bounds and truth are 1 for every value, so the pooled
  proportion has the same bounds. Descendant rows are drawn one by one,
  except those with bounds [0, 1].
  """
  queries = list(dict.fromkeys((r["intervention"], r["query"])
                               for e in series for r in e["ctf_consistency"]))
  lookup = [{(r["intervention"], r["query"]): r for r in e["ctf_consistency"]}
            for e in series]
  pooled: dict[str, list] = {}  # label -> per series [k, n, verdicts]
  panels: dict[str, list[_Row]] = {}
  for key in queries:
    ref = next(m[key] for m in lookup if key in m)
    if _degenerate(ref):
      label = _pooled_label(key[1])
      counts = pooled.setdefault(label, [[0, 0, []] for _ in series])
      for c, m in zip(counts, lookup):
        if key in m:
          c[0] += m[key].get("successes", 0)
          c[1] += m[key].get("n", 0)
          c[2].append(m[key]["consistent"])
      continue
    if _vacuous(ref):
      continue
    family = f"do({key[0].split('=')[0]})"
    panels.setdefault(f"{family}: descendants", []).append(_Row(
        key[1], None if ref.get("bounds") is None else tuple(ref["bounds"]),
        ref.get("truth"),
        [(m[key]["estimate"], tuple(m[key]["ci"]), m[key]["consistent"])
         if key in m else (None, (0.0, 1.0), None) for m in lookup]))
  summary = []
  for label, counts in pooled.items():
    # The pooled proportion is drawn with its interval; its verdict is the
    # rows' own (metrics.decide): failed if any row failed.
    per_model = [(k / n if n else None, wilson_interval(k, n),
                  _pooled_verdict(verdicts)) for k, n, verdicts in counts]
    summary.append(_Row(label, (1.0, 1.0), 1.0, per_model))
  out = []
  if summary:
    out.append(("Intervened factor & non-descendants: [1, 1]", summary))
  # Small families first: their rows are the easiest to read.
  for title, rows in sorted(panels.items(), key=lambda p: len(p[1])):
    # Long panels are cut so the two columns of the figure fill evenly.
    parts = -(-len(rows) // MAX_PANEL_ROWS)
    size = -(-len(rows) // parts)
    for p in range(parts):
      suffix = f" ({p + 1}/{parts})" if parts > 1 else ""
      out.append((title + suffix, rows[p * size:(p + 1) * size]))
  return out


def _draw_panel(ax, title: str, rows: list[_Row], colours: Sequence[str],
                annotate: bool = False):
  """Draws rows top to bottom; `annotate` prints each estimate at the right
  (the pooled [1, 1] rows crowd at 1)."""
  n = len(colours)
  band = 0.84  # height of a row's bounds band, in row units
  for i, row in enumerate(rows):
    y = -i
    if i % 2:
      ax.axhspan(y - 0.5, y + 0.5, color="0.97", zorder=-2, lw=0)
    if row.bounds is not None:
      lo, hi = row.bounds
      lo = min(lo, hi - 0.008)  # a point bound ([1, 1]) stays visible
      ax.add_patch(plt.Rectangle((lo, y - band / 2), hi - lo, band,
                                 color="0.80", zorder=0, lw=0))
    else:
      ax.text(1.015, y, "no bounds", fontsize=6, va="center", color="0.4",
              transform=ax.get_yaxis_transform())
    for j, ((est, ci, ok), colour) in enumerate(zip(row.per_model, colours)):
      off = ((n - 1) / 2 - j) * band / n  # first series on top
      ax.plot(ci, [y + off, y + off], color=colour, lw=1.5, zorder=2,
              solid_capstyle="butt")
      if est is None:
        continue
      miss = ok is False
      ax.plot([est], [y + off], ls="none", zorder=3,
              marker="X" if miss else "o", ms=6.5 if miss else 4,
              mfc="white" if miss else colour, mec=colour, mew=1.3)
      if annotate:
        ax.text(1.02, y + off, f"{est:.3f}", color=colour, fontsize=6,
                va="center", transform=ax.get_yaxis_transform())
    if row.truth is not None:
      ax.plot([row.truth], [y], marker="D", ms=4.5, color="black", zorder=4,
              ls="none")
  ax.set_yticks([-i for i in range(len(rows))])
  ax.set_yticklabels([r.label for r in rows], fontsize=7.5)
  ax.set_ylim(-len(rows) + 0.5, 0.5)
  ax.set_xlim(-0.02, 1.02)
  ax.set_xticks(np.linspace(0, 1, 6))
  ax.tick_params(axis="x", labelsize=7.5)
  ax.tick_params(axis="y", length=0)
  ax.grid(axis="x", color="0.88", lw=0.6, zorder=-1)
  ax.set_title(title, fontsize=9, loc="left", fontweight="bold")


ORACLE_LABEL = "true counterfactual images (reader check)"


def bounds_figure(report: Mapping[str, Any], path: str | os.PathLike,
                  title: str = "") -> pathlib.Path:
  """Writes bounds.png: estimates with 95% intervals against exact bounds.

  Per query: the exact optimal bounds (grey band), the truth of the data's
  generator (black diamond), and per model the estimate read from its
  edits (dot; a hollow X when the row fails the table's decision rule,
  `metrics.decide`) with its Wilson interval. A report's "oracle" entry
  (the generator's own counterfactual images through the same readers) is
  drawn as a grey series. Rows with
  bounds [0, 1] are left out (nothing to violate); report.md lists them.

  Args:
    report: a report (see `ctfjax.report.schema`).
    path: output PNG.
    title: figure title.

  Returns:
    The path written.
  """
  series = list(report["models"])
  labels = [e["model"] for e in series]
  colours = [COLOURS[j % len(COLOURS)] for j in range(len(series))]
  if report.get("oracle"):
    series.append(report["oracle"])
    labels.append(ORACLE_LABEL)
    colours.append("0.55")
  panels = _panels(series)
  if not panels:
    raise ValueError("the report has no ctf-consistency rows to draw")
  # Two columns, filled greedily so their heights stay close.
  columns: list[list] = [[], []]
  load = [0.0, 0.0]
  row_h, panel_extra = 0.08 * (len(series) + 1.5), 0.75  # inches
  for p in sorted(panels, key=lambda p: -len(p[1])):
    c = int(load[1] < load[0])
    columns[c].append(p)
    load[c] += len(p[1]) * row_h + panel_extra
  columns = [c for c in columns if c]
  order = {id(p): i for i, p in enumerate(panels)}
  for c in columns:
    c.sort(key=lambda p: order[id(p)])
  label_w, plot_w, gap = 2.5, 4.4, 0.7  # inches
  head = (0.45 if title else 0.1) + 0.3 * (1 + (len(labels) + 3) // 4)
  fig_w = len(columns) * (label_w + plot_w) + (len(columns) - 1) * gap + 0.5
  fig_h = head + max(load) + 0.1
  fig = plt.figure(figsize=(fig_w, fig_h))
  for c, col in enumerate(columns):
    left = c * (label_w + plot_w + gap) + label_w
    top = fig_h - head
    for ptitle, rows in col:
      h = len(rows) * row_h
      top -= 0.3  # panel title
      ax = fig.add_axes((left / fig_w, (top - h) / fig_h, plot_w / fig_w,
                         h / fig_h))
      _draw_panel(ax, ptitle, rows, colours,
                  annotate=all(r.bounds == (1.0, 1.0) for r in rows))
      top -= h + panel_extra - 0.3
  handles = [plt.Line2D([], [], color=col, marker="o", lw=1.5, ms=4,
                        label=lab) for lab, col in zip(labels, colours)]
  handles += [
      plt.Rectangle((0, 0), 1, 1, color="0.80", label="exact optimal bounds"),
      plt.Line2D([], [], color="black", marker="D", ms=4.5, ls="none",
                 label="truth (data generator)"),
      plt.Line2D([], [], color="0.3", marker="X", mfc="white", ms=6.5,
                 ls="none", label=f"row fails (Holm, {ALPHA:.0%} family-wise)")]
  if title:
    fig.text(0.5, 1 - 0.15 / fig_h, title, ha="center", va="top",
             fontsize=11)
  fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=8,
             frameon=False,
             bbox_to_anchor=(0.5, 1 - (0.45 if title else 0.1) / fig_h))
  return _save(fig, path)
