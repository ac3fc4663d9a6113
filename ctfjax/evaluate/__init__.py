"""Scoring trained models: edit test images, score the edits, one report entry.

    from ctfjax import evaluate
    ev = evaluate.evaluator("colored_mnist_bars/backdoor")
    reader = ev.reader(workdir, config)          # trained feature readers
    evalset = evaluate.prepare(config, reader, latent)
    entry = evaluate.evaluate_model(...)         # one entry of report.json

A generic pipeline (`core`) plus one evaluator per dataset (`datasets`),
which supplies what depends on the dataset: feature readers, intervention
protocol, ground truth, feature scores, figure captions and notes. This
package trains no model of the run: `ctfjax.experiment` trains a config's
models and calls it. Pieces, usable alone:

* `evaluator(dataset)`: the dataset's evaluator
  (`datasets.DatasetEvaluator`); `evaluator(...).reader(workdir, config)`
  its trained feature readers;
* `latent_vae(workdir, dataset=...)`: the unconditional VAE whose latent
  Gaussians CLD compares;
* `prepare(config, reader, latent)` then `evaluate_model(...)`: one report
  entry.

The evaluation's settings and defaults are `ctfjax.train.base_eval_config()`.
"""

from ctfjax.evaluate.core import EvalSet, edit_images, eval_settings
from ctfjax.evaluate.core import evaluate_model, evaluate_truth, prepare
from ctfjax.evaluate.core import minimality, score_edits, with_eval_defaults
from ctfjax.evaluate.datasets import DatasetEvaluator, Reader, evaluator
from ctfjax.evaluate.unconditional_vae import LatentVAE, latent_vae

__all__ = [
    "DatasetEvaluator", "EvalSet", "LatentVAE", "Reader", "edit_images",
    "eval_settings", "evaluate_model", "evaluate_truth", "evaluator",
    "latent_vae", "minimality", "prepare", "score_edits",
    "with_eval_defaults",
]
