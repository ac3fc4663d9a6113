r"""Deep-SCM on MorphoMNIST, VAE with sigma fixed at sqrt(e^-5) (seed 004).

    python -m launch.train \
        --config=configs/deepscm_vae_fixed_morpho_mnist.py \
        --workdir=runs/deepscm_morpho_fixed

Sizes (CPU and accelerator): see `configs/deepscm.py`.
"""

from configs import deepscm


def get_config():
  config = deepscm.get_config()
  config.model.image.vae.learned_sigma = False
  return config
