r"""The main job: trains, evaluates and reports a run in one go.

    python -m launch.run --config=configs/quickstart.py \
        --workdir=runs/quickstart [--config.train.steps=500]

Trains (or resumes) every model of `config.run.models` in
<workdir>/models/<name>/, evaluates them on the dataset's test split and
writes report.json, report.md, edits.png and bounds.png into the workdir,
then prints a summary table. Re-running resumes from the last checkpoints;
a finished run only re-evaluates and re-reports. Progress bars with an ETA
are shown when stderr is a terminal.
"""

import sys
import time

from absl import flags

from ctfjax import experiment
from ctfjax import train
from ctfjax.report import tables
from launch import cli
from launch import host_memory

flags.DEFINE_string("config", None, "A configs/*.py file, e.g. "
                    "configs/quickstart.py; override fields with "
                    "--config.SECTION.KEY=VALUE.")
flags.DEFINE_string("workdir", None, "The run's folder.")
FLAGS = flags.FLAGS
OVERRIDES: list[str] = []


def main():
  workdir = cli.require("workdir")
  config = train.load_config(cli.require("config"), OVERRIDES)
  t0 = time.perf_counter()
  report = experiment.run(config, workdir)
  print(tables.summary(report))
  names = ["report.json", "report.md", "edits.png"]
  if any(e.get("ctf_consistency") for e in report["models"]):
    names.append("bounds.png")  # Only datasets with ctf-consistency rows.
  print(f"wrote {', '.join(names)} to {workdir} "
        f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
  sys.argv, OVERRIDES[:] = train.split_config_args(sys.argv)
  cli.run(main, setup=host_memory.apply)
