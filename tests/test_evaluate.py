"""Evaluation: exact reference rows, editing plumbing, the per-dataset
evaluator seam, a tiny trained model."""

import json
import pathlib

import chex
import jax
import numpy as np
import pytest

from ctfjax import data
from ctfjax import evaluate
from ctfjax import experiment
from ctfjax import metrics
from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.data import colored_mnist_bars
from ctfjax.errors import UserError
from ctfjax.evaluate import core
from ctfjax.experiment import grid
from ctfjax.experiment import job
from ctfjax.evaluate.datasets import colored_mnist
from ctfjax.report import schema
from configs import ancm_vae_colored_mnist_backdoor
from configs import compare_hvae_colored_mnist_backdoor as compare_hvae
from configs import compare_vae_ddpm_colored_mnist_backdoor as compare_two_stage
from test_ancm import tiny_config
from test_report import make_report

BACKDOOR = "colored_mnist_bars/backdoor"
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_reference_rows_have_exact_bounds_and_truth():
  ref = colored_mnist.reference(BACKDOOR)
  assert ref.graph == "D <-> C; D -> B; C -> B"
  assert [len(ref.queries[f]) for f in ("do(D)", "do(C)", "do(B)")] == \
      [60, 8, 6]
  # Closed form (Frechet bounds): per digit d, p = P(B=1 | d, C=0),
  # p' = P(B=1 | d, C=1), Frechet bounds [max(0, p - p') / p,
  # min(1 - p', p) / p], averaged over P(d | C=0, B=1) (B's response
  # function is free per (d, c), so the LP separates over digits). The
  # generator's thresholds make the truth the lower end: (p - p') / p.
  d = np.arange(10)
  p, p_new = 0.9 - 0.05 * d, 0.6 - 0.05 * d
  p_dc0 = np.where(d < 5, 0.5 * 0.2 * 0.8, 0.5 * 0.2 * 0.2)  # P(d, C=0)
  w = p_dc0 * p / np.sum(p_dc0 * p)  # P(d | C=0, B=1)
  lo = np.sum(w * np.maximum(0, p - p_new) / p)
  hi = np.sum(w * np.minimum(1 - p_new, p) / p)
  assert (lo, hi) == pytest.approx((0.4, 0.68))  # by hand: 0.15/0.375 ...
  q = "P(B_{C=1}=0 | C=0, B=1)"
  assert q in ref.queries["do(C)"]
  assert ref.bounds[q] == pytest.approx((lo, hi), abs=1e-9)
  assert ref.truth[q] == pytest.approx(lo, abs=1e-9)
  # Non-descendants and the intervened factor: [1, 1], truth 1, no LP.
  assert ref.bounds["P(D_{C=1} = D | C=0)"] == (1.0, 1.0)
  assert ref.bounds["P(C_{D=5} = C | D=0)"] == (1.0, 1.0)
  assert ref.truth["P(B_{B=1}=1 | B=0)"] == 1.0


# The decision rule on the real reference rows, at the default test size ----

FRONTDOOR = "colored_mnist_bars/frontdoor"


def truth_table(dataset, change=None, seed=0):
  """The ctf-consistency table of the generator's true counterfactuals of
  `eval.test_size` test images, decided as `core.score_edits` does.

  The truth's drawn features are the true ones. The readers are simulated:
  C and B exact, the digit misread on 4% of the images whose digit changed
  (as the digit CNN on real digits; where the strokes stay,
  `relative_reading` cancels its error), independently on the model's
  images and on the true ones. `change(family, drawn, read)` returns the
  model's (drawn, read) from the truth's.
  """
  ref = colored_mnist.reference(dataset)
  size = train.base_eval_config().test_size
  test = data.load(dataset, split="test", size=size, seed=seed)
  gen = data.generator(dataset, "test")
  labels = {k: np.asarray(test[k]) for k in ref.domains}
  rng = np.random.default_rng(seed)

  def reader(values):
    wrong = (values["D"] != labels["D"]) & (rng.random(size) < 0.04)
    digit = (values["D"] + rng.integers(1, 10, size)) % 10
    return {**values, "D": np.where(wrong, digit, values["D"])}

  rows = []
  for fam, do in metrics.protocol_interventions(labels, ref.domains).items():
    true = gen.features(test["exogenous"], do)
    drawn, read = true, reader(true)
    if change is not None:
      drawn, read = change(fam, dict(drawn), dict(read))
    rows += metrics.ctf_consistency(
        labels, read, do, ref.queries[fam], bounds=ref.bounds,
        truth=ref.truth, drawn=drawn, reference=(true, reader(true)))
  return metrics.decide(rows)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", [BACKDOOR, FRONTDOOR])
