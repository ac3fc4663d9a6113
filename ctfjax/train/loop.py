"""The generic loop: resume, train, evaluate, checkpoint and log one model.

A model plugs in as a `Task` of pure functions; the loop knows nothing else
about it. For example, an ANCM trains its label NCM and its VAE image
mechanism as one params dict:

  ncm, vae = PureModule(make_ncm), PureModule(make_vae)

  def loss(params, batch, rng):
    k1, k2 = jax.random.split(rng)
    l_ncm, m_ncm = ncm_loss(ncm.merge(params["ncm"]), batch["labels"], k1)
    l_vae, m_vae = vae_loss(vae.merge(params["vae"]), batch, k2)
    return l_ncm + l_vae, {"ncm": l_ncm, "vae": l_vae, **m_vae}

  task = Task(
      init=lambda key: {"ncm": ncm.init(jax.random.fold_in(key, 0)),
                        "vae": vae.init(jax.random.fold_in(key, 1))},
      loss=loss,
      train_batches=batches_from_fn(batch_at),  # batch_at(step) -> batch
      eval=eval_fn, eval_batches=lambda: eval_set)
  result = train_and_evaluate(config, workdir, task)

Stages trained one after another use one workdir each, the later one with
`ckpt.init_from` or by closing over the earlier stage's restored params.

Resume order: this workdir's newest checkpoint > `ckpt.init_from` (params
only) > fresh init. Batches come from `task.train_batches(start_step)`, so a
resumed run sees exactly the batches an uninterrupted one would.

Two options of Melistas et al.'s training protocol (their HVAE trainer is
biomedia-mira/causal-gen's): `train.grad_skip` skips the updates whose
gradient norm is not below it (`make_train_step`), and `train.patience`
stops a run whose evaluated `task.monitor` has not improved for that many
evaluations. The early-stopping record travels in every checkpoint's
metadata, so a resumed run stops where an unbroken one does.
"""

import dataclasses
import functools
import itertools
import math
import pathlib
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging
from jax.sharding import Mesh

from ctfjax import compiler
from ctfjax import files
from ctfjax.errors import UserError
from ctfjax.train import ema
from ctfjax.train import sharding
from ctfjax.train.checkpoint import CHECKPOINT_DIR, Checkpoints
from ctfjax.train.checkpoint import find_checkpoints
from ctfjax.train.config import check_train_config, microbatches_of
from ctfjax.train.metrics_log import MetricsLog, read_metrics
from ctfjax.train.state import Params, TrainState, create_train_state
from ctfjax.train.state import make_optimizer
from ctfjax.train.step import Batch, EvalFn, GradsFn, LossFn, UpdateExtraFn
from ctfjax.train.step import make_eval_step, make_train_step


class TrainingDivergedError(UserError):
  """A loss or metric became NaN or infinite; names the step and metric."""


@dataclasses.dataclass(frozen=True)
class Task:
  """What the loop needs to know about a model: pure functions and data.

  Attributes:
    init: key -> params (a pytree; see `PureModule` for nnx models).
    loss: (params, batch, rng) -> (scalar loss, {name: scalar}), pure.
    train_batches: start step -> iterator of batches for steps start,
      start + 1, ...; must give the same batch for a step on every call so
      that a resumed run matches an uninterrupted one. Every batch leaf has
      this process's share of the global batch as its leading axis: all of
      it in a single-process run (see `batches_from_fn`,
      `ctfjax.data.batches` and `sharding.process_share`).
    eval: (params, batch, rng) -> {name: scalar}, pure; None skips eval.
    eval_batches: () -> the eval set as an iterable of batches (the same at
      every evaluation, each process's share as for train_batches); metrics
      are averaged over its batches.
    optimizer: overrides the optimizer built from `config.train`, e.g.
      `optax.multi_transform` for per-component learning rates.
    init_extra: params -> extra state (`TrainState.extra`); None for {}.
    update_extra: (extra, new params, new step) -> extra after each update,
      e.g. an EMA of params.
    eval_params: state -> the params to evaluate (e.g. the EMA); None for
      `state.params`.
    loss_takes_step: `loss` is (params, batch, rng, step) -> ..., for
      losses with schedules such as a KL warm-up.
    grads: (params, batch, rng) -> (grads, loss, metrics) used by the
      training step instead of the gradient of `loss` (which then only
      evaluates), e.g. for parameter groups with their own losses.
    guard: {train metric: mean since the last log} -> a message or None,
      called at every log step; a message stops training with a
      TrainingDivergedError naming the step, before that step is
      checkpointed (e.g. a GAN's discriminator collapse).
    compiler_options: {backend: {option: value}} to compile the train and
      eval steps with (`ctfjax.compiler`; e.g. a diffusion mechanism's);
      None for XLA's defaults.
    monitor: the metric of `eval` that early stopping (`train.patience`)
      watches, lower being better: the validation loss.
  """

  init: Callable[[jax.Array], Params]
  loss: LossFn
  train_batches: Callable[[int], Iterator[Batch]]
  eval: EvalFn | None = None
  eval_batches: Callable[[], Iterable[Batch]] | None = None
  optimizer: optax.GradientTransformation | None = None
  init_extra: Callable[[Params], Any] | None = None
  update_extra: UpdateExtraFn | None = None
  eval_params: Callable[[TrainState], Params] | None = None
  loss_takes_step: bool = False
  grads: GradsFn | None = None
  guard: Callable[[dict[str, float]], str | None] | None = None
  compiler_options: Mapping[str, Mapping[str, str]] | None = None
  monitor: str = "loss"


