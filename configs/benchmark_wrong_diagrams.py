r"""Benchmark: the VAE-ANCM under the true and under wrong diagrams.

    python -m launch.benchmark --config=configs/benchmark_wrong_diagrams.py

Pan & Bareinboim leave open what a misspecified diagram does to
counterfactual edits. On both Colored MNIST graphs this trains the same
VAE-ANCM (configs/quickstart.py settings, 1,500 steps) under the true
diagram and under wrong ones, each differing from the truth in one edge
or in all of them, and tabulates which ctf-consistency rows fail and by
how much (docs/results/wrong_diagrams.md):

* true (`ancm_vae`), edgeless (`cvae_noncausal`) and confounding read as
  causation (`deepscm_markovian`): the quickstart's models, reused from
  its workdirs (runs/quickstart and runs/quickstart_frontdoor, whose
  baselines the grid trains: configs/benchmark_colored_mnist.py);
* `drop_bidirected`: the true diagram without its bidirected edge;
* `reverse_directed`: one directed edge reversed (the result stays
  acyclic);
* `drop_directed`: one directed edge removed.

The three wrong diagrams of each graph (`WRONG`) are variants with an
explicit `graph` (`ctfjax.experiment.job`); the backdoor ones are the
config's, the front-door run overrides their graphs. Each run trains its
three variants and the baselines its workdir lacks. Reports land in each
workdir (report.md holds every row's estimate, bounds and truth); the
tables in `benchmark.out`.
"""

import ml_collections

from configs import quickstart

BACK, FRONT = "colored_mnist_bars/backdoor", "colored_mnist_bars/frontdoor"

# True diagrams (ctfjax/data/colored_mnist_bars.py GRAPHS).
TRUE = {BACK: "D <-> C; D -> B; C -> B", FRONT: "D -> C; C -> B; D <-> B"}

# Variant name -> its diagram on each graph, one edge away from the truth.
WRONG = {
    BACK: {
        "drop_bidirected": "D -> B; C -> B",           # no D <-> C
        "reverse_directed": "D <-> C; D -> B; B -> C",  # C -> B reversed
        "drop_directed": "D <-> C; C -> B",            # no D -> B
    },
    FRONT: {
        "drop_bidirected": "D -> C; C -> B",           # no D <-> B
        "reverse_directed": "C -> D; C -> B; D <-> B",  # D -> C reversed
        "drop_directed": "D -> C; D <-> B",            # no C -> B
    },
}

# The quickstart's models, reused where their workdirs have them.
BASELINES = ("ancm_vae", "cvae_noncausal", "deepscm_markovian")
# The models of each run, in table order.
MODELS = {graph: BASELINES + tuple(wrong) for graph, wrong in WRONG.items()}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = quickstart.get_config(arg)
  config.run.variants = ml_collections.ConfigDict()
  for name, graph in WRONG[BACK].items():
    config.run.variants[name] = ml_collections.ConfigDict(
        {"graph": graph, "overrides": {}})
  config.run.models = MODELS[BACK]
  config.benchmark = b = ml_collections.ConfigDict()
  # See configs/benchmark_colored_mnist.py for each key.
  b.datasets = (BACK, FRONT)
  b.workdirs = ("runs/quickstart", "runs/quickstart_frontdoor")
  b.configs = ("", "")
  b.overrides = ((), tuple(f"run.variants.{name}.graph={graph}"
                           for name, graph in WRONG[FRONT].items()))
  b.models = (MODELS[BACK], MODELS[FRONT])
  b.tables = ("models", "ctf_by_diagram", "ctf_consistency",
              "effectiveness", "ground_truth")
  b.out = "runs/benchmark_wrong_diagrams"
  b.reuse_reports = True
  return config
