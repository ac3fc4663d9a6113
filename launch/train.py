r"""Trains (or resumes) a model from a config file.

    python -m launch.train --config=configs/ancm_vae_colored_mnist_backdoor.py \
        --workdir=runs/ancm_backdoor [--config.train.steps=500]

Re-running with the same workdir resumes from its newest checkpoint; a run
that reached train.steps only reports. A misspelt --config.KEY is an error.

Data parallel over several processes (hosts): every process runs the same
command with the coordinator (process 0's host and a free port), the process
count and its own id, as flags or from the environment
($JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID):

    python -m launch.train --config=... --workdir=shared/run \
        --coordinator=node001:12345 --num_processes=2 --process_id=0
"""

from absl import flags

from launch import cli
from launch import host_memory

flags.DEFINE_string("config", None, "A configs/*.py file; override fields "
                    "with --config.SECTION.KEY=VALUE.")
flags.DEFINE_string("workdir", None, "Folder for checkpoints and metrics; "
                    "the same shared folder for every process.")
flags.DEFINE_string("coordinator", None, "host:port of process 0 in a "
                    "multi-process run; default $JAX_COORDINATOR_ADDRESS; "
                    "absent: a single process.")
flags.DEFINE_string("num_processes", None, "Processes in the run; default "
                    "$JAX_NUM_PROCESSES.")
flags.DEFINE_string("process_id", None, "This process's id, 0 .. "
                    "num_processes - 1; default $JAX_PROCESS_ID.")
FLAGS = flags.FLAGS


def main():
  # The library loads JAX; imported here so that --help answers at once.
  # pylint: disable=import-outside-toplevel
  import jax
  from ctfjax import train
  from ctfjax.ancm import fit
  from ctfjax.train import distributed
  # pylint: enable=import-outside-toplevel
  workdir = cli.require("workdir")
  config_path = cli.require("config")
  # First: a process can only join a job before JAX starts its backends.
  distributed.initialize(distributed.processes_from(
      FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id))
  config = train.load_config(config_path, cli.overrides())
  _, result = fit.train_and_evaluate(config, workdir)
  if jax.process_index() == 0:  # One report per run, not per process.
    print(f"trained {result.steps} steps in {result.seconds:.1f} s; "
          f"last eval: " + ", ".join(f"{k}={v:.4g}" for k, v in
                                     sorted(result.eval_metrics.items())))


if __name__ == "__main__":
  cli.run(main, setup=host_memory.apply, config_overrides=True)
