"""An exponential moving average of the parameters (`train.ema_decay`).

Diffusion models are sampled from an EMA of their weights (Ho et al. keep
0.9999): the last iterate of Adam moves with each batch's noise, and a
sampler that runs the network tens of times in a row, or inverts it, feels
that noise. With `train.ema_decay` = d > 0 the loop keeps

    ema_t = d_t ema_{t-1} + (1 - d_t) params_t,
    d_t = min(d, (1 + t) / (10 + t))

(the warm-up of diffusers' `EMAModel`, so that a short run's average does
not hold its initialisation), checkpoints it with the state (a resumed run
continues the same average), evaluates it, and hands it on as the run's
parameters (`model_params`). d = 0 keeps no average. `ckpt.init_from`
starts from another run's trained parameters, not its average.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import optax

from ctfjax.errors import UserError

KEY = "ema"  # Where the average sits in `TrainState.extra`.


def decay_at(decay: float, step) -> jnp.ndarray:
  """d_t: the decay of update `step` (1 for the first), with the warm-up."""
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def with_ema(task, decay: float):
  """`task` keeping an EMA of its parameters when decay > 0 (else `task`).

  Raises:
    UserError: decay outside [0, 1), or a task that keeps its own extra
      state.
  """
  if not 0.0 <= decay < 1.0:
    raise UserError(f"config key 'train.ema_decay' must be in [0, 1), "
                    f"not {decay}")
  if decay == 0.0:
    return task
  if task.init_extra is not None or task.update_extra is not None:
    raise UserError("config key 'train.ema_decay' needs a task without "
                    "its own extra state")

  def update(extra, params, step):
    return {KEY: optax.incremental_update(params, extra[KEY],
                                          1.0 - decay_at(decay, step))}

  return dataclasses.replace(task, init_extra=lambda params: {KEY: params},
                             update_extra=update,
                             eval_params=lambda state: state.extra[KEY])


def model_params(state) -> Any:
  """The parameters a run hands on: its EMA when it keeps one, else the
  trained parameters."""
  extra = state.extra
  return extra[KEY] if isinstance(extra, dict) and KEY in extra else (
      state.params)
