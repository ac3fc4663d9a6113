"""Feature readers for evaluation: pixel rules for C and B, a digit CNN for D.

Evaluating an edit means reading its factors back from the pixels, with
readers that know nothing about the model being evaluated:

* C (colour) and B (bar): the exact pixel rules of the data generator
  (`colored_mnist_bars.read_labels`), tolerant of blurry outputs;
* D (digit): `DigitCNN`, a small classifier this project trains on the real
  MNIST training digits of the run's source (the bundled 4,000 by default)
  and caches under `<workdir>/evaluators/digit_cnn/` (an ordinary training
  workdir: orbax checkpoints, metrics.jsonl).

The CNN sees the stroke channel max(R, G) only, so it is colour- and
bar-invariant by construction: in Colored MNIST the colour is confounded with
the digit, and a reader trained on coloured images could read the digit off
the colour, i.e. report a preserved digit where only the colour survived.
Its penultimate layer (128 ReLU units) is the embedding for the composition
embedding-L1 and the feature network of the Frechet distance, which is
therefore named "digit_cnn" and never called an FID.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import shutil
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from ctfjax import data
from ctfjax import train
from ctfjax.data import colored_mnist_bars
from ctfjax.nn.conv import ConvClassifier
from ctfjax.report import files

NAME = "digit_cnn"
EVALUATORS_DIR = "evaluators"
INFO_FILE = "reader.json"
IMAGE_SHAPE = (32, 32, 1)  # MNIST padded 28 -> 32, one stroke channel
PAD = (32 - 28) // 2


class DigitCNN(ConvClassifier):
  """ConvClassifier over the stroke channel with its embedding exposed."""

  def __init__(self, *, rngs: nnx.Rngs):
    super().__init__(IMAGE_SHAPE, [10], rngs=rngs)

  def embed(self, x: jax.Array) -> jax.Array:
    """Penultimate activations [B, 128] of strokes [B, 32, 32, 1] in [0, 1]."""
    for conv in self.convs:
      x = jax.nn.relu(conv(x))
    return jax.nn.relu(self.dense(x.reshape(x.shape[0], -1)))

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.out(self.embed(x))


MODULE = train.PureModule(lambda rngs: DigitCNN(rngs=rngs))


def strokes(images: Any) -> np.ndarray:
  """Model input from Colored MNIST images: max(R, G) / 255, [N, 32, 32, 1]."""
  images = np.asarray(images)
  rg = images[..., :2].max(axis=-1) if images.shape[-1] == 3 else \
      images[..., 0]
  return (rg.astype(np.float32) / 255.0)[..., None]


def _mnist_strokes(digits: np.ndarray) -> np.ndarray:
  """Raw MNIST [N, 28, 28] uint8 -> [N, 32, 32, 1] floats, padded as the
  generator pads them."""
  padded = np.pad(np.asarray(digits), ((0, 0), (PAD, PAD), (PAD, PAD)))
  return (padded.astype(np.float32) / 255.0)[..., None]


@functools.partial(jax.jit, static_argnames="method")
def _apply(params, x, method=None):
  return MODULE.apply(params, x, method=method)


def reader_config(steps: int = 600, batch_size: int = 128,
                  seed: int = 0) -> ml_collections.ConfigDict:
  """The classifier's training config (a `train.base_train_config`)."""
  config = train.base_train_config()
  config.train.steps = steps
  config.train.batch_size = batch_size
  config.train.learning_rate = 2e-3
  config.train.schedule = "cosine"
  config.train.seed = seed
  config.train.log_every = max(1, steps // 4)
  config.train.eval_every = 0
  config.train.progress = False
  config.ckpt.every = 0
  config.ckpt.async_save = False
  config.ckpt.max_to_keep = 1
  return config


def _loss(params, batch, rng):
  del rng
  logits = MODULE.apply(params, batch["image"])
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["label"]).mean()
  acc = (jnp.argmax(logits, -1) == batch["label"]).mean()
  return ce, {"accuracy": acc}


