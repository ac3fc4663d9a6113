"""Data parallel over two processes on localhost: the same parameters as one
process, one checkpoint set, resume; the launcher's process flags."""

import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ctfjax.errors import UserError
from ctfjax.train import Checkpoints, Processes, apply_overrides, example
from ctfjax.train import processes_from, read_metrics, train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[1]
OVERRIDES = {"train.log_every": 2, "train.eval_every": 3, "ckpt.every": 2,
             "ckpt.max_to_keep": 2, "train.progress": False}
TIMEOUT_S = 180  # For a whole two-process run; it takes ~10 s on 2 cores.

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


def _run_job(workdir: pathlib.Path, steps: int) -> None:
  """Trains `steps` steps of the example task in two processes."""
  port = _free_port()
  env = {k: v for k, v in os.environ.items()
         # The pytest process's device settings must not leak: each process
         # has exactly one CPU device.
         if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  env.update({
      "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1",
      "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
      # Loopback only: JAX's coordinator otherwise binds every interface.
      "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}",
      "JAX_NUM_PROCESSES": "2",
      "PYTHONPATH": os.pathsep.join(
          [str(REPO), os.environ.get("PYTHONPATH", "")])})
  procs = [subprocess.Popen(
      [sys.executable, "-c", SCRIPT, str(workdir), str(steps)], cwd=REPO,
      env={**env, "JAX_PROCESS_ID": str(i)}, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  deadline = time.monotonic() + TIMEOUT_S
  try:
    errs = [p.communicate(timeout=max(1, deadline - time.monotonic()))[1]
            for p in procs]
  finally:
    for p in procs:  # A failed or hung peer must not outlive the test.
      if p.poll() is None:
        p.kill()
        p.communicate()
  for i, (p, err) in enumerate(zip(procs, errs, strict=True)):
    assert p.returncode == 0, f"process {i}: {err[-3000:]}"


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
