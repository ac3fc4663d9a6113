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

import time

from absl import flags

from launch import cli
from launch import host_memory

flags.DEFINE_string("config", None, "A configs/*.py file, e.g. "
                    "configs/quickstart.py; override fields with "
                    "--config.SECTION.KEY=VALUE.")
flags.DEFINE_string("workdir", None, "The run's folder.")
FLAGS = flags.FLAGS


def main():
  # The library loads JAX; imported here so that --help answers at once.
  from ctfjax import experiment  # pylint: disable=import-outside-toplevel
  from ctfjax import train  # pylint: disable=import-outside-toplevel
  from ctfjax.report import tables  # pylint: disable=import-outside-toplevel
  workdir = cli.require("workdir")
  config = train.load_config(cli.require("config"), cli.overrides())
  t0 = time.perf_counter()
  report = experiment.run(config, workdir)
  print(tables.summary(report))
  names = ["report.json", "report.md", "edits.png"]
  if any(e.get("ctf_consistency") for e in report["models"]):
    names.append("bounds.png")  # Only datasets with ctf-consistency rows.
  print(f"wrote {', '.join(names)} to {workdir} "
        f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
  cli.run(main, setup=host_memory.apply, config_overrides=True)
