"""Tables of a report: markdown (report.md), a console summary, and CSV.

One set of column definitions (`TABLES`) serves every output: report.md
puts a run's models side by side, the benchmark stacks (dataset, model) rows
from many runs in tables shaped like those of Melistas et al. (2024)
(composition, reversibility, effectiveness, realism, minimality) plus this
project's own (ctf-consistency, ground-truth error), and the CSV holds the
same cells in long form.
"""

from __future__ import annotations

import csv
import io
import os
import pathlib
from typing import Any, Callable, Mapping, Sequence

from ctfjax.metrics.consistency import ALPHA, POWER
from ctfjax import files
from ctfjax.report import verdict as verdicts

Entry = Mapping[str, Any]
Column = tuple[str, Callable[[Entry], Any]]

NONE = "—"
# Beside the name of a model whose entry fails its dataset's bars on
# training ("usable"), with a footnote saying which (`usability_notes`).
UNUSABLE = "†"


def fmt(value: Any, digits: int = 3) -> str:
  """A table cell: numbers to `digits` decimals, None as a dash."""
  if value is None:
    return NONE
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, float):
    return f"{value:.{digits}f}"
  return str(value)


def _get(entry: Entry, *path: str) -> Any:
  for key in path:
    if not isinstance(entry, Mapping) or key not in entry:
      return None
    entry = entry[key]
  return entry


def unusable(entry: Entry) -> bool:
  """Whether the entry's "usable" section says its model failed its
  dataset's bars (an entry without the section is not flagged)."""
  return _get(entry, "usable", "ok") is False


def _name(entry: Entry, mark: bool) -> Any:
  """The entry's model name, with `UNUSABLE` after it when `mark` and it
  failed its bars."""
  name = entry.get("model")
  return f"{name} {UNUSABLE}" if mark and unusable(entry) else name


def usability_notes(entries: Sequence[Entry],
                    with_dataset: bool = False) -> list[str]:
  """One footnote line per flagged model: what it failed.

  Args:
    entries: report entries.
    with_dataset: name each model with its dataset (entries of several).
  """
  return [f"{UNUSABLE} {e['dataset'] + ' ' if with_dataset else ''}"
          f"{e['model']}: training far from converged, do not read its "
          f"scores: {'; '.join(e['usable']['reasons'])}."
          for e in entries if unusable(e)]


def _ordered(items) -> list:
  return list(dict.fromkeys(items))


def interventions(entries: Sequence[Entry]) -> list[str]:
  """The "do(X)" keys of the entries' effectiveness, in first-seen order."""
  return _ordered(k for e in entries for k in e.get("effectiveness", {}))


def factors(entries: Sequence[Entry]) -> list[str]:
  """The factors scored under any intervention, in first-seen order."""
  return _ordered(v for e in entries for s in e.get("effectiveness", {})
                  .values() for v in s)


def ctf_counts(entry: Entry, descendants_only: bool = False
               ) -> tuple[int, int]:
  """(rows judged consistent, rows that could be judged), as the rows'
  "consistent" fields say (`metrics.decide`).

  Args:
    entry: a report entry.
    descendants_only: count only rows with non-degenerate bounds (the
      descendant rows; [1, 1] rows are preservation and effectiveness).
  """
  rows = [r for r in entry.get("ctf_consistency", [])
          if r.get("consistent") is not None]
  if descendants_only:
    rows = [r for r in rows if r["bounds"][0] < 1.0]
  return sum(bool(r["consistent"]) for r in rows), len(rows)


def ctf_decisions(entry: Entry, decision: str) -> int:
  """How many rows of an entry have decision `decision`, or whose decision
  names `decision` ("features", "images": the failed hypothesis)."""
  return sum(decision in (r.get("decision") or "")
             for r in entry.get("ctf_consistency", []))


def _ratio(counts: tuple[int, int]) -> str | None:
  k, n = counts
  return f"{k}/{n}" if n else None


def _mean(values) -> float | None:
  values = [v for v in values if v is not None]
  return sum(values) / len(values) if values else None


def _intervened(entry: Entry) -> float | None:
  """Mean accuracy of the intervened factor over the interventions."""
  eff = entry.get("effectiveness", {})
  return _mean(eff[do].get(do[3:-1]) for do in eff)


