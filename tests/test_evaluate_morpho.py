"""The MorphoMNIST evaluator, run variants and the benchmark beside Melistas
et al. (2024).
"""

import json
import os
import pathlib
import subprocess
import sys
import types

import ml_collections
import numpy as np
import pytest
from PIL import Image

from ctfjax import data
from ctfjax import evaluate
from ctfjax import experiment
from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.data import morpho_mnist
from ctfjax.errors import UserError
from ctfjax.experiment import job
from ctfjax.experiment import published
from ctfjax.evaluate.datasets import morpho_mnist as morpho_eval
from ctfjax.report import schema
from ctfjax.report import tables
from configs import benchmark_morpho_mnist
from configs import quickstart
import test_ancm_morpho

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
EV = morpho_eval.MorphoMNIST(data.dataset("morpho_mnist"))


def _law_sample(n, seed=1):
  """Thickness and intensity drawn from the generator's mechanisms."""
  rng = np.random.default_rng(seed)
  t = morpho_mnist.thickness_mechanism(rng.gamma(10.0, 0.2, n))
  i = morpho_mnist.intensity_mechanism(t, rng.normal(0.0, 0.5, n))
  return t, i


# The protocol and CLD's bins --------------------------------------------------


def test_bins_are_deciles_of_the_generator_law():
  t, i = _law_sample(400_000)
  for name, values in (("thickness", t), ("intensity", i)):
    edges = morpho_eval.bin_edges(name)
    assert edges.shape == (9,) and np.all(np.diff(edges) > 0)
    share = np.bincount(EV.classes(name, values), minlength=10) / len(values)
    np.testing.assert_allclose(share, 0.1, atol=0.003)
  assert EV.classes("digit", np.array([3, 7])).tolist() == [3, 7]
  # Bins split at the edges: a value just below and just above differ.
  edge = morpho_eval.bin_edges("thickness")[4]
  assert EV.classes("thickness", np.array([edge - 1e-6, edge + 1e-6])
                    ).tolist() == [4, 5]


def test_interventions_draw_from_the_marginals_and_change_the_digit():
  n = 100_000
  digit = np.arange(n) % 10
  do = EV.interventions({"digit": digit}, seed=3)
  assert list(do) == ["do(thickness)", "do(intensity)", "do(digit)"]
  assert all(len(v) == 1 for v in do.values())
  t, i = do["do(thickness)"]["thickness"], do["do(intensity)"]["intensity"]
  # Each bin of the generator's law gets a tenth of the draws.
  for name, values in (("thickness", t), ("intensity", i)):
    share = np.bincount(EV.classes(name, values), minlength=10) / n
    np.testing.assert_allclose(share, 0.1, atol=0.005)
  y = do["do(digit)"]["digit"]
  assert np.all(y != digit) and set(np.unique(y)) == set(range(10))
  again = EV.interventions({"digit": digit}, seed=3)
  np.testing.assert_array_equal(again["do(intensity)"]["intensity"], i)
  other = EV.interventions({"digit": digit}, seed=4)
  assert not np.array_equal(other["do(thickness)"]["thickness"], t)


# Scores against the generator's ground truth ----------------------------------


class TruthReader:
  """Reads back the features a test fixes in advance (no network)."""

  name = "truth_reader"

  def __init__(self, values):
    self.values = values

  def read(self, images):
    del images
    return dict(self.values)


@pytest.fixture(scope="module")
def small_set():
  """16 test samples, do(thickness) and do(intensity), their true
  counterfactuals, and a stand-in of the evaluation set."""
  test = data.load("morpho_mnist", split="test", size=16, seed=0)
  labels = {k: np.asarray(test[k]) for k in morpho_eval.FEATURES}
  families = EV.interventions(labels, seed=0)
  config = ml_collections.ConfigDict({"data": {"source": ""}})
  truth = EV.truth(config, test, families)
  evalset = types.SimpleNamespace(labels=labels, interventions=families,
                                  truth=truth, truth_read={})
  for fam, t in truth.items():
    if t is not None:
      evalset.truth_read[fam] = EV.read(
          TruthReader({k: t[k] for k in morpho_eval.FEATURES}),
          t["image"], evalset)
  return test, labels, evalset


