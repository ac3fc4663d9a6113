"""Care sets W: the W-specific queries and bounds, and edits that keep W.

The exact side (Colored MNIST backdoor reference) against closed forms
written from the generator's documented mechanisms, and the ANCM's edit
with a care set on a tiny model: W kept exactly, the rest drawn afresh,
care=None the old call bit for bit.
"""

import types

import jax
import numpy as np
import pytest

from ctfjax import data
from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.ancm import model as ancm_model
from ctfjax.evaluate import core
from ctfjax.evaluate.datasets import colored_mnist
from ctfjax.metrics import consistency
from ctfjax.ncm import model as ncm_model
from ctfjax.errors import UserError
from test_ancm import tiny_config

DATASET = "colored_mnist_bars/backdoor"
GRAPH = "D <-> C; D -> B; C -> B"
DOMAINS = {"D": 10, "C": 2, "B": 2}


# The exact side -----------------------------------------------------------


def _bar(d, c):
  """P(B=1 | D=d, C=c) of the backdoor generator's defaults (module
  docstring of ctfjax/data/colored_mnist_bars.py): 0.9 - 0.05 d - 0.3 c."""
  return 0.9 - 0.05 * d - 0.3 * c


def _red(d):
  """P(C=1 | D=d): D >= 5 exactly when U_DC = 1, and C = U_DC xor U_C with
  P(U_C = 1) = 1 - 0.8."""
  return 0.8 if d >= 5 else 0.2


def _pooled_bar_bounds(d, d_new, b_old):
  """Bounds of P(B_{D=d_new}=1-b_old | D=d, B=b_old), C pooled, by hand.

  U_B is independent of (D, C), so the couplings of B's responses to d and
  d_new can be chosen separately for each c: each is a Frechet range, and
  the query's numerator is their P(C=c | D=d)-weighted sum.
  """
  lo = hi = den = 0.0
  for c in (0, 1):
    w = _red(d) if c else 1.0 - _red(d)
    p, q = _bar(d, c), _bar(d_new, c)
    if b_old == 0:  # P(B_{d'}=1, B=0): between max(0, q - p), min(q, 1 - p).
      lo, hi, den = (lo + w * max(0.0, q - p), hi + w * min(q, 1.0 - p),
                     den + w * (1.0 - p))
    else:  # P(B_{d'}=0, B=1): between max(0, p - q), min(1 - q, p).
      lo, hi, den = (lo + w * max(0.0, p - q), hi + w * min(1.0 - q, p),
                     den + w * p)
  return lo / den, hi / den


def test_care_set_keeps_only_w_specific_rows():
  every = consistency.protocol_queries(GRAPH, DOMAINS)
  assert consistency.protocol_queries(GRAPH, DOMAINS, care=None) == every
  empty = consistency.protocol_queries(GRAPH, DOMAINS, care=())
  # W = {}: effectiveness only, for every family.
  assert empty["do(C)"] == ["P(C_{C=0}=0 | C=1)", "P(C_{C=1}=1 | C=0)"]
  assert all(len(rows) == DOMAINS[f[3:-1]] for f, rows in empty.items())
  digit = consistency.protocol_queries(GRAPH, DOMAINS, care=("D",))
  assert digit["do(C)"] == ["P(C_{C=0}=0 | C=1)", "P(D_{C=0} = D | C=1)",
                            "P(C_{C=1}=1 | C=0)", "P(D_{C=1} = D | C=0)"]
  # W = {D, B} under do(D): the bar rows pool the colour (C not in W).
  db = consistency.protocol_queries(GRAPH, DOMAINS, care=("D", "B"))
  assert "P(B_{D=0}=1 | D=5, B=0)" in db["do(D)"]
  assert not any("C" in q for q in db["do(D)"])
  assert len(db["do(D)"]) == 10 * 3
  for care, table in ((), empty), (("D",), digit), (("D", "B"), db):
    for fam, rows in table.items():
      assert all(consistency.care_specific(q, care) for q in rows)
      # Every W-specific row of the full table is kept.
      assert set(rows) >= {q for q in every[fam]
                           if consistency.care_specific(q, care)}


