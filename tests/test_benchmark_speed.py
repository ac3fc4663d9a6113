"""The speed benchmark's bookkeeping: medians, ranges and peer ratios over
alternating rounds, the Markdown table (`benchmarks.speed_rows`, which defines
no flags), and the launcher's one-line errors (in a subprocess, so that its
flags never meet another launcher's in one test process)."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from ctfjax.nn import unet
from benchmarks import speed_rows
from benchmarks import timing


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


def test_gflop_counts_a_matrix_product_by_hand():
  # (m x k) @ (k x n): m n k multiply-adds, two operations each.
  product = jax.jit(lambda a, b: a @ b)
  a, b = jnp.ones((64, 48)), jnp.ones((48, 40))
  assert timing.gflop(product, a, b) == pytest.approx(2 * 64 * 48 * 40 / 1e9)


def test_gflop_is_none_where_the_backend_gives_no_count():
  # XLA's GPU backend: Lowered.cost_analysis() is None; the rows then leave
  # their GFLOP columns out (test_row_gives_work_per_image_and_its_rate).
  class Lowered:
    def cost_analysis(self):
      return None

  class Jitted:
    def lower(self, *args):
      return Lowered()

  assert timing.gflop(Jitted(), jnp.ones(3)) is None


def test_gflop_counts_a_scan_body_once():
  # Why the U-Net row counts its sampler as one pass times its levels.
  a = jnp.ones((64, 64))
  loop = jax.jit(lambda a: jax.lax.scan(lambda c, _: (c @ a, None), a,
                                        None, length=5)[0])
  assert timing.gflop(loop, a) == pytest.approx(2 * 64 ** 3 / 1e9, rel=0.01)


def test_row_gives_work_per_image_and_its_rate():
  params = {"w": jnp.zeros((3, 4))}
  row = speed_rows._row("m", params, 128, 256, 5.0, 2.0, 1.0, 0.5, 0,
                        train_gflop=36.0, edit_gflop=10.0)
  assert row["params"] == 12
  assert row["train_images_per_s"] == 64.0 and row["edit_images_per_s"] == 512
  assert row["train_gflop_per_image"] == pytest.approx(36.0 / 128)
  assert row["train_gflop_per_s"] == pytest.approx(18.0)
  assert row["edit_gflop_per_s"] == pytest.approx(20.0)
  # Unknown work leaves the columns out rather than guessing them.
  bare = speed_rows._row("m", params, 128, 256, 5.0, 2.0, 1.0, 0.5, 0)
  assert not any("gflop" in k for k in bare)


@pytest.mark.slow
def test_unet_without_attention_drops_exactly_its_six_attention_layers():
  count = lambda size: unet.count_params(
      lambda: unet.UNet(3, 3, rngs=nnx.Rngs(0), **size))
  assert count(speed_rows.unet_size()) == 6_482_435  # the peer's size
  # Each layer at 128 channels: GroupNorm (scale, bias) and four 128 x 128
  # projections with biases (Q, K, V, out); two down, three up, one middle.
  layer = 2 * 128 + 4 * (128 * 128 + 128)
  assert count(speed_rows.unet_size(attention=False)) == 6_482_435 - 6 * layer


@pytest.mark.parametrize("launcher, args, message", [
    ("speed", ["--rows=cvae,vit"], "--rows: unknown ['vit']"),
    ("speed", ["--microbatch=0,a"], "--microbatch: integers"),
    ("speed", ["--rounds=0"], "--rounds >= 1"),
    ("peer", ["--peer_python=/no/such/python"],
     "--peer_python: '/no/such/python'"),
    ("peer", ["--peer_python=/bin/false"], "false"),
    ("peer", ["--peer_python=/bin/true", "--rounds=0"],
     "--rounds"),
    ("peer", ["--peer_python=/bin/true", "--peer_device=tpu"],
     "--peer_device: 'tpu'"),
    ("peer", ["--peer_python=/bin/true", "--row=vit"], "--row"),
    ("peer", ["--peer_python=/bin/true", "--row=hvae"],
     "--peer_repo: None"),
    ("peer", ["--peer_python=/bin/true", "--row=hvae",
                        "--peer_repo=/tmp"], "--peer_repo: '/tmp'"),
])
@pytest.mark.slow
def test_bad_flags_are_one_line_errors(launcher, args, message, tmp_path):
  out = tmp_path / "speed.json"
  p = subprocess.run([sys.executable, "-m", f"benchmarks.{launcher}",
                      f"--out={out}", *args], capture_output=True, text=True,
                     check=False)
  assert p.returncode == 2
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:")
  assert message in lines[0]
  assert not out.exists()


def _round(peer_train, ours_train, peer_edit, ours_edit):
  return {"peer": {"train_images_per_s": peer_train,
                   "edit_images_per_s": peer_edit},
          "ctfjax": _run(ours_train, ours_edit)}


def test_peer_ratios_are_paired_within_rounds():
  # Ratios 2.0, 1.05, 1.2 (median 1.2); the ratio of the medians would be
  # 21 / 20 = 1.05.
  out = speed_rows.paired([_round(10.0, 20.0, 1.0, 1.5),
                           _round(20.0, 21.0, 2.0, 2.2),
                           _round(30.0, 36.0, 0.5, 0.6)])
  assert [r["train_ratio"] for r in out["rounds"]] == pytest.approx(
      [2.0, 1.05, 1.2])
  assert out["summary"]["train_ratio"]["median"] == pytest.approx(1.2)
  assert out["summary"]["train_ratio"]["range"] == pytest.approx([1.05, 2.0])
  assert out["summary"]["edit_ratio"]["median"] == pytest.approx(1.2)
  assert out["summary"]["peer_train"]["median"] == 20.0
  lines = speed_rows.paired_table(out, "DDIM-50").splitlines()
  assert "| peer DDIM-50 img/s | ctfjax DDIM-50 img/s |" in lines[0]
  assert lines[2] == "| 0 | 10.0 | 20.0 | 2.00x | 1.00 | 1.50 | 1.50x |"
  assert lines[-1].startswith("| median | 20.0 | 21.0 | 1.20x |")

