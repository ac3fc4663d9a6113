"""Reports: schema validation, markdown / CSV tables and figures, no model."""

import copy
import csv
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from configs import quickstart
from ctfjax.evaluate import core
from ctfjax.evaluate import datasets
from ctfjax.evaluate.datasets import colored_mnist
from ctfjax.evaluate.datasets import morpho_mnist
from ctfjax.experiment import job
from ctfjax.report import figures, schema, tables

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "benchmarks" / "results" / "quickstart"


def _row(intervention, query, estimate, n, bounds, truth, consistent):
  k = round(estimate * n) if estimate is not None else 0
  decision = {True: "pass", False: "fail: features",
              None: "no data" if not n else "no bounds"}[consistent]
  return {"intervention": intervention, "query": query, "estimate": estimate,
          "ci": [max(0.0, (estimate or 0) - 0.1), min(1.0, (estimate or 0)
                                                      + 0.1)]
          if estimate is not None else [0.0, 1.0],
          "bounds": bounds, "truth": truth, "consistent": consistent,
          "n": n, "successes": k, "decision": decision,
          "p_value": None if consistent is None else float(consistent),
          "detectable": 0.125 if bounds and bounds[0] < 1 else 0.03}


def _entry(model, graph, d_kept, b_flip):
  return {
      "dataset": "colored_mnist_bars/backdoor", "model": model,
      "graph": graph, "train": {"steps": 100, "seconds": 12.5},
      "effectiveness": {
          "do(D)": {"D": 0.9, "C": 1.0, "B": 1.0},
          "do(C)": {"D": d_kept, "C": 1.0, "B": 0.95},
          "do(B)": {"D": 0.97, "C": 1.0, "B": 1.0}},
      "composition": {"l1_1": 3.25, "l1_10": 7.5, "embedding_l1_1": 0.1,
                      "embedding_l1_10": 0.2},
      "ctf_consistency": [
          _row("C=1", "P(D_{C=1} = D | C=0)", d_kept, 50, [1.0, 1.0], 1.0,
               d_kept == 1.0),
          _row("C=1", "P(C_{C=1}=1 | C=0)", 1.0, 50, [1.0, 1.0], 1.0, True),
          _row("C=1", "P(B_{C=1}=0 | C=0, B=1)", b_flip, 40, [0.4, 0.68],
               0.4, 0.3 <= b_flip + 0.1),
          _row("C=0", "P(B_{C=0}=1 | C=1, B=0)", None, 0, [0.2, 0.5], 0.2,
               None),
          _row("D=5", "P(B_{D=5}=1 | D=0, C=0, B=0)", 0.5, 10, None, 0.0,
               None),
      ],
      "ground_truth_error": {"do(D)": 30.0, "do(C)": 12.0, "do(B)": 5.0},
      "ground_truth_features": {"do(D)": {"all": 0.8}},
      "realism": {"metric": "FD[digit_cnn]",
                  "per_intervention": {"do(D)": 4.0, "do(C)": 3.0,
                                       "do(B)": 2.0},
                  "real_test": 1.5},
      "realism_latent": {"metric": "FD[latent_vae]",
                         "per_intervention": {"do(D)": 40.0, "do(C)": 30.0,
                                              "do(B)": 20.0},
                         "real_test": 0.5},
      "reversibility": {"per_intervention": {
          "do(C)": {"l1_1": 6.0, "l1_10": 11.0},
          "do(B)": {"l1_1": 5.0, "l1_10": 9.0}}, "n": 8},
      "minimality": {"metric": "CLD[latent_vae]", "per_intervention": {
          "do(D)": {"cld": 0.5, "p1": 0.4, "p2": 0.7, "n": 50},
          "do(C)": {"cld": 0.25, "p1": 0.1, "p2": 0.9, "n": 50},
          "do(B)": {"cld": 0.125, "p1": 0.0, "p2": 0.6, "n": 50}}},
  }


def make_report():
  return {"dataset": "colored_mnist_bars/backdoor",
          "graph": "D <-> C; D -> B; C -> B",
          "models": [_entry("ancm_vae", "D <-> C; D -> B; C -> B", 1.0, 0.5),
                     _entry("cvae_noncausal", "D; C; B", 0.98, 0.0)]}


