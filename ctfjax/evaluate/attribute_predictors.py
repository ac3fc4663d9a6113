"""Anti-causal attribute predictors for real attribute-labelled images.

The readers of `datasets.attributes` (CelebA, a user's `folder`): one small
CNN per attribute, trained on the dataset's own training split, as
Melistas et al., "Benchmarking Counterfactual Image Generation" (2024)
train their CelebA attribute classifiers (their code:
gulnazaki/counterfactual-benchmark, `models/classifiers/celeba_classifier.py`
and `methods/deepscm/train_classifier.py`):

* a categorical attribute (an int K, a {"kind": "categorical"} spec or a
  `kinds.Categorical`) gets a K-way classifier trained by cross-entropy
  weighted by inverse class frequency (`class_weights`; K softmax
  outputs, where theirs has one sigmoid output per binary attribute):
  Melistas et al. balance Smiling and Eyeglasses (precomputed per-image
  weights) and No_Beard and Bald (1 / count(class)) with a
  `WeightedRandomSampler`; a loss weighted by inverse frequency has the
  same expected gradient and keeps the batches the deterministic,
  resumable `data.batches` [ours: every categorical attribute is
  balanced, which changes little for a balanced one];
* a continuous attribute ({"kind": "continuous", "loc", "scale"}, a
  `kinds.Continuous` or a subclass such as the spline) gets a regressor of
  the value standardised by the kind's loc and scale, by mean squared
  error; readings are returned in the attribute's own units.

One network per attribute rather than a shared trunk with one head each:
each attribute's class weights reweight its own loss only (in a shared
trunk the balancing of a rare attribute would reshape the features every
other head reads), a reader can be retrained alone when one attribute's
definition changes, and it is what Melistas et al. do. The predictors are
not conditioned on other attributes [ours; their CelebA-complex Young and
Male classifiers also see No_Beard and Bald]: every reading depends on the
image alone, never on what a model claims it drew.

The network is their CelebA classifier (which their code credits to
Monteiro et al. 2023):
Conv2D (F, K, S) = (16, 3, 1), (32, 3, 2), (32, 3, 1), (64, 3, 2),
(64, 3, 1), (128, 3, 2) with padding 1 and ReLU, a global average pool,
Linear 128 with ReLU, then Linear to the outputs. The pool makes it work
at any image size. CPU-sized here: every width divided by `width_divisor`
(default 2) and `eval.reader_steps` steps of batch 64 with AdamW 1e-3
(weight decay 0.01, as theirs), 100-step warm-up and cosine decay
(`morpho_predictors.predictor_config`). Their BatchNorm layers are left
out, as in `morpho_predictors`: the training library's pure modules keep
no running statistics.

Each network trains once per run in
`<workdir>/evaluators/attributes/<attribute>/` (`networks.train_cached`);
the cache's identity holds what defines the data (dataset name, its
`identity("train")`, e.g. the source and its annotation files' stamps,
attributes and kinds, image shape, training size and a fingerprint of the
labels and first images) and the training settings. The penultimate
activations of all the networks, concatenated, embed images for the
composition embedding L1 and the Frechet distance (Melistas et al.
Table 1: "we concatenate the last layer activations across all
predictors").
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import zlib
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ctfjax import causal as cc
from ctfjax import data
from ctfjax import train
from ctfjax.errors import UserError
from ctfjax.evaluate import morpho_predictors
from ctfjax.evaluate import networks

NAME = "attribute_predictors"
FOLDER = "attributes"  # <workdir>/evaluators/attributes/<attribute>/
# Melistas et al.'s CelebA classifier: (filters, kernel, stride) of each
# convolution, then the hidden Linear width.
CONVS = ((16, 3, 1), (32, 3, 2), (32, 3, 1), (64, 3, 2), (64, 3, 1),
         (128, 3, 2))
HIDDEN = 128
WIDTH_DIVISOR = 2  # CPU-sized: every width halved.
BATCH_SIZE = 64  # CPU-sized (theirs: 128).
WEIGHT_DECAY = 0.01  # Their AdamW's.
TEST_SIZE = 500  # Test images the recorded accuracy / MAE are measured on.
FINGERPRINT_IMAGES = 256  # Leading training images in the data fingerprint.


# What each predictor reads ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
  """What one predictor reads.

  Attributes:
    name: the attribute.
    classes: K for a categorical attribute (values 0..K-1); 0 for a
      continuous one.
    loc, scale: the continuous kind's standardisation (unused for a
      categorical).
  """

  name: str
  classes: int = 0
  loc: float = 0.0
  scale: float = 1.0

  @property
  def categorical(self) -> bool:
    return self.classes > 0

  @property
  def outputs(self) -> int:
    """Logits of a classifier, or the one regressed value."""
    return self.classes or 1

  def standardise(self, values) -> jax.Array:
    return (jnp.asarray(values, jnp.float32) - self.loc) / self.scale

  def unstandardise(self, values) -> np.ndarray:
    return np.asarray(values, np.float32) * self.scale + self.loc

  def as_dict(self) -> dict[str, Any]:
    """Its identity in a cache (JSON: no tuples)."""
    if self.categorical:
      return {"kind": "categorical", "classes": self.classes}
    return {"kind": "continuous", "loc": self.loc, "scale": self.scale}


def _kind(name: str, spec: Any) -> Any:
  """A kind object from an int K, a name, a {"kind": name, **fields} spec
  or a kind object."""
  if isinstance(spec, Mapping):
    fields = dict(spec)
    kind = fields.pop("kind", None)
    if kind not in cc.kinds.KINDS:
      raise UserError(f"attribute {name!r} has unknown kind {kind!r}; "
                      f"known: {', '.join(cc.kinds.KINDS)}")
    try:
      return cc.kinds.KINDS[kind](**fields)
    except TypeError as e:
      raise UserError(f"attribute {name!r}: bad {kind} fields "
                      f"{sorted(fields)} ({e})") from None
  return cc.kinds.resolve(spec)


def targets(kinds: Mapping[str, Any]) -> dict[str, Target]:
  """{attribute: its `Target`} of a dataset's kinds, in their order.

  Args:
    kinds: {attribute: int K, kind spec or kind object} (`Dataset.kinds`).

  Raises:
    UserError: a kind that is neither categorical nor continuous.
  """
  out = {}
  for name, spec in kinds.items():
    kind = _kind(name, spec)
    if isinstance(kind, cc.kinds.Categorical):
      out[name] = Target(name, classes=kind.size)
    elif isinstance(kind, cc.kinds.Continuous):
      out[name] = Target(name, loc=kind.loc, scale=kind.scale)
    else:
      raise UserError(f"attribute {name!r}: kind {type(kind).__name__} has "
                      "no reader (categorical and continuous kinds do)")
  return out


def class_weights(labels, classes: int) -> np.ndarray:
  """Inverse-frequency class weights [classes]: N / (present * count_k).

  The "balanced" weights (sklearn's `class_weight="balanced"`): the
  weighted loss of a batch then averages to the mean over the present
  classes of each class's mean loss, the loss of a class-balanced sample.
  A class absent from `labels` gets weight 0.

  Args:
    labels: [N] ints in 0..classes-1.
    classes: K.
  """
  labels = np.asarray(labels).astype(np.int64)
  counts = np.bincount(labels, minlength=classes).astype(np.float64)
  present = counts > 0
  safe = np.where(present, counts, 1.0)
  return np.where(present, len(labels) / (present.sum() * safe), 0.0)


def _check_labels(target: Target, values, split: str) -> np.ndarray:
  """The attribute's [N] values of a split, checked against its kind."""
  values = np.asarray(values)
  if values.ndim != 1:
    raise UserError(f"attribute {target.name!r} of the {split} split must "
                    f"be one value per image, got shape {values.shape}")
  if not target.categorical:
    if not np.all(np.isfinite(values.astype(np.float64))):
      raise UserError(f"attribute {target.name!r} of the {split} split has "
                      "missing or infinite values")
    return values.astype(np.float32)
  if (not np.issubdtype(values.dtype, np.integer) or
      (values.size and (values.min() < 0 or values.max() >= target.classes))):
    raise UserError(f"attribute {target.name!r} of the {split} split must "
                    f"be integers 0..{target.classes - 1}")
  return values.astype(np.int32)


# The network ------------------------------------------------------------------


class AttributeCNN(nnx.Module):
  """Melistas et al.'s CelebA classifier: convolutions, a global average
  pool, Linear hidden, Linear outputs (see the module docstring)."""

  def __init__(self, channels: int, outputs: int, width_divisor: int, *,
               rngs: nnx.Rngs):
    self.convs = nnx.List()
    for filters, kernel, stride in CONVS:
      filters = max(1, filters // width_divisor)
      pad = kernel // 2
      self.convs.append(nnx.Conv(
          channels, filters, (kernel, kernel), strides=(stride, stride),
          padding=((pad, pad), (pad, pad)), rngs=rngs))
      channels = filters
    hidden = max(1, HIDDEN // width_divisor)
    self.hidden = nnx.Linear(channels, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, outputs, rngs=rngs)

  def embed(self, x: jax.Array) -> jax.Array:
    """Penultimate activations [B, hidden] of images [B, H, W, C] in
    [0, 1]."""
    for conv in self.convs:
      x = jax.nn.relu(conv(x))
    return jax.nn.relu(self.hidden(x.mean(axis=(1, 2))))

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.out(self.embed(x))


@functools.cache
def _module(channels: int, outputs: int,
            width_divisor: int) -> train.PureModule:
  return train.PureModule(lambda rngs: AttributeCNN(
      channels, outputs, width_divisor, rngs=rngs))


def _floats(images) -> jax.Array:
  return jnp.asarray(images, jnp.float32) / 255.0


def _loss_fn(categorical: bool, module: train.PureModule):
  """The training loss of one network on batches {"image", "target"} (and
  "weight" for a classifier): the cross-entropy weighted per example by its
  class's weight, or the MSE of the standardised value. Attribute-specific
  numbers travel in the batch, not in the function, so attributes of one
  kind and size train with one compiled step."""

  def loss(params, batch, rng):
    del rng
    out = module.apply(params, _floats(batch["image"]))
    if not categorical:
      err = out[:, 0] - batch["target"]
      return jnp.mean(err ** 2), {"mae_std": jnp.mean(jnp.abs(err))}
    labels = batch["target"]
    ce = optax.softmax_cross_entropy_with_integer_labels(out, labels)
    return (jnp.mean(batch["weight"] * ce),
            {"accuracy": (jnp.argmax(out, -1) == labels).mean()})

  return loss


def training_arrays(target: Target, images: np.ndarray,
                    values: np.ndarray) -> dict[str, np.ndarray]:
  """One network's training set: {"image", "target"} with the target
  standardised (continuous), plus "weight" [N], each example's
  `class_weights` entry (categorical)."""
  if not target.categorical:
    return {"image": images,
            "target": np.asarray(target.standardise(values), np.float32)}
  weights = class_weights(values, target.classes)
  return {"image": images, "target": values.astype(np.int32),
          "weight": weights[values].astype(np.float32)}


@functools.partial(jax.jit, static_argnames=("module", "method"))
def _apply(module, params, x, method=None):
  return module.apply(params, x, method=method)


def predictor_config(steps: int, batch_size: int = BATCH_SIZE,
                     seed: int = 0):
  """A predictor's training config: `morpho_predictors.predictor_config`
  (AdamW 1e-3, warm-up, cosine) with their CelebA weight decay."""
  config = morpho_predictors.predictor_config(steps, batch_size, seed)
  config.train.weight_decay = WEIGHT_DECAY
  return config


# The reader -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AttributePredictors:
  """Reads every attribute from images and embeds them (`base.Reader`).

  Attributes:
    targets: {attribute: `Target`}, in the dataset's order.
    params: {attribute: its network's parameters}.
    info: {attribute: {"steps", "test_accuracy" or "test_mae", ...}}.
    channels: the images' channels.
    width_divisor: the networks' width divisor.
    batch_size: images per forward call.
  """

  targets: Mapping[str, Target]
  params: Mapping[str, Any]
  info: Mapping[str, Mapping[str, Any]]
  channels: int
  width_divisor: int = WIDTH_DIVISOR
  batch_size: int = 256

  name = NAME

  @property
  def evaluators(self) -> dict[str, Any]:
    """{"attributes_<name>": info} of every network (the report's
    "evaluators" section)."""
    return {f"{FOLDER}_{k}": dict(v) for k, v in self.info.items()}

  def _run(self, name: str, images, method=None) -> np.ndarray:
    images = np.asarray(images)
    module = _module(self.channels, self.targets[name].outputs,
                     self.width_divisor)
    out = [np.asarray(_apply(module, self.params[name],
                             _floats(images[i:i + self.batch_size]),
                             method=method))
           for i in range(0, len(images), self.batch_size)]
    return np.concatenate(out)

  def read(self, images) -> dict[str, np.ndarray]:
    """{attribute: int32 [N] class or float32 [N] value} read from uint8
    images [N, H, W, C]."""
    out = {}
    for name, target in self.targets.items():
      raw = self._run(name, images)
      out[name] = (np.argmax(raw, -1).astype(np.int32) if target.categorical
                   else target.unstandardise(raw[:, 0]))
    return out

  def embed(self, images) -> np.ndarray:
    """[N, attributes * hidden]: the networks' penultimate activations,
    concatenated in the attributes' order."""
    return np.concatenate([self._run(name, images, method="embed")
                           for name in self.targets], axis=-1)


def fingerprint(arrays: Mapping[str, np.ndarray],
                names: tuple[str, ...]) -> str:
  """CRC-32 (hex) of the attribute columns `names` and the first
  `FINGERPRINT_IMAGES` images: a cached reader trained on other labels
  (an edited attributes.csv under the same folder) is not reused."""
  crc = 0
  for name in names:
    crc = zlib.crc32(np.ascontiguousarray(arrays[name]).tobytes(), crc)
  head = np.ascontiguousarray(arrays["image"][:FINGERPRINT_IMAGES])
  return f"{zlib.crc32(head.tobytes(), crc):08x}"


def _scores(target: Target, read, truth) -> dict[str, Any]:
  """A predictor's recorded test scores."""
  read, truth = np.asarray(read), np.asarray(truth)
  if not target.categorical:
    return {"test_mae": float(np.mean(np.abs(read.astype(np.float64) -
                                             truth.astype(np.float64))))}
  recall = [float(np.mean(read[truth == k] == k))
            for k in range(target.classes) if np.any(truth == k)]
  return {"test_accuracy": float(np.mean(read == truth)),
          "test_balanced_accuracy": float(np.mean(recall))}


_NOTES = {
    True: "anti-causal classifier q(x_k | image), Melistas et al. (2024) "
          "CelebA classifier, cross-entropy weighted by inverse class "
          "frequency",
    False: "anti-causal regressor q(x_k | image), Melistas et al. (2024) "
           "CelebA classifier's network, MSE of the standardised value",
}


def _batches(ds: Mapping[str, np.ndarray], batch_size: int, seed: int,
             start: int):
  """A network's training batches from step `start` on (`train.Task`)."""
  return data.batches(ds, batch_size, seed=seed, start_step=start)


def predictors(workdir: str | pathlib.Path, dataset, *,
               size: int | None = None, steps: int = 600, seed: int = 0,
               width_divisor: int = WIDTH_DIVISOR,
               batch_size: int = BATCH_SIZE) -> AttributePredictors:
  """The run's attribute predictors: trained once on its training images,
  then restored from the cache.

  Args:
    workdir: the run's folder; each network lives in
      `<workdir>/evaluators/attributes/<attribute>/`.
    dataset: a `ctfjax.data.base.Dataset` (its name, kinds, image_shape,
      load and identity).
    size: training images (None = the whole split), as `dataset.load`.
    steps: training steps of each network.
    seed: training seed.
    width_divisor: widths of the network divided by this (theirs: 1).
    batch_size: examples per step (theirs: 128).

  Returns:
    The predictors, each with its accuracy (and class-balanced accuracy)
    or MAE on up to `TEST_SIZE` test images.

  Raises:
    UserError: attribute values that do not fit their kinds.
  """
  specs = targets(dataset.kinds)
  train_ds = dataset.load("train", size)
  arrays = {"image": np.asarray(train_ds["image"]),
            **{k: _check_labels(t, train_ds[k], "train")
               for k, t in specs.items()}}
  n = len(arrays["image"])
  batch_size = min(batch_size, n)
  config = predictor_config(steps, batch_size, seed)
  channels = int(dataset.image_shape[-1])
  common = {
      "steps": steps, "batch_size": batch_size,
      "width_divisor": width_divisor, "size": size, "seed": seed,
      "dataset": dataset.name,
      # Through JSON as reader.json stores it: a tuple would never equal
      # the list read back, and the cache would always retrain.
      "data_identity": dataset.identity("train"),
      "attributes": list(specs),
      "image_shape": [int(d) for d in dataset.image_shape],
      "train_images": n, "data": fingerprint(arrays, tuple(specs)),
  }
  params, info, fresh = {}, {}, []
  for name, target in specs.items():
    module = _module(channels, target.outputs, width_divisor)
    identity = {**common, "attribute": name, "kind": target.as_dict()}
    if target.categorical:
      identity["class_weights"] = class_weights(
          arrays[name], target.classes).tolist()
    task = train.Task(
        init=module.init, loss=_loss_fn(target.categorical, module),
        train_batches=functools.partial(
            _batches, training_arrays(target, arrays["image"], arrays[name]),
            config.train.batch_size, seed))
    path = networks.folder(workdir, FOLDER) / name
    params[name], info[name] = networks.train_cached(path, identity, config,
                                                     task)
    if info[name] is None:  # Trained now: scored below, then cached.
      info[name] = identity
      fresh.append(name)
  reader = AttributePredictors(specs, params, {}, channels, width_divisor)
  if fresh:
    test = dataset.load("test", TEST_SIZE)
    read = reader.read(test["image"])
    for name in fresh:
      target = specs[name]
      truth = _check_labels(target, test[name], "test")
      info[name] = {
          "name": f"{FOLDER}_{name}", **info[name],
          "trained_on": f"{n} training images of {dataset.name}",
          **_scores(target, read[name], truth),
          "test_images": int(len(truth)),
          "note": _NOTES[target.categorical],
      }
      networks.write_info(networks.folder(workdir, FOLDER) / name,
                          info[name])
  return AttributePredictors(specs, params, info, channels, width_divisor)
