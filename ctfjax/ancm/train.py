"""Training an ANCM from a config: data, model, task, restore.

`train_and_evaluate(config, workdir)` is the family entry point the launchers
call: it loads the dataset named by `config.data`, builds the ANCM over that
dataset's causal diagram, trains it with the generic loop of `ctfjax.train`
(resuming from `workdir`), and writes `workdir/config.json` so that
`load(workdir)` can rebuild the model for editing or evaluation.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from ctfjax import data
from ctfjax import train
from ctfjax.ancm.model import ANCM
from ctfjax.causal.graph import Graph
from ctfjax.errors import UserError

CONFIG_FILE = "config.json"


def features(name: str) -> tuple[Graph, dict[str, int]]:
  """The causal diagram over a dataset's discrete features, and domains."""
  if name.startswith("colored_mnist_bars/"):
    scm = data.feature_scm(name)
    return scm.graph, scm.domains
  if name.startswith("celeba/"):
    from ctfjax.data import celeba  # pylint: disable=g-import-not-at-top
    graph = name.split("/", 1)[1]
    return (Graph.parse(celeba.GRAPHS[graph]),
            {a: 2 for a in celeba.ATTRIBUTES[graph]})
  if name in data.NAMES:
    raise UserError(f"dataset {name!r} has continuous features; the ANCM "
                    "here models discrete ones")
  raise UserError(f"unknown dataset {name!r}; known: {', '.join(data.NAMES)}")


def load_split(config: ml_collections.ConfigDict, split: str,
               size: int | None = None) -> dict[str, np.ndarray]:
  """The images and feature labels of one split (no exogenous values)."""
  ds = data.load(config.data.name, split=split, size=size or None,
                 seed=config.data.seed, source=config.data.source or None)
  _, domains = features(config.data.name)
  return {k: ds[k] for k in ("image", *domains)}


def build(config: ml_collections.ConfigDict, rng=0) -> tuple[ANCM, Any]:
  """The ANCM a config describes, and parameters initialised from `rng`."""
  graph, domains = features(config.data.name)
  m = config.model
  if m.get("graph"):
    graph = Graph.parse(m.graph)
    if set(graph.nodes) != set(domains):
      raise UserError(f"config model.graph {m.graph!r} must have exactly the "
                      f"dataset's features {', '.join(domains)}")
  shape = image_shape(config.data.name)
  return ANCM.create(
      graph, domains, shape, rng,
      ncm_kwargs={"latent_dim": m.ncm_latent_dim,
                  "hidden": tuple(m.ncm_hidden)},
      image_kwargs={"latent_dim": m.image_latent_dim,
                    "learned_sigma": m.learned_sigma,
                    "pixel_noise": m.pixel_noise, "beta": m.beta,
                    "decoder_kwargs": {"convs": tuple(
                        tuple(c) for c in m.decoder_convs)}},
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


def image_shape(name: str) -> tuple[int, int, int]:
  """(H, W, C) of a dataset's images."""
  if name.startswith("colored_mnist_bars/"):
    return (32, 32, 3)
  if name.startswith("celeba/"):
    return (64, 64, 3)
  return (32, 32, 1)


def make_task(config: ml_collections.ConfigDict, model: ANCM,
              train_ds: dict[str, np.ndarray] | None,
              eval_ds: dict[str, np.ndarray] | None = None) -> train.Task:
  """The generic loop's view of an ANCM (data may be None for restoring)."""

  def init(key):
    return build(config, key)[1]

  def train_batches(start):
    return data.batches(train_ds, config.train.batch_size,
                        seed=config.train.seed, start_step=start)

  def evaluate(params, batch, rng):
    return model.loss(params, batch, rng)[1]

  def eval_batches():
    return data.batches(eval_ds, config.eval.batch_size, shuffle=False,
                        epochs=1)

  return train.Task(init=init, loss=model.loss, train_batches=train_batches,
                    eval=evaluate if eval_ds is not None else None,
                    eval_batches=eval_batches if eval_ds is not None else None)


def _write_config(config: ml_collections.ConfigDict, workdir: pathlib.Path):
  """Records the run's config; a resumed run must keep its data and model."""
  path = workdir / CONFIG_FILE
  text = config.to_json(indent=1)
  if path.exists():
    old = json.loads(path.read_text())
    new = json.loads(text)
    for section in ("data", "model"):
      if old.get(section) != new.get(section):
        raise UserError(f"{workdir} was trained with another {section} "
                        f"config; use a new --workdir")
  tmp = path.with_suffix(".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | os.PathLike) -> tuple[ANCM,
                                                            train.TrainResult]:
  """Trains (or resumes) the ANCM of `config` in `workdir`."""
  workdir = pathlib.Path(workdir)
  model = model_of(config)
  train_ds = load_split(config, "train", config.data.size)
  eval_ds = load_split(config, "test", config.eval.num_examples)
  workdir.mkdir(parents=True, exist_ok=True)
  _write_config(config, workdir)
  task = make_task(config, model, train_ds, eval_ds)
  return model, train.train_and_evaluate(config, workdir, task)


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
  """(config, model, params) of a trained run, from its newest checkpoint."""
  config = read_config(workdir)
  model = model_of(config)
  state = train.load_state(config, workdir, make_task(config, model, None))
  params = jax.device_get(state.params)
  return config, model, params
