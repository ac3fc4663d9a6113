"""A tiny regression task: the smallest complete example of a `Task`.

An nnx MLP fits y = sin(x . w) + noise on synthetic data. Batches are drawn
from fold_in(data key, step), so any step's batch can be regenerated; the
tests use it for resume, sharding and checkpoint checks, and it shows how a
model plugs into `train_and_evaluate`.
"""

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ctfjax.train.config import base_train_config
from ctfjax.train.loop import Task, batches_from_fn
from ctfjax.train.sharding import process_share
from ctfjax.train.state import PureModule, stream_key


class MLP(nnx.Module):
  """x [B, D] -> y [B, 1] through one tanh hidden layer."""

  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(dim, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, 1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.out(jnp.tanh(self.hidden(x)))


def get_config() -> ml_collections.ConfigDict:
  """Seconds-sized defaults on a CPU."""
  config = base_train_config()
  config.data.dim = 4  # Input features.
  config.data.noise = 0.1  # Std of the additive Gaussian noise on y.
  config.data.eval_batches = 2  # Batches of train.batch_size in the eval set.
  config.model.hidden = 16  # Hidden units.
  config.train.steps = 50
  config.train.batch_size = 32
  config.train.learning_rate = 1e-2
  config.train.log_every = 10
  config.train.eval_every = 25
  config.ckpt.every = 25
  return config


def make_task(config: ml_collections.ConfigDict) -> Task:
  """The regression task described by `config` (see `get_config`)."""
  dim, batch_size = config.data.dim, config.train.batch_size
  model = PureModule(
      lambda rngs: MLP(dim, config.model.hidden, rngs=rngs))
  data_key = stream_key(jax.random.key(config.train.seed), "data")
  w_true = jax.random.normal(jax.random.fold_in(data_key, 0), (dim,))

  @jax.jit
  def sample(key):
    kx, kn = jax.random.split(key)
    x = jax.random.normal(kx, (batch_size, dim))  # [B, D]
    noise = config.data.noise * jax.random.normal(kn, (batch_size, 1))
    return {"x": x, "y": jnp.sin(x @ w_true)[:, None] + noise}  # y: [B, 1]

  # Train and eval draws come from disjoint subkeys of the data stream.
  train_key, eval_key = (jax.random.fold_in(data_key, i) for i in (1, 2))

  def mse(params, batch):
    return jnp.mean((model.apply(params, batch["x"]) - batch["y"]) ** 2)

  def loss(params, batch, rng):
    del rng  # Deterministic model.
    value = mse(params, batch)
    return value, {"rmse": jnp.sqrt(value)}

  def evaluate(params, batch, rng):
    del rng
    return {"mse": mse(params, batch)}

  # Every process draws the whole global batch (it is cheap) and keeps its
  # share, so a multi-process run sees the batches of a single-process one.
  eval_set = [process_share(sample(jax.random.fold_in(eval_key, i)))
              for i in range(config.data.eval_batches)]
  return Task(
      init=model.init,
      loss=loss,
      train_batches=batches_from_fn(
          lambda step: process_share(
              sample(jax.random.fold_in(train_key, step)))),
      eval=evaluate,
      eval_batches=lambda: eval_set,
  )