@dataclasses.dataclass(frozen=True)
class FeatureReader:
  """Reads (D, C, B) from Colored MNIST images and embeds them.

  Attributes:
    params: the digit CNN's parameters.
    info: {"name", "trained_on", "steps", "test_accuracy", "note"}.
  """

  params: Any
  info: Mapping[str, Any]
  batch_size: int = 256

  name = NAME

  def run(self, x, method=None) -> np.ndarray:
    """The CNN (or its `method`) on stroke inputs [N, 32, 32, 1], batched."""
    out = [np.asarray(_apply(self.params, jnp.asarray(x[i:i + self.batch_size]),
                             method=method))
           for i in range(0, len(x), self.batch_size)]
    return np.concatenate(out)

  def read_digit(self, images) -> np.ndarray:
    """D [N] int32 read by the CNN from uint8 images [N, 32, 32, 3]."""
    return np.argmax(self.run(strokes(images)), -1).astype(np.int32)

  def read(self, images) -> dict[str, np.ndarray]:
    """{"D", "C", "B"}: [N] int32 each, from uint8 images [N, 32, 32, 3]."""
    return {"D": self.read_digit(images),
            **colored_mnist_bars.read_labels(images)}

  def embed(self, images) -> np.ndarray:
    """[N, 128] penultimate activations of the digit CNN."""
    return self.run(strokes(images), method="embed")


def train_cached(folder: str | pathlib.Path, identity: Mapping[str, Any],
                 config: ml_collections.ConfigDict, task: train.Task
                 ) -> tuple[Any, dict[str, Any] | None]:
  """An evaluator's parameters: restored from `folder`, or trained there.

  The cache is valid when `folder/reader.json` exists (it is written last,
  so an interrupted training leaves none) and holds every `identity` item;
  otherwise the folder is cleared and the network trained from scratch
  rather than resumed under another schedule.

  Args:
    folder: the evaluator's training workdir.
    identity: what the cached network must have been trained with, e.g.
      {"steps": 600, "source": ...}.
    config: its `train.base_train_config`.
    task: its training task.

  Returns:
    (params, the cached info) or (params, None) after training; the caller
    then writes the info with `write_info` (it must hold `identity`).
  """
  folder = pathlib.Path(folder)
  info_path = folder / INFO_FILE
  if info_path.is_file():
    info = json.loads(info_path.read_text())
    if all(info.get(k) == v for k, v in identity.items()):
      state = train.load_state(config, folder, task)
      return jax.device_get(state.params), info
  if folder.exists():
    shutil.rmtree(folder)
  result = train.train_and_evaluate(config, folder, task)
  return jax.device_get(result.state.params), None


def write_info(folder: str | pathlib.Path, info: Mapping[str, Any]):
  """Marks an evaluator's cache complete (see `train_cached`)."""
  files.write_text(pathlib.Path(folder) / INFO_FILE,
                   json.dumps(dict(info), indent=1) + "\n")


def feature_reader(workdir: str | pathlib.Path, *, source: str | None = None,
                   steps: int = 600, seed: int = 0) -> FeatureReader:
  """The run's feature reader: trained once, then restored from the cache.

  Args:
    workdir: the run's folder; the classifier lives in
      `<workdir>/evaluators/digit_cnn/`.
    source: MNIST source (None = the bundled digits), as `data.mnist.load`.
    steps: training steps (batch 128) when it has to be trained.
    seed: training seed.

  Returns:
    The reader, with its test accuracy on the source's real test digits.
  """
  folder = pathlib.Path(workdir) / EVALUATORS_DIR / NAME
  config = reader_config(steps, seed=seed)
  identity = {"steps": steps, "source": data.mnist.source_id(source, "train")}
  images, labels = data.mnist.load(source, "train")
  ds = {"image": _mnist_strokes(images), "label": labels.astype(np.int32)}
  task = train.Task(
      init=MODULE.init, loss=_loss,
      train_batches=lambda start: data.batches(
          ds, config.train.batch_size, seed=seed, start_step=start))
  params, info = train_cached(folder, identity, config, task)
  if info is not None:
    return FeatureReader(params, info)
  test_images, test_labels = data.mnist.load(source, "test")
  reader = FeatureReader(params, {})
  pred = np.argmax(reader.run(_mnist_strokes(test_images)), -1)
  info = {
      "name": NAME, **identity,
      "trained_on": f"{len(labels)} real MNIST training digits",
      "test_accuracy": float(np.mean(pred == test_labels)),
      "test_digits": int(len(test_labels)),
      "note": ("D reader for effectiveness, ctf-consistency and ground-truth "
               "features; its penultimate layer embeds images for the "
               "composition embedding L1 and the Frechet distance FD[" + NAME
               + "]. Input: the stroke channel max(R, G), so colour and bar "
               "cannot leak into the digit reading."),
  }
  write_info(folder, info)
  return FeatureReader(params, info)
