r"""Optimal bounds of a counterfactual query from a diagram and P(V).

    python -m launch.bounds --scm=spec.json --query="P(Y_{X=1}=1 | X=0, Y=0)"
    python -m launch.bounds --graph="X -> Y" --table=table.json --query=...
    python -m launch.bounds --example=witness_b1 \
        --query="P(Y_{X=1}=1 | X=0, Y=0)"

With --scm or --example the diagram and P(V) are those the model induces (and
the model's own value of the query is printed beside the bounds). A table file
is the JSON {"variables": [...], "probs": nested list, one axis per variable}.
Prints `lo hi` (or JSON with --json).
"""

import json

from absl import flags

from ctfjax import causal as cc
from ctfjax.causal import examples
from launch import cli

flags.DEFINE_string("scm", None, "Path of a DiscreteSCM JSON spec.")
flags.DEFINE_enum("example", None, list(examples.BY_NAME),
                  "A built-in model instead of --scm.")
flags.DEFINE_string("graph", None, "Diagram text, e.g. 'D <-> C; D -> B'.")
flags.DEFINE_string("table", None, "Path of a JSON table of P(V).")
flags.DEFINE_string("query", None, "A query, e.g. 'P(Y_{X=1}=1 | X=0, Y=0)'.")
flags.DEFINE_bool("json", False, "Print JSON instead of text.")
FLAGS = flags.FLAGS


def load_table(path: str) -> cc.Table:
  try:
    with open(path) as f:
      spec = json.load(f)
  except json.JSONDecodeError as e:
    raise cc.SCMError(
        f"table file {path!r} is not valid JSON: {e.msg}") from None
  if not isinstance(spec, dict) or set(spec) != {"variables", "probs"}:
    raise cc.SCMError(f"table file {path!r} must hold exactly 'variables' "
                      "and 'probs'")
  return cc.Table(tuple(spec["variables"]), spec["probs"])


def main():
  query = cli.require("query")
  sources = [bool(FLAGS.scm), bool(FLAGS.example),
             bool(FLAGS.graph or FLAGS.table)]
  if sum(sources) != 1:
    cli.fail("give one of --scm, --example, or --graph with --table")
  truth = None
  if FLAGS.graph or FLAGS.table:
    graph = cc.Graph.parse(cli.require("graph"))
    table = load_table(cli.require("table"))
  else:
    scm = (examples.BY_NAME[FLAGS.example]() if FLAGS.example
           else cc.DiscreteSCM.from_json(FLAGS.scm))
    graph, table = scm.graph, scm.observational()
    truth = cc.query(scm, query)
  lo, hi = cc.bounds(graph, table, query)
  if FLAGS.json:
    print(json.dumps({"query": query, "graph": str(graph), "bounds": [lo, hi],
                      "model_value": truth}))
  else:
    print(f"{lo:.12g} {hi:.12g}" +
          ("" if truth is None else f"\t(model value {truth:.12g})"))


if __name__ == "__main__":
  cli.run(main)
