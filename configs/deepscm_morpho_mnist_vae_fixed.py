r"""Deep-SCM on MorphoMNIST, VAE with sigma fixed at sqrt(e^-5) (seed 004).

    python -m launch.train \
        --config=configs/deepscm_morpho_mnist_vae_fixed.py \
        --workdir=runs/deepscm_morpho_fixed

Sizes (CPU and accelerator): see `configs/deepscm_morpho_mnist.py`.
"""

from configs import deepscm_morpho_mnist


def get_config():
  config = deepscm_morpho_mnist.get_config()
  config.model.image.vae.learned_sigma = False
  return config