def test_true_counterfactuals_scored_as_edits_have_zero_error(small_set):
  _, _, evalset = small_set
  assert evalset.truth["do(digit)"] is None
  for fam in ("do(thickness)", "do(intensity)"):
    true = evalset.truth[fam]
    drawn = {k: true[k] for k in morpho_eval.FEATURES}
    read = EV.read(TruthReader(drawn), true["image"], evalset)
    got = EV.score(fam, np.asarray(true["image"]), read, drawn, evalset)
    assert got["ground_truth_error"] == 0.0
    assert got["ground_truth_measured"] == {"thickness": 0.0,
                                            "intensity": 0.0}
    assert got["ground_truth_drawn"] == {"thickness": 0.0, "intensity": 0.0}
    assert got["effectiveness"] == {"digit": 1.0}
    assert got["effectiveness_mae"] == {"thickness": 0.0, "intensity": 0.0}
    # The measures agree with the values the generator rendered to within
    # their own resolution (scale-4 medial axis; 8-bit foreground median).
    assert got["effectiveness_measured"]["thickness"] < 0.3
    assert got["effectiveness_measured"]["intensity"] < 3.0
    assert got["ctf_consistency"] == []


def test_do_digit_has_no_ground_truth(small_set):
  test, labels, evalset = small_set
  drawn = {**labels, "digit": evalset.interventions["do(digit)"]["digit"]}
  read = EV.read(TruthReader(drawn), test["image"], evalset)
  got = EV.score("do(digit)", np.asarray(test["image"]), read, drawn,
                 evalset)
  assert got["ground_truth_error"] is None
  assert got["ground_truth_measured"] is None
  assert got["ground_truth_drawn"] is None


def test_measured_effectiveness_sees_an_edit_that_ignores_do(small_set):
  # A model that draws the right features but returns the factual image:
  # the predictors are told the drawn values (they would be fooled), the
  # measures are not.
  test, _, evalset = small_set
  for fam, var in (("do(thickness)", "thickness"),
                   ("do(intensity)", "intensity")):
    true = evalset.truth[fam]
    drawn = {k: true[k] for k in morpho_eval.FEATURES}
    scores = {}
    for name, images in (("true", true["image"]),
                         ("ignores do", test["image"])):
      images = np.asarray(images)
      read = EV.read(TruthReader(drawn), images, evalset)
      scores[name] = EV.score(fam, images, read, drawn, evalset)
    true_err = scores["true"]["effectiveness_measured"][var]
    lazy_err = scores["ignores do"]["effectiveness_measured"][var]
    assert lazy_err > 3 * true_err and lazy_err > (0.3 if var == "thickness"
                                                   else 10.0)
    assert scores["ignores do"]["ground_truth_error"] > 1.0
    assert scores["ignores do"]["ground_truth_measured"][var] > lazy_err / 2
    # The predictor columns were fooled: only measurement shows it.
    assert scores["ignores do"]["effectiveness_mae"][var] == 0.0


# Run variants -----------------------------------------------------------------


def variant_config():
  config = test_ancm_morpho.tiny_config()
  config.run = ml_collections.ConfigDict()
  config.run.variants = ml_collections.ConfigDict()
  config.run.variants.fixed = ml_collections.ConfigDict({
      "diagram": "ancm_vae",
      "overrides": {"model": {"image": {"vae": {"learned_sigma": False}}},
                    "train": {"steps": 3}}})
  config.run.variants.flat = ml_collections.ConfigDict({
      "diagram": "cvae_noncausal", "overrides": {}})
  config.run.models = ("fixed",)
  return config


def test_variants_merge_overrides_and_pick_a_diagram():
  config = variant_config()
  assert config.model.image.vae.learned_sigma
  fixed = job.model_config(config, "fixed")
  assert not fixed.model.image.vae.learned_sigma
  assert fixed.train.steps == 3 and fixed.model.graph == ""
  assert config.train.steps == 2  # The run's config is left as it was.
  flat = job.model_config(config, "flat")
  assert flat.model.graph == "thickness; intensity; digit"
  assert flat.model.image.vae.learned_sigma
  assert job._assumed_graph(config, "fixed") == morpho_mnist.GRAPH
  assert job._assumed_graph(config, "flat") == "thickness; intensity; digit"
  # Built-in names keep their meaning.
  assert job.model_config(config, "cvae_noncausal").model.graph == \
      flat.model.graph


