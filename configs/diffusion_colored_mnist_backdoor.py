r"""Diffusion NCM on backdoor Colored MNIST (D <-> C; D -> B; C -> B).

The front-door experiment's model (configs/diffusion_colored_mnist_frontdoor.py,
whose docstring has the accelerator sizes) on the backdoor dataset.

    python -m launch.train \
        --config=configs/diffusion_colored_mnist_backdoor.py \
        --workdir=runs/diffusion_backdoor
"""

from configs import diffusion_colored_mnist_frontdoor


def get_config():
  config = diffusion_colored_mnist_frontdoor.get_config()
  config.data.name = "colored_mnist_bars/backdoor"
  return config
