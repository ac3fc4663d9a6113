"""Melistas et al.'s training protocol in the loop: gradient skipping
(`train.grad_skip`) and early stopping (`train.patience`).

Skipping is checked against what it must be by definition: a threshold
below every gradient norm leaves the whole state at its initial value bit
for bit, one above every norm trains exactly as without the option, and the
norm compared is the one before clipping. Early stopping runs on a task
whose validation loss is known in closed form at every step, so the step it
must stop at is computed by hand; a crashed and resumed run stops there too.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ctfjax.ancm import fit
from ctfjax.errors import UserError
from ctfjax.train import Checkpoints, Task, apply_overrides, batches_from_fn
from ctfjax.train import create_train_state, example, load_config
from ctfjax.train import make_optimizer
from ctfjax.train import read_metrics, train_and_evaluate
from ctfjax.train.loop import protocol_options
from configs import deepscm

pytestmark = pytest.mark.usefixtures("xla_cache_dir")


def _config(grad_skip=None, patience=None, **overrides):
  base = {"train.steps": 6, "train.log_every": 3, "train.eval_every": 0,
          "ckpt.every": 0, "train.progress": False, "ckpt.async_save": False}
  config = apply_overrides(example.get_config(), {**base, **overrides})
  # Optional fields: the base config has neither.
  if grad_skip is not None:
    config.train.grad_skip = grad_skip
  if patience is not None:
    config.train.patience = patience
  return config


def _host(tree):
  return jax.device_get(tree)


def _strip(records):
  return [{k: v for k, v in r.items() if k not in ("seconds", "steps_per_sec")}
          for r in records]


# Gradient skipping -------------------------------------------------------


@pytest.mark.slow
def test_a_threshold_below_every_norm_skips_every_update(tmp_path):
  # With an EMA and a warm-up, so that "extra" and the schedule's count are
  # checked to stand still as well.
  config = _config(**{"train.ema_decay": 0.9, "train.warmup_steps": 3})
  task = example.make_task(config)
  init = jax.jit(lambda: create_train_state(
      jax.random.key(config.train.seed), task.init,
      make_optimizer(config.train), lambda p: {"ema": p}))()
  first = next(task.train_batches(0))
  first_norm = float(jax.jit(lambda p: optax.tree.norm(jax.grad(
      lambda p: task.loss(p, first, None)[0])(p)))(init.params))
  assert first_norm > 0.01
  config.train.grad_skip = 1e-3 * first_norm
  result = train_and_evaluate(config, tmp_path, task)
  assert int(result.state.step) == 6  # The steps still count.
  chex.assert_trees_all_equal(_host(result.state.params), _host(init.params))
  chex.assert_trees_all_equal(_host(result.state.opt_state),
                              _host(init.opt_state))
  chex.assert_trees_all_equal(_host(result.state.extra), _host(init.extra))
  records = read_metrics(tmp_path)
  assert [r["train/skipped"] for r in records] == [3.0, 3.0]  # Per window.


@pytest.mark.slow
def test_skipping_above_every_norm_is_no_skipping_and_reads_the_raw_norm(
    tmp_path):
  config = _config(**{"train.log_every": 1, "train.steps": 8})
  plain = train_and_evaluate(config, tmp_path / "plain",
                             example.make_task(config))
  plain_log = read_metrics(tmp_path / "plain")

  # A threshold above every norm: the run without the option, bit for bit.
  skip = _config(grad_skip=1e6, **{"train.log_every": 1, "train.steps": 8})
  result = train_and_evaluate(skip, tmp_path / "above",
                              example.make_task(skip))
  chex.assert_trees_all_equal(_host(result.state.params),
                              _host(plain.state.params))
  chex.assert_trees_all_equal(_host(result.state.opt_state),
                              _host(plain.state.opt_state))
  records = read_metrics(tmp_path / "above")
  assert [r.pop("train/skipped") for r in records] == [0.0] * 8
  assert _strip(records) == _strip(plain_log)  # Apart from the count.

  # Every gradient clipped to 1e-4, far below a threshold between the first
  # two steps' norms: a skip that read the clipped norm would never fire.
  # The steps whose raw norm is at or above it are skipped, the others
  # applied.
  norms = [r["train/grad_norm"] for r in plain_log]
  threshold = float(np.mean(norms[:2]))
  skip = _config(grad_skip=threshold, **{"train.log_every": 1,
                                         "train.steps": 8,
                                         "train.grad_clip": 1e-4})
  train_and_evaluate(skip, tmp_path / "clipped", example.make_task(skip))
  records = read_metrics(tmp_path / "clipped")
  skipped = [r["train/skipped"] for r in records]
  assert 0 < sum(skipped) < len(skipped)
  assert skipped == [float(r["train/grad_norm"] >= threshold)
                     for r in records]


# Early stopping ------------------------------------------------------------

# A one-parameter task whose training gradient is -1, so SGD at 0.125 puts
# p at exactly 0.125 * step, and whose validation loss is (p - 1)^2: it
# falls to 0 at step 8 and rises after. Evaluated every 2 steps with a
# patience of 3, the best evaluation is step 8 and steps 10, 12 and 14 do
# not improve on it: the run stops at step 14.
LR, EVAL_EVERY, PATIENCE, BEST, STOP = 0.125, 2, 3, 8, 14


def _valley_task():
  ones = {"x": np.ones((2,), np.float32)}  # One example per fake device.

  def loss(params, batch, rng):
    del rng
    value = -params["p"] * jnp.mean(batch["x"])
    return value, {}

  def evaluate(params, batch, rng):
    del rng
    return {"loss": (params["p"] - 1.0) ** 2 * jnp.mean(batch["x"])}

  return Task(
      init=lambda key: {"p": jnp.zeros((), jnp.float32)}, loss=loss,
      train_batches=batches_from_fn(lambda step: ones), eval=evaluate,
      eval_batches=lambda: [ones], optimizer=optax.sgd(LR))


def _valley_config(patience=PATIENCE, **overrides):
  base = {"train.steps": 40, "train.batch_size": 2, "train.log_every": 3,
          "train.eval_every": EVAL_EVERY, "ckpt.every": 5}
  return _config(patience=patience, **{**base, **overrides})


def _crash_after(task, step):
  """The task, but its data raises when asked for the batch of `step`."""
  def batches(start):
    for _, batch in zip(range(start, step), task.train_batches(start),
                        strict=False):
      yield batch
    raise RuntimeError(f"killed before step {step + 1}")
  return dataclasses.replace(task, train_batches=batches)


def test_stops_after_patience_evaluations_without_improvement(tmp_path,
                                                              capfd):
  result = train_and_evaluate(_valley_config(), tmp_path, _valley_task())
  assert result.steps == STOP
  assert float(result.state.params["p"]) == LR * STOP
  records = read_metrics(tmp_path)
  evals = [r["step"] for r in records if "eval/loss" in r]
  assert evals == list(range(EVAL_EVERY, STOP + 1, EVAL_EVERY))
  # Every log step (3, 6, ...) and checkpoint step (5, 10) up to the stop
  # is logged, the stop too; then it is saved:
  assert [r["step"] for r in records if "train/loss" in r] == [
      3, 5, 6, 9, 10, 12, STOP]
  last = records[-1]
  assert last["step"] == STOP
  assert (last["early_stop/best_step"], last["early_stop/best"]) == (BEST, 0.0)
  ckpts = Checkpoints(tmp_path / "checkpoints", read_only=True)
  assert ckpts.latest_step() == STOP
  ckpts.close()
  assert (f"stopping early at step {STOP}: eval/loss has not improved for "
          f"{PATIENCE} evaluations (best 0 at step {BEST})"
          ) in capfd.readouterr().err
  # A stopped run is finished: run again, it only restores.
  again = train_and_evaluate(_valley_config(), tmp_path, _valley_task())
  assert again.steps == STOP and read_metrics(tmp_path) == records
  # Without the option the same task trains to the end.
  whole = train_and_evaluate(_valley_config(patience=0), tmp_path / "off",
                             _valley_task())
  assert whole.steps == 40


def test_a_crashed_run_resumes_to_the_same_early_stop(tmp_path):
  whole = train_and_evaluate(_valley_config(), tmp_path / "whole",
                             _valley_task())
  # Killed before step 13: the newest checkpoint is step 10, saved after one
  # evaluation without improvement; the resumed run must count it.
  crashed = tmp_path / "crashed"
  with pytest.raises(RuntimeError, match="killed"):
    train_and_evaluate(_valley_config(), crashed,
                       _crash_after(_valley_task(), 12))
  resumed = train_and_evaluate(_valley_config(), crashed, _valley_task())
  assert resumed.steps == whole.steps == STOP
  chex.assert_trees_all_equal(_host(resumed.state.params),
                              _host(whole.state.params))
  chex.assert_trees_all_equal(_host(resumed.state.opt_state),
                              _host(whole.state.opt_state))
  assert _strip(read_metrics(crashed)) == _strip(
      read_metrics(tmp_path / "whole"))


def test_early_stopping_needs_the_watched_metric(tmp_path):
  task = dataclasses.replace(_valley_task(), monitor="nll")
  with pytest.raises(UserError, match="does not report") as info:
    train_and_evaluate(_valley_config(), tmp_path, task)
  assert "\n" not in str(info.value) and "'nll'" in str(info.value)
  no_eval = dataclasses.replace(_valley_task(), eval=None, eval_batches=None)
  with pytest.raises(UserError, match="needs an evaluation"):
    train_and_evaluate(_valley_config(), tmp_path / "b", no_eval)


# Config checks ---------------------------------------------------------------


def _with(field, value):
  config = _config()
  config.train[field] = value
  return config


@pytest.mark.parametrize("field, value, match", [
    ("patience", -1, "'train.patience' must be an int >= 0"),
    ("patience", 2.5, "'train.patience' must be an int >= 0"),
    ("patience", True, "'train.patience' must be an int >= 0"),
    ("grad_skip", -1.0, "'train.grad_skip' must be a finite number >= 0"),
    ("grad_skip", float("nan"), "'train.grad_skip' must be a finite number"),
    ("grad_skip", "500", "'train.grad_skip' must be a finite number"),
])
def test_bad_protocol_fields_are_one_line_errors(field, value, match):
  with pytest.raises(UserError, match=match) as info:
    protocol_options(_with(field, value))
  assert "\n" not in str(info.value)



def test_the_ancm_config_check_reads_the_protocol_fields():
  config = deepscm.get_config("tiny")
  config.train.patience = -1
  with pytest.raises(UserError, match="'train.patience' must be an int >= 0"):
    fit.check_config(config)
  config.train.patience = 3
  config.train.eval_every = 0
  with pytest.raises(UserError, match="train.eval_every is 0"):
    fit.check_config(config)
  for off in (0, None):  # Off, both ways.
    config.train.patience = off
    config.train.grad_skip = off
    fit.check_config(config)
  assert protocol_options(_config()) == (0.0, 0)  # Unset fields are off.


@pytest.mark.parametrize("name", ["vae_learned", "vae_fixed", "hvae", "gan"])
def test_deepscm_accel_preset_carries_the_papers_protocol(name):
  path = f"configs/deepscm_{name}_morpho_mnist.py"
  for preset in ("tiny", "cpu"):  # As before: no field, nothing on.
    config = load_config(f"{path}:{preset}")
    assert "grad_skip" not in config.train and config.train.grad_clip == 0
  accel = load_config(f"{path}:accel")
  wanted = (350.0, 500.0, 10) if name != "gan" else (0.0, 0.0, 0)
  assert (accel.train.grad_clip, *protocol_options(accel)) == wanted
