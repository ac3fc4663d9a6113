r"""Re-evaluates a trained run and rewrites its report and figures.

    python -m launch.evaluate --workdir=runs/quickstart \
        [--config.eval.test_size=1000]

The workdir is a `launch.run` workdir (models/<name>/) or a single-model
`launch.train` workdir. Writes report.json, report.md, edits.png and
bounds.png there, as `launch.run` does, and prints the summary table; only
eval.* settings (ctfjax.train.base_eval_config) can be overridden.
"""

import sys

from absl import flags

from ctfjax import experiment
from ctfjax import train
from ctfjax.report import tables
from launch import cli
from launch import host_memory

flags.DEFINE_string("workdir", None, "A trained run's folder.")
FLAGS = flags.FLAGS
OVERRIDES: list[str] = []


def main():
  workdir = cli.require("workdir")
  report = experiment.evaluate_workdir(workdir, OVERRIDES)
  print(tables.summary(report))
  print(f"wrote report.json, report.md, edits.png, bounds.png to {workdir}")


if __name__ == "__main__":
  sys.argv, OVERRIDES[:] = train.split_config_args(sys.argv)
  cli.run(main, setup=host_memory.apply)
