r"""Base config of the VAE-ANCM family (NCM over features + VAE images).

Experiment files import this and override a few fields; they never copy it,
and end with `return ancm.sized(config, arg)`, so that every ANCM config
takes the same size presets (`--config=FILE.py:PRESET`, `sized`):

* `cpu` (the default): minutes on 2 cores;
* `accel`: the papers' sizes for an accelerator (batch 256, 50,000 steps,
  one pass over the whole batch, the mechanism's `accelerator_config()`
  network, its sampler's default levels and the full evaluation sizes);
* `tiny`: seconds on a CPU, for tests and for trying a command end to end.

    python -m launch.train \
        --config=configs/ancm_vae_colored_mnist_backdoor.py \
        --workdir=runs/ancm_backdoor
"""

import ml_collections

from ctfjax import data
from ctfjax import mechanisms
from ctfjax import train
from ctfjax.train import base_train_config

# The evaluation sizes (ctfjax.train.base_eval_config) of a sampler-based
# image mechanism, whose every edit inverts and regenerates through
# 2 x 20 DDIM levels: the base 500 test images per intervention family (the
# ctf-consistency rows need them: on 128 a violation of 0.1 is caught only
# 60-70% of the time, docs/evaluation.md), but the composition's 10 cycles
# and the 3 families' 10 reversibility rounds (70 edits in a row) on 32
# instead of 200, in calls of 32 (a call pads its images to `edit_chunk`).
# At the base 200 the diffusion NCM's reversibility rounds alone run for
# over half an hour on 2 cores. On an accelerator: the base sizes.
SAMPLER_EVAL = {"composition_size": 32, "edit_chunk": 32}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = base_train_config()
  config.family = "ancm"  # Model family: "ancm".

  data = config.data
  # A dataset name of ctfjax.data.NAMES with discrete features.
  data.name = "colored_mnist_bars/backdoor"
  # MNIST source: "" = the bundled 5,000 digits; else a folder of IDX files.
  data.source = ""
  data.size = 0  # Training examples to generate; 0 = the split's default.
  data.seed = 0  # Generator seed (the sample of features and styles).

  model = config.model
  # The diagram the model assumes over the features: "" = the dataset's true
  # diagram. Baselines override it: "D; C; B" (no edges: a non-causal
  # conditional model, an edit changes only the intervened label) or
  # "D -> C; D -> B; C -> B" (Markovian: confounding read as causation).
  model.graph = ""
  model.ncm_latent_dim = 2  # Width of every NCM latent U_C, U_i.
  model.ncm_hidden = (64, 64)  # Hidden widths of each NCM mechanism MLP.
  # The image mechanism: `model.image.kind` picks the family (vae | ... as
  # registered in ctfjax.mechanisms.REGISTRY); `model.image.<kind>` holds
  # each family's settings, commented in its default_config().
  model.image = mechanisms.image_config("vae")
  model.faithful_weight = 1.0  # Label-faithfulness weight [ours]; 0 = off.
  model.num_particles = 256  # Prior particles for feature-level abduction.
  model.likelihood_particles = 64  # Latent draws for -log P^(v) in training.

  config.train.steps = 1500
  config.train.batch_size = 64
  # 16 images per forward/backward pass: on a CPU the activations of 16
  # 32x32 images stay in cache, so the step runs faster than in one pass
  # over the batch (benchmarks.speed; docs/training.md, "Microbatches").
  config.train.microbatch = 16
  config.train.learning_rate = 1e-3
  config.train.log_every = 50
  config.train.eval_every = 500
  config.ckpt.every = 250

  config.eval.batch_size = 250  # Test images per evaluation batch.
  config.eval.num_examples = 500  # Test images used by in-training eval.
  return sized(config, arg)


# `tiny`: seconds on a CPU. Sections a config lacks are left alone.
TINY = {
    "data": {"size": 64},
    "model": {"ncm_hidden": (16,), "num_particles": 32,
              "likelihood_particles": 16},
    "train": {"steps": 4, "batch_size": 16, "log_every": 2,
              "eval_every": 4},
    "ckpt": {"every": 2, "async_save": False},
    "eval": {"batch_size": 16, "num_examples": 32, "test_size": 40,
             "composition_size": 8, "real_size": 64, "edit_chunk": 16,
             "reader_steps": 20, "latent_steps": 10, "figure_rows": 4},
}
TINY_VAE = {"latent_dim": 4, "decoder_convs": ((8, 3), (8, 3), (8, 3))}
# `tiny`: DDIM levels of every sampler-based mechanism (the default 50 make
# one edit 100 network passes).
TINY_SAMPLER_STEPS = 2
# `accel`: the papers' batch and schedule.
ACCEL = {"train": {"batch_size": 256, "steps": 50_000, "microbatch": 0}}


def _update(config: ml_collections.ConfigDict, values) -> None:
  for section, fields in values.items():
    if section in config:
      for key, value in fields.items():
        if key in config[section]:
          config[section][key] = value


def _differences(section: ml_collections.ConfigDict,
                 default: ml_collections.ConfigDict,
                 accel: ml_collections.ConfigDict) -> None:
  """Sets in `section` each field in which `accel` differs from `default`
  (a mechanism's network sizes), nested sections included."""
  for key in accel:
    if key in default and isinstance(accel[key], ml_collections.ConfigDict):
      _differences(section[key], default[key], accel[key])
    elif key not in default or accel[key] != default[key]:
      section[key] = accel[key]  # A size-specific field (CelebA's VAE).


def _image_shape(config: ml_collections.ConfigDict):
  """The dataset's image shape where its class fixes it (CelebA: 64x64), a
  folder's from data.image_size, else None (the mechanisms' 32x32 sizes).
  The dataset itself is not built: its source may come on the command
  line after the preset."""
  name = config.data.name
  shape = getattr(data.entry_class(name), "image_shape", None)
  if shape is None and config.data.get("image_size"):
    shape = (config.data.image_size,) * 2 + (3,)
  return shape


def sized(config: ml_collections.ConfigDict,
          arg: str | None) -> ml_collections.ConfigDict:
  """`config` at the size preset `arg` (None or "cpu": as it is).

  Raises UserError naming an unknown preset.
  """
  preset = train.size_preset(arg)
  kind = config.model.image.kind
  if preset == "tiny":
    _update(config, TINY)
    if kind == "vae":
      config.model.image.vae.update(TINY_VAE)
    for section in config.model.image.values():  # Variants use any kind.
      if isinstance(section, ml_collections.ConfigDict) and (
          "sampler" in section):
        section.sampler.steps = TINY_SAMPLER_STEPS
  elif preset == "accel":
    _update(config, ACCEL)
    family, section = mechanisms.family(kind), config.model.image[kind]
    if hasattr(family, "accelerator_config"):
      _differences(section, family.default_config(),
                   family.accelerator_config(_image_shape(config)))
    if "sampler" in section and "steps" in family.SAMPLER:
      section.sampler.steps = family.SAMPLER["steps"]  # the paper's levels
    base = train.base_eval_config()
    _update(config, {"eval": {k: base[k] for k in SAMPLER_EVAL}})
  return config
