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
"""

import ml_collections

from configs import ancm


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
  return ancm.sized(config, arg)
