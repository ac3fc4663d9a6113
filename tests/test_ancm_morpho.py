"""Deep-SCM on MorphoMNIST: the ANCM over spline and categorical features."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from ctfjax import data
from ctfjax.ancm import fit
from ctfjax.causal import spline
from configs import deepscm_vae_fixed_morpho_mnist
from configs import deepscm_vae_learned_morpho_mnist
import test_ancm

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
N = 8  # Images edited per test.


def tiny_config(config=None):
  config = test_ancm.tiny_config(
      config or deepscm_vae_learned_morpho_mnist.get_config())
  config.data.size = 32
  config.model.likelihood_particles = 8
  config.train.steps = 2
  config.train.log_every = 1
  config.train.eval_every = 2
  config.eval.num_examples = 16
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("morpho")
  _, result = fit.train_and_evaluate(tiny_config(), workdir)
  assert result.steps == 2
  _, model, params = fit.load(workdir)
  ds = fit.load_split(tiny_config(), "test", 16)
  labels = {k: ds[k][:N] for k in model.order}
  return model, params, ds["image"][:N], labels


def test_feature_model_comes_from_the_data_module():
  dataset = data.dataset("morpho_mnist")
  graph, kinds = fit.features(dataset)
  assert set(graph.nodes) == {"thickness", "intensity", "digit"}
  assert graph.parents("intensity") == ("thickness",)
  assert kinds["digit"] == 10
  for k in ("thickness", "intensity"):
    assert isinstance(kinds[k], spline.Spline)
  assert dataset.image_shape == (32, 32, 1)
  fixed = deepscm_vae_fixed_morpho_mnist.get_config()
  assert not fixed.model.image.vae.learned_sigma
  assert tiny_config().model.image.vae.learned_sigma


@pytest.mark.slow
def test_do_thickness_sets_it_keeps_digit_and_moves_intensity(trained):
  model, params, images, labels = trained
  target = labels["thickness"] + np.linspace(-1.0, 1.5, N, dtype=np.float32)
  out = model.edit(params, images, {"thickness": target}, jax.random.key(0),
                   num_samples=2, labels=labels)
  assert out["image"].shape == (N, 2, 32, 32, 1)
  np.testing.assert_array_equal(
      np.asarray(out["thickness"]), np.repeat(target[:, None], 2, 1))
  np.testing.assert_array_equal(
      np.asarray(out["digit"]), np.repeat(labels["digit"][:, None], 2, 1))
  # intensity is a child of thickness: recomputed from its abducted noise.
  moved = np.asarray(out["intensity"]) != labels["intensity"][:, None]
  assert moved.all()


def test_null_edit_returns_the_factual_features_bit_for_bit(trained):
  model, params, images, labels = trained
  out = model.edit(params, images, {}, jax.random.key(1), num_samples=2,
                   labels=labels)
  for k in model.order:
    got = np.asarray(out[k])
    np.testing.assert_array_equal(
        got, np.repeat(np.asarray(labels[k], got.dtype)[:, None], 2, 1))


def test_do_digit_keeps_thickness_and_intensity(trained):
  model, params, images, labels = trained
  out = model.edit(params, images, {"digit": (labels["digit"] + 1) % 10},
                   jax.random.key(2), num_samples=2, labels=labels)
  np.testing.assert_array_equal(np.asarray(out["digit"])[:, 0],
                                (labels["digit"] + 1) % 10)
  for k in ("thickness", "intensity"):
    np.testing.assert_array_equal(
        np.asarray(out[k]),
        np.repeat(np.asarray(labels[k], np.float32)[:, None], 2, 1))


@pytest.mark.slow
def test_launch_train_fixed_sigma_runs(tmp_path):
  res = subprocess.run(
      [sys.executable, "-m", "launch.train",
       "--config=configs/deepscm_vae_fixed_morpho_mnist.py:tiny",
       f"--workdir={tmp_path / 'run'}", "--config.train.steps=2"],
      capture_output=True, text=True, env=ENV, timeout=600)
  assert res.returncode == 0, res.stderr[-2000:]
  assert (tmp_path / "run" / fit.CONFIG_FILE).is_file()