def test_true_counterfactuals_pass_every_row(dataset):
  rows = truth_table(dataset)
  assert len(rows) == 74 if dataset == BACKDOOR else len(rows) > 74
  assert {r["decision"] for r in rows} <= {"pass", "no data", "no bounds"}
  judged = [r for r in rows if r["consistent"] is not None]
  assert len(judged) >= 60 and all(r["consistent"] for r in judged)
  # Every judged row reports n, its p-value and, where a violation is
  # possible, the smallest one it detects; [1, 1] rows one failure in n.
  for r in judged:
    assert r["n"] > 0 and 0.0 <= r["p_value"] <= 1.0
    if r["bounds"] == [1.0, 1.0]:
      assert r["detectable"] == pytest.approx(1 - 0.2 ** (1 / r["n"]))
  no_data = [r for r in rows if r["n"] == 0]
  assert all(r["decision"] == "no data" and r["consistent"] is None
             for r in no_data)


def _flip_digit(share, drawn_too):
  """A model that changes the (non-descendant) digit of `share` of its
  do(C) edits: in what it draws and shows, or only in what it shows."""
  def change(family, drawn, read):
    if family == "do(C)":
      n = len(read["D"])
      idx = np.random.default_rng(1).permutation(n)[:round(share * n)]
      for values in (drawn, read) if drawn_too else (read,):
        values["D"] = values["D"].copy()
        values["D"][idx] = (values["D"][idx] + 1) % 10
    return drawn, read
  return change


@pytest.mark.slow
@pytest.mark.parametrize("dataset", [BACKDOOR, FRONTDOOR])
def test_changing_a_non_descendant_in_5_percent_of_edits_fails(dataset):
  rows = {r["query"]: r for r in truth_table(dataset,
                                             _flip_digit(0.05, True))}
  for query in ("P(D_{C=1} = D | C=0)", "P(D_{C=0} = D | C=1)"):
    assert rows[query]["decision"] == "fail: features", rows[query]
  # Drawn right but drawn wrongly: the readers see another digit in 5% of
  # the edits and the truth's in none of its images.
  rows = {r["query"]: r for r in truth_table(dataset,
                                             _flip_digit(0.05, False))}
  for query in ("P(D_{C=1} = D | C=0)", "P(D_{C=0} = D | C=1)"):
    assert rows[query]["decision"] == "fail: images", rows[query]
  assert sum(r["consistent"] is False for r in rows.values()) == 2


@pytest.mark.parametrize("dataset, query, side", [
    (BACKDOOR, "P(B_{C=1}=0 | C=0, B=1)", -1),
    (BACKDOOR, "P(B_{C=1}=0 | C=0, B=1)", 1),
    (FRONTDOOR, "P(B_{C=0}=1 | C=1, B=0)", -1),
    (FRONTDOOR, "P(B_{C=0}=1 | C=1, B=0)", 1),
])
@pytest.mark.slow
def test_a_descendant_0_1_outside_its_bounds_fails(dataset, query, side):
  ref = colored_mnist.reference(dataset)
  lo, hi = ref.bounds[query]
  target = lo - 0.1 if side < 0 else hi + 0.1
  q = metrics.PairQuery.parse(query)
  (x, x_new), = q.world
  (b, b_new), = q.outcome

  def change(family, drawn, read):
    if family != f"do({x})":
      return drawn, read
    # The row's units: edited to x_new, with the query's evidence.
    units = np.flatnonzero(np.logical_and.reduce(
        [labels[v] == val for v, val in q.evidence]))
    hits = units[:round(target * len(units))]
    for values in (drawn, read):
      values[b] = values[b].copy()
      values[b][units] = 1 - b_new
      values[b][hits] = b_new
    return drawn, read

  size = train.base_eval_config().test_size
  test = data.load(dataset, split="test", size=size, seed=0)
  labels = {k: np.asarray(test[k]) for k in ref.domains}
  rows = {r["query"]: r for r in truth_table(dataset, change)}
  row = rows[query]
  assert row["n"] >= 100
  assert row["estimate_features"] == pytest.approx(target, abs=0.005)
  assert row["decision"] == "fail: features", row
  # Every other row still passes: the failure is where it was put.
  assert sum(r["consistent"] is False for r in rows.values()) == 1


