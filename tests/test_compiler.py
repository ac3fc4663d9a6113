"""compiler: a mechanism's compiler options reach the programs that run it.

A diffusion mechanism asks for `CPU_CONVOLUTIONS_IN_XLA`: a train step compiled
with it keeps its convolutions out of YNNPACK's fusions, the ANCM's
abduction and the training loop's steps are compiled with it, and other
mechanisms (and CTFJAX_XLA_CPU_OPTIONS=0) keep XLA's defaults.
"""

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import optax
import pytest

from ctfjax import compiler
from ctfjax import mechanisms
from ctfjax.ancm import model as ancm_model
from ctfjax.ancm import fit
from ctfjax.train import apply_overrides, create_train_state, example, loop
from ctfjax.train import make_train_step
from ctfjax.train import train_and_evaluate
from test_diffusion import diffusion_config


def convolutions(hlo: str) -> tuple[int, int]:
  """(convolutions inside YNNPACK fusions, convolutions elsewhere) of a
  compiled program's HLO text."""
  ynn = set(re.findall(r"calls=%([\w.\-]+)[^\n]*__ynn_fusion", hlo))
  inside = outside = 0
  for block in hlo.split("\n\n"):
    head = re.match(r"(?:ENTRY )?%?([\w.\-]+)", block.strip())
    n = len(re.findall(r" convolution\(", block))
    if head and head.group(1) in ynn:
      inside += n
    else:
      outside += n
  return inside, outside


def _conv_loss(w, batch, rng):
  del rng
  y = jax.lax.conv_general_dilated(batch, w, (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jnp.mean(jnp.square(y)), {}


def _train_step_convolutions(options) -> tuple[int, int]:
  optimizer = optax.sgd(0.1)
  state = create_train_state(jax.random.key(0),
                             lambda key: jnp.ones((3, 3, 64, 64)), optimizer)
  step = make_train_step(_conv_loss, optimizer,
                         compiler_options=compiler.for_backend(
                             options and {"cpu": options}))
  batch = jnp.ones((2, 16, 16, 64))
  return convolutions(step.lower(state, batch).compile().as_text())


def test_a_train_step_with_the_options_keeps_its_convolutions_out_of_ynnpack(
    monkeypatch):
  monkeypatch.delenv(compiler.VARIABLE, raising=False)
  # XLA's default: the forward and the weight-gradient convolutions in
  # YNNPACK. If a new jaxlib stops doing this, the option has no reason to
  # exist.
  assert _train_step_convolutions(None) == (2, 0)
  assert _train_step_convolutions(compiler.CPU_CONVOLUTIONS_IN_XLA) == (0, 2)
  monkeypatch.setenv(compiler.VARIABLE, "0")  # switched off: the default
  assert _train_step_convolutions(compiler.CPU_CONVOLUTIONS_IN_XLA) == (2, 0)


@pytest.mark.slow
def test_the_diffusion_ancm_abducts_with_its_options_and_the_vae_without(
    monkeypatch):
  monkeypatch.delenv(compiler.VARIABLE, raising=False)
  assert mechanisms.compiler_options(mechanisms.family("vae")) == {}
  assert mechanisms.compiler_options(
      mechanisms.family("vae_ddpm")) == {
          "cpu": compiler.CPU_CONVOLUTIONS_IN_XLA}
  config = diffusion_config()
  model, params = fit.build(config, 0)
  args = (model, params, jnp.zeros((2,) + model.image_shape),
          {k: jnp.zeros((2,), jnp.int32) for k in model.order},
          jax.random.key(0), model.sampler)

  def ynn_fusions(abduct) -> int:
    return abduct.lower(*args).compile().as_text().count("__ynn_fusion")

  direct = functools.partial(jax.jit, ancm_model._abduct_image,
                             static_argnums=(0, 5))
  default = ynn_fusions(direct())
  with_options = ynn_fusions(direct(
      compiler_options=dict(compiler.CPU_CONVOLUTIONS_IN_XLA)))
  assert with_options != default  # the options change the tiny U-Net's
  assert ynn_fusions(model._image_steps()[0]) == with_options
  monkeypatch.setenv(compiler.VARIABLE, "0")
  assert ynn_fusions(model._image_steps()[0]) == default
  # The ANCM's training task carries the options to the loop.
  monkeypatch.delenv(compiler.VARIABLE)
  task = fit.make_task(config, model, None)
  assert task.compiler_options == {"cpu": compiler.CPU_CONVOLUTIONS_IN_XLA}


def test_the_loop_compiles_its_steps_with_the_tasks_options(tmp_path,
                                                             monkeypatch):
  monkeypatch.delenv(compiler.VARIABLE, raising=False)
  seen = []
  for name in ("make_train_step", "make_eval_step"):
    real = getattr(loop, name)

    def record(*args, _real=real, _name=name, **kwargs):
      seen.append((_name, kwargs["compiler_options"]))
      return _real(*args, **kwargs)

    monkeypatch.setattr(loop, name, record)
  config = apply_overrides(example.get_config(), {
      "train.steps": 2, "train.eval_every": 2, "train.progress": False})
  task = dataclasses.replace(
      example.make_task(config),
      compiler_options={"cpu": compiler.CPU_CONVOLUTIONS_IN_XLA})
  train_and_evaluate(config, tmp_path / "run", task)
  assert seen == [("make_train_step", compiler.CPU_CONVOLUTIONS_IN_XLA),
                  ("make_eval_step", compiler.CPU_CONVOLUTIONS_IN_XLA)]


def test_options_are_chosen_by_backend(monkeypatch):
  monkeypatch.delenv(compiler.VARIABLE, raising=False)
  options = {"cpu": {"a": "1"}, "gpu": {"b": "2"}}
  assert compiler.for_backend(options, "cpu") == {"a": "1"}
  assert compiler.for_backend(options, "gpu") == {"b": "2"}
  assert compiler.for_backend(options, "tpu") is None  # XLA's defaults
  assert compiler.for_backend(options) == {"a": "1"}  # the tests' CPU
  assert compiler.for_backend({}, "cpu") is None
  monkeypatch.setenv(compiler.VARIABLE, "0")
  assert compiler.for_backend(options, "gpu") is None
