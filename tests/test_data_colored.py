"""Colored MNIST with bars: exact feature SCM, true counterfactuals, readers."""

import numpy as np
import pytest

from ctfjax import causal as cc
from ctfjax import data
from ctfjax.data import colored_mnist_bars as cmb

GRAPHS = tuple(cmb.GRAPHS)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("ctfjax_data"))


@pytest.fixture(scope="module")
def digits(cache_dir):
  return data.mnist.load(None, "train")


@pytest.fixture(scope="module", params=GRAPHS)
def gen(request, digits):
  return cmb.Generator(request.param, *digits)


@pytest.fixture(scope="module")
def batch(gen):
  return gen.sample(0, 3000)


# Feature level ----------------------------------------------------------------


def test_feature_scm_has_the_documented_graph():
  for graph, text in cmb.GRAPHS.items():
    assert cmb.feature_scm(graph).graph == cc.Graph.parse(text)
    assert data.feature_scm(f"colored_mnist_bars/{graph}").graph == (
        cc.Graph.parse(text))


@pytest.mark.parametrize("graph,query,want", [
    # Backdoor: C = U_DC xor U_C, P(B=1 | D, C) = 0.9 - 0.05 D - 0.3 C.
    ("backdoor", "P(C=1 | D=7)", 0.8),
    ("backdoor", "P(C=1 | D=2)", 0.2),
    ("backdoor", "P(B=1 | D=3, C=1)", 0.45),
    ("backdoor", "P(B=1 | D=9, C=1)", 0.15),
    ("backdoor", "P(D=4)", 0.1),
    ("backdoor", "P(B_{C=1}=1 | C=0, B=0)", 0.0),
    # Front-door: P(C=1 | D) = 0.1 + 0.08 D, P(B=1 | C, U_DB) = 0.8 - 0.5 C
    # - 0.2 U_DB.
    ("frontdoor", "P(C=1 | D=4)", 0.42),
    ("frontdoor", "P(B=1 | C=1, D=7)", 0.1),
    ("frontdoor", "P(B=1 | C=0, D=2)", 0.8),
    ("frontdoor", "P(B_{C=1}=1 | D=6)", 0.1),
])
def test_default_probabilities_are_exact(graph, query, want):
  assert cc.query(cmb.feature_scm(graph), query) == pytest.approx(want,
                                                                 abs=1e-12)


def test_sampled_frequencies_match_exact_joint(gen):
  n = 200_000
  v = gen.features(gen.sample_exogenous(np.random.default_rng(1), n))
  counts = np.zeros((10, 2, 2))
  np.add.at(counts, (v["D"], v["C"], v["B"]), 1)
  probs = gen.scm.observational().marginal(("D", "C", "B")).probs
  # Per-cell binomial bound, 5 sigma (plus one count for tiny cells).
  sigma = np.sqrt(n * probs * (1 - probs))
  np.testing.assert_array_less(np.abs(counts - n * probs), 5 * sigma + 1)
  assert np.all(counts[probs == 0] == 0)


def test_overrides_change_the_model_and_stay_exact():
  scm = cmb.feature_scm("backdoor", {"p_red_given_large": 0.6,
                                     "bar_slope_red": -0.4})
  assert cc.query(scm, "P(C=1 | D=8)") == pytest.approx(0.6)
  assert cc.query(scm, "P(B=1 | D=0, C=1)") == pytest.approx(0.5)
  scm = cmb.feature_scm("frontdoor", {"red_levels": 10, "red_intercept": 0.0,
                                      "red_slope_digit": 0.1})
  assert cc.query(scm, "P(C=1 | D=9)") == pytest.approx(0.9)


@pytest.mark.parametrize("graph,params,match", [
    ("backdoor", {"p_red": 0.8}, "unknown parameter 'p_red'"),
    ("backdoor", {"p_large": 1.5}, "probability in"),
    ("backdoor", {"bar_levels": 0}, "positive integer"),
    ("backdoor", {"bar_levels": 2.5}, "positive integer"),
    ("backdoor", {"bar_intercept": "high"}, "finite number"),
    ("backdoor", {"bar_slope_digit": -0.03}, r"multiple of 1/20"),
    ("backdoor", {"bar_intercept": 1.2}, "not a probability"),
    ("frontdoor", {"red_slope_digit": 0.2}, "not a probability"),
    ("frontdoor", {"red_intercept": 0.11}, r"multiple of 1/50 \(red_levels\)"),
    ("sideways", None, "unknown Colored MNIST graph"),
])
def test_bad_parameters_raise_one_line(graph, params, match):
  with pytest.raises(data.DataError, match=match) as e:
    cmb.feature_scm(graph, params)
  assert "\n" not in str(e.value)


