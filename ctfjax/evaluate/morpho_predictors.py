"""MorphoMNIST's anti-causal predictors (Melistas et al. 2024, A.5, Table 17).

Three convolutional networks read the parents back from an image, as
Melistas et al., "Benchmarking Counterfactual Image Generation" (2024) do
for effectiveness and composition on MorphoMNIST:

* q(t | x, i): thickness regressor, conditioned on the intensity (thickness
  causes intensity, so the anti-causal thickness predictor sees it);
* q(i | x): intensity regressor;
* q(y | x): digit classifier (10 classes).

Each is the paper's Table 17 network: Conv2D (F, K, S) = (16, 7, 1),
(32, 3, 2), (32, 3, 1), (64, 3, 2), (64, 3, 1), (128, 3, 2) (padding K // 2,
LeakyReLU 0.1 after the first, 0.01 after the others), Linear 512 with
LeakyReLU 0.01, then Linear `num_outputs` (1 for a regressor, 10 for the
classifier); the thickness regressor's intensity enters beside the
flattened convolution features [ours: where it enters]. The paper trains
each for 10K iterations of batch 256 with AdamW 1e-3 and a 100-step linear
warm-up.

CPU-sized here: every width divided by `width_divisor` (default 2: 8, 16,
16, 32, 32, 64 filters, Linear 256) and `eval.reader_steps` steps of batch
64 (AdamW 1e-3, 100-step warm-up, cosine decay), all three in about a
minute on 2 CPU cores. The paper's sizes are `width_divisor=1`,
`steps=10_000`, `batch_size=256`. The paper puts BatchNorm after every layer
but the last; these networks have no normalisation [ours]: the training
library's pure modules keep no running statistics, and a per-example
normalisation (LayerNorm, GroupNorm) would divide out the global brightness
the intensity regressor has to read.

Targets are regressed standardised with the generator's own law
(`morpho_mnist.FEATURES` loc / scale), by mean squared error; readings are
returned in pixels (thickness) and 0-255 grey levels (intensity). To read
an image's thickness, q(t | x, i) gets the intensity q(i | x) reads from
the same image [ours], so every reading depends on the image alone, never
on what a model claims it drew.

The networks train once per run on its training images and are cached in
`<workdir>/evaluators/morpho_<name>/` (`networks.train_cached`); their
penultimate activations, concatenated, are the embedding of the
composition L1 and of the Frechet distance (Melistas et al. Table 1: "we
concatenate the last layer activations across all predictors").
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
from ctfjax.data import morpho_mnist
from ctfjax.evaluate import networks

NAME = "morpho_predictors"
DATASET = "morpho_mnist"
IMAGE_SHAPE = (32, 32, 1)
# Melistas et al. Table 17: (filters, kernel, stride) of each convolution, the
# hidden Linear width, and the LeakyReLU slope after each layer.
SEED_CONVS = ((16, 7, 1), (32, 3, 2), (32, 3, 1), (64, 3, 2), (64, 3, 1),
              (128, 3, 2))
SEED_HIDDEN = 512
SLOPES = (0.1, 0.01, 0.01, 0.01, 0.01, 0.01)
HIDDEN_SLOPE = 0.01
WIDTH_DIVISOR = 2  # CPU-sized: every width halved.
BATCH_SIZE = 64  # CPU-sized (the paper: 256).
WARMUP_STEPS = 100

# Predictor name -> (parent it reads, outputs, conditioned on intensity).
PREDICTORS = {
    "thickness": ("thickness", 1, True),
    "intensity": ("intensity", 1, False),
    "digit": ("digit", 10, False),
}


def _standardise(name: str, values) -> jax.Array:
  spec = morpho_mnist.FEATURES[name]
  return (jnp.asarray(values, jnp.float32) - spec["loc"]) / spec["scale"]


def _unstandardise(name: str, values) -> np.ndarray:
  spec = morpho_mnist.FEATURES[name]
  return np.asarray(values, np.float32) * spec["scale"] + spec["loc"]


class Predictor(nnx.Module):
  """One Table 17 network: convolutions, Linear hidden, Linear outputs."""

  def __init__(self, num_outputs: int, cond_dim: int, width_divisor: int,
               *, rngs: nnx.Rngs):
    self.convs = nnx.List()
    channels = IMAGE_SHAPE[-1]
    size = IMAGE_SHAPE[0]
    for filters, kernel, stride in SEED_CONVS:
      filters = max(1, filters // width_divisor)
      pad = kernel // 2
      self.convs.append(nnx.Conv(
          channels, filters, (kernel, kernel), strides=(stride, stride),
          padding=((pad, pad), (pad, pad)), rngs=rngs))
      channels = filters
      size = (size + 2 * pad - kernel) // stride + 1
    hidden = SEED_HIDDEN // width_divisor
    self.hidden = nnx.Linear(size * size * channels + cond_dim, hidden,
                             rngs=rngs)
    self.out = nnx.Linear(hidden, num_outputs, rngs=rngs)

  def embed(self, x: jax.Array, cond: jax.Array) -> jax.Array:
    """Penultimate activations [B, hidden] of images [B, 32, 32, 1] in
    [0, 1] and conditions [B, cond_dim]."""
    for conv, slope in zip(self.convs, SLOPES):
      x = jax.nn.leaky_relu(conv(x), slope)
    x = jnp.concatenate([x.reshape(x.shape[0], -1), cond], axis=-1)
    return jax.nn.leaky_relu(self.hidden(x), HIDDEN_SLOPE)

  def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
    return self.out(self.embed(x, cond))


@functools.cache
def _module(name: str, width_divisor: int) -> train.PureModule:
  _, outputs, conditioned = PREDICTORS[name]
  return train.PureModule(lambda rngs: Predictor(
      outputs, int(conditioned), width_divisor, rngs=rngs))


def _floats(images) -> jax.Array:
  return jnp.asarray(images, jnp.float32) / 255.0


def _cond(name: str, intensity) -> jax.Array:
  """The network's condition [B, 0 or 1] (standardised intensity)."""
  if PREDICTORS[name][2]:
    return _standardise("intensity", intensity)[:, None]
  return jnp.zeros((jnp.shape(intensity)[0], 0), jnp.float32)


