r"""NCM fit quality and min/max bounds on the Colored-MNIST-bars feature models.

    python -m benchmarks.ncm --out=runs/benchmark_ncm.json

For each diagram (backdoor G^B: D <-> C, D -> B, C -> B; front-door G^F:
D -> C -> B, D <-> B) with the default probabilities of docs/datasets.md
(the exact `DiscreteSCM` of `ctfjax.data`), a G-constrained NCM is fitted to
the exact P(V) and two more are trained from it with loss -loglik -/+ lambda Q
on the bar query Q = P(B_{C=1}=1 | C=0, B=0). Reported per graph: the total
variation distance of every model to P(V), the min/max bounds against the
exact LP bounds of `cc.bounds`, the true value, and wall-clock times. Targets:
TV < 0.02 and bounds within 0.05 of the exact ones.
"""

import json
import platform
import time

import jax
from absl import flags

from ctfjax import causal as cc
from ctfjax import ncm
from ctfjax.data import colored_mnist_bars
from launch import cli
from launch import host_memory

flags.DEFINE_string("out", "runs/benchmark_ncm.json", "JSON output.")
flags.DEFINE_list("graphs", ["backdoor", "frontdoor"], "Diagrams to run.")
flags.DEFINE_string("query", "P(B_{C=1}=1 | C=0, B=0)", "Query to bound.")
flags.DEFINE_integer("seed", 0, "Root seed.")
flags.DEFINE_integer("latent_dim", 4, "Width d of every latent.")
flags.DEFINE_list("hidden", ["64", "64"], "Mechanism MLP hidden widths.")
flags.DEFINE_integer("fit_steps", 2000, "Maximum-likelihood steps.")
flags.DEFINE_integer("bound_steps", 3000, "Min/max steps per direction.")
flags.DEFINE_float("learning_rate", 3e-3, "Initial Adam step size.")
flags.DEFINE_float("lambda_start", 1.0, "Query weight at the first step.")
flags.DEFINE_float("lambda_end", 0.01, "Query weight at the last step.")
flags.DEFINE_integer("latent_samples", 256, "Latent draws per likelihood.")
flags.DEFINE_integer("particles", 2048, "Particles per query estimate.")
flags.DEFINE_integer("eval_samples", 400_000,
                     "Latent draws / particles for the reported TV and Q.")
FLAGS = flags.FLAGS

TV_TARGET = 0.02
BOUNDS_TARGET = 0.05


def run_graph(name: str, key) -> dict:
  scm = colored_mnist_bars.feature_scm(name)
  table = scm.observational()
  exact = cc.bounds(scm.graph, table, FLAGS.query)
  model, params = ncm.NCM.create(
      scm.graph, table.domains, jax.random.fold_in(key, 0),
      latent_dim=FLAGS.latent_dim, hidden=[int(h) for h in FLAGS.hidden])
  start = time.time()
  params, _ = ncm.fit(model, params, table, jax.random.fold_in(key, 1),
                      steps=FLAGS.fit_steps,
                      learning_rate=FLAGS.learning_rate,
                      num_latent_samples=FLAGS.latent_samples)
  fit_seconds = time.time() - start
  k_eval = jax.random.fold_in(key, 2)
  tv_fit = ncm.total_variation(model, params, table, k_eval,
                               FLAGS.eval_samples)
  q_fit = model.estimate_query(params, FLAGS.query, k_eval,
                               FLAGS.eval_samples)
  r = ncm.fit_bounds(
      model, params, table, FLAGS.query, jax.random.fold_in(key, 3),
      steps=FLAGS.bound_steps, learning_rate=FLAGS.learning_rate,
      lambda_start=FLAGS.lambda_start, lambda_end=FLAGS.lambda_end,
      num_latent_samples=FLAGS.latent_samples,
      num_particles=FLAGS.particles, eval_particles=FLAGS.eval_samples,
      eval_latent_samples=FLAGS.eval_samples)
  tv = {"fit": tv_fit, "lower": r.tv_lower, "upper": r.tv_upper}
  err = max(abs(r.lower - exact[0]), abs(r.upper - exact[1]))
  return {
      "graph": str(scm.graph), "dataset": f"colored_mnist_bars/{name}",
      "query": FLAGS.query,
      "truth": cc.query(scm, FLAGS.query),
      "exact_bounds": list(exact),
      "ncm_bounds": [r.lower, r.upper],
      "ncm_fit_query": q_fit,
      "bounds_max_abs_error": err,
      "tv": tv,
      "final_kl": {"lower": float(r.history_lower["kl"][-100:].mean()),
                   "upper": float(r.history_upper["kl"][-100:].mean())},
      "seconds": {"fit": fit_seconds, "bounds": r.seconds},
      "pass": {"tv": max(tv.values()) < TV_TARGET,
               "bounds": err < BOUNDS_TARGET},
  }


def main():
  key = jax.random.key(FLAGS.seed)
  rows = []
  for i, name in enumerate(FLAGS.graphs):
    row = run_graph(name, jax.random.fold_in(key, i))
    print(json.dumps(row))
    rows.append(row)
  out = {
      "benchmark": "ncm", "rows": rows,
      "config": {k: FLAGS[k].value for k in (
          "query", "seed", "latent_dim", "hidden", "fit_steps", "bound_steps",
          "learning_rate", "lambda_start", "lambda_end", "latent_samples",
          "particles", "eval_samples")},
      "machine": {"platform": platform.platform(),
                  "devices": [str(d) for d in jax.devices()]},
  }
  cli.write_json(FLAGS.out, out)


if __name__ == "__main__":
  cli.run(main, setup=host_memory.apply)