# Column definitions per table. Each is (header, entry -> cell value).


def _model_columns(entries):
  return [
      ("assumed diagram", lambda e: f"`{e['graph']}`"),
      ("train steps", lambda e: _get(e, "train", "steps")),
      ("train s", lambda e: _get(e, "train", "seconds")),
  ]


def _ctf_columns(entries):
  return [
      ("ctf-consistent rows", lambda e: _ratio(ctf_counts(e))),
      ("descendant rows", lambda e: _ratio(ctf_counts(e, True))),
      ("preservation/effect rows", lambda e: _ratio(
          tuple(a - b for a, b in zip(ctf_counts(e), ctf_counts(e, True))))),
      ("fail: features", lambda e: ctf_decisions(e, "features")),
      ("fail: images", lambda e: ctf_decisions(e, "images")),
      ("no data", lambda e: ctf_decisions(e, "no data")),
      ("mean |estimate - truth|", lambda e: _mean(
          abs(r["estimate"] - r["truth"]) for r in e["ctf_consistency"]
          if r["estimate"] is not None and r["truth"] is not None)),
  ]


def outside_bounds(row: Entry) -> float | None:
  """How far a ctf-consistency row's estimate lies outside its bounds (0
  inside; None without an estimate or bounds)."""
  if row.get("estimate") is None or row.get("bounds") is None:
    return None
  lo, hi = row["bounds"]
  return max(lo - row["estimate"], row["estimate"] - hi, 0.0)


def _judged(entry: Entry) -> list[Entry]:
  return [r for r in entry.get("ctf_consistency", [])
          if r.get("consistent") is not None]


def _by_diagram_columns(entries):
  # One line per model: which diagram it assumed and how badly its
  # ctf-consistency rows miss (configs/benchmark_wrong_diagrams.py).
  return [
      ("assumed diagram", lambda e: f"`{e['graph']}`"),
      ("inconsistent rows", lambda e: _ratio(
          (sum(not r["consistent"] for r in _judged(e)), len(_judged(e))))),
      ("inconsistent descendant rows", lambda e: _ratio(
          (lambda k, n: (n - k, n))(*ctf_counts(e, True)))),
      # Over the failed rows only: a consistent row's estimate from a few
      # images may lie outside its bounds without the test rejecting.
      ("max outside bounds, failed rows", lambda e: max(
          (outside_bounds(r) for r in _judged(e) if not r["consistent"]
           and outside_bounds(r) is not None), default=None)),
      ("mean |estimate - truth|", lambda e: _mean(
          abs(r["estimate"] - r["truth"]) for r in e["ctf_consistency"]
          if r["estimate"] is not None and r["truth"] is not None)),
  ]


def section_variables(entries: Sequence[Entry], section: str) -> list[str]:
  """The variables of a per-family section ({"do(X)": {var: value} or
  None}), in first-seen order."""
  return _ordered(v for e in entries for s in (e.get(section) or {})
                  .values() if isinstance(s, Mapping) for v in s)


def _family_columns(entries, section: str, label: str) -> list[Column]:
  """One column per (variable, family) of a per-family section."""
  return [(label.format(var=var, do=do), lambda e, do=do, var=var:
           _get(e, section, do, var))
          for var in section_variables(entries, section)
          for do in interventions(entries)]


def _effectiveness_columns(entries):
  # Melistas et al.'s Table 3 layout: the continuous features' MAE first,
  # then the categorical ones' accuracy; measured features (no predictor)
  # last.
  mae = _family_columns(entries, "effectiveness_mae", "{var} MAE: {do}")
  acc = _family_columns(entries, "effectiveness",
                        "{var} acc: {do}" if mae else "{var}: {do}")
  return mae + acc + _family_columns(entries, "effectiveness_measured",
                                     "{var} measured MAE: {do}")


def _composition_columns(entries):
  cols = [("l1 1 cycle", lambda e: _get(e, "composition", "l1_1")),
          ("l1 10 cycles", lambda e: _get(e, "composition", "l1_10"))]
  if any(_get(e, "composition", "embedding_l1_1") is not None
         for e in entries):
    cols += [("emb l1 1 cycle",
              lambda e: _get(e, "composition", "embedding_l1_1")),
             ("emb l1 10 cycles",
              lambda e: _get(e, "composition", "embedding_l1_10"))]
  return cols


