"""The evaluator of real attribute-labelled images (`datasets.attributes`)
and its anti-causal predictors (`attribute_predictors`), on Colored MNIST
data dressed as a real dataset: no generator, only images and labels."""

import collections
import math
import types

import jax.numpy as jnp
import numpy as np
import pytest

from ctfjax import causal as cc
from ctfjax import data
from ctfjax import evaluate
from ctfjax import metrics
from ctfjax.data import colored_mnist_bars
from ctfjax.errors import UserError
from ctfjax.evaluate import attribute_predictors as ap
from ctfjax.evaluate.datasets import attributes
from ctfjax.evaluate.datasets import base
from ctfjax.report import schema
from configs import ancm_vae_colored_mnist_backdoor
from test_evaluate import FakeLatent, FakeModel, tiny_eval

BACKDOOR = "colored_mnist_bars/backdoor"
# (D=5, C=1, B=0), 25 of the 600 training images and 14 of the 200 test
# images, is left out of the training split: do(D)'s row with that evidence
# has test images but no bounds.
DROPPED = {"D": 5, "C": 1, "B": 0}
NO_BOUNDS = "P(B_{D=0}=1 | D=5, C=1, B=0)"


def ink(images) -> np.ndarray:
  """A synthetic continuous attribute: the mean stroke level (0-255)."""
  return np.asarray(images)[..., :2].max(-1).mean(axis=(1, 2)).astype(
      np.float32)


class Backdoor(data.Dataset):
  """Colored MNIST backdoor images and labels, seen as real data."""

  name = "test/backdoor_attributes"
  graph = "D <-> C; D -> B; C -> B"
  kinds = {"D": 10, "C": 2, "B": 2}
  image_shape = (32, 32, 3)
  value_names = {"C": ("green", "red"), "B": ("no bar", "bar")}
  EVALUATOR = "ctfjax.evaluate.datasets.attributes:Attributes"
  SIZES = {"train": 600, "test": 200}

  def __init__(self, drop=None):
    self.drop = dict(drop or {})

  def columns(self, ds):
    return {k: np.asarray(ds[k]) for k in ("image", *self.kinds)}

  def load(self, split="train", size=None, **_):
    out = self.columns(data.load(BACKDOOR, split,
                                 size=size or self.SIZES[split]))
    if split == "train" and self.drop:
      hit = np.all([out[k] == v for k, v in self.drop.items()], axis=0)
      out = {k: v[~hit] for k, v in out.items()}
    return out

  def identity(self, split="train"):
    return {"backdoor": data.dataset(BACKDOOR).identity(split),
            "drop": self.drop}


class Inky(Backdoor):
  """The same images with the digit replaced by a continuous attribute."""

  name = "test/ink_attributes"
  graph = "ink <-> C; ink -> B; C -> B"
  kinds = {"ink": {"kind": "continuous", "loc": 25.0, "scale": 8.5},
           "C": 2, "B": 2}

  def columns(self, ds):
    return {"image": np.asarray(ds["image"]), "ink": ink(ds["image"]),
            "C": np.asarray(ds["C"]), "B": np.asarray(ds["B"])}


@pytest.fixture(scope="module")
def backdoor():
  return attributes.Attributes(Backdoor(drop=DROPPED))


@pytest.fixture(scope="module")
def inky():
  return attributes.Attributes(Inky())


def _test_labels(ev):
  test = ev.data.load("test")
  return {k: np.asarray(test[k]) for k in ev.features}


def _edits(labels, do, change=None):
  """{feature: [N]} of edits that take `do` and keep everything else, with
  `change` {feature: [N] values} overriding."""
  out = {k: np.asarray(v).copy() for k, v in labels.items()}
  out.update({k: np.asarray(v) for k, v in do.items()})
  out.update(change or {})
  return out


# Kinds and class weights ------------------------------------------------------


