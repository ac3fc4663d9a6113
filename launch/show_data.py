"""Writes a PNG grid of dataset samples grouped by factor values.

  python -m launch.show_data --dataset=colored_mnist_bars/backdoor \
      --out=grid.png [--num=64] [--split=train] [--seed=0] [--source=DIR]

Bad input (unknown dataset, missing source, bad flag) prints one line on
stderr and exits with status 2 (`launch.cli`).
"""

from absl import flags

from launch import cli

flags.DEFINE_string("dataset", None, "Dataset name, e.g. "
                    "colored_mnist_bars/backdoor.")
flags.DEFINE_string("out", None, "Output PNG path.")
flags.DEFINE_integer("num", 64, "Number of random samples shown.",
                     lower_bound=1)
flags.DEFINE_string("split", "train", "Dataset split.")
flags.DEFINE_integer("seed", 0, "Generation and sample-choice seed.")
flags.DEFINE_string("source", None, "MNIST IDX directory (default: the "
                    "bundled digits) or the CelebA download directory.")
flags.DEFINE_string("data_dir", None, "Cache directory (default "
                    "$CTFJAX_DATA_DIR or ~/.cache/ctfjax).")
FLAGS = flags.FLAGS


def main():
  # The library loads JAX; imported here so that --help answers at once.
  # pylint: disable=import-outside-toplevel
  from ctfjax import data
  from ctfjax.data import show
  # pylint: enable=import-outside-toplevel
  if not FLAGS.dataset:
    cli.fail(f"--dataset is required; one of {', '.join(data.NAMES)}")
  out = cli.require("out")
  try:  # DataError, a UserError, is cli.run's one-line error.
    path = show.write_grid(FLAGS.dataset, out, num=FLAGS.num,
                           split=FLAGS.split, seed=FLAGS.seed,
                           source=FLAGS.source, data_dir=FLAGS.data_dir)
  except OSError as e:
    cli.fail(str(e))
  print(path)


if __name__ == "__main__":
  cli.run(main)