def _reversibility_columns(entries):
  cols = []
  for do in _ordered(k for e in entries for k in
                     _get(e, "reversibility", "per_intervention") or {}):
    for key, head in (("l1_1", "l1 1"), ("l1_10", "l1 10")):
      cols.append((f"{head} {do}", lambda e, do=do, key=key:
                   _get(e, "reversibility", "per_intervention", do, key)))
  return cols


def _minimality_columns(entries):
  metric = next((_get(e, "minimality", "metric") for e in entries
                 if _get(e, "minimality", "metric")), "CLD")
  return [(f"{metric} {do}", lambda e, do=do:
           _get(e, "minimality", "per_intervention", do, "cld"))
          for do in interventions(entries)]


REALISM_SECTIONS = ("realism", "realism_latent")


def _realism_columns(entries):
  cols = []
  for section in REALISM_SECTIONS:
    metric = next((_get(e, section, "metric") for e in entries
                   if _get(e, section, "metric")), None)
    if metric is None:
      continue
    cols += [(f"{metric} {do}", lambda e, do=do, section=section:
              _get(e, section, "per_intervention", do))
             for do in interventions(entries)]
    cols.append((f"{metric} real test (floor)",
                 lambda e, section=section: _get(e, section, "real_test")))
  return cols


def _ground_truth_columns(entries):
  cols = []
  features = any(e.get("ground_truth_features") is not None
                 for e in entries)
  for do in interventions(entries):
    cols.append((f"L1 {do}", lambda e, do=do:
                 _get(e, "ground_truth_error", do)))
    if features:
      cols.append((f"features {do}", lambda e, do=do:
                   _get(e, "ground_truth_features", do, "all")))
  # Continuous features against the true counterfactual's (when present).
  return (cols + _family_columns(entries, "ground_truth_measured",
                                 "{var} measured err {do}")
          + _family_columns(entries, "ground_truth_drawn",
                            "{var} drawn err {do}"))


def _verdict_of(entry: Entry) -> Mapping[str, Any]:
  return entry.get("verdict") or verdicts.verdict(entry)


def _verdict_columns(entries):
  del entries
  def worst(e, check, key, pick):
    values = [c[key] for c in _verdict_of(e)["checks"][check].values()
              if isinstance(c, Mapping)]
    return pick(values) if values else None
  return [
      ("verdict", lambda e: "good" if _verdict_of(e)["ok"] else "not good"),
      ("rows failed", lambda e: (
          f"{_verdict_of(e)['checks']['ctf_consistency'].get('failed', 0)}/"
          f"{_verdict_of(e)['checks']['ctf_consistency'].get('judged', 0)}")),
      ("intervened seen (min)",
       lambda e: worst(e, "effectiveness", "value", min)),
      ("realism x truth (max)",
       lambda e: worst(e, "realism", "ratio", max)),
      ("why not", lambda e: "; ".join(_verdict_of(e)["reasons"]) or NONE),
  ]


def _summary_columns(entries):
  return [
      ("ctf-consistent", lambda e: _ratio(ctf_counts(e))),
      ("descendants", lambda e: _ratio(ctf_counts(e, True))),
      ("fail feat/img", lambda e: f"{ctf_decisions(e, 'features')}/"
                                  f"{ctf_decisions(e, 'images')}"),
      ("intervened acc", _intervened),
      ("comp l1 1/10", lambda e: (
          f"{fmt(_get(e, 'composition', 'l1_1'), 1)}/"
          f"{fmt(_get(e, 'composition', 'l1_10'), 1)}")),
      ("GT L1", lambda e: _mean((e.get("ground_truth_error") or {})
                                .values())),
      ("FD", lambda e: _mean((_get(e, "realism", "per_intervention") or {})
                             .values())),
      ("CLD", lambda e: _mean(
          v.get("cld") for v in (_get(e, "minimality", "per_intervention")
                                 or {}).values())),
  ]


