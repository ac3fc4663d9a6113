"""launch.show_data: a real PNG grid, and one-line errors with exit code 2."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ctfjax import data
from ctfjax.data import show

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_cli(*args, data_dir):
  env = dict(os.environ, JAX_PLATFORMS="cpu", CTFJAX_DATA_DIR=str(data_dir))
  return subprocess.run([sys.executable, "-m", "launch.show_data", *args],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=120, check=False)


@pytest.mark.slow
def test_writes_a_png_grid(tmp_path):
  out = tmp_path / "grids" / "backdoor.png"
  r = run_cli("--dataset=colored_mnist_bars/backdoor", f"--out={out}",
              "--num=24", "--split=test", data_dir=tmp_path / "cache")
  assert r.returncode == 0, r.stderr
  with Image.open(out) as img:
    assert img.format == "PNG"
    assert img.width > 1000 and img.height > 300
  assert not [p for p in out.parent.iterdir() if p != out]  # no temp files


@pytest.mark.parametrize("args,match", [
    (["--dataset=colored_mnist", "--out=x.png"], "unknown dataset"),
    (["--out=x.png"], "--dataset is required"),
    # Flag errors: one line from launch.cli's parser.
    (["--dataset=colored_mnist_bars/backdoor", "--out=x.png", "--num=0"],
     "num"),
    (["--dataset=colored_mnist_bars/backdoor", "--out=x.png", "--num=many"],
     "num"),
    (["--bogus=1"], "bogus"),
])
@pytest.mark.slow
def test_bad_input_is_one_line_exit_2(tmp_path, args, match):
  r = run_cli(*args, data_dir=tmp_path)
  assert r.returncode == 2
  assert match in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1, r.stderr
  assert "Traceback" not in r.stderr
  assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("kwargs,match", [
    ({"out": "x.jpg"}, "must be a .png"),
    ({"num": -3}, "positive integer"),
    ({"source": "/nonexistent"}, "does not exist"),
    ({"split": "valid"}, "unknown MNIST split"),
])
def test_write_grid_bad_input(tmp_path, kwargs, match):
  kwargs = {"out": tmp_path / "x.png", **kwargs}
  with pytest.raises(data.DataError, match=match):
    show.write_grid("colored_mnist_bars/backdoor", data_dir=tmp_path,
                    **kwargs)
  assert not list(tmp_path.glob("*.png"))


def test_figure_groups_every_combination():
  ds = {"image": np.zeros((5, 32, 32, 3), np.uint8),
        "D": np.array([3, 1, 2, 0, 4]), "C": np.array([0, 0, 1, 1, 1]),
        "B": np.array([0, 0, 0, 0, 0])}
  fig = show.figure(ds, group_by=("C", "B"), sort_by="D",
                    value_names={"C": ("Green", "Red")})
  titles = [t.get_text() for t in fig.texts]
  assert any(t.startswith("Green\n(C = 0, B = 0)\n2 samples") for t in titles)
  assert any("(C = 1, B = 1)\n0 samples" in t for t in titles)
  assert len(fig.axes) == 4
