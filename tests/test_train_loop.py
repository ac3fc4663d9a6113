"""train_and_evaluate end to end on the tiny regression task: metrics.jsonl,
checkpoints, resume (also after a real SIGKILL), NaN stops, one-line errors
for bad checkpoints."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import optax
import pytest
from flax import nnx

from ctfjax.errors import UserError
from ctfjax.train import Checkpoints, TrainingDivergedError, apply_overrides
from ctfjax.train import batches_from_fn, example, load_state, read_metrics
from ctfjax.train import create_train_state, make_mesh, replicated
from ctfjax.train import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[1]
OVERRIDES = {"train.steps": 60, "train.log_every": 5, "train.eval_every": 30,
             "ckpt.every": 10, "ckpt.max_to_keep": 2}

# Trains the example task; with a delay per batch so the test can kill it
# mid-run, then saves the final params.
SCRIPT = f"""
import dataclasses, sys, time
import jax, numpy as np
from ctfjax.train import apply_overrides, example, train_and_evaluate

workdir, delay = sys.argv[1], float(sys.argv[2])
config = apply_overrides(example.get_config(), {OVERRIDES!r})
task = example.make_task(config)
batches = task.train_batches

def slow_batches(start):
  for batch in batches(start):
    time.sleep(delay)
    yield batch

