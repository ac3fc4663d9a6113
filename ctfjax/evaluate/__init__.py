"""Evaluation of trained models on synthetic data, and the main job.

    from ctfjax import evaluate
    report = evaluate.run(config, "runs/quickstart")     # train + report
    report = evaluate.evaluate_workdir("runs/quickstart")  # re-evaluate

Pieces, usable alone:

* `reference(dataset)`: the ctf-consistency protocol's queries with exact
  optimal bounds (`cc.bounds` on the true P(V)) and truth (`cc.query` on the
  generator's feature SCM);
* `feature_reader(workdir)`: pixel rules for colour and bar, a digit CNN
  trained on real MNIST for the digit, and its embedding;
* `latent_vae(workdir, dataset=...)`: the unconditional VAE whose latent
  Gaussians CLD compares;
* `prepare(config, reader, latent)` then `evaluate_model(...)`: one report
  entry;
* `MODELS`: the ANCM and the two baselines, as diagrams derived from the
  true one;
* `benchmark(config)`: the models x datasets x metrics tables.
"""

from ctfjax.evaluate.core import EVAL_DEFAULTS, EvalSet, edit_images
from ctfjax.evaluate.core import evaluate_model, evaluate_truth, prepare
from ctfjax.evaluate.core import minimality, relative_reading, score_edits
from ctfjax.evaluate.core import with_eval_defaults
from ctfjax.evaluate.grid import benchmark
from ctfjax.evaluate.job import MODELS, evaluate_models, evaluate_workdir
from ctfjax.evaluate.job import load_config, load_run, model_config
from ctfjax.evaluate.job import model_graph, model_name, run
from ctfjax.evaluate.job import split_config_args, write_outputs
from ctfjax.evaluate.unconditional_vae import LatentVAE, latent_vae
from ctfjax.evaluate.readers import FeatureReader, feature_reader
from ctfjax.evaluate.reference import Reference, reference

__all__ = [
    "EVAL_DEFAULTS", "EvalSet", "FeatureReader", "LatentVAE", "MODELS",
    "Reference", "benchmark", "edit_images", "evaluate_model",
    "evaluate_models", "evaluate_truth", "evaluate_workdir", "feature_reader",
    "latent_vae", "load_config", "load_run", "minimality", "model_config",
    "model_graph", "model_name", "prepare",
    "reference", "relative_reading", "run", "score_edits",
    "split_config_args", "with_eval_defaults", "write_outputs",
]