def test_bad_variants_fail_with_the_key_named():
  def with_overrides(overrides):
    config = variant_config()
    config.run.variants.fixed = ml_collections.ConfigDict(
        {"overrides": overrides})
    return config

  config = with_overrides({"model": {"image": {"vae": {
      "learned_sigma": "no"}}}})
  with pytest.raises(UserError, match=r"'run.variants.fixed.overrides': "
                     r"config key 'model.image.vae.learned_sigma' expects "
                     r"bool"):
    job.model_config(config, "fixed")
  config = with_overrides({"model": {"image": {"vae": {"sigma": 1.0}}}})
  with pytest.raises(UserError, match="model.image.vae.sigma"):
    job.model_config(config, "fixed")
  config = variant_config()
  config.run.variants.flat = ml_collections.ConfigDict({"diagram": "markov"})
  with pytest.raises(UserError, match=r"'run.variants.flat'.diagram: "
                     "unknown diagram 'markov'"):
    job.variants(config)
  config = variant_config()
  config.run.variants.ancm_vae = ml_collections.ConfigDict({"overrides": {}})
  with pytest.raises(UserError, match="built-in model name"):
    job.variants(config)
  config = variant_config()
  config.run.models = ("fixed", "hvae")
  with pytest.raises(UserError, match="unknown model 'hvae'; known: "
                     "ancm_vae, cvae_noncausal, deepscm_markovian, fixed, "
                     "flat"):
    job.run_models(config)


def test_a_variant_may_give_its_diagram_as_text():
  config = variant_config()
  config.run.variants.reversed = ml_collections.ConfigDict({
      "graph": "intensity -> thickness; digit", "overrides": {}})
  config.run.models = ("fixed", "reversed")
  assert job.run_models(config) == ("fixed", "reversed")
  out = job.model_config(config, "reversed")
  assert out.model.graph == "intensity -> thickness; digit"
  assert job._assumed_graph(config, "reversed") == out.model.graph
  assert job.model_config(config, "fixed").model.graph == ""  # Unchanged.


@pytest.mark.parametrize("graph, message", [
    ("thickness -> -> intensity", r"'run.variants.bad'.graph: cannot parse"),
    ("thickness -> intensity -> thickness", r"'run.variants.bad'.graph: "),
    ("thickness -> intensity", r"'run.variants.bad'.graph: .* names "
     r"intensity, thickness; the dataset's features are digit, intensity, "
     r"thickness"),
    ("thickness -> intensity; digit; colour", r"'run.variants.bad'.graph: "
     r".*the dataset's features are digit, intensity, thickness"),
])
def test_a_bad_variant_graph_fails_with_the_variant_named(graph, message):
  config = variant_config()
  config.run.variants.bad = ml_collections.ConfigDict({"graph": graph})
  with pytest.raises(UserError, match=message) as info:
    job.variants(config)
  assert "\n" not in str(info.value)
  config.run.variants.bad = ml_collections.ConfigDict(
      {"graph": "thickness -> intensity; digit", "diagram": "ancm_vae"})
  with pytest.raises(UserError, match=r"'run.variants.bad': give "
                     r"'diagram' .* or 'graph' .*, not both"):
    job.variants(config)


def test_the_quickstart_has_no_variants_and_keeps_its_models():
  config = quickstart.get_config()
  assert job.variants(config) == {}
  assert job.run_models(config) == ("ancm_vae", "cvae_noncausal",
                                 "deepscm_markovian")
  assert job.model_config(config, "ancm_vae").model.graph == ""
  assert job.model_config(config, "cvae_noncausal").model.graph == "D; C; B"


def test_resume_compares_only_the_chosen_image_family(tmp_path):
  config = test_ancm_morpho.tiny_config()
  fit._write_config(config, tmp_path)
  saved = json.loads((tmp_path / "config.json").read_text())
  # An older run whose config lacks a family registered since, or holds one
  # removed since, resumes.
  saved["model"]["image"]["retired_family"] = {"width": 3}
  (tmp_path / "config.json").write_text(json.dumps(saved))
  fit._write_config(config, tmp_path)
  # The chosen family's own settings still must match.
  changed = config.copy_and_resolve_references()
  changed.model.image.vae.latent_dim += 1
  with pytest.raises(UserError, match="another model config"):
    fit._write_config(changed, tmp_path)
  changed = config.copy_and_resolve_references()
  changed.model.num_particles += 1
  with pytest.raises(UserError, match="another model config"):
    fit._write_config(changed, tmp_path)


# A tiny trained run end to end ------------------------------------------------


