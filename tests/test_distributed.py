"""Data parallel over two processes on localhost: the same parameters as one
process, one checkpoint set, resume, for the toy task and for the quick
start's ANCM through the launcher; the launcher's process flags."""

import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ctfjax.ancm import fit
from ctfjax.errors import UserError
from ctfjax.train import Checkpoints, Processes, apply_overrides, example
from ctfjax.train import processes_from, read_metrics, train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[1]
OVERRIDES = {"train.log_every": 2, "train.eval_every": 3, "ckpt.every": 2,
             "ckpt.max_to_keep": 2, "train.progress": False}
TIMEOUT_S = 180  # For a whole two-process run; it takes ~10 s on 2 cores.
# The quick start's model at the `tiny` preset (4 steps of batch 16, logged
# and checkpointed at steps 2 and 4, evaluated at 4 on 32 test images),
# trained by the launcher; each run adds its workdir (and process flags).
QUICKSTART = ["-m", "launch.train", "--config=configs/quickstart.py:tiny"]
# Both runs of the quick start model together; 1-2 minutes on 2 busy cores,
# mostly XLA compiling the ANCM's init, train and eval steps.
QUICKSTART_TIMEOUT_S = 480
# Logged values that measure the machine, not the training.
TIMINGS = ("seconds", "steps_per_sec")

# One process of the job: joins it through the environment (as under a
# scheduler), trains the example task, and process 0 saves the params.
SCRIPT = f"""
import sys
import numpy as np
from ctfjax.train import distributed
distributed.initialize(distributed.processes_from(), timeout_s=60)
import jax
from ctfjax.train import apply_overrides, example, train_and_evaluate

workdir, steps = sys.argv[1], int(sys.argv[2])
assert jax.process_count() == 2 and jax.local_device_count() == 1, (
    jax.devices())
config = apply_overrides(example.get_config(),
                         {{**{OVERRIDES!r}, "train.steps": steps}})
result = train_and_evaluate(config, workdir, example.make_task(config))
if jax.process_index() == 0:
  np.savez(workdir + "/final.npz",
           *jax.tree.leaves(jax.device_get(result.state.params)))
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int = 1, port: int | None = None) -> dict[str, str]:
  """The environment of a process with `devices` CPU devices (the pytest
  process's device settings must not leak), in the job whose coordinator
  listens on 127.0.0.1:`port` if given."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  env.update({
      "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices),
      "PYTHONPATH": os.pathsep.join(
          [str(REPO), os.environ.get("PYTHONPATH", "")])})
  if port is not None:
    # Loopback only: JAX's coordinator otherwise binds every interface.
    env["JAX_COORDINATOR_BIND_ADDRESS"] = f"127.0.0.1:{port}"
  return env


def _run_all(commands: list[tuple[list[str], dict[str, str]]],
             timeout_s: float) -> list[str]:
  """Runs (argv, env) pairs at the same time; their stdouts, each ok."""
  procs = [subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for argv, env in commands]
  deadline = time.monotonic() + timeout_s
  try:
    outs = [p.communicate(timeout=max(1, deadline - time.monotonic()))
            for p in procs]
  finally:
    for p in procs:  # A failed or hung peer must not outlive the test.
      if p.poll() is None:
        p.kill()
        p.communicate()
  for i, (p, (_, err)) in enumerate(zip(procs, outs, strict=True)):
    assert p.returncode == 0, f"process {i}: {err[-3000:]}"
  return [out for out, _ in outs]


def _run_job(workdir: pathlib.Path, steps: int) -> None:
  """Trains `steps` steps of the example task in two processes."""
  port = _free_port()
  env = {**_env(port=port), "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
         "JAX_NUM_PROCESSES": "2"}
  argv = [sys.executable, "-c", SCRIPT, str(workdir), str(steps)]
  _run_all([(argv, {**env, "JAX_PROCESS_ID": str(i)}) for i in range(2)],
           TIMEOUT_S)


@pytest.mark.slow
def test_two_processes_match_one_and_share_one_checkpoint_set(tmp_path):
  workdir = tmp_path / "two"
  _run_job(workdir, steps=4)
  _run_job(workdir, steps=6)  # Resumes from the shared checkpoint 4.
  two = np.load(workdir / "final.npz")
  two = [two[f"arr_{i}"] for i in range(len(two.files))]

  config = apply_overrides(example.get_config(),
                           {**OVERRIDES, "train.steps": 6})
  one = train_and_evaluate(config, tmp_path / "one", example.make_task(config))
  want = jax.tree.leaves(jax.device_get(one.state.params))
  assert len(two) == len(want)
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(two, want,
                                                           strict=True))
  print(f"max |2-process - 1-process| param difference: {diff:.3g}")
  for got, expected in zip(two, want, strict=True):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

  # One checkpoint set, complete and readable in one process, no leftovers.
  ckpts = workdir / "checkpoints"
  assert sorted(p.name for p in ckpts.iterdir()) == ["4", "6"]
  saved = Checkpoints(ckpts, read_only=True)
  assert saved.latest_step() == 6
  saved.close()
  # Only process 0 logs; each step once, with the single process's losses.
  records, expected_records = read_metrics(workdir), read_metrics(
      tmp_path / "one")
  assert [r["step"] for r in records] == [r["step"] for r in expected_records]
  np.testing.assert_allclose(
      [r.get("train/loss", np.nan) for r in records],
      [r.get("train/loss", np.nan) for r in expected_records], rtol=1e-5)


