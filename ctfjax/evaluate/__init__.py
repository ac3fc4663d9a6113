"""Evaluation of trained models on synthetic data, and the main job.

    from ctfjax import evaluate
    report = evaluate.run(config, "runs/quickstart")     # train + report
    report = evaluate.evaluate_workdir("runs/quickstart")  # re-evaluate

A generic pipeline (edit, score, report: `core`, `job`, `grid`) plus one
evaluator per dataset (`datasets`), which supplies what depends on the
dataset: feature readers, intervention protocol, ground truth, feature
scores, figure captions and notes. Pieces, usable alone:

* `evaluator(dataset)`: the dataset's evaluator
  (`datasets.DatasetEvaluator`); `evaluator(...).reader(workdir, config)`
  its trained feature readers;
* `latent_vae(workdir, dataset=...)`: the unconditional VAE whose latent
  Gaussians CLD compares;
* `prepare(config, reader, latent)` then `evaluate_model(...)`: one report
  entry;
* `MODELS`: the ANCM and the two baselines, as diagrams derived from the
  true one; `variants(config)`: a run's named models that differ by
  mechanism (config overrides plus one of those diagrams);
* `benchmark(config)`: the models x datasets x metrics tables, or, for a
  config with `benchmark.rows`, one run's rows beside a paper's published
  numbers (`published`, e.g. seed 004 on MorphoMNIST).

Config files load with `ctfjax.train.load_config`; the evaluation's
settings and defaults are `ctfjax.train.base_eval_config()`.
"""

from ctfjax.evaluate.core import EvalSet, edit_images, eval_settings
from ctfjax.evaluate.core import evaluate_model, evaluate_truth, prepare
from ctfjax.evaluate.core import minimality, score_edits, with_eval_defaults
from ctfjax.evaluate.datasets import DatasetEvaluator, Reader, evaluator
from ctfjax.evaluate.grid import benchmark
from ctfjax.evaluate.job import MODELS, evaluate_models, evaluate_workdir
from ctfjax.evaluate.job import load_run, model_config, model_graph
from ctfjax.evaluate.job import model_name, run, variants, write_outputs
from ctfjax.evaluate.unconditional_vae import LatentVAE, latent_vae

__all__ = [
    "DatasetEvaluator", "EvalSet", "LatentVAE", "MODELS", "Reader",
    "benchmark", "edit_images", "eval_settings", "evaluate_model",
    "evaluate_models", "evaluate_truth", "evaluate_workdir", "evaluator",
    "latent_vae", "load_run", "minimality", "model_config", "model_graph",
    "model_name", "prepare", "run", "score_edits", "variants",
    "with_eval_defaults", "write_outputs",
]