def batches_from_fn(
    batch_at: Callable[[int], Batch]) -> Callable[[int], Iterator[Batch]]:
  """Turns `step -> batch` (e.g. drawn with fold_in(data_key, step)) into the
  `train_batches` of a Task."""
  return lambda start: map(batch_at, itertools.count(start))


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a training run hands back.

  Attributes:
    state: the final train state (replicated on the mesh).
    steps: optimizer steps completed.
    seconds: wall-clock training time, summed over resumed runs.
    eval_metrics: the last evaluation's {name: value}; {} if none ran.
  """

  state: TrainState
  steps: int
  seconds: float
  eval_metrics: dict[str, float]


def _abstract_and_init(config, task, optimizer, mesh):
  """(abstract state with shardings, state-from-params function)."""
  root = jax.random.key(config.train.seed)
  rep = sharding.replicated(mesh)
  init = functools.partial(create_train_state, root, task.init, optimizer,
                           task.init_extra)
  abstract = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep),
      jax.eval_shape(init))
  # Building the state around given params serves fresh init and init_from.
  from_params = jax.jit(
      lambda params: create_train_state(
          root, lambda _: params, optimizer, task.init_extra),
      out_shardings=rep)
  return abstract, init, from_params


def load_state(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
               task: Task, *, mesh: Mesh | None = None) -> TrainState:
  """The newest checkpointed state of a run, e.g. to edit images with it.

  Args:
    config: the run's config.
    workdir: the run's folder (or its checkpoints/ folder).
    task: the run's task (only its init, optimizer and init_extra are used,
      for the state's structure).
    mesh: where to place the arrays; None for `config.mesh`.

  Returns:
    The state.

  Raises:
    UserError: no checkpoint, or an unreadable one.
  """
  mesh = mesh or sharding.make_mesh(config.mesh)
  task = ema.with_ema(task, _ema_decay(config))
  optimizer = task.optimizer or make_optimizer(config.train)
  abstract, _, _ = _abstract_and_init(config, task, optimizer, mesh)
  ckpts = Checkpoints(find_checkpoints(workdir), read_only=True)
  try:
    return ckpts.restore(abstract)[0]
  finally:
    ckpts.close()


def _ema_decay(config) -> float:
  """train.ema_decay; 0 (no average) for configs written before it."""
  return float(config.train.get("ema_decay", 0.0))


def _resume(config, task, optimizer, mesh, ckpts):
  """(state, the checkpoint's metadata ({} if none), where it came from)."""
  abstract, init, from_params = _abstract_and_init(config, task, optimizer,
                                                   mesh)
  step = ckpts.latest_step()
  if step is not None:
    try:
      state, meta = ckpts.restore(abstract, step)
    except UserError as e:
      if f"extra/{ema.KEY}/" not in str(e):
        raise
      raise UserError(f"{e} (train.ema_decay must stay 0 or non-zero as "
                      f"the run was trained)") from None
    return state, meta, f"checkpoint {step}"
  if config.ckpt.init_from:
    other = Checkpoints(find_checkpoints(config.ckpt.init_from),
                        read_only=True)
    try:
      params = other.restore_fields({"params": abstract.params})["params"]
    finally:
      other.close()
    return from_params(params), {}, f"params of {other.directory}"
  state = jax.jit(init, out_shardings=sharding.replicated(mesh))()
  return state, {}, "fresh init"


def protocol_options(config: ml_collections.ConfigDict) -> tuple[float, int]:
  """(train.grad_skip, train.patience) of a config, 0 where unset or None.

  Both are optional fields (configs written before them train as before).

  Raises:
    UserError: a negative, non-finite or mistyped value, or a patience
      without evaluations to count (train.eval_every = 0).
  """
  train = config.train
  skip, patience = train.get("grad_skip"), train.get("patience")
  skip = 0.0 if skip is None else skip
  patience = 0 if patience is None else patience
  if (isinstance(skip, bool) or not isinstance(skip, (int, float))
      or not math.isfinite(skip) or skip < 0):
    raise UserError("config key 'train.grad_skip' must be a finite number "
                    f">= 0 (0 = no skipping), got {skip!r}")
  if isinstance(patience, bool) or not isinstance(patience, int) or (
      patience < 0):
    raise UserError("config key 'train.patience' must be an int >= 0 (0 = no "
                    f"early stopping), got {patience!r}")
  if patience and not train.eval_every:
    raise UserError("config key 'train.patience' counts evaluations, but "
                    "train.eval_every is 0 (only the final one); set it > 0")
  return float(skip), patience


@dataclasses.dataclass
class _EarlyStop:
  """Early stopping's record: the best evaluation and those since.

  Attributes:
    patience: evaluations without improvement that stop the run (> 0).
    best: the lowest monitored value so far; None before the first.
    best_step: the step it was evaluated at.
    since_best: evaluations since then that did not improve on it.
  """

  patience: int
  best: float | None = None
  best_step: int = 0
  since_best: int = 0

  META = "early_stop"  # Its key in the checkpoint metadata.

  @classmethod
  def resumed(cls, patience: int, meta: dict[str, Any]) -> "_EarlyStop":
    """The record saved with a checkpoint; a fresh one if it has none."""
    saved = meta.get(cls.META) or {}
    return cls(patience, saved.get("best"), int(saved.get("best_step", 0)),
               int(saved.get("since_best", 0)))

  @property
  def stopped(self) -> bool:
    return self.since_best >= self.patience

  def update(self, step: int, value: float) -> bool:
    """Counts one evaluation; True when the run must stop."""
    # Strict improvement, as Lightning's EarlyStopping (min_delta 0); a
    # NaN never improves.
    if np.isfinite(value) and (self.best is None or value < self.best):
      self.best, self.best_step, self.since_best = float(value), step, 0
    else:
      self.since_best += 1
    return self.stopped

  def meta(self) -> dict[str, Any]:
    return {self.META: {"best": self.best, "best_step": self.best_step,
                        "since_best": self.since_best}}


def _monitored(eval_metrics: dict[str, float], name: str) -> float:
  if name not in eval_metrics:
    raise UserError(f"train.patience watches the evaluation's {name!r}, "
                    "which this model's evaluation does not report (it "
                    f"reports {', '.join(sorted(eval_metrics))})")
  return eval_metrics[name]


def _check_finite(pending: list[tuple[int, Any]]) -> list[dict[str, Any]]:
  """Fetches step metrics to the host and stops at the first bad one.

  Metrics are fetched only when the loop logs, evaluates or checkpoints, so
  steps are dispatched without waiting; every fetched step is still checked,
  so the error names the exact step, and no NaN state is ever checkpointed.
  """
  fetched = jax.device_get([metrics for _, metrics in pending])
  for (step, _), metrics in zip(pending, fetched, strict=True):
    # "loss" first: when everything is NaN it is the most telling name.
    for name in sorted(metrics, key=lambda n: (n != "loss", n)):
      value = np.asarray(metrics[name])
      if not np.all(np.isfinite(value)):
        raise TrainingDivergedError(
            f"training diverged at step {step}: {name} is "
            f"{value.ravel()[~np.isfinite(value.ravel())][0]}; lower "
            "train.learning_rate or set train.grad_clip")
  return fetched


def _evaluate(eval_step, state, batches, mesh) -> dict[str, float]:
  """Eval metrics averaged over the eval set's batches."""
  per_batch = [eval_step(state, sharding.shard_batch(batch, mesh), np.int32(i))
               for i, batch in enumerate(batches)]
  per_batch = jax.device_get(per_batch)
  if not per_batch:
    return {}
  return {name: float(np.mean([m[name] for m in per_batch]))
          for name in per_batch[0]}


def _sum_or_mean(name: str, values: list[Any]) -> float:
  """A log window's value of a step metric: the count of skipped updates,
  else the mean."""
  return float(np.sum(values) if name == "skipped" else np.mean(values))


def _format(record: dict[str, Any]) -> str:
  return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in record.items())


