"""Metrics against hand-made cases and independent computations."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import sklearn.metrics

from ctfjax import metrics
from ctfjax.errors import UserError

# Composition and reversibility ------------------------------------------------


def _images(n=4, lo=0.0, hi=200.0, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(lo, hi, size=(n, 8, 8, 3)).astype(np.float32)


def _labels(n=4):
  return {"C": np.arange(n) % 2, "D": np.arange(n) % 10}


def test_identity_edit_has_zero_composition():
  d = metrics.composition(lambda x, lab, do: x, _images(), _labels())
  assert set(d) == {"l1"}
  assert d["l1"].shape == (10, 4)
  np.testing.assert_array_equal(d["l1"], 0.0)


def test_adding_one_per_edit_gives_composition_m():
  add_one = lambda x, lab, do: x + 1.0
  emb = lambda x: jnp.reshape(x, (x.shape[0], -1))[:, :5]
  d = metrics.composition(add_one, _images(), _labels(), cycles=10,
                          embed_fn=emb)
  want = np.arange(1, 11, dtype=np.float64)[:, None] * np.ones((1, 4))
  np.testing.assert_allclose(d["l1"], want, rtol=1e-6)
  np.testing.assert_allclose(d["embedding_l1"], want, rtol=1e-6)
  s = metrics.cycle_summary(d)
  assert s["l1_1"] == pytest.approx(1.0)
  assert s["l1_10"] == pytest.approx(10.0)
  assert s["embedding_l1_10"] == pytest.approx(10.0)


def test_pixel_range_is_rescaled_to_255():
  # Images on [-1, 1]; one step of 2/255 is one 8-bit level.
  x = _images(lo=-0.9, hi=0.5)
  d = metrics.composition(lambda x, lab, do: x + 2.0 / 255.0, x, _labels(),
                          cycles=3, pixel_range=(-1.0, 1.0))
  np.testing.assert_allclose(d["l1"][:, 0], [1.0, 2.0, 3.0], rtol=1e-4)


def test_clipping_counts_saturated_pixels_as_unchanged():
  x = np.full((2, 4, 4, 1), 250.0, np.float32)
  add_one = lambda x, lab, do: x + 1.0
  clipped = metrics.composition(add_one, x, _labels(2), cycles=10)
  raw = metrics.composition(add_one, x, _labels(2), cycles=10, clip=False)
  np.testing.assert_allclose(clipped["l1"][:, 0],
                             [1, 2, 3, 4, 5, 5, 5, 5, 5, 5])
  np.testing.assert_allclose(raw["l1"][:, 0], np.arange(1, 11))


def test_pixel_l1_uint8_does_not_wrap():
  a = np.zeros((1, 2, 2, 3), np.uint8)
  b = np.full((1, 2, 2, 3), 255, np.uint8)
  assert float(metrics.pixel_l1(a, b)[0]) == 255.0
  assert float(metrics.pixel_l1(b, a)[0]) == 255.0


def test_pixel_l1_is_a_per_image_mean():
  a = np.zeros((2, 2, 2, 1), np.float32)
  b = a.copy()
  b[0, 0, 0, 0] = 40.0  # one pixel of four
  np.testing.assert_allclose(metrics.pixel_l1(a, b), [10.0, 0.0])


def test_null_intervention_and_perceptual_hook():
  seen = []

  def edit(x, lab, do):
    seen.append(dict(do))
    return x

  lab = _labels()
  metrics.composition(edit, _images(), lab, cycles=2)
  assert seen == [{}, {}]
  seen.clear()
  d = metrics.composition(edit, _images(), lab, cycles=2, factual_do=True,
                          perceptual_fn=lambda a, b: jnp.ones(a.shape[0]))
  assert set(seen[0]) == {"C", "D"}
  np.testing.assert_array_equal(seen[0]["C"], lab["C"])
  np.testing.assert_array_equal(d["perceptual"], 1.0)


def _colour_model():
  """Image = 100 * C + u: exact abduction when the labels are right."""

  def edit(x, lab, do):
    u = x - 100.0 * jnp.asarray(lab["C"], jnp.float32)[:, None, None, None]
    c = jnp.broadcast_to(jnp.asarray(do.get("C", lab["C"])), (x.shape[0],))
    return u + 100.0 * jnp.asarray(c, jnp.float32)[:, None, None, None]

  return edit


def test_reversibility_of_an_exact_model_is_zero():
  lab = _labels()
  x = _images(hi=50.0) + 100.0 * lab["C"][:, None, None, None]
  d = metrics.reversibility(_colour_model(), x, lab, {"C": 1 - lab["C"]},
                            cycles=3)
  np.testing.assert_allclose(d["l1"], 0.0, atol=1e-4)
  # A scalar intervention broadcasts to every sample.
  d = metrics.reversibility(_colour_model(), x, lab, {"C": 1}, cycles=2)
  np.testing.assert_allclose(d["l1"], 0.0, atol=1e-4)


def test_reversibility_records_two_edits_per_cycle():
  calls = []

  def edit(x, lab, do):
    calls.append((dict(do), np.asarray(lab["C"])))
    return x + 1.0

  lab = _labels()
  d = metrics.reversibility(edit, _images(), lab, {"C": 1 - lab["C"]},
                            cycles=4)
  np.testing.assert_allclose(d["l1"][:, 0], [2, 4, 6, 8], rtol=1e-6)
  # Forward do(C=1-c) on factual labels; back do(C=c) on substituted labels.
  np.testing.assert_array_equal(calls[0][0]["C"], 1 - lab["C"])
  np.testing.assert_array_equal(calls[0][1], lab["C"])
  np.testing.assert_array_equal(calls[1][0]["C"], lab["C"])
  np.testing.assert_array_equal(calls[1][1], 1 - lab["C"])


def test_edit_fn_may_return_its_labels():
  calls = []

  def edit(x, lab, do):
    calls.append(np.asarray(lab["D"]))
    return x, {"D": np.asarray(lab["D"]) + 1}

  metrics.composition(edit, _images(), _labels(), cycles=3)
  np.testing.assert_array_equal(calls[2], _labels()["D"] + 2)


def test_composition_bad_input():
  with pytest.raises(metrics.MetricError, match="different numbers"):
    metrics.composition(lambda x, l, d: x, _images(4), _labels(3))
  with pytest.raises(metrics.MetricError, match="cycles"):
    metrics.composition(lambda x, l, d: x, _images(), _labels(), cycles=0)
  with pytest.raises(metrics.MetricError, match="shape"):
    metrics.composition(lambda x, l, d: x[:, :4], _images(), _labels())
  with pytest.raises(metrics.MetricError, match="not recorded"):
    metrics.cycle_summary({"l1": np.zeros((3, 2))})
  with pytest.raises(UserError, match="no labels"):
    metrics.reversibility(lambda x, l, d: x, _images(), _labels(), {"B": 1})


# Effectiveness ----------------------------------------------------------------


def test_f1_hand_case():
  # Class 0: TP 1, FP 1, FN 1 -> 1/2; class 1: TP 2, FP 1 -> 4/5;
  # class 2: never predicted -> 0.
  s = metrics.classification_scores([0, 0, 1, 1, 2], [0, 1, 1, 1, 0])
  assert s["accuracy"] == pytest.approx(3 / 5)
  assert s["f1_per_class"] == pytest.approx({"0": 0.5, "1": 0.8, "2": 0.0})
  assert s["f1"] == pytest.approx(1.3 / 3)
  assert s["n"] == 5


@pytest.mark.parametrize("seed", range(6))
def test_f1_matches_sklearn(seed):
  rng = np.random.default_rng(seed)
  n, k = rng.integers(3, 40), rng.integers(2, 6)
  y_true = rng.integers(0, k, n)
  # Some predictions outside the true classes, some true classes unpredicted.
  y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k + 2, n))
  s = metrics.classification_scores(y_true, y_pred)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    want = sklearn.metrics.f1_score(y_true, y_pred, average="macro",
                                    zero_division=0)
    binary = sklearn.metrics.f1_score(y_true == 1, y_pred == 1,
                                      zero_division=0)
  assert s["f1"] == pytest.approx(want, abs=1e-12)
  assert s["accuracy"] == pytest.approx(
      sklearn.metrics.accuracy_score(y_true, y_pred))
  assert s["f1_per_class"].get("1", 0.0) == pytest.approx(binary)


def test_effectiveness_per_parent():
  targets = {"digit": np.array([3, 3, 7, 1]),
             "thickness": np.array([1.0, 2.0, 3.0, 4.0])}
  logits = np.eye(10)[[3, 3, 7, 2]]  # [N, K] scores: argmax taken
  preds = {"digit": logits, "thickness": np.array([[1.5], [2], [2], [4]])}
  out = metrics.effectiveness(preds, targets)
  assert out["digit"]["accuracy"] == pytest.approx(0.75)
  assert out["thickness"] == {"mae": pytest.approx(1.5 / 4), "n": 4}
  # Kinds may be forced, e.g. 0./1. float labels that are classes.
  out = metrics.effectiveness({"B": np.array([0, 1])},
                              {"B": np.array([0.0, 0.0])},
                              kinds={"B": "categorical"})
  assert out["B"]["accuracy"] == 0.5


def test_effectiveness_bad_input():
  with pytest.raises(metrics.MetricError, match="no predictions"):
    metrics.effectiveness({}, {"C": np.array([0])})
  with pytest.raises(metrics.MetricError, match="kind"):
    metrics.effectiveness({"C": [0]}, {"C": np.array([0])}, {"C": "ordinal"})
  with pytest.raises(metrics.MetricError, match="class ids"):
    metrics.classification_scores([0, -1], [0, 1])
  with pytest.raises(metrics.MetricError, match="different numbers"):
    metrics.classification_scores([0, 1], [0, 1, 1])


# Realism ----------------------------------------------------------------------


def _random_cov(rng, d, rank=None):
  a = rng.normal(size=(d, rank or d))
  return a @ a.T / d


def _scipy_fd(mu1, c1, mu2, c2):
  covmean = scipy.linalg.sqrtm(c1 @ c2)
  covmean = np.real(covmean)
  return (np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2)
          - 2 * np.trace(covmean))


def test_frechet_diagonal_closed_form():
  mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
  a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert got == pytest.approx(want, rel=1e-12)


def test_frechet_commuting_covariances():
  rng = np.random.default_rng(1)
  q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
  a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
  mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
  got = metrics.frechet_distance(mu1, q @ np.diag(a) @ q.T,
                                 mu2, q @ np.diag(b) @ q.T)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert got == pytest.approx(want, rel=1e-10)


def test_frechet_zero_for_identical_sets():
  rng = np.random.default_rng(2)
  f = rng.normal(size=(50, 8))
  assert metrics.frechet_distance(*metrics.gaussian_stats(f),
                                  *metrics.gaussian_stats(f)) < 1e-10
  # Rank-deficient covariance (fewer samples than dimensions) too.
  g = rng.normal(size=(5, 20))
  assert metrics.frechet_distance(*metrics.gaussian_stats(g),
                                  *metrics.gaussian_stats(g)) < 1e-10


@pytest.mark.parametrize("seed", range(4))
def test_frechet_matches_scipy_sqrtm(seed):
  rng = np.random.default_rng(seed)
  d = 6
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  c1, c2 = _random_cov(rng, d), _random_cov(rng, d)
  got = metrics.frechet_distance(mu1, c1, mu2, c2)
  assert got == pytest.approx(_scipy_fd(mu1, c1, mu2, c2), rel=1e-8)
  assert got == pytest.approx(metrics.frechet_distance(mu2, c2, mu1, c1),
                              rel=1e-10)


def test_frechet_singular_covariances_are_stable():
  rng = np.random.default_rng(3)
  c1, c2 = _random_cov(rng, 10, rank=3), _random_cov(rng, 10, rank=4)
  got = metrics.frechet_distance(np.zeros(10), c1, np.zeros(10), c2)
  assert np.isfinite(got) and got >= 0
  assert got == pytest.approx(metrics.frechet_distance(np.zeros(10), c2,
                                                       np.zeros(10), c1))


def test_gaussian_stats_and_feature_batches():
  rng = np.random.default_rng(4)
  images = rng.normal(size=(10, 2, 3))
  feature_fn = lambda x: np.reshape(x, (x.shape[0], -1)) * 2.0
  f = metrics.extract_features(feature_fn, images, batch_size=3)
  np.testing.assert_allclose(f, images.reshape(10, -1) * 2.0)
  mu, cov = metrics.gaussian_stats(f)
  np.testing.assert_allclose(mu, f.mean(0))
  np.testing.assert_allclose(cov, np.cov(f.T))


def test_fid_names_its_feature_network():
  rng = np.random.default_rng(5)
  real, gen = rng.normal(size=(30, 4)), rng.normal(1.0, 1.0, size=(20, 4))
  ident = lambda x: x
  r = metrics.fid(real, gen, ident, feature_network="ctfjax_digit_clf")
  assert r["metric"] == "FD[ctfjax_digit_clf]" and not r["inception"]
  assert "not Inception-FID" in r["note"]
  assert (r["n_real"], r["n_generated"]) == (30, 20)
  want = _scipy_fd(*metrics.gaussian_stats(real), *metrics.gaussian_stats(gen))
  assert r["value"] == pytest.approx(want, rel=1e-8)
  r = metrics.fid(real, real, ident, feature_network=metrics.INCEPTION)
  assert r["metric"] == "FID" and r["value"] < 1e-10
  with pytest.raises(metrics.MetricError, match="at least 2"):
    metrics.gaussian_stats(np.zeros((1, 3)))
  with pytest.raises(metrics.MetricError, match="do not match"):
    metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# Minimality -------------------------------------------------------------------


def test_gaussian_kl_closed_form_and_monte_carlo():
  m1, s1, m2, s2 = 0.3, 0.7, -0.5, 1.6
  closed = np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
  got = metrics.gaussian_kl(jnp.array([m1]), jnp.array([2 * np.log(s1)]),
                            jnp.array([m2]), jnp.array([2 * np.log(s2)]))
  assert float(got) == pytest.approx(closed, rel=1e-5)
  x = np.random.default_rng(0).normal(m1, s1, size=400_000)
  mc = np.mean(scipy.stats.norm.logpdf(x, m1, s1)
               - scipy.stats.norm.logpdf(x, m2, s2))
  assert float(got) == pytest.approx(mc, abs=5e-3)
  # Diagonal: the sum over dimensions.
  two = metrics.gaussian_kl(jnp.array([m1, 0.0]),
                            jnp.array([2 * np.log(s1), 0.0]),
                            jnp.array([m2, 0.0]),
                            jnp.array([2 * np.log(s2), 0.0]))
  assert float(two) == pytest.approx(closed, rel=1e-5)


def test_gaussian_kl_uses_the_variances():
  # Equal means, different variances: KL > 0 (reading the mean twice, as the
  # peer code does, would give 0 here).
  got = metrics.gaussian_kl(jnp.zeros(3), jnp.zeros(3), jnp.zeros(3),
                            jnp.full(3, np.log(4.0)))
  assert float(got) == pytest.approx(3 * (np.log(2.0) + 1 / 8 - 0.5),
                                     rel=1e-5)


def _cld_case():
  """1-D latents with unit variance, so d = (mu_i - mu_j)^2 / 2."""
  z = lambda *v: np.array(v, np.float32)[:, None]
  return dict(
      factual_mean=z(0.0, 0.0), factual_logvar=z(0.0, 0.0),
      counterfactual_mean=z(1.0, 1.0), counterfactual_logvar=z(0.0, 0.0),
      factual_parent=np.array([0, 0]), counterfactual_parent=np.array([1, 2]),
      # Parent 0: d = 0.125, 2, 4.5; parent 1: d = 0.02, 0.5, 8, 4.5.
      reference_mean=z(0.5, 2.0, 3.0, 0.2, 1.0, 4.0, -3.0),
      reference_logvar=np.zeros((7, 1), np.float32),
      reference_parent=np.array([0, 0, 0, 1, 1, 1, 1]))


def test_cld_hand_case():
  r = metrics.cld(**_cld_case())
  # div = 0.5. P1 = P(S_x* <= 0.5) = 2/4 (the tie counts); P2 = P(S_x >=
  # 0.5) = 2/3. The second sample's counterfactual class 2 has no reference
  # data: skipped.
  assert r["p1"] == pytest.approx(0.5)
  assert r["p2"] == pytest.approx(2 / 3)
  assert r["cld"] == pytest.approx(np.log(0.8 * np.exp(0.5)
                                          + 0.2 * np.exp(2 / 3)))
  assert (r["n"], r["skipped"]) == (1, 1)
  assert np.isnan(r["per_sample"]["p1"][1])


def test_cld_matches_brute_force():
  rng = np.random.default_rng(7)
  n, m, d = 9, 40, 3
  fm, flv = rng.normal(size=(n, d)), rng.normal(0, 0.3, (n, d))
  cm, clv = rng.normal(size=(n, d)), rng.normal(0, 0.3, (n, d))
  rm, rlv = rng.normal(size=(m, d)), rng.normal(0, 0.3, (m, d))
  fpa, cpa, rpa = rng.integers(0, 3, n), rng.integers(0, 3, n), \
      rng.integers(0, 3, m)

  def kl(a, la, b, lb):  # independent float64 form
    va, vb = np.exp(la), np.exp(lb)
    return 0.5 * np.sum(np.log(vb / va) + va / vb + (a - b) ** 2 / vb - 1)

  p1s, p2s, clds = [], [], []
  for i in range(n):
    div = kl(fm[i], flv[i], cm[i], clv[i])
    dist = np.array([kl(fm[i], flv[i], rm[j], rlv[j]) for j in range(m)])
    p1 = np.mean(dist[rpa == cpa[i]] <= div)
    p2 = np.mean(dist[rpa == fpa[i]] >= div)
    p1s.append(p1)
    p2s.append(p2)
    clds.append(np.log(0.8 * np.exp(p1) + 0.2 * np.exp(p2)))
  r = metrics.cld(fm, flv, cm, clv, fpa, cpa, rm, rlv, rpa, batch_size=4)
  np.testing.assert_allclose(r["per_sample"]["p1"], p1s)
  np.testing.assert_allclose(r["per_sample"]["p2"], p2s)
  assert r["cld"] == pytest.approx(np.mean(clds))
  # Averaging per-sample CLD is at least the CLD of the mean probabilities.
  assert r["cld"] >= np.log(0.8 * np.exp(r["p1"]) + 0.2 * np.exp(r["p2"]))


def test_cld_bad_input():
  case = _cld_case()
  with pytest.raises(metrics.MetricError, match="positive"):
    metrics.cld(**case, weights=(0.8, 0.0))
  case["reference_parent"] = np.full(7, 5)
  with pytest.raises(metrics.MetricError, match="no sample"):
    metrics.cld(**case)
  case = _cld_case()
  case["counterfactual_mean"] = np.zeros((2, 2), np.float32)
  with pytest.raises(metrics.MetricError, match="counterfactual_mean"):
    metrics.cld(**case)


# Ground truth -----------------------------------------------------------------


def test_ground_truth_error():
  true = _images(n=4)
  gen = true + np.array([0.0, 2.0, 4.0, 6.0], np.float32)[:, None, None, None]
  r = metrics.ground_truth_error(gen, true)
  assert r == {"l1": pytest.approx(3.0), "n": 4}
  r = metrics.ground_truth_error(
      gen, true,
      generated_features={"C": np.array([0, 1, 1, 0]),
                          "B": np.array([1, 1, 0, 0])},
      true_features={"C": np.array([0, 1, 1, 1]), "B": np.array([1, 0, 0, 0]),
                     "D": np.array([3, 3, 3, 3])})
  assert r["feature_match"] == pytest.approx(0.5)
  assert r["feature_match_per_var"] == pytest.approx({"C": 0.75, "B": 0.75})
  with pytest.raises(metrics.MetricError, match="true_features"):
    metrics.ground_truth_error(gen, true, generated_features={"C": [0] * 4})
  with pytest.raises(metrics.MetricError, match="shapes"):
    metrics.ground_truth_error(gen, true[:2])
