r"""Trains (or resumes) a model from a config file.

    python -m launch.train --config=configs/ancm_colored_mnist_backdoor.py \
        --workdir=runs/ancm_backdoor [--config.train.steps=500]

Re-running with the same workdir resumes from its newest checkpoint; a run
that reached train.steps only reports. A misspelt --config.KEY is an error.
"""

import sys

from absl import flags

from ctfjax import train
from ctfjax.ancm import train as ancm_train
from launch import cli

flags.DEFINE_string("config", None, "A configs/*.py file; override fields "
                    "with --config.SECTION.KEY=VALUE.")
flags.DEFINE_string("workdir", None, "Folder for checkpoints and metrics.")
FLAGS = flags.FLAGS
OVERRIDES: list[str] = []


def main():
  workdir = cli.require("workdir")
  config = train.load_config(cli.require("config"), OVERRIDES)
  _, result = ancm_train.train_and_evaluate(config, workdir)
  print(f"trained {result.steps} steps in {result.seconds:.1f} s; "
        f"last eval: " + ", ".join(f"{k}={v:.4g}" for k, v in
                                   sorted(result.eval_metrics.items())))


if __name__ == "__main__":
  sys.argv, OVERRIDES[:] = train.split_config_args(sys.argv)
  cli.run(main)