def test_kinds_of_every_form_become_targets():
  got = ap.targets({
      "a": 3, "b": {"kind": "continuous", "loc": 2.0, "scale": 4.0},
      "c": cc.kinds.Continuous(1.0, 0.5),
      "d": {"kind": "categorical", "size": 5}, "e": cc.kinds.Categorical(2),
      "f": {"kind": "spline", "loc": -1.0, "scale": 3.0}})
  assert got == {"a": ap.Target("a", classes=3),
                 "b": ap.Target("b", loc=2.0, scale=4.0),
                 "c": ap.Target("c", loc=1.0, scale=0.5),
                 "d": ap.Target("d", classes=5),
                 "e": ap.Target("e", classes=2),
                 "f": ap.Target("f", loc=-1.0, scale=3.0)}
  assert [t.outputs for t in got.values()] == [3, 1, 1, 5, 2, 1]
  with pytest.raises(UserError, match="'g' has unknown kind 'nosuch'"):
    ap.targets({"g": {"kind": "nosuch"}})
  with pytest.raises(UserError, match="'h': bad continuous fields"):
    ap.targets({"h": {"kind": "continuous", "mean": 1.0}})


def test_class_weights_are_inverse_frequencies():
  labels = np.array([0, 0, 0, 1, 1, 3])
  # N / (present classes * count): 6 / (3 * 3), 6 / (3 * 2), absent,
  # 6 / (3 * 1).
  np.testing.assert_allclose(ap.class_weights(labels, 4),
                             [2 / 3, 1.0, 0.0, 2.0])
  arrays = ap.training_arrays(ap.Target("y", classes=4),
                              np.zeros((6, 8, 8, 3), np.uint8), labels)
  np.testing.assert_allclose(arrays["weight"], [2 / 3] * 3 + [1, 1, 2])
  # The loss weights each example's cross-entropy by its class's weight
  # (a stand-in network whose parameters are its logits).
  logits = np.random.default_rng(1).normal(size=(6, 4))
  network = types.SimpleNamespace(apply=lambda params, x: params)
  loss, _ = ap._loss_fn(True, network)(jnp.asarray(logits, jnp.float32),
                                       arrays, None)
  ce = np.log(np.exp(logits).sum(-1)) - logits[np.arange(6), labels]
  np.testing.assert_allclose(float(loss), np.mean(arrays["weight"] * ce),
                             rtol=1e-5)


def test_continuous_targets_are_standardised_by_their_kind():
  target = ap.Target("ink", loc=25.0, scale=8.5)
  arrays = ap.training_arrays(target, np.zeros((3, 4, 4, 3), np.uint8),
                              np.array([25.0, 33.5, 8.0], np.float32))
  np.testing.assert_allclose(arrays["target"], [0.0, 1.0, -2.0])
  assert "weight" not in arrays
  np.testing.assert_allclose(target.unstandardise(arrays["target"]),
                             [25.0, 33.5, 8.0])


def test_fingerprint_follows_the_labels():
  arrays = {"image": np.zeros((4, 2, 2, 1), np.uint8),
            "C": np.array([0, 1, 0, 1], np.int32)}
  before = ap.fingerprint(arrays, ("C",))
  arrays["C"] = np.array([0, 1, 1, 1], np.int32)
  assert ap.fingerprint(arrays, ("C",)) != before


# The protocol -----------------------------------------------------------------


