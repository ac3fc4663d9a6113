r"""VAE-ANCM on backdoor Colored MNIST with bars (D <-> C; D -> B; C -> B).

    python -m launch.train \
        --config=configs/ancm_vae_colored_mnist_backdoor.py \
        --workdir=runs/ancm_backdoor

CPU-sized (bundled MNIST digits, minutes on 2 cores). On an accelerator:
--config.train.batch_size=256 --config.train.steps=50000.
"""

import ml_collections

from configs import ancm


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ancm.get_config()
  config.data.name = "colored_mnist_bars/backdoor"
  return ancm.sized(config, arg)