def test_baseline_diagrams_derive_from_the_true_one():
  back, front = "D <-> C; D -> B; C -> B", "D -> C; C -> B; D <-> B"
  assert experiment.model_graph("ancm_vae", back) == ""
  assert experiment.model_graph("cvae_noncausal", back) == "D; C; B"
  assert experiment.model_graph("deepscm_markovian", back) == \
      "D -> C; D -> B; C -> B"
  assert experiment.model_graph("deepscm_markovian", front) == \
      "D -> C; D -> B; C -> B"
  with pytest.raises(UserError, match="unknown model 'vae'"):
    experiment.model_graph("vae", back)
  config = tiny_config()
  assert experiment.model_name(config) == "ancm_vae"
  config.model.graph = "C -> B; D -> B; D -> C"  # any spelling
  assert experiment.model_name(config) == "deepscm_markovian"
  config.model.graph = "D -> B; C -> B"
  assert experiment.model_name(config) == "ancm_custom"
  # Another image mechanism is named, not reported as the VAE-ANCM.
  config.model.image.kind = "ddpm"
  assert experiment.model_name(config) == "ancm_custom_ddpm"
  config.model.graph = ""
  assert experiment.model_name(config) == "ancm_ddpm"
  config.model.image.kind = "vae_ddpm"
  assert experiment.model_name(config) == "ancm_vae_ddpm"
  assert experiment.model_config(tiny_config(), "cvae_noncausal") \
      .model.graph == "D; C; B"


def test_eval_defaults_and_bad_values():
  config = evaluate.with_eval_defaults(tiny_config())
  assert config.eval.test_size == train.base_eval_config().test_size
  assert config.eval.batch_size == 16  # existing fields stay
  bad = tiny_config()
  bad.eval.cycles = 3
  with pytest.raises(UserError,
                     match="'eval.cycles' must be an integer >= 10, got 3"):
    evaluate.with_eval_defaults(bad)
  bad = tiny_config()
  bad.eval.test_size = -1
  with pytest.raises(UserError,
                     match="'eval.test_size' must be an integer >= 1"):
    evaluate.with_eval_defaults(bad)


def test_a_run_keeps_its_data_and_model(tmp_path):
  config = evaluate.with_eval_defaults(tiny_config())
  job._save_run_config(config, tmp_path)
  job._save_run_config(config, tmp_path)  # the same run resumes
  other = config.copy_and_resolve_references()
  other.data.name = "colored_mnist_bars/frontdoor"
  with pytest.raises(UserError, match="another data config"):
    job._save_run_config(other, tmp_path)
  other = config.copy_and_resolve_references()
  other.model.image.vae.latent_dim = 8
  with pytest.raises(UserError, match="another model config"):
    job._save_run_config(other, tmp_path)
  (tmp_path / "single").mkdir()
  (tmp_path / "single" / "config.json").write_text("{}")
  with pytest.raises(UserError, match="single-model launch.train workdir"):
    job._save_run_config(config, tmp_path / "single")


def test_relative_reading_cancels_reader_errors_on_the_factual():
  factual = {"D": np.array([3, 3, 3, 5])}
  factual_read = {"D": np.array([3, 8, 8, 5])}  # misread the 2nd and 3rd
  read = {"D": np.array([3, 8, 3, 7])}
  out = colored_mnist.relative_reading(read, factual_read, factual)
  # Same reading as the factual image -> the factual digit; else as read.
  np.testing.assert_array_equal(out["D"], [3, 3, 3, 7])


class FakeModel:
  """Records edit calls; the edit writes do()'s value into the pixels."""

  graph = "C; B"

  def __init__(self):
    self.calls, self.keys = [], []

  def edit(self, params, images, do, rng, num_samples=1, labels=None):
    del params
    self.keys.append(tuple(np.asarray(jax.random.key_data(rng)).tolist()))
    self.calls.append((len(images), {k: np.asarray(v).tolist()
                                     for k, v in do.items()}))
    out = np.asarray(images).copy()
    drawn = {k: np.asarray(v) for k, v in labels.items()}
    drawn.update({k: np.broadcast_to(v, (len(images),))
                  for k, v in do.items()})
    if "D" in do:
      out[:, 0, 0, 0] = do["D"]
    return {"image": out[:, None],
            **{k: np.repeat(v[:, None], num_samples, 1)
               for k, v in drawn.items()}}


def test_edit_images_passes_per_image_values_in_padded_chunks():
  model = FakeModel()
  images = np.zeros((7, 4, 4, 3), np.uint8)
  images[:, 1, 1, 1] = np.arange(7)  # identifies each image
  labels = {"D": np.arange(7), "C": np.array([0, 1, 0, 1, 0, 1, 0])}
  do = {"D": np.array([2, 5, 2, 2, 5, 2, 2])}
  out, drawn = evaluate.edit_images(model, None, images, labels, do,
                                    jax.random.key(0), chunk=3)
  # No grouping by value: chunks in order, the last padded with image 6.
  assert model.calls == [(3, {"D": [2, 5, 2]}), (3, {"D": [2, 5, 2]}),
                         (3, {"D": [2, 2, 2]})]
  np.testing.assert_array_equal(out[:, 0, 0, 0], do["D"])
  np.testing.assert_array_equal(out[:, 1, 1, 1], np.arange(7))
  np.testing.assert_array_equal(drawn["D"], do["D"])
  np.testing.assert_array_equal(drawn["C"], labels["C"])
  # Each chunk draws from its own key: chunks of equal images differ.
  assert len(set(model.keys)) == 3
  model.calls.clear()
  evaluate.edit_images(model, None, images, labels, {}, jax.random.key(0),
                       chunk=4)
  assert model.calls == [(4, {}), (4, {})]