def tiny_run_config():
  config = evaluate.with_eval_defaults(variant_config())
  config.data.size = 64  # One batch of CLD's VAE and of the predictors.
  config.eval.test_size = 24
  config.eval.composition_size = 4
  config.eval.real_size = 32
  config.eval.edit_chunk = 8
  config.eval.reader_steps = 10
  config.eval.latent_steps = 5
  config.eval.figure_rows = 3
  return config


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
  workdir = tmp_path / "run"
  report = experiment.run(tiny_run_config(), workdir)
  schema.read(workdir / "report.json")
  (entry,) = report["models"]
  assert entry["model"] == "fixed" and entry["train"]["steps"] == 3
  assert entry["graph"] == morpho_mnist.GRAPH
  saved = fit.read_config(workdir / "models" / "fixed")
  assert not saved.model.image.vae.learned_sigma  # The variant's mechanism.
  fams = ["do(thickness)", "do(intensity)", "do(digit)"]
  assert list(entry["effectiveness"]) == fams
  for fam in fams:
    assert 0.0 <= entry["effectiveness"][fam]["digit"] <= 1.0
    for section in ("effectiveness_mae", "effectiveness_measured"):
      assert set(entry[section][fam]) == {"thickness", "intensity"}
      assert all(v >= 0 for v in entry[section][fam].values())
  assert entry["ground_truth_error"]["do(digit)"] is None
  assert entry["ground_truth_measured"]["do(digit)"] is None
  assert entry["ground_truth_error"]["do(thickness)"] > 0
  assert entry["ctf_consistency"] == []
  assert {"l1_1", "l1_10", "embedding_l1_1"} <= set(entry["composition"])
  assert set(entry["reversibility"]["per_intervention"]) == set(fams)
  assert set(entry["minimality"]["per_intervention"]) == set(fams)
  assert entry["realism"]["metric"] == "FD[morpho_predictors]"
  oracle = report["oracle"]
  assert set(oracle["ground_truth_error"]) == {"do(thickness)",
                                               "do(intensity)"}
  assert set(oracle["ground_truth_error"].values()) == {0.0}
  for fam in ("do(thickness)", "do(intensity)"):
    assert oracle["ground_truth_measured"][fam] == {"thickness": 0.0,
                                                    "intensity": 0.0}
  assert set(report["evaluators"]) >= {"morpho_thickness", "morpho_digit",
                                       "morpho_intensity", "latent_vae"}
  md = (workdir / "report.md").read_text()
  assert "thickness MAE: do(intensity)" in md and "digit acc: do(digit)" in md
  assert "thickness measured MAE: do(thickness)" in md
  assert "Seed 004 Table 3's layout" in md  # The evaluator's own note.
  assert "Ctf-consistency" not in md and "pixel rules" not in md
  assert not (workdir / "bounds.png").exists()
  with Image.open(workdir / "edits.png") as img:
    assert img.format == "PNG" and min(img.size) > 200
  # Predictors are cached: a second reader call restores them.
  again = EV.reader(workdir, tiny_run_config())
  assert again.evaluators == {k: report["evaluators"][k] for k in
                              again.evaluators}


# The benchmark beside Melistas et al. (2024) ----------------------------------


def fake_entry(name, offset):
  fams = ("do(thickness)", "do(intensity)", "do(digit)")
  return {
      "dataset": "morpho_mnist", "model": name, "graph": morpho_mnist.GRAPH,
      "train": {"steps": 1500, "seconds": 300.0 + offset},
      "effectiveness": {f: {"digit": 0.9} for f in fams},
      "effectiveness_mae": {f: {"thickness": 0.2 + offset,
                                "intensity": 7.0} for f in fams},
      "effectiveness_measured": {f: {"thickness": 0.25, "intensity": 8.0}
                                 for f in fams},
      "composition": {"l1_1": 5.0 + offset, "l1_10": 9.0,
                      "embedding_l1_1": 0.1, "embedding_l1_10": 0.2},
      "ctf_consistency": [],
      "ground_truth_error": {"do(thickness)": 12.0, "do(intensity)": 11.0,
                             "do(digit)": None},
      "realism": {"metric": "FD[morpho_predictors]",
                  "per_intervention": {f: 3.0 for f in fams}},
      "minimality": {"metric": "CLD[latent_vae]", "per_intervention": {
          f: {"cld": 0.3, "p1": 0.1, "p2": 0.8, "n": 24} for f in fams}},
  }


