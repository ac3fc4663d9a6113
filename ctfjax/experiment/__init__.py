"""The experiment layer: train a config's models, evaluate them, report.

    from ctfjax import experiment
    report = experiment.run(config, "runs/quickstart")       # train + report
    report = experiment.evaluate_workdir("runs/quickstart")  # re-evaluate
    result = experiment.benchmark(config)                    # a grid of runs

* `run(config, workdir)` (`job`): the main job. Trains (or resumes) every
  model of `config.run.models`, scores each with `ctfjax.evaluate` and
  writes report.json, report.md, edits.png and bounds.png;
* `MODELS`: the ANCM and the two baselines, as diagrams derived from the
  true one; `variants(config)`: a run's named models that differ by
  mechanism (config overrides plus one of those diagrams);
* `benchmark(config)` (`grid`): the models x datasets x metrics tables, or,
  for a config with `benchmark.rows`, one run's rows beside a paper's
  published numbers (`published`, e.g. Melistas et al. (2024) on
  MorphoMNIST).

Config files load with `ctfjax.train.load_config`.
"""

from ctfjax.experiment.grid import benchmark
from ctfjax.experiment.job import MODELS, evaluate_models, evaluate_workdir
from ctfjax.experiment.job import load_run, model_config, model_graph
from ctfjax.experiment.job import model_name, run, variants, write_outputs

__all__ = [
    "MODELS", "benchmark", "evaluate_models", "evaluate_workdir",
    "load_run", "model_config", "model_graph", "model_name", "run",
    "variants", "write_outputs",
]
