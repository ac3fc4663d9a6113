r"""Deep-SCM on MorphoMNIST, VAE with sigma fixed at sqrt(e^-5).

The fixed-sigma VAE of Melistas et al., "Benchmarking Counterfactual Image
Generation" (2024).

    python -m launch.train \
        --config=configs/deepscm_vae_fixed_morpho_mnist.py \
        --workdir=runs/deepscm_morpho_fixed

Sizes (CPU and accelerator): see `configs/deepscm.py`.
"""

import ml_collections

from configs import deepscm


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = deepscm.get_config()
  config.model.image.vae.learned_sigma = False
  return deepscm.sized(config, arg)