# name -> (title, note, column factory).
TABLES: dict[str, tuple[str, str, Callable]] = {
    "verdict": (
        "Verdict",
        f"Good = every ctf-consistency row passes (preservation of "
        f"non-descendants included), the readers see the intervened value "
        f"in at least {verdicts.EFFECTIVENESS:g} x the share they see it in "
        f"the true counterfactuals, and the edits' Frechet distance to real "
        f"images is at most {verdicts.REALISM_RATIO:g} x the true "
        f"counterfactuals' in every family (the real test images' on real "
        f"data). Unit-level columns (ground-truth L1, feature agreement) "
        f"are not in it: a descendant's unit-level counterfactual is not "
        f"identifiable.",
        _verdict_columns),
    "models": ("Models", "", _model_columns),
    "ctf_consistency": (
        "Ctf-consistency",
        f"Rows of the section 6 protocol judged consistent, out of the rows "
        f"with data and bounds; descendant rows have non-degenerate bounds, "
        f"the rest are [1, 1]. A row fails on features when the features "
        f"the model drew for its edits put the probability outside the "
        f"bounds, on images when the readers agree with those features on "
        f"the edits less often than with the truth's on the true images; "
        f"exact tests, {ALPHA:.0%} family-wise error over the whole table "
        f"(weighted Holm). No data: no test image matches the row.",
        _ctf_columns),
    "ctf_by_diagram": (
        "Ctf-consistency by assumed diagram",
        "Per model: the diagram it assumed; its ctf-consistency rows judged "
        "inconsistent, of the rows with data and bounds (all, then the "
        "descendant rows alone); the largest distance of an estimate "
        "outside its bounds over the rows judged inconsistent (0: every "
        "failed row's estimate is inside, its test failed on images; — no "
        "row failed); and the mean |estimate - truth| over the rows with "
        "an estimate. Estimates are read from the edited images.",
        _by_diagram_columns),
    "effectiveness": (
        "Effectiveness",
        "Accuracy (categorical) or mean absolute error (continuous) of "
        "each feature read from the edited images by the dataset's "
        "readers, against the value the model drew for the edit: "
        "intervened, propagated or preserved.",
        _effectiveness_columns),
    "composition": (
        "Composition",
        "The null intervention applied 1 and 10 times: mean L1 to the "
        "original on 0-255 pixels, and L1 of embeddings.",
        _composition_columns),
    "reversibility": (
        "Reversibility",
        "Each intervention and its inverse, do(X = x') then do(X = x), "
        "applied 1 and 10 times: mean L1 to the original on 0-255 pixels.",
        _reversibility_columns),
    "minimality": (
        "Minimality",
        "Counterfactual Latent Divergence (Melistas et al. 2024, eq. 9; "
        "lower is better, range [0, 1]): log(0.8 e^P1 + 0.2 e^P2) with "
        "P1 = P(real images of the new value lie within the edit's distance "
        "of the factual) and P2 = P(real images of the old value lie at "
        "least that far), distances being KL between latent Gaussians of "
        "an unconditional VAE.",
        _minimality_columns),
    "realism": (
        "Realism",
        "Frechet distance of the edits to real training images on the "
        "named feature networks (not Inception: not comparable with "
        "published FIDs); the real test images give each floor. The edits "
        "of do(X) need not follow the observed distribution, so part of "
        "each distance can be the intervention's own shift, not a lack of "
        "realism.",
        _realism_columns),
    "ground_truth": (
        "Ground-truth error",
        "Mean L1 (0-255) between each edit and the true counterfactual "
        "image from the generator (same exogenous values), and the "
        "fraction of edits whose read features all match the true ones. "
        "Both are unit-level: the true image is one draw of a "
        "counterfactual that is not identifiable for descendants of the "
        "intervention, so a model that never changes a descendant can "
        "score closer to it than any consistent sampler. They show how "
        "close the edits come to this generator's own answer, not whether "
        "a model is consistent; judge that by the ctf-consistency rows and "
        "the verdict.",
        _ground_truth_columns),
    "summary": ("Summary", "", _summary_columns),
}


# Tables without a row for the true counterfactuals (they are not edits).
MODEL_ONLY = ("verdict", "models", "composition", "reversibility")