def test_valid_report_round_trips(tmp_path):
  report = make_report()
  report["models"][0]["composition"]["l1_1"] = np.float32(3.25)
  report["models"][0]["extra"] = float("nan")  # extra keys are allowed
  path = schema.write(report, tmp_path / "report.json")
  back = schema.read(path)
  assert back["models"][0]["composition"]["l1_1"] == 3.25
  assert back["models"][0]["extra"] is None  # NaN is not JSON
  assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("path, value, message", [
    (("models",), [], "report.models: expected a non-empty list"),
    (("models", 0, "train", "steps"), 1.5,
     r"report.models\[0\].train.steps: expected an integer"),
    (("models", 1, "composition", "l1_10"), "x",
     r"report.models\[1\].composition.l1_10: expected a finite number"),
    (("models", 0, "ctf_consistency", 2, "bounds"), [0.7, 0.2],
     r"ctf_consistency\[2\].bounds: expected 0 <= lo <= hi <= 1"),
    (("models", 0, "ctf_consistency", 3, "consistent"), True,
     r"ctf_consistency\[3\].consistent: expected null exactly when"),
    # "consistent" is what the rule's decision says (metrics.decide).
    (("models", 0, "ctf_consistency", 1, "consistent"), False,
     r"ctf_consistency\[1\].consistent: expected True \(decision 'pass'\)"),
    (("models", 0, "ctf_consistency", 1, "decision"), "ok",
     r"ctf_consistency\[1\].decision: expected one of pass, fail: "),
    (("models", 0, "ctf_consistency", 1, "n"), -1,
     r"ctf_consistency\[1\].n: expected an integer >= 0"),
    (("models", 0, "ctf_consistency", 2, "p_value"), 1.5,
     r"ctf_consistency\[2\].p_value: expected a number in"),
    (("models", 0, "effectiveness", "do(C)", "D"), 1.5,
     r"effectiveness\['do\(C\)'\].D: expected a number in \[0.0, 1.0\]"),
    (("models", 0, "minimality", "per_intervention", "do(C)", "cld"), 1.1,
     r"minimality.per_intervention\['do\(C\)'\].cld: expected a number"),
    (("models", 1, "reversibility", "per_intervention", "do(B)", "l1_10"),
     None, r"reversibility.per_intervention\['do\(B\)'\].l1_10: expected"),
    # "usable": ok exactly when no bar failed, each reason a string.
    (("models", 0, "usable"), {"ok": True, "reasons": ["x"]},
     r"report.models\[0\].usable.ok: expected False"),
    (("models", 1, "usable"), {"ok": None, "reasons": []},
     r"report.models\[1\].usable.ok: expected True"),
    (("models", 0, "usable"), {"ok": False, "reasons": "x"},
     r"usable.reasons: expected a list"),
    (("models", 0, "usable"), {"ok": False, "reasons": [3]},
     r"usable.reasons\[0\]: expected a string"),
])
def test_schema_violations_name_the_key(path, value, message):
  report = make_report()
  node = report
  for key in path[:-1]:
    node = node[key]
  node[path[-1]] = value
  with pytest.raises(schema.ReportError, match=message):
    schema.validate(report)


def test_missing_key_and_bad_files(tmp_path):
  report = make_report()
  del report["models"][0]["ground_truth_error"]
  with pytest.raises(schema.ReportError,
                     match=r"ground_truth_error: expected an object"):
    schema.dumps(report)
  # Nothing is written for an invalid report.
  with pytest.raises(schema.ReportError):
    schema.write(report, tmp_path / "r.json")
  assert not list(tmp_path.iterdir())
  (tmp_path / "bad.json").write_text("{")
  with pytest.raises(schema.ReportError, match="not valid JSON"):
    schema.read(tmp_path / "bad.json")
  with pytest.raises(schema.ReportError, match="no report at"):
    schema.read(tmp_path / "none.json")