def _loss_fn(name: str, module: train.PureModule):
  target, outputs, _ = PREDICTORS[name]

  def loss(params, batch, rng):
    del rng
    x = _floats(batch["image"])
    out = module.apply(params, x, _cond(name, batch["intensity"]))
    if outputs == 1:
      err = out[:, 0] - _standardise(target, batch[target])
      return jnp.mean(err ** 2), {"mae_std": jnp.mean(jnp.abs(err))}
    labels = batch[target]
    ce = optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()
    return ce, {"accuracy": (jnp.argmax(out, -1) == labels).mean()}

  return loss


@functools.partial(jax.jit, static_argnames=("module", "method"))
def _apply(module, params, x, cond, method=None):
  return module.apply(params, x, cond, method=method)


def predictor_config(steps: int, batch_size: int = BATCH_SIZE, seed: int = 0):
  """A predictor's training config: AdamW 1e-3, 100-step linear warm-up,
  then cosine decay (Melistas et al. A.5 with a decay added)."""
  config = networks.network_config(steps, batch_size=batch_size, seed=seed)
  config.train.optimizer = "adamw"
  config.train.learning_rate = 1e-3
  config.train.warmup_steps = min(WARMUP_STEPS, max(steps - 1, 0))
  return config


@dataclasses.dataclass(frozen=True)
class MorphoPredictors:
  """Reads (thickness, intensity, digit) from MorphoMNIST images.

  Attributes:
    params: {predictor name: its parameters}.
    info: {predictor name: {"steps", "test_mae" or "test_accuracy", ...}}.
    width_divisor: the networks' width divisor.
  """

  params: Mapping[str, Any]
  info: Mapping[str, Mapping[str, Any]]
  width_divisor: int = WIDTH_DIVISOR
  batch_size: int = 256

  name = NAME

  @property
  def evaluators(self) -> dict[str, Any]:
    """{"morpho_<name>": info} of the three networks (the report's
    "evaluators" section)."""
    return {f"morpho_{k}": dict(v) for k, v in self.info.items()}

  def _run(self, name: str, images, intensity=None, method=None):
    images = np.asarray(images)
    if intensity is None:
      intensity = np.zeros(len(images), np.float32)
    module = _module(name, self.width_divisor)
    out = [np.asarray(_apply(
        module, self.params[name],
        _floats(images[i:i + self.batch_size]),
        _cond(name, intensity[i:i + self.batch_size]), method=method))
           for i in range(0, len(images), self.batch_size)]
    return np.concatenate(out)

  def read(self, images) -> dict[str, np.ndarray]:
    """{"thickness", "intensity": float32 [N], "digit": int32 [N]} from
    uint8 images [N, 32, 32, 1]; q(t | x, i) gets the intensity read."""
    intensity = _unstandardise("intensity",
                               self._run("intensity", images)[:, 0])
    thickness = _unstandardise(
        "thickness", self._run("thickness", images, intensity)[:, 0])
    digit = np.argmax(self._run("digit", images), -1).astype(np.int32)
    return {"thickness": thickness, "intensity": intensity, "digit": digit}

  def embed(self, images) -> np.ndarray:
    """[N, 3 * hidden]: the three networks' penultimate activations,
    concatenated (thickness, intensity, digit)."""
    intensity = _unstandardise("intensity",
                               self._run("intensity", images)[:, 0])
    return np.concatenate(
        [self._run(n, images, intensity if n == "thickness" else None,
                   method="embed") for n in PREDICTORS], axis=-1)