def test_protocol_changes_each_intervened_attribute_and_nothing_else(
    backdoor, inky):
  labels = _test_labels(backdoor)
  fams = backdoor.interventions(labels, seed=0)
  assert list(fams) == ["do(D)", "do(C)", "do(B)"]
  assert all(list(do) == [fam[3:-1]] for fam, do in fams.items())
  np.testing.assert_array_equal(fams["do(D)"]["D"], (labels["D"] + 5) % 10)
  np.testing.assert_array_equal(fams["do(C)"]["C"], 1 - labels["C"])
  np.testing.assert_array_equal(fams["do(B)"]["B"], 1 - labels["B"])
  # A continuous attribute: drawn from its training marginal, by seed.
  labels = _test_labels(inky)
  fams = inky.interventions(labels, seed=0)
  assert list(fams) == ["do(ink)", "do(C)", "do(B)"]
  assert all(list(do) == [fam[3:-1]] for fam, do in fams.items())
  drawn = fams["do(ink)"]["ink"]
  assert np.all(drawn != labels["ink"])
  assert np.isin(drawn, inky.train_labels["ink"]).all()
  assert len(np.unique(drawn)) > len(drawn) // 2  # draws, not one value
  np.testing.assert_array_equal(
      inky.interventions(labels, seed=0)["do(ink)"]["ink"], drawn)
  assert np.any(inky.interventions(labels, seed=1)["do(ink)"]["ink"]
                != drawn)
  np.testing.assert_array_equal(fams["do(C)"]["C"], 1 - labels["C"])
  # Real data: no family has ground truth.
  assert inky.truth(None, None, fams) == {f: None for f in fams}


def test_diagram_must_cover_exactly_the_attributes():
  class Wrong(Backdoor):
    graph = "D <-> C"

  with pytest.raises(UserError, match="must be exactly its attributes"):
    attributes.Attributes(Wrong())


# Ctf-consistency on the empirical table ---------------------------------------


@pytest.mark.slow  # the LP bounds of 44 rows: seconds
def test_bounds_are_cc_bounds_of_the_hand_built_table(backdoor):
  train = backdoor.data.load("train")
  counts = collections.Counter(zip(*(train[k].tolist() for k in "DCB")))
  probs = np.zeros((10, 2, 2))
  for cell, n in counts.items():
    probs[cell] = n / len(train["D"])
  assert probs[5, 1, 0] == 0  # the dropped cell
  table = attributes.empirical_table(backdoor.train_labels, backdoor.domains)
  assert table.variables == ("D", "C", "B")
  np.testing.assert_allclose(table.probs, probs)
  ref = backdoor.reference
  assert ref.queries == metrics.protocol_queries(backdoor.graph,
                                                 backdoor.domains)
  hand = cc.Table(("D", "C", "B"), probs)
  for q in ("P(B_{C=1}=1 | C=0, B=0)", "P(B_{C=0}=0 | C=1, B=1)",
            "P(B_{D=5}=1 | D=0, C=0, B=0)", "P(B_{D=7}=0 | D=2, C=1, B=1)"):
    assert ref.bounds[q] == pytest.approx(cc.bounds(backdoor.graph, hand, q),
                                          abs=1e-9)
  # Rows the diagram alone fixes need no LP.
  assert ref.bounds["P(D_{C=1} = D | C=0)"] == (1.0, 1.0)
  assert ref.bounds["P(C_{C=1}=1 | C=0)"] == (1.0, 1.0)
  # Evidence that never occurs: no bounds, and the reason.
  assert ref.bounds[NO_BOUNDS] is None
  assert "probability zero" in ref.notes[NO_BOUNDS]
  assert attributes.reference(backdoor.graph, table) is ref  # cached


