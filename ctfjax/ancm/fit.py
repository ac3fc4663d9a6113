"""Training an ANCM from a config: data, model, task, restore.

`train_and_evaluate(config, workdir)` is the family entry point the launchers
call: it loads the dataset named by `config.data`, builds the ANCM over that
dataset's causal diagram, trains it with the generic loop of `ctfjax.train`
(resuming from `workdir`), and writes `workdir/config.json` so that
`load(workdir)` can rebuild the model for editing or evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from ctfjax import data
from ctfjax import files
from ctfjax import mechanisms
from ctfjax import train
from ctfjax.ancm.model import ANCM
from ctfjax.causal import kinds
from ctfjax.causal.graph import Graph
from ctfjax.train.checkpoint import CHECKPOINT_DIR
from ctfjax.errors import UserError

CONFIG_FILE = "config.json"
STAGES_DIR = "stages"  # Checkpoints of the stages after the first.


def dataset_of(config: ml_collections.ConfigDict) -> data.Dataset:
  """The dataset entry of a config's `data` section."""
  return data.from_config(config.data)


def features(dataset: data.Dataset) -> tuple[Graph, dict[str, Any]]:
  """The causal diagram over a dataset's features, and each feature's kind
  (an int K: categorical with K values, or a kind object such as a spline;
  see `ctfjax.causal.kinds`)."""
  return (Graph.parse(dataset.graph),
          {k: _kind(k, v) for k, v in dataset.kinds.items()})


def _kind(name: str, spec: Any) -> Any:
  """A feature kind from a dataset's plain spec (`data.Dataset.kinds`): an
  int stays an int (categorical), a kind object stays itself."""
  if not isinstance(spec, dict):
    return spec
  fields = dict(spec)
  kind = fields.pop("kind", None)
  if kind not in kinds.KINDS:
    raise UserError(f"feature {name!r} has unknown kind {kind!r}; known: "
                    f"{', '.join(kinds.KINDS)}")
  return kinds.KINDS[kind](**fields)


def load_split(config: ml_collections.ConfigDict, split: str,
               size: int | None = None) -> dict[str, np.ndarray]:
  """The images and feature labels of one split (no exogenous values)."""
  dataset = dataset_of(config)
  ds = dataset.load(split, size or None)
  return {k: ds[k] for k in ("image", *dataset.kinds)}


def build(config: ml_collections.ConfigDict, rng=0) -> tuple[ANCM, Any]:
  """The ANCM a config describes, and parameters initialised from `rng`."""
  dataset = dataset_of(config)
  graph, features_ = features(dataset)
  true_graph = graph
  m = config.model
  if m.get("graph"):
    graph = Graph.parse(m.graph)
    if set(graph.nodes) != set(features_):
      raise UserError(f"config model.graph {m.graph!r} must have exactly the "
                      f"dataset's features {', '.join(features_)}")
  shape = dataset.image_shape
  return ANCM.create(
      graph, features_, shape, rng, image=m.image, true_graph=true_graph,
      train_steps=config.train.steps,
      ncm_kwargs={"latent_dim": m.ncm_latent_dim,
                  "hidden": tuple(m.ncm_hidden),
                  # Sardesai's high-dimensional variables: a config without
                  # the key (every config before them) has one-hots.
                  "code_dim": m.get("ncm_code_dim", 0)},
      num_particles=m.num_particles, faithful_weight=m.faithful_weight,
      likelihood_particles=m.likelihood_particles)


def model_of(config: ml_collections.ConfigDict) -> ANCM:
  """The ANCM a config describes, without initialising its parameters.

  `build` traced abstractly (`jax.eval_shape`): the same model and the same
  errors, but no parameter is computed, so nothing is compiled or run (an
  eager build costs seconds of op-by-op compilation on CPU).
  """
  box = []

  def params():
    model, p = build(config, jax.random.key(0))
    box.append(model)
    return p

  jax.eval_shape(params)
  return box[0]


def stage_dir(workdir: str | os.PathLike, model: ANCM,
              stage: int) -> pathlib.Path:
  """Where a stage checkpoints: the workdir itself for the first stage (so a
  one-stage model has the plain layout), `stages/<name>/` for later ones."""
  workdir = pathlib.Path(workdir)
  return workdir if stage == 0 else (workdir / STAGES_DIR /
                                     model.stages[stage].name)


def stage_config(config: ml_collections.ConfigDict, model: ANCM,
                 stage: int) -> ml_collections.ConfigDict:
  """The training config of one stage: `train.steps` is the stage's."""
  out = config.copy_and_resolve_references()
  out.train.steps = model.stages[stage].steps
  return out