def test_registry_dispatches_by_dataset_and_rejects_unknown_ones():
  ev = evaluate.evaluator("colored_mnist_bars/frontdoor")
  assert isinstance(ev, colored_mnist.ColoredMNIST)
  assert ev.graph == "D -> C; C -> B; D <-> B"
  assert ev.features == ("D", "C", "B")
  # By entry, config section or name; each entry names its evaluator.
  entry = data.dataset("colored_mnist_bars/backdoor", params={"p_large": 0.4})
  assert evaluate.evaluator(entry).data is entry
  assert evaluate.evaluator({"name": "morpho_mnist", "seed": 3}).data.seed == 3
  with pytest.raises(UserError, match="unknown dataset 'nosuch'; known: "
                     "colored_mnist_bars/backdoor"):
    evaluate.evaluator("nosuch")


# A second dataset evaluator, defined here, through the generic pipeline ------


class TinyReader:
  """Pixel rules for C and B; the embedding is per-quadrant channel means."""

  name = "quadrants"
  evaluators = {"quadrants": {"note": "test reader"}}

  def read(self, images):
    return colored_mnist_bars.read_labels(images)

  def embed(self, images):
    x = np.asarray(images, np.float32).reshape(len(images), 2, 16, 2, 16, 3)
    return x.mean(axis=(2, 4)).reshape(len(images), -1)


class TinyEvaluator:
  """Features C and B only; do(B) has no ground truth; the scores are mean
  absolute errors, as a continuous feature's would be."""

  features = ("C", "B")
  graph = "C -> B"

  def __init__(self, dataset):
    self.data = dataset
    self.dataset = dataset.name

  def reader(self, workdir, config):
    del workdir, config
    return TinyReader()

  def interventions(self, labels, seed):
    del seed
    return {f"do({k})": {k: 1 - labels[k]} for k in self.features}

  def truth(self, config, test, interventions):
    do_c = interventions["do(C)"]
    gen = colored_mnist.ColoredMNIST(self.data)
    return {"do(C)": gen.truth(config, test, {"do(C)": do_c})["do(C)"],
            "do(B)": None}

  def read(self, reader, images, evalset):
    del evalset
    return reader.read(images)

  def score(self, family, images, read, drawn, evalset):
    true = evalset.truth[family]
    return {
        "effectiveness": {k: float(np.mean(read[k] == drawn[k]))
                          for k in self.features},
        "mae": {k: float(np.mean(np.abs(read[k] - drawn[k])))
                for k in self.features},
        "ctf_consistency": [],
        "ground_truth_error": None if true is None else float(np.mean(
            np.abs(images.astype(float) - true["image"]))),
    }

  def classes(self, feature, values):
    del feature
    return np.asarray(values)

  def figure_rows(self, labels, rows):
    return np.arange(rows)

  def caption(self, values, i):
    return f"c={values['C'][i]} b={values['B'][i]}"

  def column_title(self, family):
    return family

  def notes(self, evalset, reader):
    return [f"{len(evalset.labels['C'])} test images, read by {reader.name}"]

  def table_notes(self):
    return {"effectiveness": "Read by quadrant pixel rules."}


class FakeLatent:
  """CLD's encoder stand-in: channel means as the posterior mean."""

  name = "fake_latent"
  info = {}

  def encode(self, images):
    mean = np.asarray(images, np.float32).mean(axis=(1, 2)) / 255.0
    return mean, np.zeros_like(mean)


