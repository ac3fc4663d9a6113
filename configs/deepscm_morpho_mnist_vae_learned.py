r"""Deep-SCM on MorphoMNIST, VAE with a learned per-pixel sigma (seed 004).

    python -m launch.train \
        --config=configs/deepscm_morpho_mnist_vae_learned.py \
        --workdir=runs/deepscm_morpho_learned

Sizes (CPU and accelerator): see `configs/deepscm_morpho_mnist.py`.
"""

from configs import deepscm_morpho_mnist


def get_config():
  config = deepscm_morpho_mnist.get_config()
  config.model.image.vae.learned_sigma = True
  return config