@pytest.mark.slow  # the LP bounds of 44 rows: seconds
def test_scores_judge_the_drawn_features_and_note_rows_without_bounds(
    backdoor):
  labels = _test_labels(backdoor)
  fams = backdoor.interventions(labels, seed=0)
  evalset = types.SimpleNamespace(labels=labels, interventions=fams)
  # Edits that take do() and keep the rest, read as drawn: effective, and
  # consistent wherever the diagram alone fixes the row (a kept B may
  # violate a descendant row's LP bounds, which these edits ignore).
  for fam, do in fams.items():
    drawn = _edits(labels, do)
    got = backdoor.score(fam, None, drawn, drawn, evalset)
    assert got["effectiveness"] == {"D": 1.0, "C": 1.0, "B": 1.0}
    assert got["ground_truth_error"] is None
    assert "effectiveness_mae" not in got
    rows = got["ctf_consistency"]
    assert [r["query"] for r in rows] == backdoor.reference.queries[fam]
    assert all(r["truth"] is None and r["agreement"] is None for r in rows)
    fixed = [r["decision"] for r in rows
             if metrics.structural_bounds(backdoor.graph, r["query"])]
    assert "pass" in fixed and set(fixed) <= {"pass", "no data"}
  no_bounds, = [r for r in backdoor.score(
      "do(D)", None, _edits(labels, fams["do(D)"]),
      _edits(labels, fams["do(D)"]), evalset)["ctf_consistency"]
                if r["query"] == NO_BOUNDS]
  assert no_bounds["bounds"] is None
  assert no_bounds["decision"] == "no bounds"
  assert no_bounds["consistent"] is None
  assert "probability zero" in no_bounds["bounds_note"]
  # Under do(C): the model changes the digit of one edit in ten (drawn and
  # shown), and the reader misreads the colour of one edit in four.
  n = len(labels["D"])
  changed = np.arange(n) % 10 == 0
  digit = np.where(changed, (labels["D"] + 1) % 10, labels["D"])
  drawn = _edits(labels, fams["do(C)"], {"D": digit})
  misread = np.arange(n) % 4 == 0
  read = dict(drawn, C=np.where(misread, 1 - drawn["C"], drawn["C"]))
  got = backdoor.score("do(C)", None, read, drawn, evalset)
  assert got["effectiveness"]["C"] == pytest.approx(1 - misread.mean())
  assert got["effectiveness"]["D"] == 1.0  # read as drawn
  rows = {r["query"]: r for r in got["ctf_consistency"]}
  for c in (0, 1):
    row = rows[f"P(D_{{C={1 - c}}} = D | C={c})"]
    assert row["decision"] == "fail: features"
  # The misread colour shows in the read estimate, not in the decision.
  for c in (0, 1):
    row = rows[f"P(C_{{C={1 - c}}}={1 - c} | C={c})"]
    assert row["estimate"] < 1.0
    assert row["estimate_features"] == 1.0
    assert row["decision"] == "pass"


def test_continuous_attributes_score_mae_and_have_no_rows(inky):
  labels = _test_labels(inky)
  fams = inky.interventions(labels, seed=0)
  evalset = types.SimpleNamespace(labels=labels, interventions=fams)
  drawn = _edits(labels, fams["do(ink)"])
  read = dict(drawn, ink=drawn["ink"] + np.where(
      np.arange(len(drawn["ink"])) % 2, 2.0, -1.0))
  got = inky.score("do(ink)", None, read, drawn, evalset)
  assert got["effectiveness"] == {"C": 1.0, "B": 1.0}
  assert got["effectiveness_mae"]["ink"] == pytest.approx(
      np.mean(np.abs(read["ink"] - drawn["ink"])), rel=1e-6)
  assert got["ctf_consistency"] == []
  assert got["ground_truth_error"] is None
  assert inky.reference is None
  # CLD classes: the value of a categorical, deciles of a continuous one.
  classes = inky.classes("ink", inky.train_labels["ink"])
  share = np.bincount(classes, minlength=10) / len(classes)
  np.testing.assert_allclose(share, 0.1, atol=0.02)
  np.testing.assert_array_equal(inky.classes("C", labels["C"]), labels["C"])


# Figures, words and the bars --------------------------------------------------


