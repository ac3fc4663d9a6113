"""Evaluation networks, trained once per run and cached in its workdir.

A dataset's feature readers (e.g. the digit CNN) and CLD's unconditional
VAE are ordinary `ctfjax.train` models that know nothing about the model
being evaluated. Each trains in its own folder
`<workdir>/evaluators/<name>/` (orbax checkpoints, metrics.jsonl) and is
restored from there on the next evaluation of the run.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any, Mapping

import jax
import ml_collections

from ctfjax import files
from ctfjax import train

EVALUATORS_DIR = "evaluators"
INFO_FILE = "reader.json"


def folder(workdir: str | pathlib.Path, name: str) -> pathlib.Path:
  """The cache folder of evaluation network `name` in a run's workdir."""
  return pathlib.Path(workdir) / EVALUATORS_DIR / name


def network_config(steps: int, batch_size: int = 128,
                   seed: int = 0) -> ml_collections.ConfigDict:
  """An evaluation network's training config (a `train.base_train_config`).

  Args:
    steps: training steps.
    batch_size: examples per step.
    seed: training seed.

  Returns:
    The config: cosine schedule, no in-training eval, one final checkpoint.
  """
  config = train.base_train_config()
  config.train.steps = steps
  config.train.batch_size = batch_size
  config.train.learning_rate = 2e-3
  config.train.schedule = "cosine"
  config.train.seed = seed
  config.train.log_every = max(1, steps // 4)
  config.train.eval_every = 0
  config.train.progress = True  # Minutes of training: a person waits on it.
  config.ckpt.every = 0
  config.ckpt.async_save = False
  config.ckpt.max_to_keep = 1
  return config


def train_cached(path: str | pathlib.Path, identity: Mapping[str, Any],
                 config: ml_collections.ConfigDict, task: train.Task
                 ) -> tuple[Any, dict[str, Any] | None]:
  """An evaluation network's parameters: restored from `path`, or trained.

  The cache is valid when `path/reader.json` exists (it is written last,
  so an interrupted training leaves none) and holds every `identity` item;
  otherwise the folder is cleared and the network trained from scratch
  rather than resumed under another schedule.

  Args:
    path: the network's training workdir (`folder`).
    identity: what the cached network must have been trained with, e.g.
      {"steps": 600, "source": ...}.
    config: its `network_config`.
    task: its training task.

  Returns:
    (params, the cached info) or (params, None) after training; the caller
    then writes the info with `write_info` (it must hold `identity`).
  """
  path = pathlib.Path(path)
  info_path = path / INFO_FILE
  # Compared as JSON reads them back: a tuple in the identity is a list.
  identity = json.loads(json.dumps(dict(identity)))
  if info_path.is_file():
    info = json.loads(info_path.read_text())
    if all(info.get(k) == v for k, v in identity.items()):
      state = train.load_state(config, path, task)
      return jax.device_get(train.model_params(state)), info
  if path.exists():
    shutil.rmtree(path)
  result = train.train_and_evaluate(config, path, task)
  return jax.device_get(train.model_params(result.state)), None


def write_info(path: str | pathlib.Path, info: Mapping[str, Any]):
  """Marks an evaluation network's cache complete (see `train_cached`)."""
  files.write_text(pathlib.Path(path) / INFO_FILE,
                   json.dumps(dict(info), indent=1) + "\n")
