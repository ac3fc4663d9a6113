r"""Benchmark: models x datasets x metrics in one table (markdown and CSV).

    python -m launch.benchmark --config=configs/benchmark_colored_mnist.py \
        [--config.benchmark.out=runs/benchmark] [--config.train.steps=...]

Runs the main job for every run of the grid (config.benchmark.datasets
and workdirs, and optionally the run's own config file, overrides of it
and its models: configs/benchmark_colored_mnist.py adds the HVAE-ANCM, the
two-stage ANCM and the diffusion NCM), training what is missing and reusing
finished runs and current reports, then writes benchmark.md,
benchmark.csv and benchmark.json to config.benchmark.out and prints the
markdown.

    python -m launch.benchmark --config=configs/benchmark_morpho_mnist.py

A config with `benchmark.rows` instead trains one run whose models are the
rows and prints them beside a paper's published numbers (Melistas et
al.'s MorphoMNIST Tables 1, 3 and 5, or their CelebA Tables 2, 4 and 5 with
configs/benchmark_celeba.py; `ctfjax.experiment.published`).
"""

from absl import flags

from launch import cli
from launch import host_memory

flags.DEFINE_string("config", None, "A benchmark config, e.g. "
                    "configs/benchmark_colored_mnist.py; override fields with "
                    "--config.SECTION.KEY=VALUE.")
FLAGS = flags.FLAGS


def main():
  # The library loads JAX; imported here so that --help answers at once.
  from ctfjax import experiment  # pylint: disable=import-outside-toplevel
  from ctfjax import train  # pylint: disable=import-outside-toplevel
  config = train.load_config(cli.require("config"), cli.overrides())
  result = experiment.benchmark(config)
  print(open(result["paths"]["benchmark.md"]).read())
  print("wrote " + ", ".join(result["paths"].values()))


if __name__ == "__main__":
  cli.run(main, setup=host_memory.apply, config_overrides=True)