def test_markdown_puts_models_side_by_side():
  report = make_report()
  report["oracle"] = copy.deepcopy(report["models"][0])
  report["oracle"]["model"] = "true counterfactuals"
  md = tables.markdown(report)
  assert md.startswith("# Counterfactual image editing: "
                       "colored_mnist_bars/backdoor")
  assert "| ancm_vae | `D <-> C; D -> B; C -> B` | 100 | 12.500 |" in md
  # ctf counts: judged rows are those with an estimate and bounds.
  # Then the failures by hypothesis and the rows without data.
  assert "| ancm_vae | 3/3 | 1/1 | 2/2 | 0 | 0 | 1 |" in md
  assert "| cvae_noncausal | 1/3 | 0/1 | 1/2 | 2 | 0 | 1 |" in md
  assert "| ancm_vae | 0.900 | 1.000 | 0.970 |" in md  # D under do(D/C/B)
  assert "| ancm_vae | 3.250 | 7.500 | 0.100 | 0.200 |" in md
  assert "FD[digit_cnn] do(D)" in md
  # Both feature networks side by side, each with its floor.
  assert ("| ancm_vae | 4.000 | 3.000 | 2.000 | 1.500 | 40.000 | 30.000 | "
          "20.000 | 0.500 |") in md
  assert "FD[latent_vae] real test (floor)" in md
  assert "| ancm_vae | 6.000 | 11.000 | 5.000 | 9.000 |" in md
  assert "| ancm_vae | 0.500 | 0.250 | 0.125 |" in md  # CLD per do()
  assert "CLD[latent_vae] do(D)" in md
  # Reversibility has no row for the true counterfactuals (not edits).
  rev = md.split("## Reversibility")[1].split("## Minimality")[0]
  assert "true counterfactuals" not in rev
  # The rows table: bounds, truth and each model's estimate with a mark.
  row = [line for line in md.splitlines()
         if "P(B_{C=1}=0 \\| C=0, B=1)" in line][0]
  # With n, the smallest detectable violation and the failed hypothesis.
  assert ("[0.400, 0.680] | 0.400 | 0.500 [0.40, 0.60] n=40 δ=0.12 ✓ |"
          in row)
  assert "0.000 [0.00, 0.10] n=40 δ=0.12 ✗ features |" in row
  assert row.count(" ✓") + row.count(" ✗") == 3  # 2 models and the oracle
  assert "— (n=0)" in md
  assert "| true counterfactuals |" in md


def test_summary_and_csv(tmp_path):
  report = make_report()
  text = tables.summary(report)
  verdicts, table = text.split("\n\n")
  assert verdicts.splitlines()[0] == "Verdict:"
  assert len(verdicts.splitlines()) == 1 + len(report["models"])
  lines = table.splitlines()
  assert lines[0].split()[:3] == ["model", "ctf-consistent", "descendants"]
  assert lines[2].startswith("ancm_vae") and "3/3" in lines[2]
  assert "3.2/7.5" in lines[2] or "3.3/7.5" in lines[2]
  rows = tables.long_rows([report], ["composition", "effectiveness"])
  path = tables.write_csv(rows, tmp_path / "bench.csv")
  with open(path) as f:
    read = list(csv.DictReader(f))
  assert len(read) == 2 * (4 + 9)
  first = read[0]
  assert first == {"dataset": "colored_mnist_bars/backdoor",
                   "model": "ancm_vae", "table": "composition",
                   "column": "l1 1 cycle", "value": "3.25"}
  md = tables.benchmark_markdown([report], ["composition", "effectiveness"])
  assert "## Table 1: Composition" in md and "## Table 2: Effectiveness" in md
  assert ("| colored_mnist_bars/backdoor | cvae_noncausal | 3.250 | 7.500 |"
          in md)


def test_edits_figure_is_a_png_of_the_expected_size(tmp_path):
  rng = np.random.default_rng(0)
  blocks = [
      figures.EditBlock("factual", rng.integers(0, 255, (3, 1, 32, 32, 3),
                                                dtype=np.uint8),
                        [["2 red"]] * 3, ["image"]),
      figures.EditBlock("model\nD; C; B",
                        rng.integers(0, 255, (3, 2, 32, 32, 3),
                                     dtype=np.uint8),
                        [["a", "b"]] * 3, ["do(C=1-c)", "do(B=1-b)"]),
  ]
  path = figures.edits_figure(blocks, tmp_path / "edits.png", title="t")
  with Image.open(path) as img:
    assert img.format == "PNG"
    w, h = img.size
  # At 100 dpi: 3 one-inch image columns, gaps and margins (3.73 in); 3 rows
  # of 1.28 in under 1.17 in of titles (5.11 in).
  assert abs(w - 373) <= 1 and abs(h - 511) <= 1, (w, h)
  with pytest.raises(ValueError, match="different numbers of rows"):
    figures.edits_figure([blocks[0], figures.EditBlock(
        "x", blocks[1].images[:2], [["a", "b"]] * 2, ["c", "d"])],
                         tmp_path / "bad.png")
  assert not (tmp_path / "bad.png").exists()


