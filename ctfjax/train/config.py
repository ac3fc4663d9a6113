"""Config files, the sections the training loop reads, and safe overrides.

Every family's base config starts from `base_train_config()` and adds its own
`data` and `model` fields; experiment configs override a base, never copy it:

  def get_config():
    config = train_config.base_train_config()
    config.data.name = "colored_mnist_bars/backdoor"
    config.train.steps = 2000
    return config

A config that the main job evaluates adds `base_eval_config()` to its `eval`
section. Launchers load a file with `load_config` (its `get_config()` plus
overrides); overrides from a command line or a test go through
`apply_overrides`, which turns a misspelt key into a one-line `UserError`
instead of silently adding a field nobody reads. This module imports no
model, data or evaluation code, so configs and launchers stay light.
"""

import ast
import difflib
import inspect
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from ctfjax import files
from ctfjax.errors import UserError

# (dotted key, type) of every field `train_and_evaluate` reads.
REQUIRED_FIELDS = (
    ("train.steps", int),
    ("train.batch_size", int),
    ("train.microbatch", int),
    ("train.learning_rate", float),
    ("train.optimizer", str),
    ("train.schedule", str),
    ("train.warmup_steps", int),
    ("train.weight_decay", float),
    ("train.grad_clip", float),
    ("train.seed", int),
    ("train.log_every", int),
    ("train.eval_every", int),
    ("train.progress", bool),
    ("ckpt.every", int),
    ("ckpt.max_to_keep", int),
    ("ckpt.init_from", str),
    ("ckpt.async_save", bool),
    ("mesh.data", int),
)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


def base_train_config() -> ml_collections.ConfigDict:
  """The sections and defaults shared by every trained model.

  Returns:
    A ConfigDict with sections `data / model / train / eval / ckpt / mesh`.
    `data`, `model` and `eval` are empty: each family fills them in.
  """
  config = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict()  # Family-specific: data.name, ...
  config.model = ml_collections.ConfigDict()  # Family-specific.

  config.train = train = ml_collections.ConfigDict()
  train.steps = 1000  # Total optimizer steps; int > 0.
  # Global examples per step (all devices together); must be divisible by the
  # number of devices on the mesh's data axis.
  train.batch_size = 64
  # Examples per device in one forward/backward pass: the step averages the
  # gradients of batch_size / (microbatch x data devices) interleaved slices
  # (`ctfjax.train.step.accumulate`); 0 = the whole batch in one pass. On a
  # CPU, slices whose activations fit the caches are faster (the image
  # configs set 16; docs/training.md, "Microbatches"); on an accelerator
  # keep 0.
  train.microbatch = 0
  train.learning_rate = 1e-3  # Peak learning rate; float > 0.
  train.optimizer = "adam"  # "adam" | "adamw" | "sgd" (with momentum 0.9).
  # "constant" | "cosine" (cosine decays to 0 at train.steps).
  train.schedule = "constant"
  train.warmup_steps = 0  # Linear warm-up from 0, in steps; int >= 0.
  train.weight_decay = 0.0  # Decoupled weight decay; used by "adamw" only.
  train.grad_clip = 0.0  # Max global gradient norm; 0 disables clipping.
  # Decay of an exponential moving average of the parameters, which the
  # run evaluates and hands on as its parameters (`ctfjax.train.ema`; with
  # a warm-up, min(d, (1 + t) / (10 + t))); in [0, 1), 0 = none.
  train.ema_decay = 0.0
  # Root seed: parameter init, per-step randomness and the data order all
  # derive from it by fold_in, so one seed reproduces a run exactly.
  train.seed = 0
  train.log_every = 100  # Steps between lines of workdir/metrics.jsonl; > 0.
  train.eval_every = 500  # Steps between evaluations; 0 = at the end only.
  # Progress bar with ETA on stderr; shown only when stderr is a terminal.
  train.progress = True

  config.eval = ml_collections.ConfigDict()  # Family-specific.

  config.ckpt = ckpt = ml_collections.ConfigDict()
  ckpt.every = 500  # Steps between checkpoints; 0 = at the end only.
  ckpt.max_to_keep = 3  # Newest checkpoints kept on disk; int > 0.
  # Another run's workdir (or its checkpoints/ folder) to take initial
  # params from when this workdir has no checkpoint yet; "" = fresh init.
  ckpt.init_from = ""
  # Write checkpoints in a background thread; training only waits for the
  # device-to-host copy.
  ckpt.async_save = True

  config.mesh = mesh = ml_collections.ConfigDict()
  mesh.data = -1  # Devices on the data-parallel axis; -1 = all devices.
  return config