def make_task(config: ml_collections.ConfigDict, model: ANCM,
              train_ds: dict[str, np.ndarray] | None,
              eval_ds: dict[str, np.ndarray] | None = None,
              stage: int = 0,
              init_params: Any = None) -> train.Task:
  """The generic loop's view of one training stage of an ANCM.

  Args:
    config: the run's config.
    model: the ANCM.
    train_ds, eval_ds: data (None when only restoring).
    stage: index into `model.stages`.
    init_params: the previous stage's final parameters (stages after the
      first start from them); None for a fresh init.
  """
  abstract = jax.eval_shape(lambda: build(config, jax.random.key(0))[1])

  def init(key):
    return build(config, key)[1] if init_params is None else init_params

  def train_batches(start):
    return data.batches(train_ds, config.train.batch_size,
                        seed=config.train.seed + stage, start_step=start)

  def loss(params, batch, rng, step=None):
    return model.loss(params, batch, rng, stage, step)

  def evaluate(params, batch, rng):  # no step: schedules at their end
    # The total is what early stopping watches (train.patience).
    total, metrics = loss(params, batch, rng)
    return {"loss": total, **metrics}

  def eval_batches():
    return data.batches(eval_ds, config.eval.batch_size, shuffle=False,
                        epochs=1)

  plain = model.trains_everything(abstract, stage)
  return train.Task(
      init=init, loss=loss, train_batches=train_batches,
      optimizer=model.stage_optimizer(abstract, stage, config.train),
      grads=None if plain else model.stage_gradients(abstract, stage),
      eval=evaluate if eval_ds is not None else None,
      eval_batches=eval_batches if eval_ds is not None else None,
      loss_takes_step=True, guard=model.stages[stage].guard,
      compiler_options=model.compiler_options)


def resumed_part(section: str, value: Any) -> Any:
  """The part of a config section a resumed run must keep: all of it, but
  of `model.image` only `kind` and the chosen family's settings, completed
  with the family's current defaults (the section holds every registered
  family's defaults, so a family added later must not stop older runs from
  resuming, and a setting added to a family later takes a default that
  keeps the old behaviour, as `mechanisms.settings` reads it)."""
  if section != "model" or not isinstance(value, dict):
    return value
  image = value.get("image")
  if not isinstance(image, dict) or "kind" not in image:
    return value
  kind = image["kind"]
  chosen = mechanisms.settings(ml_collections.ConfigDict(
      {"kind": kind, kind: image.get(kind) or {}}))
  return {**value, "image": {"kind": kind,
                             kind: json.loads(chosen.to_json())}}


def _write_config(config: ml_collections.ConfigDict, workdir: pathlib.Path):
  """Records the run's config; a resumed run must keep its data and model
  (`resumed_part`)."""
  path = workdir / CONFIG_FILE
  text = config.to_json(indent=1)
  if path.exists():
    old = json.loads(path.read_text())
    new = json.loads(text)
    for section in ("data", "model"):
      if (resumed_part(section, old.get(section))
          != resumed_part(section, new.get(section))):
        raise UserError(f"{workdir} was trained with another {section} "
                        f"config; use a new --workdir")
  if jax.process_index() == 0:  # One writer when several processes train.
    files.write_text(path, text)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | os.PathLike) -> tuple[ANCM,
                                                            train.TrainResult]:
  """Trains (or resumes) the ANCM of `config` in `workdir`, stage by stage.

  Each stage resumes from its own checkpoints; a finished stage only
  restores. Returns the final state with steps and seconds summed over
  the stages.
  """
  check_config(config)
  workdir = files.writable_dir(workdir, "workdir")
  model = model_of(config)
  train_ds = load_split(config, "train", config.data.size)
  eval_ds = load_split(config, "test", config.eval.num_examples)
  params, steps, seconds, result = None, 0, 0.0, None
  # Only process 0 cleans up a shared workdir (one writer, as for config).
  keep = lambda p: has_checkpoint(p) or jax.process_index() != 0
  with files.removed_on_failure(workdir, keep=keep):
    _write_config(config, workdir)
    for stage in range(len(model.stages)):
      task = make_task(config, model, train_ds, eval_ds, stage, params)
      result = train.train_and_evaluate(stage_config(config, model, stage),
                                        stage_dir(workdir, model, stage), task)
      params = jax.device_get(train.model_params(result.state))
      steps, seconds = steps + result.steps, seconds + result.seconds
  return model, dataclasses.replace(result, steps=steps, seconds=seconds)


def has_checkpoint(folder: pathlib.Path) -> bool:
  """Whether any stage under `folder` saved a checkpoint to resume from."""
  return any(p.name.isdigit() for p in
             folder.glob(f"**/{CHECKPOINT_DIR}/*"))


def check_config(config: ml_collections.ConfigDict) -> None:
  """One-line errors for a config an ANCM cannot train from, raised before
  any work or write: its sections, the training fields' types and ranges
  (train.grad_skip and train.patience included)."""
  for section, key in (("data", "name"), ("model", "image")):
    part = config.get(section)
    if not isinstance(part, ml_collections.ConfigDict) or key not in part:
      raise UserError(f"config has no '{section}.{key}'; build ANCM configs "
                      "on configs/ancm.py")
  train.check_train_config(config)
  train.loop.protocol_options(config)


def read_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was trained with."""
  workdir = pathlib.Path(workdir)
  path = workdir / CONFIG_FILE
  if not path.is_file():
    raise UserError(f"{workdir} is not a trained run: {CONFIG_FILE} is "
                    "missing (train it with python -m launch.train)")
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except json.JSONDecodeError as e:
    raise UserError(f"{path} is not valid JSON: {e.msg}") from None


def load(workdir: str | os.PathLike):
  """(config, model, params) of a trained run, from its last stage's newest
  checkpoint."""
  config = read_config(workdir)
  model = model_of(config)
  last = len(model.stages) - 1
  state = train.load_state(stage_config(config, model, last),
                           stage_dir(workdir, model, last),
                           make_task(config, model, None, stage=last))
  params = jax.device_get(train.model_params(state))
  return config, model, params
