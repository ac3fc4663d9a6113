r"""HVAE-ANCM on backdoor Colored MNIST with bars (D <-> C; D -> B; C -> B).

The true diagram; the image mechanism is the conditional hierarchical VAE
(`ctfjax.mechanisms.hvae`), sized like the quickstart's VAE for a CPU
(about 0.13M parameters, batch 32, 1,500 steps).

    python -m launch.train \
        --config=configs/ancm_hvae_colored_mnist_backdoor.py \
        --workdir=runs/ancm_hvae_backdoor

With counterfactual fine-tuning (second stage "cf", <workdir>/stages/cf/:
the frozen label reader must read the intervened features off the edits,
the ELBO held within `cf_margin` nats per pixel value of its pre-trained
value): --config.model.image.hvae.cf_steps=300.

The ANCM's label-faithfulness term is on (the family's default): on
Colored MNIST it makes this HVAE follow do(D), but by drawing every edit in
blocks of 4x4 pixels; --config.model.faithful_weight=0 trains the ELBO
alone, whose edits are sharp and ignore do(D)
(configs/compare_hvae_colored_mnist_backdoor.py; docs/results/hvae.md).

On an accelerator, the network of Melistas et al. (2024; see
configs/deepscm_hvae_morpho_mnist.py) and --config.train.batch_size=256
--config.train.steps=50000.
"""

import ml_collections

from configs import ancm
from configs import ancm_vae_colored_mnist_backdoor


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ancm_vae_colored_mnist_backdoor.get_config()
  config.model.image.kind = "hvae"
  # The fixed scale of the Deep-SCM VAEs: a learned per-pixel scale lets a
  # Gaussian explain Colored MNIST's thin bar by variance rather than by its
  # mean (measured for the VAE mechanism, configs/quickstart.py).
  config.model.image.hvae.learned_sigma = False
  config.model.num_particles = 128
  config.model.likelihood_particles = 32
  config.train.batch_size = 32
  # One pass per batch: slicing the batch makes the HVAE step no faster
  # and its compile several times longer (benchmarks.speed; docs/speed.md,
  # "Where the CPU time goes").
  config.train.microbatch = 0
  return ancm.sized(config, arg)
