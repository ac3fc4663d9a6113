r"""The main job's default: the ANCM and two baselines on Colored MNIST.

    python -m launch.run --config=configs/quickstart.py \
        --workdir=runs/quickstart

Backdoor Colored MNIST with bars (D <-> C; D -> B; C -> B) from the bundled
real MNIST digits. Three models, the same VAE-ANCM with three diagrams
(`ctfjax.experiment.MODELS`): the true one (ancm_vae), no edges
(cvae_noncausal) and confounding read as causation (deepscm_markovian).
CPU-sized: training all three, the digit reader and the evaluation finish
within 15 minutes on 2 cores. On an accelerator raise train.steps and
train.batch_size (e.g. --config.train.steps=20000
--config.train.batch_size=256).
"""

import ml_collections

from configs import ancm
from ctfjax.train import base_eval_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ancm.get_config()
  config.data.name = "colored_mnist_bars/backdoor"

  # Smaller than the ANCM defaults so that three models train on a 2-core
  # CPU in about 2.5 minutes each.
  config.model.image.vae.decoder_convs = ((24, 3), (24, 3), (16, 3))
  config.model.num_particles = 128
  config.model.likelihood_particles = 32
  config.train.steps = 1500
  config.train.batch_size = 32
  config.train.log_every = 100
  config.train.eval_every = 0  # In-training eval at the end only.
  config.ckpt.every = 500
  config.eval.num_examples = 250

  config.run = ml_collections.ConfigDict()
  # Models to train and compare: names of ctfjax.experiment.MODELS.
  config.run.models = ("ancm_vae", "cvae_noncausal", "deepscm_markovian")

  # Evaluation settings; each is documented in ctfjax.train.base_eval_config.
  config.eval.update(base_eval_config())
  return ancm.sized(config, arg)