@pytest.mark.slow
def test_pooled_bounds_equal_the_hand_computation_and_differ_from_split():
  ref = colored_mnist.reference(DATASET, ("D", "B"))
  full = colored_mnist.reference(DATASET)
  checked = 0
  for q in ref.queries["do(D)"]:
    pq = consistency.PairQuery.parse(q)
    if pq.outcome[0][0] != "B":
      assert ref.bounds[q] == (1.0, 1.0)
      continue
    (_, d_new), = pq.world
    given = dict(pq.evidence)
    want = _pooled_bar_bounds(given["D"], d_new, given["B"])
    np.testing.assert_allclose(ref.bounds[q], want, atol=1e-7)
    # The monotone threshold mechanism attains the lower end.
    assert ref.truth[q] == pytest.approx(want[0], abs=1e-9)
    split = [full.bounds[s] for s in full.queries["do(D)"]
             if s.startswith(q.split(" |")[0]) and s.endswith(
                 f"D={given['D']}, C=0, B={given['B']})")]
    assert split and split[0] != pytest.approx(want), q
    checked += 1
  assert checked == 20
  # The first row by hand: weights 0.2 / 0.8 on green / red large digits.
  assert ref.bounds["P(B_{D=0}=1 | D=5, B=0)"] == pytest.approx(
      (0.25 / 0.59, 0.55 / 0.59))


def test_a_non_descendant_outside_w_has_no_guarantee():
  table = data.feature_scm(DATASET).observational()
  query = "P(D_{C=1}=3 | D=3)"
  kept = consistency.care_bounds(GRAPH, table, query, ("D",))
  free = consistency.care_bounds(GRAPH, table, query, ())
  assert kept == pytest.approx((1.0, 1.0))
  assert free == (0.0, 1.0)
  preserve = "P(D_{C=1} = D | C=0)"
  assert consistency.care_bounds(GRAPH, table, preserve, ("D",)) == (1.0, 1.0)
  assert consistency.care_bounds(GRAPH, table, preserve, ("B",)) == (0.0, 1.0)
  # Evidence outside W also leaves W's guarantee.
  split = "P(B_{C=1}=1 | C=0, D=3, B=0)"
  assert consistency.care_bounds(GRAPH, table, split, ("B",)) == (0.0, 1.0)
  lo, hi = consistency.care_bounds(GRAPH, table, split, ("D", "B"))
  p, q = _bar(3, 0), _bar(3, 1)
  assert (lo, hi) == pytest.approx((max(0, q - p) / (1 - p),
                                    min(q, 1 - p) / (1 - p)))


@pytest.mark.parametrize("text, care", [
    ("", None), ("  ", None), ("none", ()), ("D", ("D",)),
    ("D, B", ("D", "B")), ("B,D", ("B", "D"))])
def test_parse_care(text, care):
  assert consistency.parse_care(text, "--care") == care


@pytest.mark.parametrize("text, message", [
    ("D,,B", "--care=D,,B: an empty feature name"),
    ("D,", "an empty feature name"),
    ("D,D", "--care=D,D names 'D' twice")])
def test_parse_care_rejects(text, message):
  with pytest.raises(UserError, match=message):
    consistency.parse_care(text, "--care")


# The evaluator --------------------------------------------------------------


def _config(care=None):
  config = train.load_config("configs/quickstart.py:tiny")
  config = core.with_eval_defaults(config)
  if care is not None:
    config = train.apply_overrides(config, {"eval.care": care})
  return core.with_eval_defaults(config)


def test_eval_care_setting():
  default = _config()
  ev = colored_mnist.ColoredMNIST(data.dataset(DATASET))
  assert default.eval.care == ""
  assert core.care_set(default, ev) is None
  assert "care" not in core.eval_settings(default)
  chosen = _config("D,B")
  assert core.care_set(chosen, ev) == ("D", "B")
  assert core.eval_settings(chosen)["care"] == "D,B"
  assert core.care_set(_config("none"), ev) == ()
  with pytest.raises(UserError, match="'eval.care' names unknown feature "
                     "'Q'; the dataset has D, C, B"):
    core.care_set(_config("D,Q"), ev)
  families = {"do(D)": {"D": 0}, "do(C)": {"C": 0}}
  evalset = types.SimpleNamespace(care=("D", "B"), interventions=families)
  assert core.EvalSet.care_of(evalset, "do(D)") == ("B",)
  assert core.EvalSet.care_of(evalset, "do(C)") == ("D", "B")


@pytest.mark.slow
def test_evaluator_rows_are_the_w_specific_queries_with_their_bounds():
  ev = colored_mnist.ColoredMNIST(data.dataset(DATASET))
  rng = np.random.default_rng(0)
  n = 400
  labels = {"D": rng.integers(0, 10, n), "C": rng.integers(0, 2, n),
            "B": rng.integers(0, 2, n)}
  families = ev.interventions(labels, 0)
  ref = colored_mnist.reference(DATASET, ("B",))
  for fam, do in families.items():
    # The edits: intervened value set, the rest as factual.
    drawn = {**labels, **do}
    truth = {**drawn, "image": np.zeros((n, 4, 4, 3), np.uint8)}
    evalset = types.SimpleNamespace(
        care=("B",), labels=labels, interventions=families,
        truth={fam: truth}, truth_read=None)
    rows = ev.score(fam, truth["image"], drawn, drawn, evalset)[
        "ctf_consistency"]
    assert [r["query"] for r in rows] == ref.queries[fam]
    for r in rows:
      assert tuple(r["bounds"]) == pytest.approx(ref.bounds[r["query"]])
  assert "P(B_{D=0}=1 | D=5, B=0)" in ref.queries["do(D)"]
  assert not any(q.startswith("P(D_{C") for q in ref.queries["do(C)"])