class _Progress:
  """What a person waiting on training sees, on stderr.

  On a terminal: a progress bar with the last logged losses. Elsewhere (a
  log file, a CI job): one line per logged step with the losses and an
  estimate of the time left. Either way a first line says that the step is
  being compiled, which takes tens of seconds on a CPU before step 1.
  """

  def __init__(self, name: str, total: int, start: int, enabled: bool):
    self.name, self.total, self.start = name, total, start
    self.enabled = enabled and start < total
    self.tty = sys.stderr.isatty()
    self.bar = None
    self.t0 = None

  def __enter__(self):
    if self.enabled:
      print(f"{self.name}: compiling the training step (steps {self.start} "
            f"-> {self.total} follow)...", file=sys.stderr, flush=True)
    self.bar = tqdm.tqdm(total=self.total, initial=self.start, unit="step",
                         file=sys.stderr, dynamic_ncols=True, desc=self.name,
                         disable=not (self.enabled and self.tty))
    return self

  def __exit__(self, *exc):
    self.bar.close()

  def update(self):
    if self.t0 is None:  # Timed from the first compiled step on.
      self.t0 = (time.perf_counter(), self.bar.n)
    self.bar.update()

  def logged(self, step: int, losses: dict[str, Any]):
    if self.tty or not self.enabled:
      self.bar.set_postfix(losses)
      return
    t, n = self.t0
    rate = (step - n - 1) / max(time.perf_counter() - t, 1e-9)
    left = f", {(self.total - step) / rate:.0f} s left" if rate > 0 else ""
    print(f"{self.name} step {step}/{self.total}: {_format(losses)}{left}",
          file=sys.stderr, flush=True)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | pathlib.Path, task: Task, *,
                       mesh: Mesh | None = None) -> TrainResult:
  """Trains `task` to `config.train.steps`, resuming from `workdir`.

  Writes `workdir/checkpoints/` (orbax) and `workdir/metrics.jsonl`. A run
  that already reached `train.steps`, or stopped early (`train.patience`),
  only restores and returns.

  Args:
    config: a config built on `base_train_config()`.
    workdir: the run's folder; created if missing.
    task: the model to train.
    mesh: overrides the mesh from `config.mesh`.

  Returns:
    The final state, steps, training seconds and last eval metrics.

  Raises:
    UserError: bad config, unreadable checkpoint, or (as
      TrainingDivergedError) a NaN/inf metric, naming the step.
  """
  check_train_config(config)
  grad_skip, patience = protocol_options(config)
  if patience and task.eval is None:
    raise UserError("config key 'train.patience' needs an evaluation, and "
                    "this model has none; set it to 0")
  task = ema.with_ema(task, _ema_decay(config))
  train_cfg = config.train
  mesh = mesh or sharding.make_mesh(config.mesh)
  n_data = mesh.shape[sharding.DATA_AXIS]
  if train_cfg.batch_size % n_data:
    raise UserError(f"config key 'train.batch_size' ({train_cfg.batch_size}) "
                    f"must be divisible by the {n_data} data-parallel devices")
  microbatches = microbatches_of(train_cfg, n_data)
  workdir = files.writable_dir(workdir, "workdir")
  workdir.mkdir(parents=True, exist_ok=True)
  fresh_ckpts = not (workdir / CHECKPOINT_DIR).exists()
  optimizer = task.optimizer or make_optimizer(train_cfg)
  primary = jax.process_index() == 0
  total = train_cfg.steps

  ckpts = Checkpoints(workdir / CHECKPOINT_DIR,
                      max_to_keep=config.ckpt.max_to_keep,
                      async_save=config.ckpt.async_save)
  log = None
  try:
    state, meta, origin = _resume(config, task, optimizer, mesh, ckpts)
    seconds0 = float(meta.get("seconds", 0.0))
    start = int(jax.device_get(state.step))
    early = _EarlyStop.resumed(patience, meta) if patience else None
    # A run that stopped early is finished, as one that reached `total`.
    end = start if early and early.stopped else total
    logging.info("Training from step %d (%s) to %d in %s.", start, origin,
                 end, workdir)
    log = MetricsLog(workdir, start, enabled=primary)
    evals = [r for r in read_metrics(log.path)
             if any(k.startswith("eval/") for k in r)]
    eval_metrics = {k[len("eval/"):]: v for k, v in evals[-1].items()
                    if k.startswith("eval/")} if evals else {}

    options = compiler.for_backend(task.compiler_options)
    train_step = make_train_step(task.loss, optimizer, mesh=mesh,
                                 grads_fn=task.grads,
                                 update_extra=task.update_extra,
                                 loss_takes_step=task.loss_takes_step,
                                 microbatches=microbatches,
                                 grad_skip=grad_skip,
                                 compiler_options=options)
    eval_step = None if task.eval is None else make_eval_step(
        task.eval, mesh=mesh, params_of=task.eval_params,
        compiler_options=options)
    batches = iter(task.train_batches(start) if start < end else ())
    progress = _Progress(workdir.name, end, start,
                         train_cfg.progress and primary)
    t0 = t_log = time.perf_counter()
    seconds = seconds0  # Ends as the final checkpoint's training time.
    step_log = start
    pending, window = [], []

    with progress as bar:
      for step in range(start + 1, end + 1):  # Steps done after the update.
        batch = next(batches, None)
        if batch is None:
          raise RuntimeError(f"train_batches ran out before step {step}")
        state, metrics = train_step(state, sharding.shard_batch(batch, mesh))
        pending.append((step, metrics))
        bar.update()

        last = step == total
        do_ckpt = last or (config.ckpt.every and
                           step % config.ckpt.every == 0)
        # Checkpoint steps are logged too: averaging windows then never span
        # a resume point, so a resumed run logs what an unbroken one does.
        do_log = do_ckpt or step % train_cfg.log_every == 0
        do_eval = eval_step is not None and (
            last or (train_cfg.eval_every and step % train_cfg.eval_every == 0))
        if not (do_log or do_eval):
          continue
        window += _check_finite(pending)
        pending = []
        now = time.perf_counter()
        seconds = seconds0 + now - t0

        stop = False
        if do_eval:
          eval_metrics = _evaluate(eval_step, state, task.eval_batches(), mesh)
          if early:
            stop = early.update(step, _monitored(eval_metrics, task.monitor))
            # Stopping early ends as the last step does: logged, saved.
            stop = stop and not last
            do_ckpt, do_log = do_ckpt or stop, do_log or stop
        record = {}
        if do_log:
          means = {name: _sum_or_mean(name, [m[name] for m in window])
                   for name in window[-1]}
          problem = task.guard(means) if task.guard else None
          if problem:
            raise TrainingDivergedError(
                f"training stopped at step {step}: {problem}")
          record = {f"train/{name}": x for name, x in means.items()}
          record["steps_per_sec"] = (step - step_log) / (now - t_log)
          window, t_log, step_log = [], now, step
        if do_eval:
          record.update({f"eval/{k}": v for k, v in eval_metrics.items()})
        if stop:  # best is None when no evaluation was finite
          best = math.nan if early.best is None else early.best
          record.update({"early_stop/best": best,
                         "early_stop/best_step": early.best_step})
        if record:
          record["seconds"] = seconds
          record = log.write(step, record)
          logging.info("step %d/%d: %s", step, total, _format(record))
          # "train/loss_<group>": each group's own loss (a GAN's G and D).
          bar.logged(step, {k: v for k, v in record.items()
                            if k.startswith(("train/loss", "eval/"))})
        if do_ckpt:
          ckpts.save(step, state, {"seconds": seconds,
                                   **(early.meta() if early else {})})
        if stop:
          message = (f"{workdir.name}: stopping early at step {step}: "
                     f"eval/{task.monitor} has not improved for {patience} "
                     f"evaluations (best {best:.6g} at step "
                     f"{early.best_step})")
          logging.info(message)
          if primary:
            print(message, file=sys.stderr, flush=True)
          break
  except BaseException:
    ckpts.close()
    if fresh_ckpts and ckpts.latest_step() is None:  # No empty debris.
      shutil.rmtree(workdir / CHECKPOINT_DIR, ignore_errors=True)
    raise
  finally:
    ckpts.close()  # Waits for a background save still in flight.
    if log is not None:
      log.close()
  return TrainResult(state=state, steps=int(jax.device_get(state.step)),
                     seconds=seconds, eval_metrics=eval_metrics)