@pytest.mark.slow
def test_quick_start_model_on_two_processes_matches_two_devices(tmp_path):
  """The launcher's ANCM on two processes of one CPU device each equals, bit
  for bit, the same command in one process with two devices: parameters,
  logged losses and eval metrics, checkpoint steps and config."""
  port = _free_port()
  # XLA's backend optimisation level 0, as for the whole suite, in all three
  # processes: compiling the ANCM dominates the time. Both runs compile the
  # same programs at the same level, so they still must agree bit for bit.
  fast = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}
  job = [([sys.executable, *QUICKSTART, f"--workdir={tmp_path / 'two'}",
           f"--coordinator=127.0.0.1:{port}", "--num_processes=2",
           f"--process_id={i}"], {**_env(port=port), **fast})
         for i in range(2)]
  one = ([sys.executable, *QUICKSTART, f"--workdir={tmp_path / 'one'}"],
         {**_env(devices=2), **fast})
  # The one-process run trains beside the job: the wall time of the longer.
  outs = _run_all([*job, one], QUICKSTART_TIMEOUT_S)

  _, _, two_params = fit.load(tmp_path / "two")
  _, _, one_params = fit.load(tmp_path / "one")
  two_leaves, two_tree = jax.tree.flatten_with_path(two_params)
  one_leaves, one_tree = jax.tree.flatten_with_path(one_params)
  assert two_tree == one_tree
  for (path, got), (_, want) in zip(two_leaves, one_leaves, strict=True):
    # The same global batches through the same programs on two devices,
    # whether in one process or two: nothing may differ, not even rounding.
    np.testing.assert_array_equal(got, want, err_msg=jax.tree_util.keystr(
        path))

  # The metrics log: the same records, but for the timings.
  def logged(run):
    return [{k: v for k, v in r.items() if k not in TIMINGS}
            for r in read_metrics(tmp_path / run)]
  records = logged("two")
  assert [r["step"] for r in records] == [2, 4]
  assert "train/loss" in records[0] and "eval/nll" in records[1]
  assert records == logged("one")
  for run in ("two", "one"):  # One checkpoint set, at the same steps.
    assert sorted(p.name for p in (tmp_path / run / "checkpoints").iterdir(
        )) == ["2", "4"]
  assert (tmp_path / "two" / fit.CONFIG_FILE).read_text() == (
      tmp_path / "one" / fit.CONFIG_FILE).read_text()

  # One report per run (gloo prints too): from process 0 only, with the
  # single run's last eval.
  two0, two1, single = [[line for line in out.splitlines()
                         if line.startswith("trained 4 steps in ")]
                        for out in outs]
  assert len(two0) == len(single) == 1 and not two1, outs
  assert two0[0].split(";")[1] == single[0].split(";")[1]


def test_processes_from_flags_and_environment():
  assert processes_from(environ={}) is None
  assert processes_from(num_processes=1, environ={}) is None
  env = {"JAX_COORDINATOR_ADDRESS": "node001:1234", "JAX_NUM_PROCESSES": "4",
         "JAX_PROCESS_ID": "3"}
  assert processes_from(environ=env) == Processes("node001:1234", 4, 3)
  # Flags win over the environment.
  assert processes_from("[::1]:99", 2, "0", environ=env) == Processes(
      "[::1]:99", 2, 0)
  for args, message in [
      (("h:1", 2, 2), "--process_id (or $JAX_PROCESS_ID) is 2, but ids run "
       "from 0 to 1 for 2 process(es)"),
      (("h", 2, 0), "--coordinator (or $JAX_COORDINATOR_ADDRESS) must be "
       "host:port (e.g. node001:12345), got 'h'"),
      (("h:x", 2, 0), "must be host:port"),
      ((None, 2, 0), "--coordinator (or $JAX_COORDINATOR_ADDRESS) is "
       "required for a multi-process run"),
      (("h:1", None, 0), "--num_processes (or $JAX_NUM_PROCESSES) is "
       "required"),
      (("h:1", "two", 0), "--num_processes (or $JAX_NUM_PROCESSES) must be "
       "an integer >= 1, got 'two'"),
      (("h:1", 2, -1), "must be an integer >= 0, got -1"),
  ]:
    with pytest.raises(UserError) as info:
      processes_from(*args, environ={})
    assert message in str(info.value)


def test_train_cli_rejects_bad_process_flags(tmp_path):
  # The other messages are checked above; this is the launcher's boundary.
  env = {k: v for k, v in os.environ.items() if not k.startswith(
      ("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))}
  res = subprocess.run(
      [sys.executable, "-m", "launch.train",
       "--config=configs/ancm_vae_colored_mnist_backdoor.py",
       f"--workdir={tmp_path / 'run'}", "--coordinator=localhost:1",
       "--num_processes=2", "--process_id=2"],
      cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
  assert res.returncode == 2
  assert res.stderr.strip() == (
      "error: --process_id (or $JAX_PROCESS_ID) is 2, but ids run from 0 to "
      "1 for 2 process(es)")
  assert not (tmp_path / "run").exists()
