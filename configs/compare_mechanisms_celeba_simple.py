r"""Every image mechanism as an ANCM on CelebA 64x64, Melistas et al.'s graph.

    python -m launch.run --config=configs/compare_mechanisms_celeba_simple.py \
        --config.data.source=/path/to/celeba --workdir=runs/celeba_mechanisms

Smiling and Eyeglasses, independent parents of the image (Melistas et al.,
"Benchmarking Counterfactual Image Generation", Figure 1(b)). One run, five
models under the true diagram that differ only in the image mechanism
(`ctfjax.mechanisms`): the VAE, the HVAE, the GAN, the diffusion model and
the two-stage VAE + DDPM, each at its CPU size (`accel`: the papers'
sizes). The Deep-SCM rows beside the paper's published numbers are
configs/benchmark_celeba.py.
"""

import ml_collections

from configs import ancm
from configs import quickstart

# Run variant name -> the image mechanism it uses.
MECHANISMS = {"ancm_hvae": "hvae", "ancm_gan": "gan", "ancm_ddpm": "ddpm",
              "ancm_vae_ddpm": "vae_ddpm"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = quickstart.get_config()
  config.data.name = "celeba/simple"
  config.data.source = ""  # The CelebA download folder (required).
  config.data.size = 20_000  # Training images (the split has 162,770).
  config.run.variants = ml_collections.ConfigDict()
  for name, kind in MECHANISMS.items():
    config.run.variants[name] = ml_collections.ConfigDict({
        "diagram": "ancm_vae",
        "overrides": {"model": {"image": {"kind": kind}}}})
  config.run.models = ("ancm_vae", *MECHANISMS)
  config.eval.update(ancm.SAMPLER_EVAL)  # Two samplers among the models.
  return ancm.sized(config, arg)