# Samples ----------------------------------------------------------------------


def test_sample_format(batch, gen):
  assert batch["image"].shape == (3000, 32, 32, 3)
  assert batch["image"].dtype == np.uint8
  for k in cmb.FACTORS:
    assert batch[k].dtype == np.int32 and batch[k].shape == (3000,)
  assert set(batch["exogenous"]) == set(gen.exogenous_names)
  r = batch["exogenous"][cmb.STYLE]
  assert r.dtype == np.float32 and r.min() >= 0 and r.max() < 1
  # The digit strokes are the chosen MNIST exemplar, in the colour channel.
  idx = gen.exemplar_index(batch["D"], r)
  channel = np.where(batch["C"] == 1, cmb.RED, cmb.GREEN)
  strokes = batch["image"][np.arange(3000), 2:30, 2:30, channel]
  np.testing.assert_array_equal(strokes, gen.exemplars[idx])
  other = batch["image"][np.arange(3000), :, :, cmb.RED + cmb.GREEN - channel]
  assert not other.any()


def test_readers_are_exact_on_generated_images(batch):
  labels = cmb.read_labels(batch["image"])
  np.testing.assert_array_equal(labels["C"], batch["C"])
  np.testing.assert_array_equal(labels["B"], batch["B"])


def _blur(images, sigma=1.0):
  x = np.arange(-3, 4)
  k = np.exp(-x**2 / (2 * sigma**2))
  k /= k.sum()
  out = images.astype(np.float64)
  for axis in (1, 2):
    out = np.apply_along_axis(lambda v: np.convolve(v, k, "same"), axis, out)
  return out


def test_readers_tolerate_blurry_noisy_outputs(batch):
  images = batch["image"][:500]
  rng = np.random.default_rng(0)
  soft = _blur(images) + rng.normal(0, 20, images.shape)
  labels = cmb.read_labels(np.clip(soft, 0, 255) / 255.0, max_value=1.0)
  np.testing.assert_array_equal(labels["C"], batch["C"][:500])
  np.testing.assert_array_equal(labels["B"], batch["B"][:500])


@pytest.mark.parametrize("images,match", [
    (np.zeros((2, 28, 28, 3)), r"\[N, 32, 32, 3\]"),
    (np.zeros((32, 32, 3)), r"\[N, 32, 32, 3\]"),
    (np.full((1, 32, 32, 3), np.nan), "NaN"),
])
def test_readers_reject_bad_images(images, match):
  with pytest.raises(data.DataError, match=match):
    cmb.read_labels(images)


def test_determinism(gen):
  a, b, c = gen.sample(7, 100), gen.sample(7, 100), gen.sample(8, 100)
  np.testing.assert_array_equal(a["image"], b["image"])
  for k in a["exogenous"]:
    np.testing.assert_array_equal(a["exogenous"][k], b["exogenous"][k])
  assert not np.array_equal(a["exogenous"][cmb.STYLE],
                            c["exogenous"][cmb.STYLE])


# True counterfactuals ---------------------------------------------------------


def test_null_intervention_reproduces_the_sample(gen, batch):
  again = gen.counterfactual(batch, {})
  np.testing.assert_array_equal(again["image"], batch["image"])
  for k in cmb.FACTORS:
    np.testing.assert_array_equal(again[k], batch[k])


@pytest.mark.parametrize("var", cmb.FACTORS)
def test_counterfactual_keeps_exogenous_and_follows_the_graph(gen, batch, var):
  rng = np.random.default_rng(2)
  value = rng.integers(0, cmb.DOMAINS[var], len(batch[var]))
  cf = gen.counterfactual(batch, {var: value})
  for k, u in batch["exogenous"].items():
    np.testing.assert_array_equal(cf["exogenous"][k], u)
  np.testing.assert_array_equal(cf[var], value)
  graph = gen.scm.graph
  for other in cmb.FACTORS:
    if other != var and other not in graph.descendants(var):
      np.testing.assert_array_equal(cf[other], batch[other])
  # Descendants follow their mechanisms on the same exogenous values.
  want = gen.scm.evaluate(
      {k: batch["exogenous"][k] for k in gen.scm.exogenous}, do={var: 1})
  ones = value == 1
  for other in graph.descendants(var) - {var}:
    np.testing.assert_array_equal(cf[other][ones], want[other][ones])


