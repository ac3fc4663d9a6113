"""ANCM: objective, stages, edits, the training entry point and launch.edit."""

import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from PIL import Image

from ctfjax.ancm import model as ancm_model
from ctfjax.ancm import fit
from ctfjax.ncm import model as ncm_model
from configs import ancm
from configs import ancm_vae_colored_mnist_backdoor

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def tiny_config(config=None):
  """A config shrunk to seconds of CPU (the `tiny` preset of
  configs/ancm.py): the backdoor ANCM by default."""
  config = ancm.sized(
      config or ancm_vae_colored_mnist_backdoor.get_config(), "tiny")
  config.train.progress = False
  return config


@pytest.fixture(scope="module")
def setup():
  config = tiny_config()
  model, params = fit.build(config, 0)
  ds = fit.load_split(config, "train", 64)
  return config, model, params, ds


@pytest.mark.slow
def test_loss_parts_and_gradients_reach_every_component(setup):
  _, model, params, ds = setup
  batch = {k: ds[k][:16] for k in ds}
  loss, metrics = jax.jit(model.loss)(params, batch, jax.random.key(0))
  assert np.isfinite(float(loss))
  assert set(metrics) == {"nll_v", "image_loss_per_dim", "nll", "kl",
                          "recon_l1", "reader_nll", "faithful_nll"}
  grads = jax.grad(lambda p: model.loss(p, batch, jax.random.key(0))[0])(
      params)
  for part in ("ncm", "image", "reader"):
    norm = sum(float(np.abs(g).sum()) for g in jax.tree.leaves(grads[part]))
    assert norm > 0, part


@pytest.mark.slow
def test_model_of_is_build_without_parameters(setup):
  config, model, params, ds = setup
  abstract = fit.model_of(config)  # Traced only: no parameters made.
  batch = {k: ds[k][:16] for k in ds}
  key = jax.random.key(0)
  chex.assert_trees_all_equal(abstract.loss(params, batch, key),
                              model.loss(params, batch, key))
  bad = config.copy_and_resolve_references()
  bad.model.graph = "D -> C"
  with pytest.raises(ValueError, match="must have exactly the dataset's"):
    fit.model_of(bad)


@pytest.mark.slow
def test_edit_shapes_intervened_value_and_non_descendants(setup):
  _, model, params, ds = setup
  labels = {k: ds[k][:8] for k in model.order}
  out = model.edit(params, ds["image"][:8], {"C": 1}, jax.random.key(1),
                   num_samples=3, labels=labels)
  assert out["image"].shape == (8, 3, 32, 32, 3)
  assert out["image"].dtype == np.uint8
  np.testing.assert_array_equal(out["C"], 1)
  # D is a (confounded) non-descendant of C: preserved exactly in every draw.
  np.testing.assert_array_equal(out["D"], np.repeat(labels["D"][:, None], 3,
                                                    1))
  # Per-image interventions: flip each image's colour.
  out = model.edit(params, ds["image"][:8], {"C": 1 - labels["C"]},
                   jax.random.key(2), num_samples=2, labels=labels)
  np.testing.assert_array_equal(out["C"][:, 0], 1 - labels["C"])


def test_null_intervention_keeps_features_and_pixel_noise_is_exact(setup):
  config, _, _, ds = setup
  config = tiny_config()
  config.model.image.vae.pixel_noise = True
  model, params = fit.build(config, 0)
  labels = {k: ds[k][:6] for k in model.order}
  out = model.edit(params, ds["image"][:6], {}, jax.random.key(3),
                   num_samples=2, labels=labels)
  for k in model.order:
    np.testing.assert_array_equal(out[k], np.repeat(labels[k][:, None], 2, 1))
  # U_I holds the residual, so the factual image comes back (to rounding).
  diff = np.abs(out["image"][:, 0].astype(int) - ds["image"][:6].astype(int))
  assert diff.max() <= 1


