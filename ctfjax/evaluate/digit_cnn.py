"""A digit reader for MNIST-based datasets: a small CNN on real MNIST digits.

`DigitCNN` is trained on the real MNIST training digits of the run's source
(the bundled 4,000 by default) and cached under
`<workdir>/evaluators/digit_cnn/` (`networks.train_cached`), so it knows
nothing about the models it judges.

The CNN sees the stroke channel only (max(R, G) of an RGB image, the single
channel of a grey one), so it is colour- and bar-invariant by construction:
in Colored MNIST the colour is confounded with the digit, and a reader
trained on coloured images could read the digit off the colour, i.e. report
a preserved digit where only the colour survived. Its penultimate layer
(128 ReLU units) is the embedding for the composition embedding-L1 and the
feature network of the Frechet distance, which is therefore named
"digit_cnn" and never called an FID.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ctfjax import data
from ctfjax import train
from ctfjax.data import mnist
from ctfjax.evaluate import networks
from ctfjax.nn.conv import ConvClassifier

NAME = "digit_cnn"
IMAGE_SHAPE = (32, 32, 1)  # MNIST padded 28 -> 32, one stroke channel
PAD = (32 - 28) // 2


# Its own trunk, not the ANCM label reader's (`ConvClassifier`'s default:
# three 3x3 stride-2 convs of 32, 64, 64): images drawn to fool the reader a
# model trains against must not fool the evaluation by sharing its
# architecture (it shares neither weights, data nor seed either).
CONVS = ((32, 5, 2, 2), (64, 5, 2, 2), (128, 3, 2, 1))
ARCHITECTURE = "convs 5x5/5x5/3x3 of 32/64/128, dense 128"


class DigitCNN(ConvClassifier):
  """A conv classifier over the stroke channel with its embedding exposed."""

  def __init__(self, *, rngs: nnx.Rngs):
    super().__init__(IMAGE_SHAPE, [10], rngs=rngs, convs=CONVS)

  def embed(self, x: jax.Array) -> jax.Array:
    """Penultimate activations [B, 128] of strokes [B, 32, 32, 1] in [0, 1]."""
    for conv in self.convs:
      x = jax.nn.relu(conv(x))
    return jax.nn.relu(self.dense(x.reshape(x.shape[0], -1)))

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.out(self.embed(x))


MODULE = train.PureModule(lambda rngs: DigitCNN(rngs=rngs))


def strokes(images: Any) -> np.ndarray:
  """Model input from uint8 images [N, 32, 32, C]: the stroke channel
  (max(R, G) when C = 3) / 255, [N, 32, 32, 1]."""
  images = np.asarray(images)
  rg = images[..., :2].max(axis=-1) if images.shape[-1] == 3 else \
      images[..., 0]
  return (rg.astype(np.float32) / 255.0)[..., None]


def _mnist_strokes(digits: np.ndarray) -> np.ndarray:
  """Raw MNIST [N, 28, 28] uint8 -> [N, 32, 32, 1] floats, padded as the
  generators pad them."""
  padded = np.pad(np.asarray(digits), ((0, 0), (PAD, PAD), (PAD, PAD)))
  return (padded.astype(np.float32) / 255.0)[..., None]


@functools.partial(jax.jit, static_argnames="method")
def _apply(params, x, method=None):
  return MODULE.apply(params, x, method=method)


def _loss(params, batch, rng):
  del rng
  logits = MODULE.apply(params, batch["image"])
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["label"]).mean()
  acc = (jnp.argmax(logits, -1) == batch["label"]).mean()
  return ce, {"accuracy": acc}


@dataclasses.dataclass(frozen=True)
class DigitReader:
  """Reads the digit of MNIST-based images and embeds them.

  Attributes:
    params: the CNN's parameters.
    info: {"name", "trained_on", "steps", "test_accuracy", "note", ...}.
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

  def read(self, images) -> np.ndarray:
    """The digit [N] int32 read from uint8 images [N, 32, 32, C]."""
    return np.argmax(self.run(strokes(images)), -1).astype(np.int32)

  def embed(self, images) -> np.ndarray:
    """[N, 128] penultimate activations of the CNN."""
    return self.run(strokes(images), method="embed")


def digit_reader(workdir: str | pathlib.Path, *, note: str,
                 source: str | None = None, steps: int = 600,
                 seed: int = 0) -> DigitReader:
  """The run's digit reader: trained once, then restored from the cache.

  Args:
    workdir: the run's folder; the CNN lives in
      `<workdir>/evaluators/digit_cnn/`.
    note: what the dataset's evaluation uses the reader for (its info).
    source: MNIST source (None = the bundled digits), as `data.mnist.load`.
    steps: training steps (batch 128) when it has to be trained.
    seed: training seed.

  Returns:
    The reader, with its test accuracy on the source's real test digits.
  """
  path = networks.folder(workdir, NAME)
  config = networks.network_config(steps, seed=seed)
  identity = {"steps": steps, "source": mnist.source_id(source, "train"),
              "architecture": ARCHITECTURE}
  images, labels = mnist.load(source, "train")
  ds = {"image": _mnist_strokes(images), "label": labels.astype(np.int32)}
  task = train.Task(
      init=MODULE.init, loss=_loss,
      train_batches=lambda start: data.batches(
          ds, config.train.batch_size, seed=seed, start_step=start))
  params, info = networks.train_cached(path, identity, config, task)
  if info is not None:
    return DigitReader(params, info)
  test_images, test_labels = mnist.load(source, "test")
  reader = DigitReader(params, {})
  pred = np.argmax(reader.run(_mnist_strokes(test_images)), -1)
  info = {
      "name": NAME, **identity,
      "trained_on": f"{len(labels)} real MNIST training digits",
      "test_accuracy": float(np.mean(pred == test_labels)),
      "test_digits": int(len(test_labels)),
      "note": note,
  }
  networks.write_info(path, info)
  return DigitReader(params, info)