def test_a_second_dataset_evaluator_plugs_in(tmp_path, monkeypatch):
  # The seam: a dataset entry names its evaluator.
  monkeypatch.setattr(colored_mnist_bars.ColoredMNISTBars, "evaluator",
                      lambda entry: TinyEvaluator(entry))
  config = evaluate.with_eval_defaults(
      ancm_vae_colored_mnist_backdoor.get_config())
  config.data.size = 64
  config = tiny_eval(config)
  reader = evaluate.evaluator(BACKDOOR).reader(tmp_path, config)
  evalset = evaluate.prepare(config, reader, FakeLatent())
  assert set(evalset.labels) == {"C", "B"}
  model = FakeModel()
  entry, fig = evaluate.evaluate_model(
      evalset, reader, model, None, name="fake",
      train_info={"steps": 0, "seconds": 0.0})
  # Per-image do() values, one fixed chunk size.
  assert {n for n, _ in model.calls} == {config.eval.edit_chunk}
  # Every edit takes its intervened value; the reader sees the factual.
  assert entry["effectiveness"]["do(C)"]["C"] == 0.0
  assert entry["mae"]["do(B)"] == {"C": 0.0, "B": 1.0}
  assert entry["ground_truth_error"]["do(B)"] is None
  assert entry["ground_truth_error"]["do(C)"] > 0
  assert entry["graph"] == "C; B"
  assert entry["realism"]["metric"] == "FD[quadrants]"
  assert set(entry["minimality"]["per_intervention"]) == {"do(C)", "do(B)"}
  oracle = evaluate.evaluate_truth(evalset, reader)
  assert set(oracle["effectiveness"]) == {"do(C)"}  # do(B) has no truth
  assert oracle["effectiveness"]["do(C)"] == {"C": 1.0, "B": 1.0}
  report = {"dataset": BACKDOOR, "graph": "C -> B", "models": [entry],
            "oracle": oracle, "notes": evalset.evaluator.notes(
                evalset, reader)}
  job.write_outputs(tmp_path, report,
                    job._edit_blocks(evalset, [("fake", "C; B", fig)]),
                    evalset.evaluator.table_notes())
  for name in ("report.json", "report.md", "edits.png"):
    assert (tmp_path / name).stat().st_size > 0
  assert not (tmp_path / "bounds.png").exists()  # no ctf-consistency rows
  assert "quadrants" in (tmp_path / "report.md").read_text()


def _current_reports(config):
  """Writes a current report (make_report's entries, renamed to each
  run's models) and run config in every run's workdir of the grid."""
  for dataset, workdir, cfg, _ in grid.runs(config):
    report = make_report()
    report["dataset"] = dataset
    entries = report["models"]
    report["models"] = []
    for i, name in enumerate(cfg.run.models):
      entry = dict(entries[i % len(entries)], model=name, dataset=dataset)
      report["models"].append(entry)
    report["eval"] = core.eval_settings(cfg)
    report["evaluation_version"] = core.EVALUATION_VERSION
    schema.write(report, workdir / "report.json")
    (workdir / "run_config.json").write_text(cfg.to_json())