def test_bounds_figure_is_a_png_of_the_expected_size(tmp_path):
  report = json.loads(schema.dumps(make_report()))
  path = figures.bounds_figure(report, tmp_path / "bounds.png", title="t")
  with Image.open(path) as img:
    assert img.format == "PNG"
    w, h = img.size
  # Two columns of panels, 6.9 inches each with a 0.7 inch gap and 0.5 of
  # margins; pooled, do(C) and do(D) panels.
  assert abs(w - 1500) <= 1 and 250 <= h <= 700, (w, h)
  panels = figures._panels(report["models"])
  titles = [t for t, _ in panels]
  # Pooled rows first, then families by size (do(D) has one row here).
  assert titles == ["Intervened factor & non-descendants: [1, 1]",
                    "do(D): descendants", "do(C): descendants"]
  pooled = panels[0][1]
  assert [r.label for r in pooled] == [
      "do(C): P(D' = D), preserved", "do(C): P(C' = c'), intervened value"]
  # A row with bounds [0, 1] cannot be violated and is not drawn.
  vacuous = _row("C=1", "P(B_{C=1}=1 | C=0, B=0)", 0.0, 30, [0.0, 1.0], 0.0,
                 True)
  report["models"][0]["ctf_consistency"].append(vacuous)
  drawn = [r.label for _, rows in figures._panels(report["models"])
           for r in rows]
  assert vacuous["query"] not in drawn
  assert "P(B_{C=1}=0 | C=0, B=1)" in drawn
  # 49 of 50 digits kept by the second model: the pooled row misses [1, 1].
  assert pooled[0].per_model[1][0] == pytest.approx(0.98)
  assert pooled[0].per_model[1][2] is False
  assert pooled[0].per_model[0][2] is True


def _untrained(entry):
  """`entry` with the scores of quickstart:tiny trained for 10 steps: grey
  images (null-edit L1 89.5) whose features the readers read at chance."""
  entry = copy.deepcopy(entry)
  entry["composition"]["l1_1"] = 89.5
  entry["effectiveness"] = {
      "do(D)": {"D": 0.125, "C": 0.65, "B": 0.475},
      "do(C)": {"D": 0.125, "C": 0.35, "B": 0.45},
      "do(B)": {"D": 0.125, "C": 0.65, "B": 0.575}}
  return entry


def test_usability_flags_an_untrained_model_and_names_each_bar():
  bars = colored_mnist.USABLE_BARS
  trained = make_report()["models"][0]
  assert datasets.usability(trained, bars) == {"ok": True, "reasons": []}
  # Reader agreement: the non-intervened cells only, (0.65 + 0.475 + 0.125
  # + 0.45 + 0.125 + 0.65) / 6.
  assert datasets.usability(_untrained(trained), bars) == {
      "ok": False, "reasons": [
          "composition L1 89.5 > 15 (the dataset's bar)",
          "reader agreement 0.413 < 0.9 (the dataset's bar)"]}
  # Each bar alone; a value on the bar passes.
  blurred = copy.deepcopy(trained)
  blurred["composition"]["l1_1"] = 15.5
  assert datasets.usability(blurred, bars)["reasons"] == [
      "composition L1 15.5 > 15 (the dataset's bar)"]
  blurred["composition"]["l1_1"] = 15.0
  assert datasets.usability(blurred, bars)["ok"]
  misread = copy.deepcopy(trained)
  misread["effectiveness"]["do(B)"]["D"] = 0.46
  # (1 + 1 + 1 + 0.95 + 0.46 + 1) / 6 = 0.9017 passes; with 0.4482 it is
  # 0.8997, printed with the digits that tell it from the bar.
  assert datasets.usability(misread, bars)["ok"]
  misread["effectiveness"]["do(B)"]["D"] = 0.4482
  assert datasets.usability(misread, bars)["reasons"] == [
      "reader agreement 0.8997 < 0.9 (the dataset's bar)"]
  # A model that ignores do(D) (the intervened cell) is converged, not
  # flagged: following the intervention is effectiveness' own question.
  ignores = copy.deepcopy(trained)
  ignores["effectiveness"]["do(D)"]["D"] = 0.0
  assert datasets.usability(ignores, bars)["ok"]
  ignores["composition"]["l1_1"] = None
  assert datasets.usability(ignores, bars) == {
      "ok": False, "reasons": ["composition L1 not measured"]}


