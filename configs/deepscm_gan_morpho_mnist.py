r"""Deep-SCM on MorphoMNIST, conditional GAN with an encoder (BiGAN style).

The rows "GAN" and "GAN fine-tuned" of the MorphoMNIST tables of Melistas
et al., "Benchmarking Counterfactual Image Generation" (2024; A.4) from
one config: the adversarial stage, then (with
`model.image.gan.finetune_steps` > 0, the default here) the cyclic
fine-tuning of the encoder, checkpointed in <workdir>/stages/cyclic/.

    python -m launch.train --config=configs/deepscm_gan_morpho_mnist.py \
        --workdir=runs/deepscm_morpho_gan

The row "GAN" alone: --config.model.image.gan.finetune_steps=0.

CPU-sized: the bundled digits (see `configs/deepscm.py`),
batch 64, 1,500 adversarial steps at Adam(5e-4, b1 = 0.5), 1,500 cyclic
steps from 1e-3 (cosine decay), small networks (latent 32). The paper's
sizes on an accelerator: latent 512, encoder convs 64, 128, 256, hidden
512, generator 256, 512, 256, 128, 64,
discriminator D_x 32 ... 512, D_z 512, D_xz 1024, Adam(1e-4, b1 = 0.5),
batch 128, early stopping on 60,000 digits:
--config.data.source=<MNIST IDX folder> --config.train.batch_size=128
--config.train.steps=100000 --config.model.image.gan.latent_dim=512
--config.model.image.gan.encoder_convs="(64, 128, 256)"
--config.model.image.gan.encoder_hidden=512
--config.model.image.gan.generator_base=256
--config.model.image.gan.generator_convs="(512, 256, 128)"
--config.model.image.gan.discriminator_convs="(64, 128, 256)"
--config.model.image.gan.z_hidden=512 --config.model.image.gan.joint_hidden=1024
--config.model.image.gan.finetune_steps=20000
--config.model.image.gan.learning_rate=1e-4
--config.model.image.gan.finetune_learning_rate=1e-4
(`GAN.accelerator_config()` holds the same widths with a 4x4 base map).
Two departures from the paper stay on (`ctfjax.mechanisms.gan`): the pixel
norm in G, without which G draws black images at CPU budgets
(--config.model.image.gan.pixel_norm=False for the paper's G), and one
dropout rate in D (--config.model.image.gan.discriminator_dropout).
"""

import ml_collections

from configs import ancm
from configs import deepscm


def cpu_budget(gan):
  """The CPU-sized GAN schedule (also
  configs/ancm_gan_colored_mnist_backdoor.py).

  Faster than the paper's Adam(1e-4): on MorphoMNIST (this config) 1,500
  adversarial steps at 5e-4 draw recognisable digits without a collapse,
  and 1,500 cyclic steps from 1e-3 (cosine decay) about halve the test
  reconstruction L1 of G(E(x)).
  """
  gan.finetune_steps = 1500
  gan.learning_rate = 5e-4
  gan.finetune_learning_rate = 1e-3


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = deepscm.get_config()
  config.model.image.kind = "gan"
  cpu_budget(config.model.image.gan)
  # Not deepscm.sized: the paper's GAN is not clipped or skipped, and its
  # early stopping watches an embedding distance of its samples, not the
  # adversarial losses that are this model's eval loss.
  return ancm.sized(config, arg)
