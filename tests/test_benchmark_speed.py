"""The speed benchmark's bookkeeping: medians, ranges and peer ratios over
alternating rounds, the README table (`launch.speed_rows`, which defines no
flags), and the launcher's one-line errors (in a subprocess, so that its
flags never meet another launcher's in one test process)."""

import subprocess
import sys

import pytest

from launch import speed_rows


def _run(train, edit, compile_s=1.0):
  return {"train_images_per_s": train, "edit_images_per_s": edit,
          "compile_train_s": compile_s, "compile_edit_s": compile_s / 2}


def test_summary_is_the_median_and_range_over_rounds():
  s = speed_rows.summarise([_run(100.0, 10.0, 3.0), _run(300.0, 30.0),
                                 _run(200.0, 20.0, 2.0)])
  assert s["rounds"] == 3
  assert s["train_images_per_s"] == 200.0
  assert s["train_images_per_s_range"] == [100.0, 300.0]
  assert s["edit_images_per_s"] == 20.0
  assert s["compile_train_s"] == 2.0 and s["compile_edit_s"] == 1.0


def test_table_gives_each_setting_and_its_ratio_to_the_peer():
  s = {"row": "cvae", "microbatch": 16, **speed_rows.summarise(
      [_run(1478.0, 1956.0)])}
  peer = speed_rows.PEERS["cvae"]
  s["train_vs_peer"] = s["train_images_per_s"] / peer["train"][0]
  s["edit_vs_peer"] = s["edit_images_per_s"] / peer["edit"][0]
  lines = speed_rows.table(
      [s, {"row": "gan", "microbatch": 0,
           **speed_rows.summarise([_run(40.0, 240.0)])}]).splitlines()
  # 1478 / 739 = 2.00x, 1956 / 978 = 2.00x; no peer figure for the GAN.
  assert lines[2] == ("| cvae | 16 | 1478.0 (1478.0-1478.0) | "
                      "1956.0 (1956.0-1956.0) | 2.00x / 2.00x |")
  assert lines[3].startswith("| gan | whole | 40.0") and lines[3].endswith(
      "| - |")


@pytest.mark.parametrize("args, message", [
    (["--rows=cvae,vit"], "--rows: unknown ['vit']"),
    (["--microbatch=0,a"], "--microbatch: integers"),
    (["--rounds=0"], "--rounds >= 1"),
])
def test_bad_flags_are_one_line_errors(args, message, tmp_path):
  out = tmp_path / "speed.json"
  p = subprocess.run([sys.executable, "-m", "launch.benchmark_speed",
                      f"--out={out}", *args], capture_output=True, text=True,
                     check=False)
  assert p.returncode == 2
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:")
  assert message in lines[0]
  assert not out.exists()
