"""benchmarks.xla_options: what each --sets entry compiles with
(`speed_rows.xla_option_set`), the U-Net programs it times
(`speed_rows.unet_programs`), and its bad flags. (The launcher defines absl
flags, so it is run in a subprocess, never imported here.)"""

import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctfjax import compiler
from ctfjax.errors import UserError
from ctfjax.mechanisms import diffusion
from benchmarks import speed_rows
from test_compiler import convolutions

TINY = {"channels": (8, 16), "layers_per_block": 1,
        "attention": (False, True), "head_dim": 8, "groups": 4,
        "num_class_embeds": 40}


def test_sets_name_their_options(monkeypatch):
  monkeypatch.delenv(compiler.VARIABLE, raising=False)
  assert speed_rows.xla_option_set("default") is None
  assert speed_rows.xla_option_set("diffusion") == dict(
      diffusion.Diffusion.COMPILER_OPTIONS["cpu"])
  assert speed_rows.xla_option_set("none") == {
      "xla_cpu_experimental_ynn_fusion_type": ""}
  assert speed_rows.xla_option_set("INDIVIDUAL_DOT+ELTWISE+REDUCE") == {
      "xla_cpu_experimental_ynn_fusion_type":
          "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_ELTWISE,"
          "LIBRARY_FUSION_TYPE_REDUCE"}
  # `diffusion` is what the mechanisms get: nothing when switched off.
  monkeypatch.setenv(compiler.VARIABLE, "0")
  assert speed_rows.xla_option_set("diffusion") is None
  with pytest.raises(UserError, match=re.escape("'DOT+CONV' is not")):
    speed_rows.xla_option_set("DOT+CONV")


@pytest.mark.slow
def test_unet_programs_compile_with_the_options_they_are_given(monkeypatch):
  monkeypatch.delenv(compiler.VARIABLE, raising=False)
  inside = {}
  for name in ("default", "diffusion"):
    p = speed_rows.unet_programs(2, speed_rows.xla_option_set(name),
                                 train_b=4, sample_b=4, sample_steps=2,
                                 size=TINY)
    inside[name] = convolutions(
        p.step.lower(p.state, p.batch).compile().as_text())[0]
    if name == "diffusion":
      before = jax.tree.leaves(p.params)
      state, metrics = p.step(p.state, p.batch)
      assert np.isfinite(float(metrics["loss"]))
      # The step trains: the parameters moved.
      assert any(not np.allclose(a, b) for a, b in
                 zip(before, jax.tree.leaves(state.params)))
      x0 = p.sample()
      assert x0.shape == (4, 32, 32, 3) and bool(jnp.isfinite(x0).all())
      assert p.one_pass_gflop() > 0
  # XLA's defaults put convolutions in YNNPACK; the diffusion options none.
  assert inside["default"] > 0 and inside["diffusion"] == 0


@pytest.mark.parametrize("args, message", [
    (["--sets=default,FOO"], "--sets: 'FOO'"),
    (["--sets=default,default"], "--sets: distinct"),
    (["--rounds=0"], "--rounds"),
    (["--microbatch=-1"], "--microbatch must be >= 0"),
])
def test_bad_flags_are_one_line_errors(args, message, tmp_path):
  out = tmp_path / "options.json"
  p = subprocess.run([sys.executable, "-m", "benchmarks.xla_options",
                      f"--out={out}", *args], capture_output=True, text=True,
                     check=False)
  assert p.returncode == 2
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
  assert message in lines[0]
  assert not out.exists()
