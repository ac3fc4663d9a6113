"""Writes a PNG grid of dataset samples grouped by factor values.

  python -m launch.show_data --dataset=colored_mnist_bars/backdoor \
      --out=grid.png [--num=64] [--split=train] [--seed=0] [--source=DIR]

Bad input (unknown dataset, missing source, bad flag) prints one line on
stderr and exits with status 2.
"""

import sys

from absl import app
from absl import flags

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


def _fail(message: str) -> int:
  print(f"show_data: error: {message}", file=sys.stderr)
  return 2


def _parse_flags(argv):
  # absl's default prints usage and exits 1; usage errors here exit 2.
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(_fail(str(e)))


def main(argv):
  # Imported here so that --help and flag errors do not pay for jax.
  from ctfjax import data  # pylint: disable=g-import-not-at-top
  from ctfjax.data import show  # pylint: disable=g-import-not-at-top

  if len(argv) > 1:
    return _fail(f"unexpected arguments {' '.join(argv[1:])}")
  if not FLAGS.dataset:
    return _fail(f"--dataset is required; one of {', '.join(data.NAMES)}")
  if not FLAGS.out:
    return _fail("--out=PATH.png is required")
  try:
    path = show.write_grid(FLAGS.dataset, FLAGS.out, num=FLAGS.num,
                           split=FLAGS.split, seed=FLAGS.seed,
                           source=FLAGS.source, data_dir=FLAGS.data_dir)
  except (data.DataError, OSError) as e:
    return _fail(str(e))
  print(path)
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
