"""One verdict per model: consistent AND effective AND realistic.

A model whose every ctf-consistency row passes can still be a bad editor:
one that ignores do(D) in half its edits passes the rows its drawn features
decide, and images drawn to fool a label reader (the HVAE-ANCM's blobs after
counterfactual fine-tuning against its frozen reader) are read as the
intended digit by readers of the same kind. So the verdict rests on three
distribution-level checks, none of them on readers alone:

* ctf-consistency: no row of the table fails (`metrics.consistency`), and
  at least one row was judged. Preservation of non-descendants is part of
  it (their rows have bounds [1, 1]).
* effectiveness: in every family do(X) of a categorical X (the
  "effectiveness" section; a continuous X's error is not judged), the
  readers see the intervened value in at least `EFFECTIVENESS` times the
  share in which they see it in the generator's true counterfactuals
  (their own floor; 1 on real data, which has none).
* realism: in every family and on each embedding the report measures (the
  readers' and an unconditional VAE's that no model is trained against),
  the Frechet distance of the edits to real images is at most
  `REALISM_RATIO` times that of the true counterfactuals of the same
  family (on real data: of the real test images). A perfect editor scores
  1x; blobs that fool a reader do not look like data.

Unit-level comparisons with the true counterfactual (pixel L1, per-image
feature agreement) are not in the verdict: the unit-level counterfactual
of a descendant is not identifiable, and a model that never changes a
descendant can score closer to the one true image than any consistent
sampler (docs/evaluation.md).

The verdict is computed from the report's scores whenever a report is
rendered, so the bars can change without re-evaluating a model.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

# Effectiveness bar: a share of the truth's own (reader-limited) score.
EFFECTIVENESS = 0.9
# Realism bar: the edits' FD as a multiple of the true counterfactuals'.
# A perfect editor scores 1x. Set between the quick start's VAE-ANCM (at
# most 4.2x, on the digit CNN's embedding) and the HVAE-ANCM's blobs after
# counterfactual fine-tuning (11x there); docs/evaluation.md has the
# measured ratios.
REALISM_RATIO = 6.0
# The report sections judged: the readers' embedding and the unconditional
# VAE's, which no model is trained against.
REALISM_SECTIONS = ("realism", "realism_latent")

Entry = Mapping[str, Any]


def _consistency(entry: Entry) -> tuple[dict[str, Any], list[str]]:
  rows = entry.get("ctf_consistency") or []
  judged = [r for r in rows if r.get("consistent") is not None]
  failed = [r for r in judged if r["consistent"] is False]
  check = {"judged": len(judged), "failed": len(failed)}
  if not judged:
    return check, ["ctf-consistency: no row could be judged"]
  if failed:
    return check, [f"ctf-consistency: {len(failed)} of {len(judged)} rows "
                   "fail"]
  return check, []


def _effectiveness(entry: Entry, oracle: Entry | None
                   ) -> tuple[dict[str, Any], list[str]]:
  scores = entry.get("effectiveness") or {}
  truth = (oracle or {}).get("effectiveness") or {}
  check, reasons = {}, []
  for family, cells in scores.items():
    x = family[len("do("):-1]
    value = (cells or {}).get(x)
    if value is None or not isinstance(value, (int, float)):
      continue
    ref = (truth.get(family) or {}).get(x)
    ref = 1.0 if ref is None else float(ref)
    bar = EFFECTIVENESS * ref
    check[family] = {"value": float(value), "bar": bar}
    if value < bar:
      whose = ("the true counterfactuals'" if truth.get(family)
               else "a perfect reading's")
      reasons.append(f"effectiveness: the readers see {x} set in "
                     f"{value:.3f} of the do({x}) edits < {bar:.3f} "
                     f"({EFFECTIVENESS:g} x {whose} {ref:.3f})")
  if not check:
    reasons.append("effectiveness not measured")
  return check, reasons


def _realism(entry: Entry, oracle: Entry | None
             ) -> tuple[dict[str, Any], list[str]]:
  check, reasons = {}, []
  for key in REALISM_SECTIONS:
    section = entry.get(key) or {}
    truth = ((oracle or {}).get(key) or {}).get("per_intervention") or {}
    floor = section.get("real_test")
    metric = section.get("metric", "FD")
    for family, value in (section.get("per_intervention") or {}).items():
      ref = truth.get(family, floor)
      if value is None or ref is None or not ref > 0 or not math.isfinite(
          value):
        continue
      ratio = float(value) / float(ref)
      check[f"{metric} {family}"] = {"value": float(value),
                                     "reference": float(ref),
                                     "ratio": ratio}
      if ratio > REALISM_RATIO:
        whose = ("the true counterfactuals'" if family in truth
                 else "the real test images'")
        reasons.append(f"realism: {metric} of {family} {value:.3g} is "
                       f"{ratio:.1f}x {whose} {ref:.3g} (bar "
                       f"{REALISM_RATIO:g}x)")
  if not check:
    reasons.append("realism not measured")
  return check, reasons


def verdict(entry: Entry, oracle: Entry | None = None) -> dict[str, Any]:
  """A model's verdict from its report entry.

  Args:
    entry: the model's report entry.
    oracle: the report's entry of the true counterfactuals, or None (real
      data).

  Returns:
    {"ok": bool, "reasons": [one line per failed check], "checks":
    {"ctf_consistency", "effectiveness", "realism": the numbers judged}};
    a model that failed its dataset's usability bars ("usable") fails too.
  """
  checks, reasons = {}, []
  for name, (check, why) in (
      ("ctf_consistency", _consistency(entry)),
      ("effectiveness", _effectiveness(entry, oracle)),
      ("realism", _realism(entry, oracle))):
    checks[name] = check
    reasons += why
  usable = entry.get("usable") or {}
  if usable.get("ok") is False:
    reasons += [f"not usable: {r}" for r in usable.get("reasons", [])]
  return {"ok": not reasons, "reasons": reasons, "checks": checks}


def with_verdicts(report: Mapping[str, Any]) -> Mapping[str, Any]:
  """Sets each model entry's "verdict" from its scores (in place)."""
  for entry in report.get("models", []):
    entry["verdict"] = verdict(entry, report.get("oracle"))
  return report


def line(entry: Entry) -> str:
  """The verdict as one line: 'NAME: good' or 'NAME: not good - reasons'."""
  v = entry.get("verdict") or verdict(entry)
  name = entry.get("model", "?")
  if v["ok"]:
    return (f"{name}: good (consistent, effective and realistic by the "
            "report's bars)")
  return f"{name}: not good - {'; '.join(v['reasons'])}"
