"""Pure train and eval step factories, jitted once on a mesh.

A model supplies pure functions of its parameters:

  loss_fn(params, batch, rng) -> (scalar loss, {name: scalar metric})
  eval_fn(params, batch, rng) -> {name: scalar metric}

and the factories return steps that fold the step's key out of the state,
so no caller ever threads randomness by hand. The steps do no I/O: the loop
fetches their metrics when it logs.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from ctfjax.train import sharding
from ctfjax.train.state import Params, TrainState, stream_key

Batch = Any
Metrics = dict[str, jax.Array]
LossFn = Callable[[Params, Batch, jax.Array], tuple[jax.Array, Metrics]]
EvalFn = Callable[[Params, Batch, jax.Array], Metrics]
UpdateExtraFn = Callable[[Any, Params, jax.Array], Any]
# (params, batch, rng) -> (grads, loss, metrics): for objectives that are
# not the gradient of one scalar (parameter groups with their own losses).
GradsFn = Callable[[Params, Batch, jax.Array],
                   tuple[Params, jax.Array, Metrics]]


def make_train_step(
    loss_fn: LossFn | None,
    optimizer: optax.GradientTransformation,
    *,
    grads_fn: GradsFn | None = None,
    mesh: Mesh | None = None,
    update_extra: UpdateExtraFn | None = None,
    loss_takes_step: bool = False,
    stream: str | None = "train",
    microbatches: int = 1,
    grad_skip: float | None = None,
    compiler_options: Mapping[str, str] | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """Builds the jitted `(state, batch) -> (state, metrics)` training step.

  Args:
    loss_fn: (params, batch, rng) -> (loss, metrics), pure. rng is
      `fold_in(stream_key(state.rng, "train"), state.step)`.
    optimizer: the optax transformation `state.opt_state` belongs to.
    grads_fn: (params, batch, rng) -> (grads, loss, metrics), used instead
      of the gradient of `loss_fn` (which may then be None), e.g. for
      parameter groups that each descend their own loss.
    mesh: with a mesh the batch is split along 'data' and the state
      replicated; None leaves placement to jit.
    update_extra: (extra, new params, new step) -> extra, run after the
      update, e.g. an EMA of params; None keeps `state.extra` unchanged.
    loss_takes_step: call `loss_fn(params, batch, rng, step)` with step the
      int32 [] count of earlier updates, for losses with schedules (KL
      warm-up, annealed penalties).
    stream: the named random stream of `state.rng` the step keys fold from;
      None folds them from `state.rng` itself, for callers whose state holds
      a key made for this one optimisation (`ctfjax.ncm.fit`).
    microbatches: compute the gradient as the mean over this many
      interleaved slices of the batch (`accumulate`); 1 = the whole batch
      in one pass. For losses that are means over examples it is the same
      objective with other random draws; on a CPU it is faster when the
      activations of a slice fit the caches (docs/training.md,
      "Microbatches").
    grad_skip: skip every update whose global gradient norm (of all
      parameters, before any clipping in `optimizer`) is not below this
      threshold: the step leaves params, opt_state and extra as they were
      and only advances `state.step` (so the data, the keys and the next
      step move on). 0 or None = never skip.
    compiler_options: XLA options to compile the step with (`jax.jit`'s;
      see `ctfjax.compiler.for_backend`); None for XLA's defaults.

  Returns:
    The step. It donates the incoming state (its buffers are reused for the
    new one, halving peak state memory), so callers must not reuse it. The
    metrics are the loss function's plus "loss", "grad_norm" (the global
    norm before clipping) and, with `grad_skip`, "skipped" (1.0 for a
    skipped update, else 0.0).
  """

  if grads_fn is None:
    def grads_fn(params, batch, rng, *step_arg):
      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params, batch, rng, *step_arg)
      return grads, loss, metrics
  grads_fn = accumulate(grads_fn, microbatches)

  def train_step(state: TrainState, batch: Batch):
    root = state.rng if stream is None else stream_key(state.rng, stream)
    rng = jax.random.fold_in(root, state.step)
    step_arg = (state.step,) if loss_takes_step else ()
    grads, loss, metrics = grads_fn(state.params, batch, rng, *step_arg)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    step = state.step + 1
    extra = state.extra if update_extra is None else update_extra(
        state.extra, params, step)
    # The gradient norm turns the step where training blows up into a logged
    # number before the loss itself becomes NaN.
    grad_norm = optax.tree.norm(grads)
    metrics = {**metrics, "loss": loss, "grad_norm": grad_norm}
    if grad_skip:
      # As causal-gen's trainer: a step whose norm is not below the
      # threshold (a NaN norm included) changes nothing, not even the
      # optimizer's counts (so schedules do not advance) or the EMA; optax's
      # skip transforms would count it in opt_state. A select, not a
      # lax.cond: it fuses into the update's elementwise kernels, where a
      # conditional would copy its predicate to the host on a GPU.
      skip = ~(grad_norm < grad_skip)
      params, opt_state, extra = jax.tree.map(
          lambda old, new: jnp.where(skip, old, new),
          (state.params, state.opt_state, state.extra),
          (params, opt_state, extra))
      metrics["skipped"] = skip.astype(jnp.float32)
    new_state = state.replace(
        step=step, params=params, opt_state=opt_state, extra=extra)
    return new_state, metrics

  if mesh is None:
    return jax.jit(train_step, donate_argnums=0,
                   compiler_options=compiler_options)
  rep = sharding.replicated(mesh)
  return jax.jit(
      train_step,
      in_shardings=(rep, sharding.data_sharded(mesh)),
      out_shardings=(rep, rep),
      donate_argnums=0,
      compiler_options=compiler_options,
  )


def accumulate(grads_fn: GradsFn, microbatches: int) -> GradsFn:
  """`grads_fn` averaged over `microbatches` interleaved slices of the batch.

  Slice i holds examples i, i + k, i + 2k, ... (k = microbatches), so with
  the batch sharded over devices every slice stays spread over all of them.
  Slice i draws its randomness from `fold_in(rng, i)`. Gradients, loss and
  metrics are the slices' means: for a loss that is a mean over examples,
  the mean of the slices' gradients is the gradient of the batch's loss.

  The slices are unrolled, not a `lax.scan`: XLA's CPU backend runs a
  convolution inside a loop body on a slow path (many times slower), and
  the unrolled slices also let it schedule one slice's work beside another's.
  """
  if microbatches == 1:
    return grads_fn

  def grads(params, batch, rng, *step_arg):
    sizes = sorted({x.shape[0] for x in jax.tree.leaves(batch)})
    if len(sizes) != 1 or sizes[0] % microbatches:
      raise ValueError(f"a batch of leading sizes {sizes} does not split "
                       f"into {microbatches} equal microbatches")
    total = None
    for i in range(microbatches):
      part = jax.tree.map(
          lambda x, i=i: x.reshape((x.shape[0] // microbatches, microbatches)
                                   + x.shape[1:])[:, i], batch)
      out = grads_fn(params, part, jax.random.fold_in(rng, i), *step_arg)
      total = out if total is None else jax.tree.map(jnp.add, total, out)
    return jax.tree.map(lambda x: x / microbatches, total)

  return grads


def make_eval_step(
    eval_fn: EvalFn,
    *,
    mesh: Mesh | None = None,
    params_of: Callable[[TrainState], Params] | None = None,
    compiler_options: Mapping[str, str] | None = None,
) -> Callable[[TrainState, Batch, jax.Array], Metrics]:
  """Builds the jitted `(state, batch, index) -> metrics` evaluation step.

  Args:
    eval_fn: (params, batch, rng) -> metrics, pure.
    mesh: as in `make_train_step`.
    params_of: which params to evaluate, e.g. `lambda s: s.extra["ema"]`;
      None for `state.params`.
    compiler_options: as in `make_train_step`.

  Returns:
    The step. `index` (int32 []) is the batch's position in the eval set; the
    rng is folded from it and not from the train step, so every evaluation
    draws the same noise and curves compare params, not noise.
  """
  params_of = params_of or (lambda s: s.params)

  def eval_step(state: TrainState, batch: Batch, index: jax.Array):
    rng = jax.random.fold_in(stream_key(state.rng, "eval"), index)
    return eval_fn(params_of(state), batch, rng)

  if mesh is None:
    return jax.jit(eval_step, compiler_options=compiler_options)
  rep = sharding.replicated(mesh)
  return jax.jit(
      eval_step,
      in_shardings=(rep, sharding.data_sharded(mesh), rep),
      out_shardings=rep,
      compiler_options=compiler_options,
  )

