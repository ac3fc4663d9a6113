r"""GAN-ANCM on backdoor Colored MNIST with bars (D <-> C; D -> B; C -> B).

The true diagram; the image mechanism is the conditional GAN with an
encoder (`ctfjax.mechanisms.gan`), adversarial stage then cyclic
fine-tuning of the encoder (<workdir>/stages/cyclic/).

    python -m launch.train \
        --config=configs/ancm_gan_colored_mnist_backdoor.py \
        --workdir=runs/ancm_gan_backdoor

CPU-sized (bundled MNIST digits, batch 64, 1,500 + 1,500 steps at Adam 5e-4
and 1e-3, latent 32).
On an accelerator, the sizes of Melistas et al. (2024; see
configs/deepscm_gan_morpho_mnist.py)
and --config.train.batch_size=128 --config.train.steps=50000
--config.model.image.gan.finetune_steps=10000
--config.model.image.gan.learning_rate=1e-4
--config.model.image.gan.finetune_learning_rate=1e-4.
"""

import ml_collections

from configs import ancm
from configs import ancm_vae_colored_mnist_backdoor
from configs.deepscm_gan_morpho_mnist import cpu_budget


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ancm_vae_colored_mnist_backdoor.get_config()
  config.model.image.kind = "gan"
  cpu_budget(config.model.image.gan)
  return ancm.sized(config, arg)
