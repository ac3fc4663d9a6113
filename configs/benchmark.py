r"""Benchmark grid: the quickstart's three models on both Colored MNIST graphs.

    python -m launch.benchmark --config=configs/benchmark.py

One main-job run per dataset (configs/quickstart.py settings), then tables
shaped like seed 004's (composition, effectiveness, realism) plus
ctf-consistency and ground-truth error, as markdown and CSV in
benchmark.out. The backdoor run is the quickstart's own workdir, so after
`launch.run --config=configs/quickstart.py` only the front-door models
train (about 10 minutes on 2 CPU cores); reruns reuse everything.
"""

import ml_collections

from configs import quickstart


def get_config() -> ml_collections.ConfigDict:
  config = quickstart.get_config()
  config.benchmark = b = ml_collections.ConfigDict()
  # Datasets (ctfjax.data names with an exact feature SCM), and the run
  # workdir of each, in the same order.
  b.datasets = ("colored_mnist_bars/backdoor", "colored_mnist_bars/frontdoor")
  b.workdirs = ("runs/quickstart", "runs/quickstart_frontdoor")
  # Tables, in order: ctf_consistency | effectiveness | composition |
  # reversibility | realism | minimality | ground_truth.
  b.tables = ("ctf_consistency", "effectiveness", "composition",
              "reversibility", "realism", "minimality", "ground_truth")
  b.out = "runs/benchmark"  # Folder of benchmark.md / .csv / .json.
  # Take a workdir's report.json as it is when it matches this config
  # (models, steps, eval settings); False re-evaluates every run.
  b.reuse_reports = True
  return config
