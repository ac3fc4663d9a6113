"""train.ema_decay: the loop's moving average of the parameters."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ctfjax.errors import UserError
from ctfjax.train import Task, apply_overrides, base_train_config, ema
from ctfjax.train import batches_from_fn, load_state, model_params
from ctfjax.train import train_and_evaluate

LR = 0.5


def _config(steps, decay, **more):
  config = base_train_config()
  return apply_overrides(config, {
      "train.steps": steps, "train.batch_size": 4, "train.log_every": 1,
      "train.eval_every": 0, "train.progress": False, "ckpt.every": 1,
      "ckpt.async_save": False, "train.ema_decay": decay, **more})


def _task():
  """w starts at 0 and SGD moves it by -LR per step (the gradient is 1), so
  the parameters after step t are -LR t."""
  return Task(
      init=lambda key: {"w": jnp.zeros(3)},
      loss=lambda p, batch, rng: (jnp.mean(batch @ p["w"]), {}),
      train_batches=batches_from_fn(lambda step: np.ones((4, 3), np.float32)),
      optimizer=optax.sgd(LR))


def _hand_ema(steps, decay):
  ema_value = 0.0  # The average starts at the initial parameters.
  for t in range(1, steps + 1):
    d = min(decay, (1 + t) / (10 + t))
    ema_value = d * ema_value + (1 - d) * (-LR * t)
  return ema_value


def test_decay_warms_up_to_the_configured_value():
  np.testing.assert_allclose(ema.decay_at(0.999, 1), 2 / 11, rtol=1e-6)
  np.testing.assert_allclose(ema.decay_at(0.999, 100), 101 / 110, rtol=1e-6)
  np.testing.assert_allclose(ema.decay_at(0.9, 10_000), 0.9, rtol=1e-6)


@pytest.mark.parametrize("decay", [0.5, 0.99])
def test_the_run_hands_on_the_average_of_its_trajectory(tmp_path, decay):
  result = train_and_evaluate(_config(6, decay), tmp_path, _task())
  np.testing.assert_allclose(result.state.params["w"], -LR * 6)
  np.testing.assert_allclose(model_params(result.state)["w"],
                             _hand_ema(6, decay), rtol=1e-6)
  # The checkpoint holds it: a reload hands on the same average.
  loaded = load_state(_config(6, decay), tmp_path, _task())
  np.testing.assert_array_equal(model_params(loaded)["w"],
                                model_params(result.state)["w"])


def test_a_resumed_run_continues_the_same_average(tmp_path):
  whole = train_and_evaluate(_config(6, 0.9), tmp_path / "whole", _task())
  train_and_evaluate(_config(2, 0.9), tmp_path / "parts", _task())
  resumed = train_and_evaluate(_config(6, 0.9), tmp_path / "parts", _task())
  assert resumed.steps == 6
  np.testing.assert_array_equal(model_params(resumed.state)["w"],
                                model_params(whole.state)["w"])


def test_no_average_by_default_and_bad_decays_are_one_line(tmp_path):
  result = train_and_evaluate(_config(2, 0.0), tmp_path / "plain", _task())
  assert result.state.extra == {}
  np.testing.assert_array_equal(model_params(result.state)["w"],
                                result.state.params["w"])
  for bad in (1.0, -0.1):
    with pytest.raises(UserError, match=r"train\.ema_decay.*\[0, 1\)"):
      train_and_evaluate(_config(2, bad), tmp_path / "bad", _task())
  own = dataclasses.replace(_task(), init_extra=lambda p: {"mine": p})
  with pytest.raises(UserError, match="its own extra state"):
    train_and_evaluate(_config(2, 0.5), tmp_path / "own", own)
  assert not (tmp_path / "bad").exists() and not (tmp_path / "own").exists()


@pytest.mark.parametrize("before, after", [(0.0, 0.5), (0.5, 0.0)])
def test_resuming_with_or_without_an_average_says_why_it_cannot(
    tmp_path, before, after):
  train_and_evaluate(_config(2, before), tmp_path, _task())
  with pytest.raises(UserError, match=r"ema.*train\.ema_decay must stay"):
    train_and_evaluate(_config(4, after), tmp_path, _task())
