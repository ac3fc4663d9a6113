"""The per-model verdict: consistent AND effective AND realistic."""

import json
import pathlib

from pytest import approx

from benchmarks import grid_verdicts
from ctfjax.report import tables
from ctfjax.report import verdict

RESULTS = pathlib.Path(__file__).parents[1] / "benchmarks" / "results"
FAMILIES = ("do(D)", "do(C)", "do(B)")


def entry(model="m", effect=1.0, fd=40.0, floor=32.0, rows=74, failed=0):
  """A report entry with every family's intervened accuracy `effect` and
  FD `fd` (a scalar or {family: value}) against the real-test `floor`."""
  fd = fd if isinstance(fd, dict) else {f: fd for f in FAMILIES}
  return {
      "model": model, "dataset": "colored_mnist_bars/backdoor", "graph": "D",
      "ctf_consistency": ([{"consistent": True, "bounds": [1, 1]}] *
                          (rows - failed) +
                          [{"consistent": False, "bounds": [0.2, 0.6]}] *
                          failed),
      "effectiveness": {f: {"D": 1.0, "C": 1.0, "B": 1.0,
                            f[3:-1]: effect} for f in FAMILIES},
      "realism": {"metric": "FD[digit_cnn]", "per_intervention": fd,
                  "real_test": floor},
  }


def test_a_model_good_on_all_three_counts_is_good():
  v = verdict.verdict(entry())
  assert v == {"ok": True, "reasons": [], "checks": v["checks"]}
  assert v["checks"]["ctf_consistency"] == {"judged": 74, "failed": 0}


def test_one_that_ignores_do_d_in_half_its_edits_is_not_good():
  """Every row passes (its drawn features are consistent), yet the readers
  see the new digit in half the do(D) edits."""
  e = entry()
  e["effectiveness"]["do(D)"]["D"] = 0.5
  v = verdict.verdict(e)
  assert not v["ok"]
  assert v["reasons"] == [
      "effectiveness: the readers see D set in 0.500 of the do(D) edits "
      "< 0.900 (0.9 x a perfect reading's 1.000)"]
  # Judged against the readers' own floor on the true counterfactuals.
  assert verdict.verdict(e, entry(effect=0.6))["reasons"] == [
      "effectiveness: the readers see D set in 0.500 of the do(D) edits "
      "< 0.540 (0.9 x the true counterfactuals' 0.600)"]
  assert verdict.verdict(e, entry(effect=0.55))["ok"]


def test_a_failed_row_or_no_judged_row_is_not_good():
  assert verdict.verdict(entry(failed=3))["reasons"] == [
      "ctf-consistency: 3 of 74 rows fail"]
  assert verdict.verdict(entry(rows=0))["reasons"] == [
      "ctf-consistency: no row could be judged"]


def test_realism_is_judged_against_the_truth_of_the_same_family():
  """do(B) flips every bar: the real test images are no reference for it,
  the true counterfactuals of do(B) are."""
  e = entry(fd={"do(D)": 0.5, "do(C)": 0.4, "do(B)": 2.0}, floor=0.1)
  e["realism_latent"] = {**e.pop("realism"), "metric": "FD[latent_vae]"}
  assert verdict.verdict(e)["reasons"] == [
      "realism: FD[latent_vae] of do(B) 2 is 20.0x the real test images' "
      "0.1 (bar 6x)"]
  truth = entry(fd={"do(D)": 0.37, "do(C)": 0.37, "do(B)": 1.99}, floor=0.1)
  truth["realism_latent"] = truth.pop("realism")
  v = verdict.verdict(e, truth)
  assert v["ok"], v["reasons"]
  assert v["checks"]["realism"]["FD[latent_vae] do(B)"]["ratio"] == approx(
      2.0 / 1.99)


def test_the_hvae_blobs_fail_the_verdict_and_the_vae_passes():
  """benchmarks/results/cpu_grid/edits_hvae.png: after counterfactual
  fine-tuning against its frozen reader the HVAE-ANCM draws blocky blobs
  that the digit reader reads as the intended digit in 0.986 of do(D)
  edits, and every ctf-consistency row passes. On the digit CNN's
  embedding (whose true counterfactuals score the real test floor: they
  are real digits) their Frechet distance is about 10x the floor."""
  grid = grid_verdicts.entries()
  blobs = verdict.verdict(grid["ancm_hvae_cf"])
  assert grid["ancm_hvae_cf"]["effectiveness"]["do(D)"]["D"] == 0.986
  assert blobs["checks"]["ctf_consistency"] == {"judged": 74, "failed": 0}
  assert not blobs["ok"]
  assert all(r.startswith("realism: FD[digit_cnn] of do(")
             for r in blobs["reasons"]), blobs["reasons"]
  assert len(blobs["reasons"]) == 2  # do(D) and do(C); do(B) passes.
  assert verdict.verdict(grid["ancm_vae"])["ok"]
  # Before fine-tuning its images look real (1.2x) but ignore do(D).
  elbo = verdict.verdict(grid["ancm_hvae_elbo"])
  assert not any(r.startswith("realism") for r in elbo["reasons"])
  assert "the readers see D set in 0.004 of the do(D) edits" in "".join(
      elbo["reasons"])


def test_the_printed_summary_leads_with_the_verdict():
  """The quick start's committed report, as launch.run prints it."""
  path = RESULTS / "quickstart" / "report.json"
  report = json.loads(path.read_text())
  lines = tables.summary(report).splitlines()
  assert lines[:4] == [
      "Verdict:",
      "  ancm_vae: good (consistent, effective and realistic by the "
      "report's bars)",
      "  cvae_noncausal: not good - ctf-consistency: 12 of 74 rows fail",
      "  deepscm_markovian: not good - ctf-consistency: 10 of 74 rows fail"]
  assert report["models"][1]["verdict"]["ok"] is False
  md = tables.markdown(report)
  assert md.index("## Verdict") < md.index("## Models")


def test_the_blobs_fail_the_verdict_with_the_independent_reader_too():
  """The same grid rows re-evaluated by a digit CNN of its own architecture
  (benchmarks/results/cpu_grid_v4): that reader, too, reads the fine-tuned
  HVAE's blobs as the intended digit, and every row passes; realism on its
  embedding still fails them, and the VAE-ANCM stays good."""
  grid = grid_verdicts.entries(
      grid_verdicts.GRID.parent / "cpu_grid_v4" / "benchmark.csv")
  blobs = verdict.verdict(grid["ancm_hvae_cf"])
  assert grid["ancm_hvae_cf"]["effectiveness"]["do(D)"]["D"] == 0.990
  assert blobs["checks"]["ctf_consistency"] == {"judged": 74, "failed": 0}
  assert not blobs["ok"]
  assert len(blobs["reasons"]) == 2 and all(
      r.startswith("realism: FD[digit_cnn] of do(") for r in blobs["reasons"])
  assert verdict.verdict(grid["ancm_vae"])["ok"]
