"""Train state as a pytree, the optimizer from config, and the nnx boundary.

Training works on pure functions of parameter pytrees. Models are written as
Flax nnx modules; `PureModule` is the one place where a module becomes a pure
(init, apply) pair through nnx.split / nnx.merge, so jit, grad, vmap and
sharding compose over everything downstream.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx, struct

Params = Any  # A pytree of arrays.

# Independent random streams, all folded from the one root key of a run, so
# changing how many draws one stream makes never shifts another.
STREAMS = {"init": 0, "train": 1, "eval": 2, "data": 3}


def stream_key(root: jax.Array, name: str) -> jax.Array:
  """The root key of one named random stream ("init", "train", ...)."""
  return jax.random.fold_in(root, STREAMS[name])


@struct.dataclass
class TrainState:
  """Everything a training step reads and writes; a pytree, checkpointed whole.

  Attributes:
    step: int32 [], optimizer steps completed so far.
    params: trained parameters (a pytree of arrays).
    opt_state: the optax state of `params`.
    rng: typed key [], the run's root key; per-step keys are folded from it
      (see `stream_key`), never split and threaded by hand.
    extra: model-specific state that is not trained by gradient, e.g. an EMA
      of params; {} when unused.
  """

  step: jax.Array
  params: Params
  opt_state: optax.OptState
  rng: jax.Array
  extra: Any


def create_train_state(
    root: jax.Array,
    init: Callable[[jax.Array], Params],
    optimizer: optax.GradientTransformation,
    init_extra: Callable[[Params], Any] | None = None,
) -> TrainState:
  """Initialises a train state; pure, so it can run under jit or eval_shape.

  Args:
    root: the run's root key, `jax.random.key(config.train.seed)`.
    init: key -> params.
    optimizer: the optax transformation the state is trained with.
    init_extra: params -> extra state; None for {}.

  Returns:
    The state at step 0.
  """
  params = init(stream_key(root, "init"))
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=optimizer.init(params),
      rng=root,
      extra={} if init_extra is None else init_extra(params),
  )


def make_optimizer(
    train: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Builds the optimizer described by the `train` config section.

  Args:
    train: `config.train` (see `base_train_config`).

  Returns:
    An optax transformation: optional clipping, then the chosen optimizer
    with its learning-rate schedule.
  """
  if train.schedule == "cosine":
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, train.learning_rate, train.warmup_steps,
        max(train.steps, train.warmup_steps + 1))
  elif train.warmup_steps:
    schedule = optax.linear_schedule(0.0, train.learning_rate,
                                     train.warmup_steps)
  else:
    schedule = train.learning_rate
  if train.optimizer == "adam":
    opt = optax.adam(schedule)
  elif train.optimizer == "adamw":
    opt = optax.adamw(schedule, weight_decay=train.weight_decay)
  else:
    opt = optax.sgd(schedule, momentum=0.9)
  if train.grad_clip:
    opt = optax.chain(optax.clip_by_global_norm(train.grad_clip), opt)
  return opt


class PureModule:
  """An nnx module as pure functions of a plain dict of parameters.

  Example:

    mlp = PureModule(lambda rngs: MLP(4, 16, 1, rngs=rngs))
    params = mlp.init(key)                 # {"hidden": {"kernel": ...}, ...}
    y = mlp.apply(params, x)               # pure: jit / grad / vmap freely
    y = mlp.apply(params, x, method="encode")

  Params are the module's `nnx.Param` variables as a pure dict (what is
  checkpointed and optimized). Every other variable (e.g. an `nnx.Rngs`
  stored by Dropout) is frozen at its value from a fixed-seed init: pass
  randomness in through call arguments instead (`rngs=nnx.Rngs(rng)`), and
  use normalisation without running statistics (LayerNorm, GroupNorm).
  """

  def __init__(self, make: Callable[[nnx.Rngs], nnx.Module]):
    """Reads the module's structure from an abstract (shape-only) build.

    Args:
      make: nnx.Rngs -> a freshly initialised module.
    """
    self._make = make
    abstract = nnx.eval_shape(lambda: make(nnx.Rngs(0)))
    self.graphdef, self._abstract_params, self._rest = nnx.split(
        abstract, nnx.Param, ...)
    if jax.tree.leaves(self._rest):
      # Under jit the unused parameter initialisers are dead code, so this
      # only computes the small non-param state.
      self._rest = jax.jit(
          lambda: nnx.split(make(nnx.Rngs(0)), nnx.Param, ...)[2])()

  def init(self, rng: jax.Array) -> Params:
    """Fresh parameters as a pure dict."""
    return nnx.to_pure_dict(nnx.state(self._make(nnx.Rngs(rng)), nnx.Param))

  def merge(self, params: Params) -> nnx.Module:
    """The module with `params` in place; call it inside a pure function."""
    state = jax.tree.map(lambda x: x, self._abstract_params)  # A fresh copy.
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(self.graphdef, state, self._rest)

  def apply(self, params: Params, *args, method: str | None = None, **kwargs):
    """Calls the module (or its `method`) with `params`; pure."""
    module = self.merge(params)
    fn = module if method is None else getattr(module, method)
    return fn(*args, **kwargs)
