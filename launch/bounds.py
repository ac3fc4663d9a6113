r"""Optimal bounds of a counterfactual query from a diagram and P(V).

    python -m launch.bounds --scm=spec.json --query="P(Y_{X=1}=1 | X=0, Y=0)"
    python -m launch.bounds --graph="X -> Y" --table=table.json --query=...
    python -m launch.bounds --example=witness_b1 \
        --query="P(Y_{X=1}=1 | X=0, Y=0)"
    python -m launch.bounds --model=examples/four_pixel_numpyro.py:model \
        --domains=I=16 --query="P(I_{X=1}=14 | I=5)" --backend=numpyro

With --scm, --example or --model (a NumPyro model file, path.py:fn) the
diagram and P(V) are those the model induces, and the model's own value of
the query is printed beside the bounds; --backend picks the engine of that
value (einsum or numpyro; P(V) and the bounds do not depend on it). A table file
is the JSON {"variables": [...], "probs": nested list, one axis per variable}.
Prints `lo hi` (or JSON with --json). Queries the linear program cannot
solve go to SCIP (`cc.bounds_certificate`); for those the method, SCIP's
proven gap and any note (e.g. a time limit reached: outer bounds) follow.
"""

import json

from absl import flags

from launch import cli
from launch import model_source

flags.DEFINE_string("graph", None, "Diagram text, e.g. 'D <-> C; D -> B'.")
flags.DEFINE_string("table", None, "Path of a JSON table of P(V).")
flags.DEFINE_string("query", None, "A query, e.g. 'P(Y_{X=1}=1 | X=0, Y=0)'.")
flags.DEFINE_float("time_limit", 60.0,
                   "Seconds SCIP may spend on each end of a polynomial "
                   "program; past it the bounds are valid outer bounds.")
flags.DEFINE_bool("json", False, "Print JSON instead of text.")
FLAGS = flags.FLAGS


def load_table(path: str):
  """P(V) from a table file."""
  from ctfjax import causal as cc  # pylint: disable=import-outside-toplevel
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
  from ctfjax import causal as cc  # pylint: disable=import-outside-toplevel
  query = cli.require("query")
  truth = None
  if FLAGS.graph or FLAGS.table:
    if model_source.given():
      cli.fail("give exactly one of --scm, --example, or --graph with "
               "--table (or --model)")
    if FLAGS["backend"].present:
      cli.fail("--backend needs a model (--scm, --example or --model): a "
               "graph and a table have no exact value to compute")
    if FLAGS.domains:
      cli.fail("--domains applies to --model only")
    graph = cc.Graph.parse(cli.require("graph"))
    table = load_table(cli.require("table"))
  else:
    scm = model_source.load("--scm, --example, or --graph with --table")
    graph, table = scm.graph, scm.observational()
    truth = cc.query(scm, query, backend=FLAGS.backend)
  b = cc.bounds_certificate(graph, table, query, time_limit=FLAGS.time_limit)
  if FLAGS.json:
    print(json.dumps({"query": query, "graph": str(graph),
                      "bounds": [b.lo, b.hi], "method": b.method,
                      "gap": b.gap, "exact": b.exact, "note": b.note,
                      "model_value": truth}))
    return
  extra = []
  if b.method == "polynomial":
    extra.append(f"polynomial (SCIP), gap {b.gap:.3g}")
  if b.note:
    extra.append(b.note)
  if truth is not None:
    extra.append(f"model value {truth:.12g}")
  print(f"{b.lo:.12g} {b.hi:.12g}" + "".join(f"\t({e})" for e in extra))

if __name__ == "__main__":
  cli.run(main)
