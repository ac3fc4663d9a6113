r"""Base config of Deep-SCM on MorphoMNIST (thickness -> intensity; digit).

The same ANCM as Colored MNIST: the dataset's feature model (spline flows
for thickness and intensity, a categorical digit) comes from
`ctfjax.data.morpho_mnist.FEATURES`, the image is a child of all three.
The image mechanism is the conditional VAE of Melistas et al.,
"Benchmarking Counterfactual Image Generation" (2024; Appendix A.2, Tables
7-8: latent 16, decoder convs (32, 3), (32, 3), (16, 5), AdamW 1e-3 with
weight decay 0.01); each variant file picks its likelihood scale:

    python -m launch.train \
        --config=configs/deepscm_vae_learned_morpho_mnist.py \
        --workdir=runs/deepscm_morpho_learned

CPU-sized: the 4,000 bundled training digits, each rendered once (then
cached by `ctfjax.data`), 500 test images, batch 64, 1,500 steps. On an
accelerator: --config.data.source=<MNIST IDX folder> (60,000 digits)
--config.train.batch_size=128 --config.train.steps=100000.

The `accel` preset (`sized`) adds the paper's training protocol for the VAE
and HVAE (A.2, A.3): gradient clipping at 350, skipping at 500 and early
stopping after 10 evaluations without a lower test loss
(docs/training.md, "Gradient skipping and early stopping").
"""

import ml_collections

from configs import ancm
from ctfjax import train

# Melistas et al.'s VAE and HVAE protocol (A.2, A.3; causal-gen's trainer),
# set by the `accel` preset only, so that the `cpu` and `tiny` configs stay
# as they were: grad_clip, the maximum global gradient norm; grad_skip, skip
# an update whose gradient norm (before clipping) is >= this; patience, stop
# after this many evaluations without a lower eval loss. Their patience
# counts epochs; the loop's counts evaluations, one every train.eval_every
# = 500 steps (about an epoch of the 60,000 digits at batch 128).
PROTOCOL = {"grad_clip": 350.0, "grad_skip": 500.0, "patience": 10}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ancm.get_config()
  config.data.name = "morpho_mnist"
  config.data.size = 0  # 0 = every bundled (or source) digit once.

  vae = config.model.image.vae
  vae.latent_dim = 16
  vae.decoder_convs = ((32, 3), (32, 3), (16, 5))

  # Melistas et al.'s Deep-SCM has no label-faithfulness term, and on
  # MorphoMNIST it makes the VAE leave its latent unused (its KL falls
  # near 0), so a null edit is the features' average digit, not the
  # image's own.
  config.model.faithful_weight = 0.0
  # Linear pixel means, as Melistas et al.: with a sigmoid the fixed-sigma
  # VAE's decoder saturates into all-black images, its latent unused.
  config.model.image.vae.mean = "linear"
  config.model.image.hvae.mean = "linear"

  config.train.optimizer = "adamw"
  config.train.weight_decay = 0.01
  return sized(config, arg)


def sized(config: ml_collections.ConfigDict,
          arg: str | None) -> ml_collections.ConfigDict:
  """`ancm.sized`, and at `accel` the paper's `PROTOCOL`."""
  config = ancm.sized(config, arg)
  if train.size_preset(arg) == "accel":
    for key, value in PROTOCOL.items():
      config.train[key] = value
  return config