def test_library_stages_compile_once(setup, monkeypatch, request):
  """The library's own jitted stages (image abduction and prediction, the
  reader, the NCM's feature abduction-action-prediction) trace once for new
  images, scalar and per-image do() values alike."""
  _, model, params, ds = setup
  stages = [(ancm_model, "_read_labels", (0,)),
            (ncm_model, "_counterfactual_sample", (0, 5, 6))]
  for module, name, argnums in stages:
    fn = getattr(module, name).__wrapped__
    monkeypatch.setattr(module, name, jax.jit(
        chex.assert_max_traces(fn, n=1), static_argnums=argnums))
  # Abduction and prediction are jitted by `_image_steps` (once per set of
  # XLA options): count the traces of the functions it jits.
  for name in ("_abduct_image", "_predict_image"):
    monkeypatch.setattr(ancm_model, name, chex.assert_max_traces(
        getattr(ancm_model, name), n=1))
  ancm_model._image_steps.cache_clear()
  request.addfinalizer(ancm_model._image_steps.cache_clear)
  chex.clear_trace_counter()
  labels = lambda s: {k: ds[k][s] for k in model.order}
  for i, s in enumerate([slice(0, 8), slice(8, 16), slice(16, 24)]):
    do = {"C": 1 - ds["C"][s]} if i else {"C": 1}
    out = model.edit(params, ds["image"][s], do, jax.random.key(i),
                     num_samples=2, labels=labels(s))
    assert out["image"].shape == (8, 2, 32, 32, 3)
    model.read_labels(params, ds["image"][s])


@pytest.mark.slow
def test_descendant_follows_and_non_descendant_stays(setup):
  """do(C = 1) on green images with a bar: D never changes, and B must turn
  off in at least the lower bound's share of the draws (the bar mechanism
  0.9 - 0.05 D - 0.3 C identifies P(B_{C=1}=0 | C=0, B=1, D=d) >= 0.3 / p).
  """
  config, model, params, ds = setup
  from ctfjax import data, ncm  # pylint: disable=g-import-not-at-top
  table = data.feature_scm(config.data.name).observational()
  fitted, _ = ncm.fit(model.ncm, params["ncm"], table, jax.random.key(1),
                      steps=300, learning_rate=1e-2)
  params = {**params, "ncm": fitted}
  n, d = 64, 2
  v = {"D": np.full(n, d), "C": np.zeros(n, int), "B": np.ones(n, int)}
  images = np.zeros((n, 32, 32, 3), np.uint8)
  out = model.edit(params, images, {"C": 1}, jax.random.key(4),
                   num_samples=8, labels=v)
  np.testing.assert_array_equal(out["D"], d)
  np.testing.assert_array_equal(out["C"], 1)
  p = 0.9 - 0.05 * d
  off = float(np.mean(out["B"] == 0))
  assert off >= 0.3 / p - 0.1, off  # the descendant actually changes
  assert off < 1.0


def test_bad_interventions(setup):
  _, model, params, ds = setup
  with pytest.raises(ancm_model.ANCMError, match="unknown factor 'Q'"):
    model.edit(params, ds["image"][:2], {"Q": 1}, jax.random.key(0))
  with pytest.raises(ancm_model.ANCMError, match="outside its domain 0..1"):
    model.edit(params, ds["image"][:2], {"C": 2}, jax.random.key(0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("ancm") / "run"
  config = tiny_config()
  _, result = fit.train_and_evaluate(config, workdir)
  return config, workdir, result


@pytest.mark.slow
def test_train_and_evaluate_then_load(trained):
  config, workdir, result = trained
  assert result.steps == 4
  assert "recon_l1" in result.eval_metrics
  cfg, model, params = fit.load(workdir)
  assert cfg.data.name == config.data.name
  ref = jax.device_get(result.state.params)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref)):
    np.testing.assert_array_equal(a, b)
  changed = config.copy_and_resolve_references()
  changed.model.image.vae.latent_dim = 8
  with pytest.raises(Exception, match="another model config"):
    fit.train_and_evaluate(changed, workdir)


def test_a_setting_added_to_a_family_later_keeps_old_runs_resumable():
  """A run saved before its family gained a setting (absent from its
  config.json) matches a config holding that setting's default, and no
  other value of it."""
  old = json.loads(tiny_config().to_json())
  new = json.loads(tiny_config().to_json())
  del old["model"]["image"]["vae"]["mean"]
  same = fit.resumed_part
  assert same("model", old["model"]) == same("model", new["model"])
  new["model"]["image"]["vae"]["mean"] = "linear"  # not the default
  assert same("model", old["model"]) != same("model", new["model"])
  # Other families' sections never matter.
  new = json.loads(tiny_config().to_json())
  new["model"]["image"]["hvae"]["z_dim"] = 99
  del old["model"]["image"]["gan"]
  assert same("model", old["model"]) == same("model", new["model"])


