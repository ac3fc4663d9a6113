"""The launchers end to end: launch.run (and its resume), bad input."""

import os
import pathlib
import subprocess
import sys

import pytest
from PIL import Image

from ctfjax.report import schema

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}

# configs/quickstart.py shrunk to seconds (its `tiny` preset), two models.
QUICKSTART_TINY = "--config=configs/quickstart.py:tiny"
TINY = ["--config.run.models=('ancm_vae','cvae_noncausal')"]


def launch(module, *args, timeout=600, env=None):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                        env=env or ENV, capture_output=True, text=True,
                        timeout=timeout)


@pytest.mark.slow
def test_run_writes_outputs_and_resumes_without_retraining(tmp_path):
  workdir = tmp_path / "run"
  args = [QUICKSTART_TINY, f"--workdir={workdir}", *TINY]
  # A persistent compilation cache lets the second run skip XLA compiles
  # (15 s instead of 75 s); it changes no result.
  env = {**ENV, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
  first = launch("launch.run", *args, env=env)
  assert first.returncode == 0, first.stderr[-3000:]
  assert "ancm_vae" in first.stdout and "cvae_noncausal" in first.stdout
  for name in ("report.json", "report.md", "edits.png", "bounds.png",
               "run_config.json"):
    assert (workdir / name).is_file(), name
  for name in ("edits.png", "bounds.png"):
    with Image.open(workdir / name) as img:
      assert img.format == "PNG" and min(img.size) > 300
  report = schema.read(workdir / "report.json")
  assert [e["model"] for e in report["models"]] == ["ancm_vae",
                                                    "cvae_noncausal"]
  assert report["models"][1]["graph"] == "D; C; B"
  assert all(e["train"]["steps"] == 4 for e in report["models"])
  # Four steps are far from converged: flagged in report.json and beside
  # the printed name.
  assert (report["models"][0]["usable"]["ok"] is False
          and "ancm_vae †" in first.stdout), first.stdout
  # launch.edit finds the run's models in models/<name>/.
  for name in ("ancm_vae", "cvae_noncausal"):
    assert (workdir / "models" / name / "config.json").is_file()
  ckpts = sorted(p.name for p in
                 (workdir / "models" / "ancm_vae" / "checkpoints").iterdir())
  reader = (workdir / "evaluators" / "digit_cnn" / "reader.json").read_text()

  second = launch("launch.run", *args, env=env)
  assert second.returncode == 0, second.stderr[-3000:]
  again = schema.read(workdir / "report.json")
  # Nothing retrained: same checkpoints, same recorded training time.
  assert sorted(p.name for p in (workdir / "models" / "ancm_vae" /
                                 "checkpoints").iterdir()) == ckpts
  assert [e["train"] for e in again["models"]] == \
      [e["train"] for e in report["models"]]
  assert (workdir / "evaluators" / "digit_cnn" / "reader.json").read_text() \
      == reader
  # A finished run only re-evaluates: same seeds, same numbers.
  assert again["models"][0]["ctf_consistency"] == \
      report["models"][0]["ctf_consistency"]


def _one_line_error(result, pattern):
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, result.stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
  assert pattern in lines[0], lines[0]


@pytest.mark.parametrize("module, args, pattern", [
    ("launch.run", ["--config=configs/quickstart.py", "--workdir=x",
                    "--config.train.stepz=3"],
     "unknown config key 'train.stepz'; did you mean 'train.steps'?"),
    ("launch.run", ["--config=configs/quickstart.py", "--workdir=x",
                    "--config.train.steps=many"],
     "config key 'train.steps' expects int, got 'many'"),
    ("launch.run", ["--config=configs/quickstart.py", "--workdir=x",
                    "--config.run.models=('ancm_vae','gan')"],
     "unknown model 'gan'"),
    ("launch.run", ["--config=configs/nope.py", "--workdir=x"],
     "config file configs/nope.py does not exist"),
    ("launch.run", ["--config=configs/quickstart.py"], "--workdir is required"),
    ("launch.run", ["--config=configs/quickstart.py", "--workdir=x",
                    "--config.data.name=celeba/simple"],
     "celeba/simple needs source=<directory of the CelebA manual download>"),
    ("launch.evaluate", ["--workdir=/nonexistent/run"],
     "workdir /nonexistent/run does not exist"),
    ("launch.evaluate", ["--workdir=configs"], "is not a trained run"),
    ("launch.benchmark", ["--config=configs/benchmark_colored_mnist.py",
                          "--config.benchmark.tables=('speed',)"],
     "unknown table 'speed'"),
    ("launch.benchmark", ["--config=configs/quickstart.py"],
     "has no 'benchmark' section"),
])
@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(module, args, pattern, tmp_path):
  args = [a.replace("--workdir=x", f"--workdir={tmp_path / 'x'}")
          for a in args]
  _one_line_error(launch(module, *args, timeout=120), pattern)
  assert not (tmp_path / "x").exists()  # nothing half-written


def test_unparseable_override_value(tmp_path):
  result = launch("launch.run", "--config=configs/quickstart.py",
                  f"--workdir={tmp_path}", "--config.train.steps")
  _one_line_error(result, "is not of the form key=value")