@pytest.mark.slow
def test_benchmark_writes_tables_beside_the_published_numbers(tmp_path):
  workdir, out = tmp_path / "run", tmp_path / "out"
  overrides = [f"benchmark.workdir={workdir}", f"benchmark.out={out}"]
  config = train.load_config(ROOT / "configs" / "benchmark_morpho_mnist.py",
                             overrides)
  cfg = published.run_config(config)
  evaluate_config = evaluate.with_eval_defaults(cfg)
  report = {"version": schema.VERSION,
            "evaluation_version": evaluate.core.EVALUATION_VERSION,
            "dataset": "morpho_mnist", "graph": morpho_mnist.GRAPH,
            # One entry per row: vae_fixed 0.0, vae_learned 1.0, ...
            "models": [fake_entry(name, float(i))
                       for i, name in enumerate(cfg.run.models)],
            "eval": evaluate.eval_settings(evaluate_config),
            "notes": ["fake report"]}
  oracle = fake_entry("true counterfactuals", 0.0)
  oracle["ground_truth_error"] = {"do(thickness)": 0.0,
                                  "do(intensity)": 0.0}
  report["oracle"] = oracle
  schema.write(report, workdir / "report.json")
  (workdir / job.RUN_CONFIG).write_text(cfg.to_json())
  # The launcher reuses the matching report: nothing trains.
  res = subprocess.run(
      [sys.executable, "-m", "launch.benchmark",
       "--config=configs/benchmark_morpho_mnist.py", *(f"--config.{o}"
                                                 for o in overrides)],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-3000:]
  assert "reusing" in res.stderr
  md = (out / "benchmark.md").read_text()
  for title in ("Table 1: Composition", "Table 3: Effectiveness",
                "Table 5: Realism and minimality", "Ground truth (ours only)",
                "Training budgets"):
    assert f"## {title}" in md
  # Ours and the paper's row, side by side, for each model.
  assert "| VAE (fixed sigma) | ours | 5.000 | 9.000 | 0.100 | 0.200 | — " \
      "| — |" in md
  assert "| VAE (fixed sigma) | seed | 4.244 | 9.855 | 0.095 | 0.158 | " \
      "0.039 | 0.098 |" in md
  assert "| VAE (learned sigma) | seed | 0.109 | 0.333 | 0.139 | 3.149 |" \
      in md
  # The readers' floor closes Table 3 and the ground-truth table, whose
  # do(digit) cells are empty.
  assert md.count("| true counterfactuals | generator |") == 2
  assert "| VAE (fixed sigma) | ours | 12.000 | 11.000 | — |" in md
  assert "about 1M iterations of batch 256 on a GPU" in md
  assert "1500 steps of batch 64 on CPU, 301 s" in md
  rows = (out / "benchmark.csv").read_text().splitlines()
  assert rows[0] == "table,model,source,column,value"
  assert "composition,VAE (learned sigma),seed,l1 image 1 cycle,2.6" in rows
  assert "effectiveness,VAE (fixed sigma),ours,Thickness MAE do(t),0.2" in rows
  assert "realism,VAE (learned sigma),seed,FID (seed) / FD (ours),10.124" \
      in rows
  saved = json.loads((out / "benchmark.json").read_text())
  assert saved["rows"]["vae_learned"]["published"]["realism"] == {
      "fid": 10.124}
  names = ["vae_fixed", "vae_learned", "hvae", "hvae_cf", "gan",
           "gan_finetuned"]
  assert [e["model"] for e in saved["reports"][0]["models"]] == names
  # Rows keep the config's order (not the ConfigDict's sorted keys).
  assert md.index("| HVAE | ours |") < md.index("| GAN | ours |")
  # A row is one config entry: a variant and its published numbers.
  assert set(config.run.variants) == set(config.benchmark.rows) == set(
      names)
  assert benchmark_morpho_mnist.row("Diffusion", {})["published"] is None


def test_benchmark_config_errors():
  config = train.load_config(ROOT / "configs" / "benchmark_morpho_mnist.py", [])
  bad = config.copy_and_resolve_references()
  bad.run.models = ("vae_learned",)
  with pytest.raises(UserError, match="must list the benchmark rows"):
    published.benchmark(bad)
  bad = config.copy_and_resolve_references()
  bad.benchmark.rows.vae_fixed.published.speed = 1.0
  with pytest.raises(UserError, match="unknown key 'speed'"):
    published.benchmark(bad)


def test_table_columns_follow_seed_004_table_3():
  entries = [fake_entry("vae_fixed", 0.0)]
  header, _ = tables.table(entries, "effectiveness")
  assert header[1:4] == ["thickness MAE: do(thickness)",
                         "thickness MAE: do(intensity)",
                         "thickness MAE: do(digit)"]
  assert header[7:10] == ["digit acc: do(thickness)",
                          "digit acc: do(intensity)", "digit acc: do(digit)"]
  assert header[10] == "thickness measured MAE: do(thickness)"
  header, rows = tables.table(entries, "ground_truth")
  assert header[1:4] == ["L1 do(thickness)", "L1 do(intensity)",
                         "L1 do(digit)"]
  assert rows[0][3] is None