def base_eval_config() -> ml_collections.ConfigDict:
  """The fields the evaluation (`ctfjax.evaluate`) reads, with defaults.

  Configs of the main job add them to their `eval` section
  (`config.eval.update(base_eval_config())`); the evaluation fills in any
  that a config lacks (e.g. a run trained before a field existed). Each
  field is an integer of at least `EVAL_MINIMUM[field]`.
  """
  ev = ml_collections.ConfigDict()
  ev.test_size = 500  # Test images edited per intervention family.
  ev.composition_size = 200  # Test images in the composition cycles.
  ev.cycles = 10  # Null interventions in a row (>= 10: l1_10 is reported).
  ev.real_size = 1000  # Training images for realism and CLD references.
  ev.edit_chunk = 64  # Images per edit call (one shape: compiled once).
  ev.figure_rows = 8  # Test images in edits.png (chosen by the dataset).
  ev.reader_steps = 600  # Training steps of the dataset's feature readers.
  ev.latent_steps = 600  # Training steps of CLD's VAE (batch 64).
  ev.seed = 0  # Seed of the edits' abduction draws.
  # Weight files of VGG-16 and of LPIPS's linear layers (.npz, see
  # docs/evaluation.md); given, composition adds vgg16_l1 and lpips; "" = not
  # computed.
  ev.vgg16_weights = ""
  ev.lpips_weights = ""
  return ev


# Smallest allowed value of each integer `base_eval_config` field (a
# covariance needs two samples; composition reports 10 cycles).
EVAL_MINIMUM = {"test_size": 1, "composition_size": 1, "cycles": 10,
                "real_size": 2, "edit_chunk": 1, "figure_rows": 1,
                "reader_steps": 1, "latent_steps": 1, "seed": 0}
# The `base_eval_config` fields that are paths of files the user has.
EVAL_FILES = ("vgg16_weights", "lpips_weights")


def _all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every dotted field name in `config`."""
  keys = []
  for name, value in config.items():
    key = prefix + name
    keys.append(key)
    if isinstance(value, ml_collections.ConfigDict):
      keys += _all_keys(value, key + ".")
  return keys


def _lookup(config: ml_collections.ConfigDict, key: str) -> tuple[Any, str]:
  """Returns (parent ConfigDict, leaf name) of a dotted key, or raises."""
  *path, name = key.split(".")
  node = config
  for part in path:
    is_section = isinstance(node, ml_collections.ConfigDict)
    node = node.get(part) if is_section else None
  if not isinstance(node, ml_collections.ConfigDict) or name not in node:
    close = difflib.get_close_matches(key, _all_keys(config), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise UserError(f"unknown config key '{key}'{hint}")
  return node, name


def _parse(text: str) -> Any:
  """Parses a command-line value as a Python literal, else keeps the string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(
    config: ml_collections.ConfigDict,
    overrides: Mapping[str, Any] | Iterable[str],
) -> ml_collections.ConfigDict:
  """Returns a copy of `config` with existing fields overridden.

  Args:
    config: the base config; left unchanged.
    overrides: {"train.steps": 200, ...}, or strings "train.steps=200" whose
      values are parsed as Python literals (falling back to the raw string).

  Returns:
    The overridden copy.

  Raises:
    UserError: a key names no existing field, or a value has the wrong type.
  """
  if isinstance(overrides, Mapping):
    items = list(overrides.items())
  else:
    items = []
    for text in overrides:
      key, sep, value = text.partition("=")
      if not sep:
        raise UserError(
            f"config override '{text}' is not of the form key=value")
      items.append((key.strip(), _parse(value.strip())))
  config = config.copy_and_resolve_references()
  for key, value in items:
    parent, name = _lookup(config, key)
    old = parent[name]
    if isinstance(old, ml_collections.ConfigDict):
      raise UserError(f"config key '{key}' is a section, not a field")
    # An int may stand for a float; every other type must match, so
    # "steps=ten" fails here and not deep inside training.
    if old is not None and not (
        (isinstance(value, type(old))
         and isinstance(value, bool) == isinstance(old, bool))
        or (type(old) is float and type(value) is int)):
      raise UserError(
          f"config key '{key}' expects {type(old).__name__}, got {value!r}")
    parent[name] = float(value) if type(old) is float else value
  return config


