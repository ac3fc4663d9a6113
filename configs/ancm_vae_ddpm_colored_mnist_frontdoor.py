r"""Two-stage ANCM (VAE + DDPM refiner) on front-door Colored MNIST.

Pan & Bareinboim's refinement of the VAE-ANCM (DiffuseVAE style,
ctfjax/mechanisms/vae_ddpm.py): stage "vae" trains the NCM, the reader and
the VAE exactly as configs/ancm_vae_colored_mnist_frontdoor.py does; stage
"refiner" trains a U-Net DDPM on the real images given the frozen VAE's
reconstruction (channel concat) and the features. Edits share the VAE
latent and the refiner's DDIM-inverted noise between factual and
counterfactual.

    python -m launch.train \
        --config=configs/ancm_vae_ddpm_colored_mnist_frontdoor.py \
        --workdir=runs/vae_ddpm_frontdoor

CPU-sized defaults; on an accelerator: --config.train.batch_size=256
--config.train.steps=50000 and the U-Net sizes of
configs/ancm_ddpm_colored_mnist_frontdoor.py's docstring under
`model.image.vae_ddpm.refiner`.
"""

from ctfjax import mechanisms
import ml_collections

from configs import ancm


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ancm.get_config()
  config.data.name = "colored_mnist_bars/frontdoor"
  config.model.image = mechanisms.image_config("vae_ddpm")
  v = config.model.image.vae_ddpm
  v.refiner.channels = (32, 64)
  v.refiner.attention = (False, True)
  v.refiner.head_dim = 16
  v.refiner.groups = 8
  v.refiner_fraction = 1.0  # Refiner steps = train.steps (after the VAE).
  v.sampler.steps = 20  # DDIM levels of the refiner (CPU-sized).
  # Fewer edited images than the base evaluation's: every edit inverts
  # and regenerates the refiner through 20 DDIM levels each.
  config.eval.update(ancm.SAMPLER_EVAL)
  return ancm.sized(config, arg)