def test_captions_titles_and_figure_rows(backdoor, inky):
  values = {"D": np.array([4]), "C": np.array([1]), "B": np.array([0])}
  assert backdoor.caption(values, 0) == "D=4, red, no bar"

  class Numbered(Backdoor):  # a folder's values "0", "1" as value names
    value_names = {"C": ("green", "red"), "B": ("0", "1")}

  got = attributes.Attributes(Numbered()).caption(values, 0)
  assert got == "D=4, red, B=0"
  values = {"ink": np.array([25.13]), "C": np.array([0]), "B": np.array([1])}
  assert inky.caption(values, 0) == "ink=25.1, green, bar"
  assert backdoor.column_title("do(C)") == "do(C=1-c)"
  assert backdoor.column_title("do(D)") == "do(D=d+5 mod 10)"
  assert inky.column_title("do(ink)") == "do(ink=drawn)"
  labels = _test_labels(backdoor)
  rows = backdoor.figure_rows(labels, 8)
  assert len(set(rows)) == 8 and list(rows) == sorted(rows)
  seen = {(labels["C"][i], labels["B"][i]) for i in rows}
  assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}
  labels = _test_labels(inky)
  rows = inky.figure_rows(labels, 8)
  high = labels["ink"] > np.median(labels["ink"])
  assert len({(labels["C"][i], labels["B"][i], high[i]) for i in rows}) == 8


def test_usable_bars_come_from_the_data(backdoor):
  images = backdoor.data.load("test", attributes.BAR_IMAGES)["image"]
  black = float(np.mean(np.asarray(images, np.float64)))
  assert backdoor.black_l1 == pytest.approx(black, rel=1e-5)
  comp, agree = backdoor.usable_bars
  assert comp.limit == math.ceil(black * 10) / 10
  assert f"{black:.1f}" in comp.why
  assert agree.limit == attributes.AGREEMENT_BAR
  kept = {"do(C)": {"D": 0.8, "C": 0.1, "B": 0.7}}
  ok = {"composition": {"l1_1": black}, "effectiveness": kept}
  assert base.usability(ok, backdoor.usable_bars) == {"ok": True,
                                                      "reasons": []}
  bad = {"composition": {"l1_1": comp.limit + 0.1},
         "effectiveness": {"do(C)": {"D": 0.5, "C": 1.0, "B": 0.6}}}
  got = base.usability(bad, backdoor.usable_bars)
  assert not got["ok"] and len(got["reasons"]) == 2

  class Lone(Backdoor):
    graph, kinds = "C", {"C": 2}

  # One attribute: nothing is kept, so there is no agreement to bar.
  lone = attributes.Attributes(Lone())
  assert [b.name for b in lone.usable_bars] == ["composition L1"]


# Trained predictors -----------------------------------------------------------

STEPS, WIDTH, BATCH = 150, 4, 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("attributes")
  dataset = Inky()
  reader = ap.predictors(workdir, dataset, steps=STEPS, width_divisor=WIDTH,
                         batch_size=BATCH)
  return workdir, dataset, reader


