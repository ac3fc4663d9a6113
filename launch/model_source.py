"""The exact model a causal command reads: --scm, --example or --model.

Shared by launch.query and launch.bounds: the flags, their one-line errors
and the loading (each imported at call time, so that --help answers before
JAX loads).
"""

from absl import flags

from launch import cli

flags.DEFINE_string("scm", None, "Path of a DiscreteSCM JSON spec.")
flags.DEFINE_string("example", None, "A built-in model instead of --scm: "
                    "four_pixel, witness_a1, ... (docs/causal.md).")
flags.DEFINE_string("model", None,
                    "A NumPyro model instead of --scm: path/to/model.py:fn "
                    "(read with DiscreteSCM.from_numpyro).")
flags.DEFINE_list("domains", [], "With --model: domain sizes of endogenous "
                  "sites whose values do not reach them, e.g. I=16.")
flags.DEFINE_string("backend", "einsum", "Exact engine of the model's value: "
                    "einsum (the default contraction) or numpyro (NumPyro's "
                    "enumeration).")
FLAGS = flags.FLAGS


def given() -> int:
  """How many of --scm, --example and --model the command line gives."""
  return sum(map(bool, (FLAGS.scm, FLAGS.example, FLAGS.model)))


def load(alternatives: str = "--scm=spec.json or --example=NAME"):
  """The model the flags name; `alternatives` words the error for none or
  several (the command's other ways in included)."""
  # pylint: disable=import-outside-toplevel
  from ctfjax import causal as cc
  from ctfjax.causal import examples
  from ctfjax.causal import numpyro_file
  # pylint: enable=import-outside-toplevel
  if given() != 1:
    cli.fail(f"give exactly one of {alternatives} (or --model=model.py:fn)")
  if FLAGS.domains and not FLAGS.model:
    cli.fail("--domains applies to --model only")
  if FLAGS.example:
    return examples.by_name(FLAGS.example)
  if FLAGS.model:
    return numpyro_file.load_model(FLAGS.model, FLAGS.domains)
  return cc.DiscreteSCM.from_json(FLAGS.scm)