@pytest.mark.slow
def test_loss_goes_down():
  config = tiny_config()
  model, params = fit.build(config, 0)
  ds = fit.load_split(config, "train", 64)
  batch = {k: ds[k][:32] for k in ds}
  import optax  # pylint: disable=g-import-not-at-top
  opt = optax.adam(3e-3)
  state = opt.init(params)

  @jax.jit
  def step(params, state, rng):
    (loss, _), g = jax.value_and_grad(model.loss, has_aux=True)(
        params, batch, rng)
    updates, state = opt.update(g, state, params)
    return optax.apply_updates(params, updates), state, loss

  losses = []
  for _ in range(30):
    params, state, loss = step(params, state, jax.random.key(0))
    losses.append(float(loss))
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


def run_edit(*args):
  return subprocess.run([sys.executable, "-m", "launch.edit", *args],
                        capture_output=True, text=True, env=ENV, timeout=300)


@pytest.mark.slow
def test_edit_cli(trained, tmp_path):
  _, workdir, _ = trained
  ds = fit.load_split(tiny_config(), "test", 32)
  good = tmp_path / "in.png"
  Image.fromarray(ds["image"][0]).save(good)
  out = tmp_path / "out.png"
  res = run_edit(f"--workdir={workdir}", f"--image={good}", "--do=C=1",
                 f"--out={out}", "--num_samples=2", "--scale=2")
  assert res.returncode == 0, res.stderr
  assert "edit 2: " in res.stdout and "C=1" in res.stdout
  with Image.open(out) as img:
    assert img.size == (2 * (3 * 33 - 1), 2 * 32)


@pytest.mark.parametrize("make, args, message", [
    (lambda p: Image.new("RGB", (28, 28)).save(p), ["--do=C=1"],
     "is 28x28; this model edits 32x32 RGB images"),
    (lambda p: Image.new("L", (32, 32)).save(p), ["--do=C=1"], "has mode L"),
    (lambda p: p.write_bytes(b"not a png"), ["--do=C=1"], "cannot be read"),
    (lambda p: Image.new("RGB", (32, 32)).save(p), ["--do=Q=1"],
     "unknown factor 'Q'"),
    (lambda p: Image.new("RGB", (32, 32)).save(p), ["--do=C=5"],
     "outside its domain"),
    (lambda p: Image.new("RGB", (32, 32)).save(p), ["--do=C"],
     "cannot parse --do item 'C'"),
])
@pytest.mark.slow
def test_edit_cli_bad_input(trained, tmp_path, make, args, message):
  _, workdir, _ = trained
  path = tmp_path / "in.png"
  make(path)
  out = tmp_path / "out.png"
  res = run_edit(f"--workdir={workdir}", f"--image={path}", f"--out={out}",
                 *args)
  assert res.returncode == 2
  lines = res.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], res.stderr
  assert not out.exists()


@pytest.mark.slow
def test_edit_cli_missing_run(tmp_path):
  res = run_edit(f"--workdir={tmp_path}", "--image=x.png", "--do=C=1",
                 f"--out={tmp_path / 'o.png'}")
  assert res.returncode == 2
  assert "is not a trained run: it has no config.json and no models/" in \
      res.stderr


@pytest.mark.parametrize("override, message", [
    ("train.stpes=3", "error: unknown config key 'train.stpes'; did you "
     "mean 'train.steps'?"),
    ("model.image.kind=nope", "error: unknown image mechanism kind 'nope' "
     "(config key 'model.image.kind'); known: vae, gan, hvae, ddpm, "
     "vae_ddpm, cgn, dear"),
])
@pytest.mark.slow
def test_train_cli_rejects_bad_config(tmp_path, override, message):
  res = subprocess.run(
      [sys.executable, "-m", "launch.train",
       "--config=configs/ancm_vae_colored_mnist_backdoor.py",
       f"--workdir={tmp_path / 'run'}", f"--config.{override}"],
      capture_output=True, text=True, env=ENV, timeout=300)
  assert res.returncode == 2
  assert res.stderr.strip() == message
  assert not (tmp_path / "run").exists()
