r"""Diffusion NCM on backdoor Colored MNIST (D <-> C; D -> B; C -> B).

The front-door experiment's model (configs/ancm_ddpm_colored_mnist_frontdoor.py,
whose docstring has the accelerator sizes) on the backdoor dataset.

    python -m launch.train \
        --config=configs/ancm_ddpm_colored_mnist_backdoor.py \
        --workdir=runs/diffusion_backdoor
"""

import ml_collections

from configs import ancm
from configs import ancm_ddpm_colored_mnist_frontdoor


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ancm_ddpm_colored_mnist_frontdoor.get_config()
  config.data.name = "colored_mnist_bars/backdoor"
  return ancm.sized(config, arg)