def test_do_colour_moves_only_the_strokes(gen, batch):
  flip = 1 - batch["C"]
  cf = gen.counterfactual(batch, {"C": flip})
  x, y = batch["image"], cf["image"]
  # Strokes move to the other channel unchanged.
  np.testing.assert_array_equal(x[..., cmb.RED], y[..., cmb.GREEN])
  np.testing.assert_array_equal(x[..., cmb.GREEN], y[..., cmb.RED])
  # The blue channel changes exactly where the bar (a descendant) changes.
  same_bar = cf["B"] == batch["B"]
  np.testing.assert_array_equal(x[same_bar, ..., cmb.BLUE],
                                y[same_bar, ..., cmb.BLUE])
  assert np.all(np.any(x[~same_bar, ..., cmb.BLUE] !=
                       y[~same_bar, ..., cmb.BLUE], axis=(1, 2)))
  np.testing.assert_array_equal(cf["D"], batch["D"])


def test_do_bar_changes_only_the_bar_rows(gen, batch):
  cf = gen.counterfactual(batch, {"B": 1 - batch["B"]})
  x, y = batch["image"], cf["image"]
  np.testing.assert_array_equal(x[..., :2], y[..., :2])
  np.testing.assert_array_equal(x[:, cmb.BAR_ROWS:], y[:, cmb.BAR_ROWS:])
  np.testing.assert_array_equal(cmb.read_bar(y), 1 - batch["B"])
  np.testing.assert_array_equal(cf["D"], batch["D"])
  np.testing.assert_array_equal(cf["C"], batch["C"])


def test_do_digit_keeps_the_style_slot(gen, batch):
  target = (batch["D"] + 3) % 10
  cf = gen.counterfactual(batch, {"D": target})
  r = batch["exogenous"][cmb.STYLE]
  idx = gen.exemplar_index(target, r)
  channel = np.where(cf["C"] == 1, cmb.RED, cmb.GREEN)
  n = len(target)
  np.testing.assert_array_equal(cf["image"][np.arange(n), 2:30, 2:30, channel],
                                gen.exemplars[idx])
  # Same relative exemplar in the new class: floor(r n_d) / n_d ~ r.
  slot = idx - gen.offsets[target]
  assert np.all(np.abs(slot / gen.counts[target] - r) <= 1 / gen.counts[target])
  if gen.graph == "backdoor":  # C is a confounded non-descendant of D.
    np.testing.assert_array_equal(cf["C"], batch["C"])
  np.testing.assert_array_equal(cmb.read_labels(cf["image"])["C"], cf["C"])


def test_counterfactual_through_the_registry(cache_dir):
  name = "colored_mnist_bars/frontdoor"
  ds = data.load(name, "test", size=50, data_dir=cache_dir)
  cf = data.counterfactual(name, ds, {"C": 0}, split="test")
  assert np.all(cf["C"] == 0)
  np.testing.assert_array_equal(cf["D"], ds["D"])


@pytest.mark.parametrize("do,match", [
    ({"I": 1}, "cannot intervene on 'I'"),
    ({"D": 10}, r"integers in 0\.\.9"),
    ({"C": np.zeros(3, int)}, "scalar or an array of length"),
    ({"B": 0.5}, "integers in"),
])
def test_bad_interventions_raise(gen, batch, do, match):
  with pytest.raises(data.DataError, match=match):
    gen.counterfactual(batch, do)


def test_counterfactual_needs_exogenous(gen, batch):
  with pytest.raises(data.DataError, match="no 'exogenous'"):
    gen.counterfactual({"image": batch["image"]}, {"C": 1})
  broken = {"exogenous": dict(batch["exogenous"], u_i=np.full(3000, 1.5))}
  with pytest.raises(data.DataError, match=r"\[0, 1\)"):
    gen.counterfactual(broken, {"C": 1})


def test_generator_needs_every_digit_class(digits):
  images, labels = digits
  keep = labels != 7
  with pytest.raises(data.DataError, match="no digit 7"):
    cmb.Generator("backdoor", images[keep], labels[keep])