def test_morpho_bars_pass_the_committed_rows_and_fail_chance():
  bars = morpho_mnist.USABLE_BARS
  # The committed fixed-sigma VAE (benchmarks/results/morpho_mnist): keeps
  # the digit, ignores do(digit), reconstructs.
  entry = {"composition": {"l1_1": 4.88}, "effectiveness": {
      "do(thickness)": {"digit": 0.97}, "do(intensity)": {"digit": 0.97},
      "do(digit)": {"digit": 0.062}}}
  assert datasets.usability(entry, bars)["ok"]
  entry["effectiveness"]["do(intensity)"]["digit"] = 0.1
  entry["effectiveness"]["do(thickness)"]["digit"] = 0.12
  entry["composition"]["l1_1"] = 40.0
  assert datasets.usability(entry, bars)["reasons"] == [
      "composition L1 40 > 17 (the dataset's bar)",
      "reader agreement 0.11 < 0.5 (the dataset's bar)"]


def test_tables_mark_an_unusable_model_and_say_why(tmp_path):
  report = make_report()
  bars = colored_mnist.USABLE_BARS
  report["models"][1] = _untrained(report["models"][1])
  for entry in report["models"]:
    entry["usable"] = datasets.usability(entry, bars)
  report = schema.read(schema.write(report, tmp_path / "report.json"))
  why = ("† cvae_noncausal: training far from converged, do not read its "
         "scores: composition L1 89.5 > 15 (the dataset's bar); reader "
         "agreement 0.413 < 0.9 (the dataset's bar).")
  lines = tables.summary(report).split("\n\n")[1].splitlines()
  assert lines[2].startswith("ancm_vae ") and "†" not in lines[2]
  assert lines[3].startswith("cvae_noncausal †")
  assert lines[4:] == [why]
  md = tables.markdown(report)
  # The caveat comes before any table, and every table marks the row.
  assert md.index(f"**{why}**") < md.index("## Models")
  assert "| cvae_noncausal † | `D; C; B` | 100 | 12.500 |" in md
  assert "| cvae_noncausal † | 1/3 |" in md
  assert "| ancm_vae | 3/3 |" in md
  assert "| ancm_vae | cvae_noncausal † |" in md  # the rows' header
  bench = tables.benchmark_markdown([report], ["composition"])
  assert ("**† colored_mnist_bars/backdoor cvae_noncausal: training far "
          "from converged") in bench
  assert ("| colored_mnist_bars/backdoor | cvae_noncausal † | 89.500 |"
          in bench)
  # The CSV keeps the plain name: it is data, its "usable" is in the json.
  rows = tables.long_rows([report], ["composition"])
  assert {r["model"] for r in rows} == {"ancm_vae", "cvae_noncausal"}


def test_the_committed_quickstart_report_is_not_flagged():
  report = schema.read(QUICKSTART / "report.json")
  bars = datasets.evaluator(report["dataset"]).usable_bars
  for entry in report["models"]:
    entry["usable"] = datasets.usability(entry, bars)
  assert [e["usable"] for e in report["models"]] == [
      {"ok": True, "reasons": []}] * 3
  assert tables.UNUSABLE not in tables.summary(report)
  assert tables.UNUSABLE not in tables.markdown(report)


def test_a_reused_report_is_judged_by_the_bars(tmp_path):
  # A benchmark reuses a current report (`job.current_report`); one written
  # before the bars existed has no "usable" and gets it from its scores.
  config = quickstart.get_config()
  report = schema.read(QUICKSTART / "report.json")
  report["evaluation_version"] = core.EVALUATION_VERSION
  report["eval"] = core.eval_settings(core.with_eval_defaults(config))
  report["models"][1] = _untrained(report["models"][1])
  schema.write(report, tmp_path / "report.json")
  (tmp_path / job.RUN_CONFIG).write_text(config.to_json())
  reused = job.current_report(config, tmp_path)
  assert [e["usable"]["ok"] for e in reused["models"]] == [True, False, True]


@pytest.mark.parametrize("bars", [colored_mnist.USABLE_BARS,
                                  morpho_mnist.USABLE_BARS])
def test_the_docs_quote_each_bar_and_its_reason(bars):
  # docs/evaluation.md's table, "| dataset | bar | why |", word for word.
  doc = (ROOT / "docs" / "evaluation.md").read_text().replace("\\|", "|")
  for bar in bars:
    op = ">=" if bar.at_least else "<="
    assert f" {op} {bar.limit:g} | {bar.why} |" in doc, bar.name
