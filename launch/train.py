r"""Trains (or resumes) a model from a config file.

    python -m launch.train --config=configs/ancm_colored_mnist_backdoor.py \
        --workdir=runs/ancm_backdoor [--config.train.steps=500]

Re-running with the same workdir resumes from its newest checkpoint; a run
that reached train.steps only reports.
"""

from absl import flags
from ml_collections import config_flags

from ctfjax.ancm import train as ancm_train
from launch import cli

config_flags.DEFINE_config_file("config", None, "A configs/*.py file.")
flags.DEFINE_string("workdir", None, "Folder for checkpoints and metrics.")
FLAGS = flags.FLAGS


def main():
  cli.require("workdir")
  config = FLAGS.config
  if config is None:
    cli.fail("--config is required, e.g. "
             "--config=configs/ancm_colored_mnist_backdoor.py")
  _, result = ancm_train.train_and_evaluate(config, FLAGS.workdir)
  print(f"trained {result.steps} steps in {result.seconds:.1f} s; "
        f"last eval: " + ", ".join(f"{k}={v:.4g}" for k, v in
                                   sorted(result.eval_metrics.items())))


if __name__ == "__main__":
  cli.run(main)
