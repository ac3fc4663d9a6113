r"""Deep-SCM on MorphoMNIST, conditional HVAE (Melistas et al. 2024, A.3).

    python -m launch.train --config=configs/deepscm_hvae_morpho_mnist.py \
        --workdir=runs/deepscm_morpho_hvae

The same feature model and data as the VAE variants
(`configs/deepscm.py`); the image mechanism is the
hierarchical VAE of `ctfjax.mechanisms.hvae` with the paper's diagonal
(learned-sigma) Gaussian likelihood, AdamW(1e-3, wd 0.01).

CPU-sized: the family's default network (about 0.13M parameters: widths
(8, 16, 32, 64, 64) at resolutions (32, 16, 8, 4, 1), 7 latents of 8
channels), batch 64, 1,500 steps. The paper's MorphoMNIST HVAE (about
2.0M parameters, 20 latents of 16 channels, `HVAE.accelerator_config()`),
for an accelerator:

    --config.model.image.hvae.widths="(16, 32, 64, 128, 256)"
    --config.model.image.hvae.enc_blocks="(3, 3, 3, 3, 4)"
    --config.model.image.hvae.dec_blocks="(4, 4, 4, 4, 4)"
    --config.model.image.hvae.z_dim=16
    --config.data.source=<MNIST IDX folder> --config.train.batch_size=128
    --config.train.steps=100000

Short CPU runs learn faster with the fixed scale
(--config.model.image.hvae.learned_sigma=False): the learned scale first
explains the digits by variance, and its early reconstructions are
near-black. Both are far from converged at CPU budgets (the paper trains
about 1M steps). The benchmark's HVAE row (configs/benchmark_morpho_mnist.py:
fixed scale, residual blocks half as wide as their width instead of a
quarter, AdamW 3e-3 with a 100-step rate warm-up, clipping at 100 and a
300-step KL warm-up; 500 steps) is this config with

    --config.model.image.hvae.learned_sigma=False
    --config.model.image.hvae.bottleneck=2
    --config.model.image.hvae.kl_warmup_steps=300
    --config.train.learning_rate=3e-3 --config.train.warmup_steps=100
    --config.train.grad_clip=100 --config.train.steps=500
    --config.train.microbatch=16

(the wider blocks leave a smaller null edit than the paper's bottleneck 4
at this budget; docs/models.md, "Deep-SCM on MorphoMNIST").

Counterfactual fine-tuning (a second stage "cf" in <workdir>/stages/cf/,
the paper's A.3): --config.model.image.hvae.cf_steps=500 (the paper ran
2,000 at batch 32 and used it for CelebA only).
"""

import ml_collections

from configs import deepscm


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = deepscm.get_config()
  config.model.image.kind = "hvae"
  config.model.image.hvae.learned_sigma = True
  # One pass per batch: slicing the batch makes the HVAE step no faster
  # and its compile several times longer (benchmarks.speed; docs/speed.md,
  # "Where the CPU time goes").
  config.train.microbatch = 0
  return deepscm.sized(config, arg)