def table(entries: Sequence[Entry], name: str, *,
          with_dataset: bool = False, mark: bool = False
          ) -> tuple[list[str], list[list[Any]]]:
  """(header, rows of raw cell values) of one table over report entries.

  Args:
    entries: report entries (one per row).
    name: a key of `TABLES`.
    with_dataset: start each row with the entry's dataset.
    mark: put `UNUSABLE` after the name of a model that failed its bars.
  """
  columns = TABLES[name][2](entries)
  header = (["dataset"] if with_dataset else []) + ["model"] + [
      c[0] for c in columns]
  rows = []
  for e in entries:
    row = ([e.get("dataset")] if with_dataset else []) + [_name(e, mark)]
    rows.append(row + [get(e) for _, get in columns])
  return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   digits: int = 3) -> str:
  """A GitHub-markdown table; numbers right-aligned."""
  cells = [[fmt(v, digits).replace("|", "\\|") for v in r] for r in rows]
  numeric = [all(isinstance(r[i], (int, float)) or r[i] is None
                 for r in rows) for i in range(len(header))]
  lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
           "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in cells]
  return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
               digits: int = 3) -> str:
  """A fixed-width plain-text table (for a terminal)."""
  cells = [[fmt(v, digits) for v in r] for r in rows]
  widths = [max(len(h), *(len(r[i]) for r in cells))
            for i, h in enumerate(header)]
  line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
  return "\n".join([line(header), line(["-" * w for w in widths]),
                    *map(line, cells)])


def _consistency_cell(row: Mapping[str, Any] | None) -> str:
  if row is None or row.get("estimate") is None:
    return f"{NONE} (n=0)" if row is not None else NONE
  mark = {True: " ✓", False: " ✗", None: ""}[row.get("consistent")]
  decision = row.get("decision") or ""
  if decision.startswith("fail: "):
    mark += " " + decision[len("fail: "):]
  lo, hi = row["ci"]
  size = f" n={row['n']}" if "n" in row else ""
  if "detectable" in row:
    size += f" δ={fmt(row['detectable'], 2)}"
  return f"{row['estimate']:.3f} [{lo:.2f}, {hi:.2f}]{size}{mark}"


def consistency_rows(entries: Sequence[Entry]) -> tuple[list[str],
                                                        list[list[Any]]]:
  """Every ctf-consistency query with each model's estimate side by side."""
  queries = _ordered((r["intervention"], r["query"])
                     for e in entries for r in e["ctf_consistency"])
  by_model = [{(r["intervention"], r["query"]): r
               for r in e["ctf_consistency"]} for e in entries]
  reference = {}
  for e in entries:
    for r in e["ctf_consistency"]:
      reference.setdefault((r["intervention"], r["query"]), r)
  header = ["do", "query", "bounds", "truth",
            *(_name(e, True) for e in entries)]
  rows = []
  for key in queries:
    ref = reference[key]
    b = ref.get("bounds")
    rows.append([f"do({key[0]})", f"`{key[1]}`",
                 NONE if b is None else f"[{b[0]:.3f}, {b[1]:.3f}]",
                 ref.get("truth"),
                 *(_consistency_cell(m.get(key)) for m in by_model)])
  return header, rows


def _with_oracle(report: Mapping[str, Any]) -> list[Entry]:
  """The models, then the report's "oracle" entry (the true counterfactual
  images through the same readers) when it has one."""
  return list(report["models"]) + ([report["oracle"]]
                                   if report.get("oracle") else [])


def _note(name: str, notes: Mapping[str, str] | None) -> str:
  """Table `name`'s note: the dataset's wording (`notes`) or the generic."""
  return (notes or {}).get(name, TABLES[name][1])


