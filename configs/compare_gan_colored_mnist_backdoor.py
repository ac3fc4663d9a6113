r"""The GAN-ANCM beside the VAE-ANCM.

    python -m launch.run \
        --config=configs/compare_gan_colored_mnist_backdoor.py \
        --workdir=runs/compare_gan_colored_mnist_backdoor

Backdoor Colored MNIST with bars under the true diagram, the quickstart's
data and training settings (configs/quickstart.py: bundled digits, batch
32, 1,500 steps), two image mechanisms:

* "ancm_vae": the quickstart's VAE-ANCM, the same model as the quick
  start's;
* "ancm_gan": the conditional GAN with an encoder (ctfjax/mechanisms/
  gan.py, BiGAN style) for as many adversarial steps, then the encoder's
  cyclic fine-tuning, at the CPU schedule of
  configs/deepscm_gan_morpho_mnist.py (`cpu_budget`: Adam 5e-4, then
  1,500 cyclic steps from 1e-3).

report.md compares ctf-consistency, effectiveness, the null edit, the L1
to the true counterfactual image and FD[latent_vae]; edits.png shows the
two side by side. On an accelerator: the sizes and schedule of Melistas
et al. (2024) (configs/ancm_gan_colored_mnist_backdoor.py's docstring).
"""

import ml_collections

from configs import ancm
from configs import quickstart
from configs.deepscm_gan_morpho_mnist import cpu_budget


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = quickstart.get_config()
  gan = ml_collections.ConfigDict()
  cpu_budget(gan)
  config.run.variants = ml_collections.ConfigDict()
  config.run.variants.ancm_gan = ml_collections.ConfigDict({
      "diagram": "ancm_vae",
      "overrides": {"model": {"image": {"kind": "gan",
                                        "gan": gan.to_dict()}}}})
  config.run.models = ("ancm_vae", "ancm_gan")
  return ancm.sized(config, arg)
