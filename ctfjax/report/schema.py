"""report.json: the schema, its validation, and reading / writing it.

A report is `{"models": [entry, ...]}` plus free extra keys
(docs/evaluation.md, "report.json"). Each entry must carry

    {"dataset": str, "model": str, "graph": str,
     "train": {"steps": int, "seconds": float},
     "effectiveness": {"do(C)": {"D": acc, "C": acc, "B": acc}, ...},
     "composition": {"l1_1": float, "l1_10": float},
     "ctf_consistency": [{"intervention": str, "query": str,
                          "estimate": float | null, "ci": [lo, hi],
                          "bounds": [lo, hi] | null, "truth": float | null,
                          "consistent": bool | null}, ...],
     "ground_truth_error": {"do(C)": float | null, ...}}

and may add keys freely; "reversibility" ({"per_intervention": {"do(C)":
{"l1_1", "l1_10", ...}}}) and "minimality" ({"metric": "CLD[...]",
"per_intervention": {"do(C)": {"cld", "p1", "p2", "n"}}}) are checked when
present, and so are the per-family sections of continuous features
("effectiveness_mae", "effectiveness_measured": {"do(X)": {var: mean
absolute error >= 0}}; "ground_truth_measured", "ground_truth_drawn":
{"do(X)": {var: error >= 0} | null}, null where a family has no ground
truth): effectiveness proper holds accuracies in [0, 1], errors in their
own units go to these. "usable" ({"ok": bool, "reasons": [str, ...]}:
whether the model passes its dataset's bars on training, `ok` true exactly
when `reasons` is empty) is checked when present; a report without it
(version 1) is still valid. Nulls mean "not available" and are explicit: an
estimate with no matching sample, bounds the LP cannot give
(`cc.BoundsError`), a truth on real data; "consistent" is null exactly when
the estimate or the bounds are. A row decided by the rule of
`metrics.consistency.decide` also carries "decision" (a key of
`DECISIONS`), which "consistent" must match, "n", "p_value" and
"detectable"; they are checked when present. NaN and infinity are never
written (JSON has no such values): `clean` turns them into null before
validation.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Mapping

import numpy as np

from ctfjax.errors import UserError
from ctfjax.metrics.consistency import DECISIONS
from ctfjax import files

# Bumped when a key listed in the module docstring is added or changes
# meaning; 2 added the entries' optional "usable".
VERSION = 2


class ReportError(UserError):
  """A report that does not follow the schema; names the offending key."""


def clean(obj: Any) -> Any:
  """A JSON-able copy: numpy scalars / arrays to Python, NaN / inf to None."""
  if isinstance(obj, Mapping):
    return {str(k): clean(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [clean(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return clean(obj.tolist())
  if isinstance(obj, (bool, np.bool_)):
    return bool(obj)
  if isinstance(obj, (int, np.integer)):
    return int(obj)
  if isinstance(obj, (float, np.floating)):
    obj = float(obj)
    return obj if math.isfinite(obj) else None
  return obj


def _fail(where: str, what: str, got: Any):
  text = repr(got)
  if len(text) > 60:
    text = text[:57] + "..."
  raise ReportError(f"{where}: expected {what}, got {text}")


def _number(x) -> bool:
  return (isinstance(x, (int, float)) and not isinstance(x, bool)
          and math.isfinite(x))


def _check_number(where, x, *, nullable=False, lo=None, hi=None):
  if x is None and nullable:
    return
  if not _number(x):
    _fail(where, "a finite number" + (" or null" if nullable else ""), x)
  if (lo is not None and x < lo) or (hi is not None and x > hi):
    _fail(where, f"a number in [{lo}, {hi}]", x)


def _check_dict(where, x):
  if not isinstance(x, dict):
    _fail(where, "an object", x)


def _check_str(where, x):
  if not isinstance(x, str):
    _fail(where, "a string", x)


def _check_interval(where, x, *, nullable=False):
  if x is None and nullable:
    return
  if (not isinstance(x, list) or len(x) != 2
      or not all(_number(v) for v in x)):
    _fail(where, "[lo, hi]" + (" or null" if nullable else ""), x)
  # Interval ends are probabilities here; solver rounding may pass 1 by 1e-9.
  if not -1e-6 <= x[0] <= x[1] + 1e-6 <= 1 + 2e-6:
    _fail(where, "0 <= lo <= hi <= 1", x)


def _check_row(where: str, row: Any):
  _check_dict(where, row)
  for key in ("intervention", "query"):
    _check_str(f"{where}.{key}", row.get(key))
  _check_number(f"{where}.estimate", row.get("estimate"), nullable=True,
                lo=0.0, hi=1.0)
  _check_interval(f"{where}.ci", row.get("ci"))
  _check_interval(f"{where}.bounds", row.get("bounds"), nullable=True)
  _check_number(f"{where}.truth", row.get("truth"), nullable=True)
  consistent = row.get("consistent", "missing")
  if consistent is not None and not isinstance(consistent, bool):
    _fail(f"{where}.consistent", "true, false or null", consistent)
  unknown = row.get("estimate") is None or row.get("bounds") is None
  if unknown != (consistent is None):
    _fail(f"{where}.consistent",
          "null exactly when the estimate or the bounds are", consistent)
  if "decision" in row:
    decision = row["decision"]
    if decision not in DECISIONS:
      _fail(f"{where}.decision", f"one of {', '.join(DECISIONS)}", decision)
    if DECISIONS[decision] is not consistent:
      _fail(f"{where}.consistent", f"{DECISIONS[decision]} (decision "
            f"{decision!r})", consistent)
  if "n" in row:
    n = row["n"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
      _fail(f"{where}.n", "an integer >= 0", n)
  for key in ("p_value", "detectable"):
    if key in row:
      _check_number(f"{where}.{key}", row[key], nullable=True, lo=0.0,
                    hi=1.0)


def validate_entry(entry: Any, where: str = "entry") -> None:
  """Raises `ReportError` naming the first key that breaks the schema."""
  _check_dict(where, entry)
  for key in ("dataset", "model", "graph"):
    _check_str(f"{where}.{key}", entry.get(key))
  train = entry.get("train")
  _check_dict(f"{where}.train", train)
  steps = train.get("steps")
  if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
    _fail(f"{where}.train.steps", "an integer >= 0", steps)
  _check_number(f"{where}.train.seconds", train.get("seconds"), lo=0.0)
  eff = entry.get("effectiveness")
  _check_dict(f"{where}.effectiveness", eff)
  for do, scores in eff.items():
    _check_dict(f"{where}.effectiveness[{do!r}]", scores)
    for var, acc in scores.items():
      _check_number(f"{where}.effectiveness[{do!r}].{var}", acc,
                    nullable=True, lo=0.0, hi=1.0)
  comp = entry.get("composition")
  _check_dict(f"{where}.composition", comp)
  for key in ("l1_1", "l1_10"):
    _check_number(f"{where}.composition.{key}", comp.get(key), lo=0.0)
  rows = entry.get("ctf_consistency")
  if not isinstance(rows, list):
    _fail(f"{where}.ctf_consistency", "a list", rows)
  for i, row in enumerate(rows):
    _check_row(f"{where}.ctf_consistency[{i}]", row)
  gt = entry.get("ground_truth_error")
  _check_dict(f"{where}.ground_truth_error", gt)
  for do, value in gt.items():
    _check_number(f"{where}.ground_truth_error[{do!r}]", value,
                  nullable=True, lo=0.0)
  # Optional sections: checked when present.
  _check_per_intervention(entry, where, "reversibility",
                          {"l1_1": None, "l1_10": None})
  for section in ERROR_SECTIONS:
    _check_errors(entry, where, section)
  # CLD = log(w1 e^P1 + w2 e^P2) with w1 + w2 = 1 lies in [0, 1] (up to
  # rounding: 0.8 e + 0.2 e exceeds e by an ulp).
  _check_per_intervention(entry, where, "minimality",
                          {"cld": 1.0 + 1e-9, "p1": 1.0, "p2": 1.0})
  _check_usable(entry, where)


def _check_usable(entry, where: str):
  """{"ok": bool, "reasons": [str, ...]}, ok exactly when no reason,
  when present."""
  if "usable" not in entry:
    return
  where = f"{where}.usable"
  usable = entry["usable"]
  _check_dict(where, usable)
  reasons = usable.get("reasons")
  if not isinstance(reasons, list):
    _fail(f"{where}.reasons", "a list", reasons)
  for i, reason in enumerate(reasons):
    _check_str(f"{where}.reasons[{i}]", reason)
  if usable.get("ok") is not (not reasons):
    _fail(f"{where}.ok", f"{not reasons} (true exactly when there is no "
          "reason)", usable.get("ok"))


# Optional per-family sections of errors in the features' own units
# (pixels, grey levels): {"do(X)": {var: number >= 0 or null} or null}.
ERROR_SECTIONS = ("effectiveness_mae", "effectiveness_measured",
                  "ground_truth_measured", "ground_truth_drawn")


def _check_errors(entry, where: str, section: str):
  """{"do(X)": {var: number >= 0 or null} or null}, when present."""
  if section not in entry:
    return
  where = f"{where}.{section}"
  _check_dict(where, entry[section])
  for do, scores in entry[section].items():
    if scores is None:
      continue
    _check_dict(f"{where}[{do!r}]", scores)
    for var, value in scores.items():
      _check_number(f"{where}[{do!r}].{var}", value, nullable=True, lo=0.0)


def _check_per_intervention(entry, where: str, section: str,
                            highs: Mapping[str, float | None]):
  """{"per_intervention": {"do(X)": {key: number >= 0 (<= its high)}}}."""
  if section not in entry:
    return
  where = f"{where}.{section}"
  _check_dict(where, entry[section])
  per = entry[section].get("per_intervention")
  _check_dict(f"{where}.per_intervention", per)
  for do, scores in per.items():
    at = f"{where}.per_intervention[{do!r}]"
    _check_dict(at, scores)
    for key, hi in highs.items():
      _check_number(f"{at}.{key}", scores.get(key), lo=0.0, hi=hi)


def validate(report: Any) -> None:
  """Raises `ReportError` naming the first key that breaks the schema.

  Args:
    report: a parsed report.json (after `clean`).
  """
  _check_dict("report", report)
  models = report.get("models")
  if not isinstance(models, list) or not models:
    _fail("report.models", "a non-empty list", models)
  for i, entry in enumerate(models):
    validate_entry(entry, f"report.models[{i}]")


def dumps(report: Mapping[str, Any]) -> str:
  """Cleans, validates and serialises a report (indented JSON)."""
  report = clean(report)
  validate(report)
  return json.dumps(report, indent=1, allow_nan=False) + "\n"


def write(report: Mapping[str, Any], path: str | os.PathLike) -> pathlib.Path:
  """Validates `report` and writes it to `path` atomically."""
  return files.write_text(path, dumps(report))


def read(path: str | os.PathLike) -> dict:
  """Reads and validates a report.json.

  Raises:
    ReportError: missing file, invalid JSON or a schema violation.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise ReportError(f"no report at {path}; run python -m launch.run or "
                      "python -m launch.evaluate first")
  try:
    report = json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise ReportError(f"{path} is not valid JSON: {e.msg} (line "
                      f"{e.lineno})") from None
  validate(report)
  return report
