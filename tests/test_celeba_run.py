"""CelebA end to end: launch.run on a download in the official layout (the
fixture's faces are noise; the test is that the whole path runs and
reports, not what it learns). The run config holds every image mechanism;
the test trains and scores the VAE-ANCM through the command, and
tests/test_mechanisms.py trains and edits each mechanism at 64x64 (five
64x64 evaluations through the command take over ten minutes on 2 cores)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from test_data_celeba import NAMES

# 64 train images (the tiny preset's data.size), 40 test (its test_size), 8
# valid.
SPLITS = [0] * 64 + [2] * 40 + [1] * 8


def write_download(root, seed=0):
  rng = np.random.default_rng(seed)
  (root / "img_align_celeba").mkdir(parents=True)
  files = [f"{k + 1:06d}.jpg" for k in range(len(SPLITS))]
  signs = rng.choice([-1, 1], size=(len(files), len(NAMES)))
  for f in files:
    pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "img_align_celeba" / f, quality=85)
  (root / "list_attr_celeba.txt").write_text(
      f"{len(files)}\n" + " ".join(NAMES) + "\n" + "\n".join(
          f + " " + " ".join(str(v) for v in s)
          for f, s in zip(files, signs)) + "\n")
  (root / "list_eval_partition.txt").write_text(
      "".join(f"{f} {s}\n" for f, s in zip(files, SPLITS)))


@pytest.mark.slow
def test_launch_run_on_a_celeba_download(tmp_path):
  source, workdir = tmp_path / "celeba", tmp_path / "run"
  write_download(source)
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "CTFJAX_DATA_DIR": str(tmp_path / "cache")}
  done = subprocess.run(
      [sys.executable, "-m", "launch.run",
       "--config=configs/compare_mechanisms_celeba_simple.py:tiny",
       f"--config.data.source={source}", f"--workdir={workdir}",
       "--config.run.models=('ancm_vae',)"],
      capture_output=True, text=True, env=env, timeout=1500, check=False)
  assert done.returncode == 0, done.stderr[-4000:]
  report = json.loads((workdir / "report.json").read_text())
  assert report["dataset"] == "celeba/simple"
  models = [e["model"] for e in report["models"]]
  assert models == ["ancm_vae"]
  for entry in report["models"]:
    assert set(entry["effectiveness"]) == {"do(Smiling)", "do(Eyeglasses)"}
    assert entry["composition"]["l1_1"] >= 0
    # Independent binary attributes: every row has exact bounds from the
    # observed table, and do(Smiling) must keep Eyeglasses.
    assert entry["ctf_consistency"]
  for name in ("report.md", "edits.png"):
    assert (workdir / name).stat().st_size > 0
