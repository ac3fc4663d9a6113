r"""Deep-SCM on MorphoMNIST, VAE with a learned per-pixel sigma.

The learned-sigma VAE of Melistas et al., "Benchmarking Counterfactual
Image Generation" (2024).

    python -m launch.train \
        --config=configs/deepscm_vae_learned_morpho_mnist.py \
        --workdir=runs/deepscm_morpho_learned

Sizes (CPU and accelerator): see `configs/deepscm.py`.
"""

import ml_collections

from configs import deepscm


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = deepscm.get_config()
  config.model.image.vae.learned_sigma = True
  return deepscm.sized(config, arg)
