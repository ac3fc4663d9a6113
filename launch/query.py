r"""Exact queries on a discrete SCM: a JSON spec, a built-in model or a NumPyro
model file (docs/causal.md).

    python -m launch.query --scm=spec.json --query="P(Y_{X=1}=1 | X=0, Y=0)"
    python -m launch.query --scm=spec.json --distribution="I_{X=1}" \
        --given="I=5"
    python -m launch.query --example=four_pixel --distribution="I_{X=1}" \
        --given="I=5"
    python -m launch.query --model=examples/four_pixel_numpyro.py:model \
        --domains=I=16 --query="P(I_{X=1}=14 | I=5)" --backend=numpyro

Prints the exact value (or one `value<TAB>probability` line per value).
`--backend=numpyro` answers with NumPyro's own enumeration of the twin
network instead of the default contraction (the same value, slower).
"""

import json

from absl import flags

from launch import cli
from launch import model_source

flags.DEFINE_string("query", None, "A query, e.g. 'P(Y_{X=1}=1 | X=0)'.")
flags.DEFINE_string("distribution", None,
                    "Variables whose exact distribution to print, "
                    "e.g. 'I_{X=1}'.")
flags.DEFINE_string("given", "", "Evidence for --distribution, e.g. 'I=5'.")
flags.DEFINE_bool("json", False, "Print JSON instead of text.")
FLAGS = flags.FLAGS


def main():
  from ctfjax import causal as cc  # pylint: disable=import-outside-toplevel
  scm = model_source.load()
  if bool(FLAGS.query) == bool(FLAGS.distribution):
    cli.fail("give exactly one of --query or --distribution")
  if FLAGS.query:
    value = cc.query(scm, FLAGS.query, backend=FLAGS.backend)
    print(json.dumps({"query": FLAGS.query, "value": value})
          if FLAGS.json else f"{value:.12g}")
    return
  dist = cc.distribution(scm, FLAGS.distribution, given=FLAGS.given,
                         backend=FLAGS.backend)
  if FLAGS.json:
    print(json.dumps({"distribution": FLAGS.distribution,
                      "given": FLAGS.given,
                      "probs": [[k, p] for k, p in dist.items()]}))
  else:
    for k, p in dist.items():
      print(f"{k}\t{p:.12g}")


if __name__ == "__main__":
  cli.run(main)