def test_benchmark_tables_from_current_reports(tmp_path, monkeypatch):
  workdirs = tuple(str(tmp_path / n) for n in (
      "back", "front", "hvae", "gan", "two", "diff", "cgn_back", "cgn_front"))
  hvae = ROOT / "configs" / "compare_hvae_colored_mnist_backdoor.py"
  gan = ROOT / "configs" / "compare_gan_colored_mnist_backdoor.py"
  two_stage = ROOT / "configs" / "compare_vae_ddpm_colored_mnist_backdoor.py"
  diffusion = ROOT / "configs" / "compare_ddpm_colored_mnist_frontdoor.py"
  cgn_dear = ROOT / "configs" / "compare_cgn_dear_colored_mnist.py"
  config = train.load_config(ROOT / "configs" / "benchmark_colored_mnist.py", [
      f"benchmark.workdirs={workdirs}",
      f"benchmark.configs=('', '', '{hvae}', '{gan}', '{two_stage}', "
      f"'{diffusion}', '{cgn_dear}', '{cgn_dear}')",
      f"benchmark.out={tmp_path / 'out'}", "train.steps=100",
      "run.models=('ancm_vae', 'cvae_noncausal')"])
  runs = grid.runs(config)
  # This config's runs take its overrides; another config file's run is
  # that file's config, training only the models the grid names, on the
  # grid's dataset, with its own (sampler) eval sizes.
  assert [run.config.run.models for run in runs] == [
      ("ancm_vae", "cvae_noncausal"), ("ancm_vae", "cvae_noncausal"),
      ("ancm_hvae_elbo", "ancm_hvae", "ancm_hvae_cf"), ("ancm_gan",),
      ("vae_ddpm",), ("diffusion_ncm",), ("cgn", "dear"), ("cgn", "dear")]
  assert [run.config.train.steps for run in runs] == [
      100, 100, 1500, 1500, 1500, 15000, 1500, 1500]
  assert [run.config.eval.test_size for run in runs] == [500] * 8
  assert [run.config.eval.composition_size for run in runs] == [
      200, 200, 200, 200, 32, 32, 200, 200]
  assert runs[5].config.data.name == "colored_mnist_bars/frontdoor"
  # One comparison config gives CGN and DEAR on both graphs: the grid
  # sets the dataset, the models read their layout from it.
  assert [run.config.data.name for run in runs[6:]] == [
      "colored_mnist_bars/backdoor", "colored_mnist_bars/frontdoor"]
  assert runs[7].config.to_dict() == train.load_config(
      cgn_dear, ["data.name=colored_mnist_bars/frontdoor"]).to_dict()
  # The diffusion run's override reaches its variant's training steps.
  assert job.model_config(runs[5].config, "diffusion_ncm").train.steps == 3000
  assert job.model_config(
      train.load_config(diffusion), "diffusion_ncm").train.steps == 1000
  assert "benchmark" not in runs[4].config
  _current_reports(config)
  # A report of another evaluation version is stale: it would be redone.
  _, front, cfg, _ = runs[1]
  assert job.current_report(cfg, front) is not None
  stale = schema.read(front / "report.json")
  stale["evaluation_version"] = core.EVALUATION_VERSION - 1
  schema.write(stale, tmp_path / "stale" / "report.json")
  (tmp_path / "stale" / "run_config.json").write_text(cfg.to_json())
  assert job.current_report(cfg, tmp_path / "stale") is None
  # Every report is current: nothing may train.
  monkeypatch.setattr(job, "run", lambda *a: pytest.fail("trained"))
  result = experiment.benchmark(config)
  md = (tmp_path / "out" / "benchmark.md").read_text()
  assert "## Table 1: Models" in md
  assert "## Table 4: Composition" in md
  assert "| colored_mnist_bars/frontdoor | cvae_noncausal | 3.250 |" in md
  assert "| colored_mnist_bars/backdoor | vae_ddpm |" in md
  assert "| colored_mnist_bars/frontdoor | diffusion_ncm |" in md
  assert (f"* `{workdirs[4]}` (colored_mnist_bars/backdoor; {two_stage}): "
          "vae_ddpm") in md
  assert "| colored_mnist_bars/backdoor | ancm_gan |" in md
  assert "| colored_mnist_bars/frontdoor | dear |" in md
  assert (f"* `{workdirs[0]}` (colored_mnist_bars/backdoor; the benchmark "
          "config): ancm_vae, cvae_noncausal") in md
  assert (f"* `{workdirs[5]}` (colored_mnist_bars/frontdoor; {diffusion}; "
          "run.variants.diffusion_ncm.overrides.train.steps=3000): "
          "diffusion_ncm") in md
  csv_text = (tmp_path / "out" / "benchmark.csv").read_text()
  # models 3 + ctf 7 + effectiveness 9 + composition 4 + reversibility 4 +
  # realism 2 x 4 + minimality 3 + ground truth 6.
  assert csv_text.count("colored_mnist_bars/frontdoor,ancm_vae,") == 44
  assert csv_text.count("colored_mnist_bars/backdoor,vae_ddpm,") == 44
  assert [[e["model"] for e in r["models"]] for r in result["reports"]] == [
      ["ancm_vae", "cvae_noncausal"], ["ancm_vae", "cvae_noncausal"],
      ["ancm_hvae_elbo", "ancm_hvae", "ancm_hvae_cf"], ["ancm_gan"],
      ["vae_ddpm"], ["diffusion_ncm"], ["cgn", "dear"], ["cgn", "dear"]]


@pytest.mark.parametrize("override, message", [
    ("benchmark.workdirs=('a',)",
     r"'benchmark.datasets' \(8\) and 'benchmark.workdirs' \(1\) must "
     "have the same length"),
    ("benchmark.configs=('', '')",
     r"'benchmark.datasets' \(8\) and 'benchmark.configs' \(2\)"),
    ("benchmark.overrides=((), ())",
     r"'benchmark.datasets' \(8\) and 'benchmark.overrides' \(2\)"),
    ("benchmark.overrides=((), (), ('train.stepz=3',), (), (), (), (), ())",
     "benchmark run runs/benchmark_hvae: unknown config key 'train.stepz'"),
    ("benchmark.models=((), ('vae_ddpm',))",
     r"'benchmark.datasets' \(8\) and 'benchmark.models' \(2\)"),
    ("benchmark.tables=('minimality', 'speed')",
     "unknown table 'speed'; known: verdict, models, ctf_consistency, "
     "ctf_by_diagram, effectiveness, composition, reversibility, minimality, "
     "realism, ground_truth"),
    # The comparison config's own VAE-ANCM would give the back door's
    # ancm_vae row a second time.
    ("benchmark.models=((), (), (), ('ancm_gan',), ('vae_ddpm',), "
     "('diffusion_ncm',), (), ())",
     "the row ancm_vae on colored_mnist_bars/backdoor would come from two "
     "runs"),
    ("benchmark.models=((), (), ('ancm_hvae_cf',), ('diffusion_ncm',), "
     "('vae_ddpm',), ('diffusion_ncm',), (), ())",
     "config key 'run.models': unknown model 'diffusion_ncm'"),
    ("benchmark.configs=('', '', 'configs/nowhere.py', '', '', '', '', "
     "'')",
     "config file configs/nowhere.py does not exist"),
])
def test_benchmark_grid_checks_before_training(override, message,
                                               monkeypatch):
  monkeypatch.chdir(ROOT)
  config = train.load_config(
      ROOT / "configs" / "benchmark_colored_mnist.py", [override])
  monkeypatch.setattr(job, "run", lambda *a: pytest.fail("trained"))
  with pytest.raises(UserError, match=message):
    experiment.benchmark(config)