def markdown(report: Mapping[str, Any],
             notes: Mapping[str, str] | None = None) -> str:
  """report.md: every table of a run's report, models side by side.

  Args:
    report: a validated report.
    notes: {table name: note} in the dataset's words
      (`DatasetEvaluator.table_notes`); other tables keep `TABLES`' notes.
  """
  verdicts.with_verdicts(report)
  entries = _with_oracle(report)
  ctf = any(e.get("ctf_consistency") for e in entries)
  datasets = _ordered(e["dataset"] for e in entries)
  out = [f"# Counterfactual image editing: {', '.join(datasets)}", ""]
  if report.get("graph"):
    out.append(f"True diagram: `{report['graph']}`.")
  for line in report.get("notes", []):
    out.append(f"{line}")
  out.append("")
  # Before any table: no headline number is read without its caveat.
  for line in usability_notes(report["models"]):
    out += [f"**{line}**", ""]
  for name in ("verdict", "models", "ctf_consistency", "effectiveness",
               "composition", "reversibility", "minimality", "realism",
               "ground_truth"):
    if name == "ctf_consistency" and not ctf:
      continue  # The dataset's evaluator scores no such rows.
    title, note = TABLES[name][0], _note(name, notes)
    out += [f"## {title}", ""]
    if note:
      out += [note, ""]
    rows = report["models"] if name in MODEL_ONLY else entries
    out += [markdown_table(*table(rows, name, mark=True)), ""]
  if not ctf:
    return "\n".join(out)
  out += ["## Ctf-consistency rows", "",
          "Per model: the estimate read from its edits [95% Wilson "
          "interval], n test images, δ the smallest violation of the bounds "
          f"the row detects with probability {POWER:.0%} (— none it can), "
          "and the decision: ✓ consistent, ✗ failed on the features the "
          "model drew (features) or on what the readers see in its edits "
          "against what they see in the true ones (images); n=0 no test "
          "image matches the evidence.", ""]
  out += [markdown_table(*consistency_rows(entries)), ""]
  return "\n".join(out)


def summary(report: Mapping[str, Any]) -> str:
  """A short plain-text summary of a run for the terminal: the verdict of
  each model first, then its headline numbers; a model that failed its
  dataset's bars is marked, with a footnote line saying why."""
  verdicts.with_verdicts(report)
  return "\n".join(["Verdict:", *(f"  {verdicts.line(e)}"
                                   for e in report["models"]), "",
                    text_table(*table(report["models"], "summary",
                                      mark=True)),
                    *usability_notes(report["models"])])


def long_rows(reports: Sequence[Mapping[str, Any]],
              names: Sequence[str]) -> list[dict[str, Any]]:
  """Every cell of the named tables as {dataset, model, table, column,
  value} rows (the benchmark CSV)."""
  entries = [e for r in reports for e in r["models"]]
  out = []
  for name in names:
    header, rows = table(entries, name, with_dataset=True)
    for row in rows:
      for col, value in zip(header[2:], row[2:]):
        out.append({"dataset": row[0], "model": row[1], "table": name,
                    "column": col, "value": value})
  return out


def write_csv(rows: Sequence[Mapping[str, Any]],
              path: str | os.PathLike) -> pathlib.Path:
  """Writes dict rows (keys of the first row as header) atomically."""
  buf = io.StringIO()
  fields = list(rows[0]) if rows else ["dataset", "model", "table", "column",
                                       "value"]
  writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: "" if v is None else v for k, v in row.items()})
  return files.write_text(path, buf.getvalue())


def benchmark_markdown(reports: Sequence[Mapping[str, Any]],
                       names: Sequence[str], title: str = "Benchmark",
                       notes: Mapping[str, str] | None = None,
                       intro: Sequence[str] = ()) -> str:
  """The benchmark's tables: one per metric, a row per (dataset, model);
  `notes` as in `markdown`; `intro`: markdown lines under the title."""
  for r in reports:
    verdicts.with_verdicts(r)
  entries = [e for r in reports for e in r["models"]]
  out = [f"# {title}", ""] + ([*intro, ""] if intro else [])
  # The verdict leads, unnumbered: the numbered tables keep Melistas et
  # al.'s order.
  head, note = TABLES["verdict"][0], _note("verdict", notes)
  out += [f"## {head}", "", note, "",
          markdown_table(*table(entries, "verdict", with_dataset=True,
                                mark=True)), ""]
  names = [n for n in names if n != "verdict"]
  for line in usability_notes(entries, with_dataset=True):
    out += [f"**{line}**", ""]
  for i, name in enumerate(names, 1):
    head, note = TABLES[name][0], _note(name, notes)
    out += [f"## Table {i}: {head}", ""]
    if note:
      out += [note, ""]
    out += [markdown_table(*table(entries, name, with_dataset=True,
                                  mark=True)), ""]
  return "\n".join(out)