# The ANCM ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup():
  """The tiny backdoor ANCM as built (untrained): a care set's effect is
  the abduction's evidence, whatever the weights."""
  config = tiny_config()
  model, params = fit.build(config, 0)
  ds = fit.load_split(config, "train", 32)
  return model, params, ds


def _edit(setup, do, key, care="unset", n=6, rows=16):
  model, params, ds = setup
  labels = {k: ds[k][:rows] for k in model.order}
  extra = {} if care == "unset" else {"care": care}
  out = model.edit(params, ds["image"][:rows], do, jax.random.key(key),
                   num_samples=n, labels=labels, **extra)
  return labels, out


@pytest.mark.slow
def test_care_d_keeps_the_digit_and_the_empty_set_redraws_it(setup):
  model, _, ds = setup
  do = {"C": 1 - ds["C"][:16]}
  changed = {}
  for care in (None, ("D",), ()):
    labels, out = _edit(setup, do, 7, care)
    np.testing.assert_array_equal(out["C"], np.repeat(do["C"][:, None], 6, 1))
    changed[care] = out["D"] != labels["D"][:, None]
  # D is evidence for W = {D} (and for every feature by default): kept.
  assert not changed[None].any() and not changed[("D",)].any()
  # Outside W the digit is drawn afresh: it changes in some draws.
  assert changed[()].mean() > 0.2, changed[()].mean()
  del model


@pytest.mark.slow
def test_evidence_is_w_and_the_intervened_features(setup):
  """The factual X = x stays evidence: every W-specific query states it."""
  model = setup[0]
  assert model.care_evidence(None, {"C": 1}) is None
  assert model.care_evidence(("B",), {"C": 1}) == ("C", "B")
  assert model.care_evidence((), {"D": 3}) == ("D",)
  assert model.care_evidence(("D",), {}) == ("D",)


@pytest.mark.slow
def test_null_intervention_with_a_care_set(setup):
  model, _, ds = setup
  labels, out = _edit(setup, {}, 3, ("D",))
  np.testing.assert_array_equal(out["D"], np.repeat(labels["D"][:, None], 6,
                                                    1))
  assert (out["C"] != labels["C"][:, None]).any()
  # Nothing kept: every row draws its own features (n per row).
  _, out = _edit(setup, {}, 3, ())
  assert out["D"].shape == (16, 6) and out["image"].shape[:2] == (16, 6)
  assert len({tuple(r) for r in np.asarray(out["D"])}) > 1
  del model, ds


@pytest.mark.slow
def test_care_none_is_the_old_edit_bit_for_bit(setup):
  model, params, ds = setup
  do = {"C": 1 - ds["C"][:16]}
  labels, old = _edit(setup, do, 11)
  _, new = _edit(setup, do, 11, None)
  for k in old:
    np.testing.assert_array_equal(np.asarray(old[k]), np.asarray(new[k]))
  # The pipeline before care sets, step by step with the same keys: the
  # NCM's jitted abduction-action-prediction on every factual feature.
  k_feat, k_img, k_pred = jax.random.split(jax.random.key(11), 3)
  v = model.ncm.check_values({k: labels[k] for k in model.order})
  u = model.abduct_image(params, ds["image"][:16], v, k_img)
  drawn = ncm_model._counterfactual_sample(  # pylint: disable=protected-access
      model.ncm, params["ncm"], v, model.ncm.check_do(do), k_feat, 6,
      model.num_particles)
  flat = {k: drawn[k].reshape(-1) for k in model.order}
  images = model.predict_image(
      params, flat, jax.tree.map(lambda a: np.repeat(a, 6, axis=0), u),
      k_pred)
  np.testing.assert_array_equal(
      np.asarray(new["image"]),
      np.asarray(ancm_model.to_uint8(images)).reshape(16, 6, 32, 32, 3))
  for k in model.order:
    np.testing.assert_array_equal(np.asarray(new[k]), np.asarray(drawn[k]))


@pytest.mark.parametrize("care, message", [
    (("Q",), "the care set names unknown feature 'Q'; the model has D, C, "
     "B"),
    (("D", "C"), "the care set names 'C', which do\\(\\) sets"),
    ("D", "a collection of feature names"),
])
@pytest.mark.slow
def test_bad_care_sets(setup, care, message):
  with pytest.raises(ancm_model.ANCMError, match=message) as info:
    _edit(setup, {"C": 1}, 0, care, n=1, rows=2)
  assert "\n" not in str(info.value)
