r"""Re-evaluates a trained run and rewrites its report and figures.

    python -m launch.evaluate --workdir=runs/quickstart \
        [--config.eval.test_size=1000]

The workdir is a `launch.run` workdir (models/<name>/) or a single-model
`launch.train` workdir. Writes report.json, report.md, edits.png and
bounds.png there, as `launch.run` does, and prints the summary table; only
eval.* settings (ctfjax.train.base_eval_config) can be overridden.
"""

from absl import flags

from launch import cli
from launch import host_memory

flags.DEFINE_string("workdir", None, "A trained run's folder.")
FLAGS = flags.FLAGS


def main():
  # The library loads JAX; imported here so that --help answers at once.
  from ctfjax import experiment  # pylint: disable=import-outside-toplevel
  from ctfjax.report import tables  # pylint: disable=import-outside-toplevel
  workdir = cli.require("workdir")
  report = experiment.evaluate_workdir(workdir, cli.overrides())
  print(tables.summary(report))
  print(f"wrote report.json, report.md, edits.png, bounds.png to {workdir}")


if __name__ == "__main__":
  cli.run(main, setup=host_memory.apply, config_overrides=True)