def predictors(workdir: str | pathlib.Path, *, source: str | None = None,
               size: int | None = None, data_seed: int = 0,
               steps: int = 600, seed: int = 0,
               width_divisor: int = WIDTH_DIVISOR,
               batch_size: int = BATCH_SIZE) -> MorphoPredictors:
  """The run's predictors: trained once on its training images, then cached.

  Args:
    workdir: the run's folder; each network lives in
      `<workdir>/evaluators/morpho_<name>/`.
    source: the digits' source, as `data.load`.
    size: training images (None = the dataset's default), as `data.load`.
    data_seed: the dataset's seed.
    steps: training steps of each network (the paper: 10,000).
    seed: training seed.
    width_divisor: widths of Table 17 divided by this (the paper: 1).
    batch_size: examples per step (the paper: 256).

  Returns:
    The predictors, each with its error on 500 held-out test images.
  """
  ds = data.load(DATASET, split="train", size=size, seed=data_seed,
                 source=source)
  arrays = {k: np.asarray(ds[k]) for k in ("image", *PREDICTORS)}
  test = data.load(DATASET, split="test", size=500, seed=data_seed,
                   source=source)
  batch_size = min(batch_size, len(arrays["image"]))
  config = predictor_config(steps, batch_size, seed)
  params, info = {}, {}
  for name in PREDICTORS:
    module = _module(name, width_divisor)
    path = networks.folder(workdir, f"morpho_{name}")
    identity = {"steps": steps, "batch_size": batch_size,
                "width_divisor": width_divisor, "size": size,
                "data_seed": data_seed,
                "source": data.mnist.source_id(source, "train")}
    task = train.Task(
        init=module.init, loss=_loss_fn(name, module),
        train_batches=lambda start: data.batches(
            arrays, config.train.batch_size, seed=seed, start_step=start))
    params[name], cached = networks.train_cached(path, identity, config,
                                                 task)
    info[name] = cached
  reader = MorphoPredictors(params, {}, width_divisor)
  read = reader.read(test["image"])
  for name in PREDICTORS:
    if info[name] is not None:
      continue
    target = np.asarray(test[name])
    score = ({"test_accuracy": float(np.mean(read[name] == target))}
             if name == "digit" else
             {"test_mae": float(np.mean(np.abs(read[name] - target)))})
    info[name] = {
        "name": f"morpho_{name}", "steps": steps, "batch_size": batch_size,
        "width_divisor": width_divisor, "size": size,
        "data_seed": data_seed,
        "source": data.mnist.source_id(source, "train"),
        "trained_on": f"{len(arrays['image'])} MorphoMNIST training images",
        **score, "test_images": int(len(target)),
        "note": _NOTES[name],
    }
    networks.write_info(networks.folder(workdir, f"morpho_{name}"),
                        info[name])
  return MorphoPredictors(params, info, width_divisor)


_NOTES = {
    "thickness": "q(t | x, i), Melistas et al. (2024) Table 17 regressor; "
                 "at reading time conditioned on the intensity q(i | x) "
                 "reads.",
    "intensity": "q(i | x), Melistas et al. (2024) Table 17 regressor.",
    "digit": "q(y | x), Melistas et al. (2024) Table 17 classifier.",
}
