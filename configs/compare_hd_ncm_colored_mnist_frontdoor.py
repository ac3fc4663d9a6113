r"""Sardesai's diffusion NCM of high-dimensional variables beside today's.

    python -m launch.run \
        --config=configs/compare_hd_ncm_colored_mnist_frontdoor.py \
        --workdir=runs/compare_hd_ncm_frontdoor

Front-door Colored MNIST with bars (D -> C -> B; D <-> B) from the bundled
digits, both models under the true diagram, with the same diffusion image
mechanism and training (configs/compare_ddpm_colored_mnist_frontdoor.py's
"diffusion_ncm": a U-Net of 32, 64 and 64 channels, v-prediction,
classifier-free guidance 3, the luma/chroma basis, 1,000 steps of batch
64, 20 DDIM levels; DDIM inversion abducts a real image's noise):

* "diffusion_ncm": the U-Net conditioned on the features' one-hots;
* "hd_ncm": the NCM of high-dimensional variables (`CODE_DIM`-wide codes,
  ctfjax/ncm/codes.py): each variable's mechanism reads its parents'
  codes, a per-variable autoencoder maps each value to its code and reads
  values back, do() sets a code to its value's, and the U-Net is
  conditioned on the codes, learned with it end to end.

The two cost the same per step (the U-Net dominates; the codes widen its
condition from 14 to 48 inputs and add three small MLPs): the one-hot
model's 1,000 steps took 616 s on 2 cores (docs/results/diffusion.md, "At
the config's 1,000 steps"). Its trainings are committed
and evaluated (docs/results/hd_ncm.md). The run evaluates at
configs/ancm.py's SAMPLER_EVAL sizes (500 test images per intervention
family, 32 in the cycles; `--config.eval.test_size=128`
for the size of the committed diffusion reports). Back door:
`--config.data.name=colored_mnist_bars/backdoor`. `:tiny` shrinks both
models to seconds (tests).
"""

import ml_collections

from ctfjax import train
from configs import ancm
from configs import compare_ddpm_colored_mnist_frontdoor as compare_ddpm

# Width k of every variable's code: log2(10) bits of a digit need few
# dimensions, but the codes also steer a U-Net whose condition enters each
# residual block through a dense layer; 16 per variable gives the 3
# features 48 inputs against the one-hots' 14.
CODE_DIM = 16
# The `tiny` preset's U-Net and schedule (seconds on a CPU).
TINY_UNET = {"timesteps": 100, "channels": (8, 16),
             "attention": (False, False), "mid_attention": False,
             "groups": 4}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = compare_ddpm.get_config()
  # 0: the features' one-hots (every other model of the run).
  config.model.ncm_code_dim = 0
  diffusion = config.run.variants.diffusion_ncm
  config.run.variants.hd_ncm = ml_collections.ConfigDict({
      "diagram": diffusion.diagram,
      "overrides": {**diffusion.overrides.to_dict(),
                    "model": {**diffusion.overrides.model.to_dict(),
                              "ncm_code_dim": CODE_DIM}}})
  config.run.models = ("diffusion_ncm", "hd_ncm")
  config = ancm.sized(config, arg)
  if train.size_preset(arg) == "tiny":
    for variant in config.run.variants.values():
      _tiny(variant.overrides)
  return config


def _tiny(overrides: ml_collections.ConfigDict) -> None:
  """A variant's overrides at the `tiny` preset: the run's tiny training
  and a U-Net of seconds (the preset itself reaches only the run's own
  sections, and a variant's overrides would set its CPU sizes back)."""
  del overrides.train
  ddpm = overrides.model.image.ddpm
  ddpm.update(TINY_UNET)
  ddpm.sampler.steps = ancm.TINY_SAMPLER_STEPS