task = dataclasses.replace(task, train_batches=slow_batches)
result = train_and_evaluate(config, workdir, task)
leaves = jax.tree.leaves(jax.device_get(result.state.params))
np.savez(workdir + "/final.npz", *leaves)
"""


pytestmark = pytest.mark.usefixtures("xla_cache_dir")


def _config(**overrides):
  base = {"train.steps": 20, "train.log_every": 5, "train.eval_every": 10,
          "ckpt.every": 10, "train.progress": False}
  return apply_overrides(example.get_config(), {**base, **overrides})


def _params(state):
  return jax.device_get(state.params)


class _Crash(Exception):
  pass


def _crash_after(task, step):
  """The task, but its data raises when asked for the batch of `step`."""
  def batches(start):
    for _, batch in zip(range(start, step), task.train_batches(start),
                        strict=False):
      yield batch
    raise _Crash(f"killed before step {step + 1}")
  return dataclasses.replace(task, train_batches=batches)


@pytest.mark.slow
def test_run_writes_metrics_checkpoints_and_compiles_once(tmp_path, capfd):
  config = _config(**{"train.progress": True})
  task = example.make_task(config)
  # Fresh wrappers: the loop must trace loss and eval once for all 20 steps,
  # 2 evaluations and 2 checkpoints.
  chex.clear_trace_counter()
  task = dataclasses.replace(task, loss=chex.assert_max_traces(task.loss, 1),
                             eval=chex.assert_max_traces(task.eval, 1))
  result = train_and_evaluate(config, tmp_path, task)
  assert result.steps == 20 and int(result.state.step) == 20
  assert result.seconds > 0
  assert set(result.eval_metrics) == {"mse"}
  err = capfd.readouterr().err
  assert "step/s" not in err  # No bar off a terminal, but a line per log:
  lines = err.strip().splitlines()
  assert lines[0] == (f"{tmp_path.name}: compiling the training step "
                      "(steps 0 -> 20 follow)...")
  assert [l.split(":")[0] for l in lines[1:]] == [
      f"{tmp_path.name} step {s}/20" for s in (5, 10, 15, 20)]
  assert "train/loss=" in lines[1] and "s left" in lines[1]

  records = read_metrics(tmp_path)
  assert [r["step"] for r in records] == [5, 10, 15, 20]
  for r in records:
    assert {"train/loss", "train/rmse", "train/grad_norm", "steps_per_sec",
            "seconds"} <= set(r)
    assert np.isfinite(r["train/loss"])
  assert [r["step"] for r in records if "eval/mse" in r] == [10, 20]
  assert records[-1]["eval/mse"] == pytest.approx(result.eval_metrics["mse"])
  assert records[-1]["train/loss"] < records[0]["train/loss"]
  # Every line is plain JSON.
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line) for line in lines] == records

  ckpts = Checkpoints(tmp_path / "checkpoints", read_only=True)
  assert ckpts.latest_step() == 20
  ckpts.close()
  # The saved state is the returned one, with the same types.
  loaded = load_state(config, tmp_path, example.make_task(config))
  chex.assert_trees_all_equal(_params(loaded), _params(result.state))
  assert loaded.rng.dtype == result.state.rng.dtype
  np.testing.assert_array_equal(jax.random.key_data(loaded.rng),
                                jax.random.key_data(result.state.rng))

  # A finished run only reloads, keeping its time and last evaluation.
  again = train_and_evaluate(config, tmp_path, example.make_task(config))
  assert again.steps == 20
  assert again.seconds == pytest.approx(result.seconds)
  assert again.eval_metrics == pytest.approx(result.eval_metrics)
  assert read_metrics(tmp_path) == records


def test_checkpoint_round_trip_keeps_nnx_state_keys_and_extra(tmp_path):
  # Params as an nnx.State (what nnx.split returns), an EMA in extra.
  _, params = nnx.split(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
  mesh = make_mesh()
  rep = replicated(mesh)
  state = jax.jit(lambda: create_train_state(
      jax.random.key(4), lambda _: params, optax.adam(1e-3),
      lambda p: {"ema": p}), out_shardings=rep)()
  saved = Checkpoints(tmp_path)
  saved.save(3, state, {"seconds": 1.5})
  saved.close()
  abstract = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep),
      jax.eval_shape(lambda: state))
  loaded = Checkpoints(tmp_path, read_only=True)
  restored, meta = loaded.restore(abstract)
  loaded.close()
  assert meta == {"seconds": 1.5}
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  chex.assert_trees_all_equal(jax.device_get(restored.params),
                              jax.device_get(state.params))
  chex.assert_trees_all_equal(jax.device_get(restored.extra),
                              jax.device_get(state.extra))
  assert restored.rng.dtype == state.rng.dtype
  np.testing.assert_array_equal(jax.random.key_data(restored.rng),
                                jax.random.key_data(state.rng))
  for leaf in jax.tree.leaves(restored):
    assert leaf.sharding.is_equivalent_to(rep, leaf.ndim)


def test_crash_and_resume_matches_an_uninterrupted_run(tmp_path):
  config = _config(**{"train.log_every": 3})
  whole = train_and_evaluate(config, tmp_path / "whole",
                             example.make_task(config))
  crashed = tmp_path / "crashed"
  with pytest.raises(_Crash):
    train_and_evaluate(config, crashed,
                       _crash_after(example.make_task(config), 14))
  assert max(r["step"] for r in read_metrics(crashed)) == 12
  resumed = train_and_evaluate(config, crashed, example.make_task(config))
  chex.assert_trees_all_equal(_params(resumed.state), _params(whole.state))
  chex.assert_trees_all_equal(jax.device_get(resumed.state.opt_state),
                              jax.device_get(whole.state.opt_state))
  # Steps 12 was logged before the crash, redone after resuming from 10 and
  # must appear once; the values are those of the uninterrupted run.
  steps = [r["step"] for r in read_metrics(crashed)]
  assert steps == [3, 6, 9, 10, 12, 15, 18, 20]
  strip = lambda rs: [{k: v for k, v in r.items()
                       if k not in ("seconds", "steps_per_sec")} for r in rs]
  assert strip(read_metrics(crashed)) == strip(read_metrics(tmp_path / "whole"))


@pytest.mark.slow
def test_init_from_takes_params_of_another_run(tmp_path, capsys,
                                              monkeypatch):
  config = _config(**{"train.steps": 10, "train.eval_every": 0,
                      "train.progress": True})
  monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
  first = train_and_evaluate(config, tmp_path / "a", example.make_task(config))
  assert "10/10" in capsys.readouterr().err  # The bar, on a "terminal".
  config = _config(**{"train.steps": 1, "ckpt.init_from": str(tmp_path / "a")})
  task = example.make_task(config)
  # Zero learning rate: the params after one step are the loaded ones.
  task = dataclasses.replace(task, optimizer=optax.sgd(0.0))
  second = train_and_evaluate(config, tmp_path / "b", task)
  chex.assert_trees_all_equal(_params(second.state), _params(first.state))
  assert second.steps == 1


def test_nan_stops_with_the_step_and_metric_named(tmp_path):
  config = _config(**{"train.steps": 30, "ckpt.every": 5,
                      "train.log_every": 100})
  task = example.make_task(config)
  clean = task.train_batches

  def batch_at(i):  # The update from step 6 to 7 sees a NaN input.
    batch = next(clean(i))
    return {**batch, "x": batch["x"] * np.nan} if i == 6 else batch

  task = dataclasses.replace(task, train_batches=batches_from_fn(batch_at))
  with pytest.raises(TrainingDivergedError) as info:
    train_and_evaluate(config, tmp_path, task)
  message = str(info.value)
  assert message.startswith("training diverged at step 7: loss is nan")
  assert "\n" not in message
  assert isinstance(info.value, UserError)
  # No NaN state was checkpointed.
  ckpts = Checkpoints(tmp_path / "checkpoints", read_only=True)
  assert ckpts.latest_step() == 5
  ckpts.close()


def test_divergence_before_any_checkpoint_leaves_no_checkpoint_folder(
    tmp_path):
  config = _config(**{"train.steps": 30, "ckpt.every": 10})
  task = example.make_task(config)
  clean = task.train_batches
  task = dataclasses.replace(task, train_batches=batches_from_fn(
      lambda i: {k: v * np.nan for k, v in next(clean(i)).items()}))
  with pytest.raises(TrainingDivergedError):
    train_and_evaluate(config, tmp_path / "run", task)
  assert not (tmp_path / "run" / "checkpoints").exists()


def _one_line_error(fn) -> str:
  with pytest.raises(UserError) as info:
    fn()
  message = str(info.value)
  assert "\n" not in message, message
  return message


# Orbax leaves the reads of the corrupt files it abandoned as coroutines
# that warn when collected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_missing_and_corrupt_checkpoints_are_one_line_user_errors(tmp_path):
  config = _config(**{"train.steps": 10, "train.eval_every": 0})
  task = example.make_task(config)

  message = _one_line_error(lambda: load_state(config, tmp_path / "none", task))
  assert str(tmp_path / "none") in message

  missing = apply_overrides(config, {"ckpt.init_from": str(tmp_path / "nope")})
  message = _one_line_error(
      lambda: train_and_evaluate(missing, tmp_path / "x", task))
  assert message.startswith("no checkpoint folder at ") and "nope" in message

  run = tmp_path / "run"
  train_and_evaluate(config, run, task)
  for path in (run / "checkpoints" / "10" / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"garbage")
  message = _one_line_error(lambda: train_and_evaluate(config, run, task))
  assert message.startswith(f"checkpoint {run / 'checkpoints' / '10'} is "
                            "unreadable")

  other_config = apply_overrides(config, {"model.hidden": 3})
  other = example.make_task(other_config)
  train_and_evaluate(config, tmp_path / "ok", task)
  misfit = ("does not fit this model: its params/hidden/bias has shape (16,), "
            "this model's (3,)")
  message = _one_line_error(
      lambda: train_and_evaluate(config, tmp_path / "ok", other))
  assert message.endswith(misfit)
  from_other = apply_overrides(other_config,
                               {"ckpt.init_from": str(tmp_path / "ok")})
  message = _one_line_error(
      lambda: train_and_evaluate(from_other, tmp_path / "new", other))
  assert message.endswith(misfit)


def test_bad_batch_split_is_a_user_error(tmp_path):
  config = _config(**{"train.batch_size": 3})
  message = _one_line_error(lambda: train_and_evaluate(
      config, tmp_path, example.make_task(config)))
  assert "train.batch_size" in message


def _start(workdir, delay, cache):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2",
         "JAX_COMPILATION_CACHE_DIR": str(cache),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
         "PYTHONPATH": os.pathsep.join(
             [str(REPO), os.environ.get("PYTHONPATH", "")])}
  return subprocess.Popen(
      [sys.executable, "-c", SCRIPT, str(workdir), str(delay)], cwd=REPO,
      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _steps(workdir):
  ckpts = workdir / "checkpoints"
  # Orbax renames a step's folder to its bare number once it is complete.
  return sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) if (
      ckpts.is_dir()) else []


@pytest.mark.slow
def test_sigkill_then_restart_ends_with_the_same_params(tmp_path,
                                                       xla_cache_dir):
  workdir = tmp_path / "killed"
  proc = _start(workdir, delay=0.1, cache=xla_cache_dir)
  deadline = time.monotonic() + 120
  while not any(s >= 20 for s in _steps(workdir)):
    if proc.poll() is not None or time.monotonic() > deadline:
      proc.kill()
      pytest.fail(f"no checkpoint before exit: {proc.communicate()[1][-2000:]}")
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  assert proc.returncode == -signal.SIGKILL
  assert not (workdir / "final.npz").exists()
  assert 20 <= max(_steps(workdir)) < OVERRIDES["train.steps"]
  logged = [r["step"] for r in read_metrics(workdir)]
  assert logged and max(logged) < OVERRIDES["train.steps"]

  proc = _start(workdir, delay=0.0, cache=xla_cache_dir)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  resumed = np.load(workdir / "final.npz")
  resumed = [resumed[f"arr_{i}"] for i in range(len(resumed.files))]

  config = apply_overrides(example.get_config(), OVERRIDES)
  whole = train_and_evaluate(config, tmp_path / "whole",
                             example.make_task(config))
  expected = jax.tree.leaves(jax.device_get(whole.state.params))
  assert len(resumed) == len(expected)
  for got, want in zip(resumed, expected, strict=True):
    np.testing.assert_array_equal(got, want)  # Bit for bit.

  # The log holds each step once, as the uninterrupted run's does.
  records = read_metrics(workdir)
  assert [r["step"] for r in records] == [
      r["step"] for r in read_metrics(tmp_path / "whole")]
  np.testing.assert_allclose(
      [r.get("train/loss") for r in records],
      [r.get("train/loss") for r in read_metrics(tmp_path / "whole")],
      rtol=1e-6)