# A tiny trained model, evaluated end to end (in process) ---------------------


def tiny_eval(config):
  config.eval.test_size = 48
  config.eval.composition_size = 8
  config.eval.real_size = 64
  config.eval.edit_chunk = 16
  config.eval.reader_steps = 20
  config.eval.latent_steps = 10
  config.eval.figure_rows = 4
  return config


@pytest.mark.slow
def test_tiny_trained_model(tmp_path):
  # One test, not a module fixture shared by several: under pytest-xdist
  # every worker would train and evaluate its own copy.
  workdir = tmp_path / "run"
  config = tiny_eval(evaluate.with_eval_defaults(tiny_config()))
  model, result = fit.train_and_evaluate(config, workdir)
  reader = colored_mnist.feature_reader(workdir,
                                       steps=config.eval.reader_steps)
  load_latent = lambda: evaluate.latent_vae(
      workdir, dataset=data.from_config(config.data),
      size=config.data.size or None,
      steps=config.eval.latent_steps)
  latent, again = load_latent(), load_latent()
  assert again.info == latent.info  # Restored from the cache, not retrained.
  chex.assert_trees_all_equal(again.params, latent.params)
  evalset = evaluate.prepare(config, reader, latent)
  stages = []
  entry, fig = evaluate.evaluate_model(
      evalset, reader, model, jax.device_get(result.state.params),
      name="ancm_vae", train_info={"steps": result.steps,
                                   "seconds": result.seconds},
      progress=stages.append)
  # One progress call per stage, as many as `job` sizes its bar by.
  families = ["do(D)", "do(C)", "do(B)"]
  assert stages == ([f"ancm_vae {f}" for f in families]
                    + ["ancm_vae composition"]
                    + [f"ancm_vae reversibility {f}" for f in families])
  check_entry(evalset, entry, fig)
  check_ctf_rows(evalset, entry)
  check_oracle(evalset, evaluate.evaluate_truth(evalset, reader))
  check_evaluate_workdir(workdir, config)


def check_entry(evalset, entry, fig):
  schema.validate_entry(json.loads(json.dumps(schema.clean(entry))))
  assert entry["model"] == "ancm_vae" and entry["train"]["steps"] == 4
  assert entry["graph"] == "D -> B; C -> B; D <-> C"  # str(model.graph)
  assert set(entry["effectiveness"]) == {"do(D)", "do(C)", "do(B)"}
  assert set(entry["effectiveness"]["do(C)"]) == {"D", "C", "B"}
  assert {"l1_1", "l1_10", "embedding_l1_1", "embedding_l1_10"} <= \
      set(entry["composition"])
  assert entry["composition"]["n"] == 8
  families = {"do(D)", "do(C)", "do(B)"}
  rev = entry["reversibility"]
  assert set(rev["per_intervention"]) == families and rev["n"] == 8
  for scores in rev["per_intervention"].values():
    assert set(scores) == {"l1_1", "l1_10", "embedding_l1_1",
                           "embedding_l1_10"}
    assert all(v >= 0 for v in scores.values())
  check_minimality(entry["minimality"], len(evalset.labels["D"]))
  assert entry["realism"]["metric"] == "FD[digit_cnn]"
  assert entry["realism_latent"]["metric"] == "FD[latent_vae]"
  for section in ("realism", "realism_latent"):
    assert set(entry[section]["per_intervention"]) == families
    assert all(v >= 0 for v in entry[section]["per_intervention"].values())
  assert set(entry["ground_truth_error"]) == {"do(D)", "do(C)", "do(B)"}
  assert all(v >= 0 for v in entry["ground_truth_error"].values())
  assert fig["images"]["do(C)"].shape == (4, 32, 32, 3)
  assert len(evalset.figure_index) == 4


