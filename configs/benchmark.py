r"""Benchmark grid: every Colored MNIST family on both graphs.

    python -m launch.benchmark --config=configs/benchmark.py

Five main-job runs, then tables shaped like seed 004's (composition,
effectiveness, realism) plus the models' budgets, ctf-consistency and
ground-truth error, as markdown and CSV in benchmark.out:

* back door and front door: the quickstart's three models (the VAE-ANCM
  under the true diagram, `cvae_noncausal`, `deepscm_markovian`;
  configs/quickstart.py settings). The backdoor run is the quickstart's
  own workdir, so after `launch.run --config=configs/quickstart.py` only
  the front-door models train (about 10 minutes on 2 CPU cores);
* back door: the HVAE-ANCM with counterfactual fine-tuning,
  `ancm_hvae_cf` of configs/compare_hvae.py (1,500 steps, then 1,000 of
  fine-tuning);
* back door: the two-stage VAE + DDPM ANCM, `vae_ddpm` of
  configs/compare_two_stage.py (its VAE stage, then 4,000 refiner steps);
* front door: seed 003's diffusion NCM, `diffusion_ncm` of
  configs/compare_diffusion_frontdoor.py (1,000 U-Net steps).

The last three runs train only their new model (`benchmark.models`; the
VAE-ANCM row of each dataset is the quickstart's); the two sampler-based
ones evaluate at their configs' smaller sizes (configs/ancm.py
`SAMPLER_EVAL`). From nothing the
grid takes about 80 minutes on 2 CPU cores; reruns reuse every current
report. Overrides on the command line (e.g. `--config.train.steps=...`)
change the runs of this config, not those of another config file.
Overriding `benchmark.datasets`, `workdirs`, `configs` and `models` with
their first two entries gives the grid of the quickstart's models alone
(README, "The benchmark grid").
"""

import ml_collections

from configs import quickstart

BACK, FRONT = "colored_mnist_bars/backdoor", "colored_mnist_bars/frontdoor"


def get_config() -> ml_collections.ConfigDict:
  config = quickstart.get_config()
  config.benchmark = b = ml_collections.ConfigDict()
  # The runs, in table order: a dataset (a ctfjax.data name with an exact
  # feature SCM), the run's workdir, its config file ("": this config)
  # and the models it trains and reports (empty: the config's
  # run.models). Entries of `configs` and `models` are optional (empty
  # tuples: this config and all its models for every run).
  b.datasets = (BACK, FRONT, BACK, BACK, FRONT)
  b.workdirs = ("runs/quickstart", "runs/quickstart_frontdoor",
                "runs/benchmark_hvae", "runs/benchmark_two_stage",
                "runs/benchmark_diffusion_frontdoor")
  b.configs = ("", "", "configs/compare_hvae.py",
               "configs/compare_two_stage.py",
               "configs/compare_diffusion_frontdoor.py")
  b.models = ((), (), ("ancm_hvae_cf",), ("vae_ddpm",),
              ("diffusion_ncm",))
  # Tables, in order: models | ctf_consistency | effectiveness |
  # composition | reversibility | realism | minimality | ground_truth.
  b.tables = ("models", "ctf_consistency", "effectiveness", "composition",
              "reversibility", "realism", "minimality", "ground_truth")
  b.out = "runs/benchmark"  # Folder of benchmark.md / .csv / .json.
  # Take a workdir's report.json as it is when it matches its run's config
  # (models, steps, eval settings); False re-evaluates every run.
  b.reuse_reports = True
  return config