@pytest.mark.slow
def test_predictors_read_the_attributes_well_above_chance(trained):
  _, dataset, reader = trained
  info = reader.info
  for k in ("C", "B"):  # chance: 0.5
    assert info[k]["test_balanced_accuracy"] > 0.9
  train_ink = dataset.load("train")["ink"]
  test = dataset.load("test", ap.TEST_SIZE)
  floor = np.mean(np.abs(test["ink"] - train_ink.mean()))  # the mean's MAE
  assert info["ink"]["test_mae"] < 0.6 * floor
  read = reader.read(test["image"][:16])
  assert read["C"].dtype == np.int32 and read["ink"].dtype == np.float32
  assert reader.embed(test["image"][:16]).shape == (
      16, 3 * (ap.HIDDEN // WIDTH))
  assert set(reader.evaluators) == {"attributes_ink", "attributes_C",
                                    "attributes_B"}


@pytest.mark.slow
def test_predictors_record_their_identity_and_restore(trained):
  workdir, dataset, reader = trained
  train = dataset.load("train")
  for k in ("C", "B"):
    counts = collections.Counter(train[k].tolist())
    n = len(train[k])
    assert reader.info[k]["class_weights"] == pytest.approx(
        [n / (2 * counts[0]), n / (2 * counts[1])])
  for info in reader.info.values():
    assert info["dataset"] == dataset.name
    assert info["attributes"] == ["ink", "C", "B"]
    assert info["image_shape"] == [32, 32, 3]
    assert info["data_identity"]["drop"] == {}
  assert reader.info["ink"]["kind"] == {"kind": "continuous", "loc": 25.0,
                                        "scale": 8.5}
  log = workdir / "evaluators" / "attributes" / "C" / "metrics.jsonl"
  stamp = log.stat().st_mtime_ns
  again = ap.predictors(workdir, dataset, steps=STEPS, width_divisor=WIDTH,
                        batch_size=BATCH)
  assert log.stat().st_mtime_ns == stamp  # restored, not retrained
  assert again.info == reader.info
  images = dataset.load("test", 16)["image"]
  np.testing.assert_array_equal(again.embed(images), reader.embed(images))


def test_reader_trains_on_the_configured_split(backdoor, monkeypatch):
  calls = []
  monkeypatch.setattr(ap, "predictors",
                      lambda *a, **k: calls.append((a, k)))
  config = tiny_eval(evaluate.with_eval_defaults(
      ancm_vae_colored_mnist_backdoor.get_config()))
  config.data.size = 123
  backdoor.reader("/run", config)
  assert calls == [(("/run", backdoor.data),
                    {"size": 123, "steps": config.eval.reader_steps})]


# Through the generic pipeline -------------------------------------------------


class LabelReader:
  """C and B by the generator's pixel rules, D as 0; channel means embed."""

  name = "pixels"
  evaluators = {"pixels": {"note": "test reader"}}
  info = {"C": {"test_accuracy": 1.0, "test_balanced_accuracy": 1.0}}

  def read(self, images):
    return {"D": np.zeros(len(images), np.int32),
            **colored_mnist_bars.read_labels(images)}

  def embed(self, images):
    return np.asarray(images, np.float32).mean(axis=(1, 2))


@pytest.mark.slow
def test_the_evaluator_runs_through_the_pipeline(backdoor, monkeypatch):
  monkeypatch.setattr(data, "from_config", lambda section: backdoor.data)
  config = tiny_eval(evaluate.with_eval_defaults(
      ancm_vae_colored_mnist_backdoor.get_config()))
  reader = LabelReader()
  evalset = evaluate.prepare(config, reader, FakeLatent())
  assert evalset.truth == {"do(D)": None, "do(C)": None, "do(B)": None}
  entry, _ = evaluate.evaluate_model(
      evalset, reader, FakeModel(), None, name="fake",
      train_info={"steps": 0, "seconds": 0.0})
  entry["usable"] = base.usability(entry, backdoor.usable_bars)
  schema.validate_entry(entry)
  # The fake model draws do() but leaves the pixels: C and B read as kept.
  assert entry["effectiveness"]["do(C)"]["C"] == 0.0
  assert entry["effectiveness"]["do(C)"]["B"] == 1.0
  assert entry["ground_truth_error"] == {"do(D)": None, "do(C)": None,
                                         "do(B)": None}
  rows = entry["ctf_consistency"]
  assert {r["intervention"] for r in rows} >= {"C=0", "C=1", "D=5"}
  assert all(r["truth"] is None for r in rows)
  notes = backdoor.notes(evalset, reader)
  assert "C accuracy 1.000" in notes[1]
  assert "empirical joint" in notes[2]


def test_binary_f1_is_the_positive_class_f1_by_hand():
  pred = np.array([1, 1, 0, 0, 1, 0])
  target = np.array([1, 0, 1, 0, 1, 0])  # TP 2, FP 1, FN 1
  assert attributes.binary_f1(pred, target) == pytest.approx(4 / 6)
  assert attributes.binary_f1(np.zeros(3), np.zeros(3)) == 0.0
  assert attributes.binary_f1(target, target) == 1.0