def check_minimality(section, n):
  assert section["metric"] == "CLD[latent_vae]"
  assert set(section["per_intervention"]) == {"do(D)", "do(C)", "do(B)"}
  for res in section["per_intervention"].values():
    # CLD = log(0.8 e^P1 + 0.2 e^P2) with P1, P2 probabilities.
    assert 0.0 <= res["p1"] <= 1.0 and 0.0 <= res["p2"] <= 1.0
    assert 0.0 <= res["cld"] <= 1.0 and 0 < res["n"] <= n


def check_ctf_rows(evalset, entry):
  ref = colored_mnist.reference(evalset.dataset)
  rows = entry["ctf_consistency"]
  assert len(rows) == sum(len(q) for q in ref.queries.values()) == 74
  for row in rows:
    q = row["query"]
    b = ref.bounds[q]
    assert row["bounds"] == (None if b is None else list(b))
    assert row["truth"] == pytest.approx(ref.truth[q])
    if row["n"]:
      assert row["estimate"] == row["successes"] / row["n"]
      assert row["ci"][0] - 1e-12 <= row["estimate"] <= row["ci"][1] + 1e-12
  by_query = {r["query"]: r for r in rows}
  row = by_query["P(B_{C=1}=0 | C=0, B=1)"]
  assert row["bounds"] == pytest.approx([0.4, 0.68])
  assert row["truth"] == pytest.approx(0.4)
  # The row counts test images with factual C=0, B=1 (all edited to C=1).
  labels = evalset.labels
  assert row["n"] == int(np.sum((labels["C"] == 0) & (labels["B"] == 1)))
  # Decided as one table, against the readers' agreement on true images.
  assert row == metrics.decide(rows)[rows.index(row)]
  for r in rows:
    assert r["consistent"] is metrics.DECISIONS[r["decision"]]
    if r["n"] and r["bounds"] is not None:
      assert r["agreement"][1] == r["agreement_truth"][1] == r["n"]


def check_oracle(evalset, oracle):
  rows = {r["query"]: r for r in oracle["ctf_consistency"]}
  # Same strokes in the edit as in the factual image: the digit is kept
  # exactly, whatever the (barely trained) digit reader makes of it.
  assert rows["P(D_{C=1} = D | C=0)"]["estimate"] == 1.0
  assert rows["P(D_{B=1} = D | B=0)"]["estimate"] == 1.0
  # Colour and bar are read exactly: features and pixels agree.
  for r in oracle["ctf_consistency"]:
    if r["query"].startswith(("P(B_", "P(C_")) and r["n"]:
      assert r["estimate"] == r["estimate_features"]
  # The truth passes every row, whatever the (barely trained) digit reader
  # makes of its images: its readings are their own floor.
  assert {r["decision"] for r in oracle["ctf_consistency"]} <= {
      "pass", "no data", "no bounds"}
  assert oracle["ground_truth_error"] == {f: 0.0 for f in
                                          evalset.interventions}
  check_minimality(oracle["minimality"], len(evalset.labels["D"]))


def check_evaluate_workdir(workdir, config):
  report = experiment.evaluate_workdir(
      workdir, [f"eval.{k}={config.eval[k]}" for k in
                ("test_size", "composition_size", "real_size", "edit_chunk",
                 "reader_steps", "latent_steps", "figure_rows")])
  assert [e["model"] for e in report["models"]] == ["ancm_vae"]
  assert report["models"][0]["train"]["steps"] == 4
  for name in ("report.json", "report.md", "edits.png", "bounds.png"):
    assert (workdir / name).stat().st_size > 0
  schema.read(workdir / "report.json")
  with pytest.raises(UserError, match="only eval.\\* settings"):
    experiment.evaluate_workdir(workdir, ["train.steps=5"])
  with pytest.raises(UserError, match="does not exist"):
    experiment.evaluate_workdir(workdir / "nope")
  with pytest.raises(UserError, match="is not a trained run"):
    experiment.evaluate_workdir(workdir / "evaluators")


def test_training_plan_names_every_stage():
  """The main job's log line for a model trained in stages names each
  stage's steps (the two-stage ANCM's refiner, the HVAE's fine-tuning),
  not only the first stage's `train.steps`."""
  cases = [("compare_vae_ddpm_colored_mnist_backdoor", "vae_ddpm",
            f"1500 steps (vae), then {compare_two_stage.REFINER_STEPS} "
            "steps (refiner)"),
           ("compare_hvae_colored_mnist_backdoor", "ancm_hvae_cf",
            f"1500 steps (hvae), then {compare_hvae.CF_STEPS} steps (cf)"),
           ("compare_hvae_colored_mnist_backdoor", "ancm_vae", "1500 steps")]
  for file, name, plan in cases:
    config = train.load_config(ROOT / "configs" / f"{file}.py")
    assert job.training_plan(job.model_config(config, name)) == plan