def check_train_config(config: ml_collections.ConfigDict) -> None:
  """Raises a one-line UserError if a field the loop reads is missing or bad.

  Args:
    config: a config built on `base_train_config()`.
  """
  for key, kind in REQUIRED_FIELDS:
    try:
      parent, name = _lookup(config, key)
    except UserError:
      raise UserError(f"config has no key '{key}'; build configs on "
                      "ctfjax.train.base_train_config()") from None
    value = parent[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
      raise UserError(
          f"config key '{key}' must be {kind.__name__}, got {value!r}")
  train, ckpt = config.train, config.ckpt
  checks = (
      ("train.steps", train.steps > 0, "> 0"),
      ("train.batch_size", train.batch_size > 0, "> 0"),
      ("train.microbatch", train.microbatch >= 0, ">= 0"),
      ("train.learning_rate", train.learning_rate > 0, "> 0"),
      ("train.warmup_steps", train.warmup_steps >= 0, ">= 0"),
      ("train.log_every", train.log_every > 0, "> 0"),
      ("train.eval_every", train.eval_every >= 0, ">= 0"),
      ("train.grad_clip", train.grad_clip >= 0, ">= 0"),
      ("ckpt.every", ckpt.every >= 0, ">= 0"),
      ("ckpt.max_to_keep", ckpt.max_to_keep > 0, "> 0"),
      ("mesh.data", config.mesh.data == -1 or config.mesh.data > 0,
       "> 0 or -1"),
  )
  for key, ok, rule in checks:
    if not ok:
      raise UserError(f"config key '{key}' must be {rule}")
  for key, value, allowed in (("train.optimizer", train.optimizer, OPTIMIZERS),
                              ("train.schedule", train.schedule, SCHEDULES)):
    if value not in allowed:
      raise UserError(f"config key '{key}' must be one of {allowed}, "
                      f"got {value!r}")


# Size presets of `get_config(arg)`: `tiny` runs in seconds (tests), `cpu`
# (the default) in minutes on 2 cores, `accel` at the papers' sizes.
PRESETS = ("tiny", "cpu", "accel")


def size_preset(arg: str | None) -> str:
  """The size preset a config file's `get_config(arg)` was asked for.

  Args:
    arg: the text after ':' in `--config=FILE:arg`; None or "" for `cpu`.

  Raises:
    UserError: naming an unknown preset.
  """
  if not arg:
    return "cpu"
  if arg not in PRESETS:
    raise UserError(f"unknown config preset {arg!r}; use one of "
                    f"{', '.join(PRESETS)} (e.g. --config=FILE.py:tiny)")
  return arg


def load_config(path: str | os.PathLike,
                overrides: Sequence[str] | Mapping[str, Any] = ()
                ) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file, with overrides of existing keys.

  Args:
    path: a configs/*.py file, optionally with a size preset after a colon
      (`configs/quickstart.py:tiny`; `PRESETS`), which is passed to
      `get_config`.
    overrides: ["train.steps=200", ...] or {"train.steps": 200}.

  Returns:
    The config.

  Raises:
    UserError: missing or broken file, no get_config(), a preset the file
      does not take, unknown key or a value of the wrong type
      (`apply_overrides`).
  """
  path, arg = str(path), None
  head, colon, tail = path.rpartition(":")
  if colon and head.endswith(".py") and "/" not in tail:
    path, arg = head, tail
  module = files.python_module(path, "config file",
                               " with a get_config()")
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise UserError(f"config file {path} has no get_config()")
  args = ()
  if arg is not None:
    size_preset(arg)
    if not inspect.signature(get_config).parameters:
      raise UserError(f"config file {path} takes no size preset "
                      f"(':{arg}'): its get_config() has no argument")
    args = (arg,)
  try:
    config = get_config(*args)
  except UserError:
    raise
  except Exception as e:  # The file's code, not ours.
    raise UserError(f"get_config() of {path} raised {type(e).__name__}: "
                    f"{e}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f"get_config() of {path} must return a ConfigDict, got "
                    f"{type(config).__name__}")
  if not config:
    raise UserError(f"get_config() of {path} returned an empty config")
  return apply_overrides(config, overrides)


def microbatches_of(train: ml_collections.ConfigDict, data_devices: int
                    ) -> int:
  """How many slices `train.microbatch` cuts each step's batch into.

  Args:
    train: the `config.train` section (batch_size, microbatch).
    data_devices: devices on the mesh's data axis.

  Raises:
    UserError: the per-device batch is not a multiple of train.microbatch.
  """
  if not train.microbatch:
    return 1
  per_device = train.batch_size // data_devices
  if per_device <= train.microbatch:
    return 1
  if per_device % train.microbatch:
    raise UserError(
        f"config key 'train.microbatch' ({train.microbatch}) must divide the "
        f"per-device batch ({train.batch_size} over {data_devices} devices "
        f"= {per_device})")
  return max(per_device // train.microbatch, 1)
