r"""VAE-ANCM on CelebA 64x64 under Pan & Bareinboim's diagram.

    python -m launch.run --config=configs/ancm_vae_celeba_paper.py \
        --config.data.source=/path/to/celeba --workdir=runs/celeba_paper

Pan & Bareinboim, "Counterfactual Image Editing": Male <-> Young (gender and
age confounded), Young -> Gray_Hair; the image is a child of all three. The
ANCM under that diagram beside the two baselines of the quick start (no
edges; confounding read as causation). An edit of Young may change
Gray_Hair and must keep Male. The source is the official manual download
(docs/datasets.md#celeba-64x64-celebasimple-celebacomplex-celebapaper);
attribute classifiers trained on its training split read the edits.
CPU-sized (minutes per model on 2 cores, blurry faces); on an accelerator
use the `accel` preset (--config=configs/ancm_vae_celeba_paper.py:accel).
"""

import ml_collections

from configs import ancm
from configs import quickstart


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = quickstart.get_config()
  config.data.name = "celeba/paper"
  config.data.source = ""  # The CelebA download folder (required).
  config.data.size = 20_000  # Training images (the split has 162,770).
  return ancm.sized(config, arg)
