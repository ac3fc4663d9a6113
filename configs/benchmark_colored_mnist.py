r"""Benchmark grid: every Colored MNIST family on both graphs.

    python -m launch.benchmark --config=configs/benchmark_colored_mnist.py

Eight main-job runs, then tables shaped like those of Melistas et al.,
"Benchmarking Counterfactual Image Generation" (2024) (composition,
effectiveness, realism) plus the models' budgets, ctf-consistency and
ground-truth error, as markdown and CSV in benchmark.out:

* back door and front door: the quickstart's three models (the VAE-ANCM
  under the true diagram, `cvae_noncausal`, `deepscm_markovian`;
  configs/quickstart.py settings). The backdoor run is the quickstart's
  own workdir, so after `launch.run --config=configs/quickstart.py` only
  the front-door models train (about 10 minutes on 2 CPU cores);
* back door: the HVAE-ANCM on its ELBO alone (Melistas et al.'s
  pre-training),
  with the label-faithfulness term, and then with counterfactual
  fine-tuning: `ancm_hvae_elbo`, `ancm_hvae` and `ancm_hvae_cf` of
  configs/compare_hvae_colored_mnist_backdoor.py (1,500 steps, then 1,000
  of fine-tuning);
* back door: the GAN-ANCM, `ancm_gan` of
  configs/compare_gan_colored_mnist_backdoor.py (1,500 adversarial steps,
  then 1,500 of the encoder's cyclic fine-tuning);
* back door: the two-stage VAE + DDPM ANCM, `vae_ddpm` of
  configs/compare_vae_ddpm_colored_mnist_backdoor.py (its VAE stage, then
  4,000 refiner steps);
* front door: Sardesai's diffusion NCM ("Ctf-editing using a diffusion
  NCM"), `diffusion_ncm` of configs/compare_ddpm_colored_mnist_frontdoor.py,
  at the 3,000 U-Net steps with which every training passed all
  ctf-consistency rows; at the config's 1,000 steps the result depends on
  the training's draw (docs/results/diffusion.md);
* back door and front door: Pan & Bareinboim's comparison models, Sauer &
  Geiger's CGN and Shen et al.'s DEAR (`cgn`, `dear` of
  configs/compare_cgn_dear_colored_mnist.py, 1,500 steps each).

The runs after the first two train only their new models
(`benchmark.models`, or all of a comparison config's; the VAE-ANCM row of
each dataset is the quickstart's); the two sampler-based
ones evaluate at their configs' smaller sizes (configs/ancm.py
`SAMPLER_EVAL`). From nothing the grid takes well over an hour on 2 CPU
cores (docs/results/grid.md); reruns reuse every current report.
Overrides on the command line (e.g. `--config.train.steps=...`) change
the runs of this config, not those of another config file. Overriding
`benchmark.datasets`, `workdirs`, `configs`, `overrides` and `models`
with their first two entries gives the grid of the quickstart's models
alone.
"""

import ml_collections

from configs import ancm
from configs import quickstart

BACK, FRONT = "colored_mnist_bars/backdoor", "colored_mnist_bars/frontdoor"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = quickstart.get_config()
  config.benchmark = b = ml_collections.ConfigDict()
  # The runs, in table order: a dataset (a ctfjax.data name with an exact
  # feature SCM), the run's workdir, its config file ("": this config),
  # overrides of that config and the models it trains and reports
  # (empty: the config's run.models). `configs`, `overrides` and `models`
  # are optional (empty tuples: this config as it is, all its models, for
  # every run).
  cgn_dear = "configs/compare_cgn_dear_colored_mnist.py"
  b.datasets = (BACK, FRONT, BACK, BACK, BACK, FRONT, BACK, FRONT)
  b.workdirs = ("runs/quickstart", "runs/quickstart_frontdoor",
                "runs/benchmark_hvae", "runs/benchmark_gan",
                "runs/benchmark_two_stage",
                "runs/benchmark_diffusion_frontdoor_3000",
                "runs/compare_cgn_dear_backdoor",
                "runs/compare_cgn_dear_frontdoor")
  b.configs = ("", "", "configs/compare_hvae_colored_mnist_backdoor.py",
               "configs/compare_gan_colored_mnist_backdoor.py",
               "configs/compare_vae_ddpm_colored_mnist_backdoor.py",
               "configs/compare_ddpm_colored_mnist_frontdoor.py",
               cgn_dear, cgn_dear)
  # Config overrides of each run ("key=value" strings, as on the command
  # line; empty: none).
  b.overrides = ((), (), (), (), (), (
      "run.variants.diffusion_ncm.overrides.train.steps=3000",), (), ())
  b.models = ((), (), ("ancm_hvae_elbo", "ancm_hvae", "ancm_hvae_cf"),
              ("ancm_gan",), ("vae_ddpm",), ("diffusion_ncm",), (), ())
  # Tables, in order: models | ctf_consistency | effectiveness |
  # composition | reversibility | realism | minimality | ground_truth.
  b.tables = ("models", "ctf_consistency", "effectiveness", "composition",
              "reversibility", "realism", "minimality", "ground_truth")
  b.out = "runs/benchmark"  # Folder of benchmark.md / .csv / .json.
  # Take a workdir's report.json as it is when it matches its run's config
  # (models, steps, eval settings); False re-evaluates every run.
  b.reuse_reports = True
  return ancm.sized(config, arg)
