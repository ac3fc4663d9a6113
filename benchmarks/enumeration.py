r"""Exact counterfactual query time versus chain length, against brute force.

    python -m benchmarks.enumeration --out=runs/benchmark_enumeration.json

A chain V0 -> V1 -> ... -> V{n-1}, each node with its own 3-valued exogenous
input (3^n exogenous states), answers P(V{n-1}_{V0=1}=1 | V{n-1}=0). The
twin-network variable elimination is timed (first call and the median of
repeats) and compared with a vectorised dense enumeration of all
exogenous states wherever 3^n is small enough to list.
"""


import json
import os
import platform
import statistics
import time

from absl import flags
import numpy as np

from ctfjax import causal as cc
from launch import cli

flags.DEFINE_string("out", "runs/benchmark_enumeration.json", "JSON output.")
flags.DEFINE_list("lengths", ["2", "4", "6", "8", "10", "12", "13", "20", "30",
                              "60", "100"], "Chain lengths to time.")
flags.DEFINE_integer("max_brute_force_states", 3**13,
                     "Largest 3^n for which the dense enumeration runs.")
flags.DEFINE_integer("repeats", 5, "Timed repeats per length.")
FLAGS = flags.FLAGS


def chain(n: int, seed: int = 0) -> cc.DiscreteSCM:
  rng = np.random.default_rng(seed)
  exo = {f"u{i}": rng.dirichlet(np.ones(3)).tolist() for i in range(n)}
  endo = {}
  for i in range(n):
    # Noisy copy: keeps the counterfactual non-trivial along the chain.
    table = np.array([[0, 0, 1], [1, 1, 0]]) if i else np.array([0, 1, 1])
    endo[f"V{i}"] = {"domain": 2,
                     "inputs": ([f"V{i-1}"] if i else []) + [f"u{i}"],
                     "table": table.tolist()}
  return cc.DiscreteSCM.from_dict({"exogenous": exo, "endogenous": endo})


def timed(fn, repeats):
  start = time.perf_counter()
  value = fn()
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return value, first, statistics.median(times)


def main():
  rows = []
  for n in map(int, FLAGS.lengths):
    scm = chain(n)
    q = cc.Query.parse(f"P(V{n-1}_{{V0=1}}=1 | V{n-1}=0)")
    value, first, median = timed(lambda: cc.query(scm, q),  # noqa: B023
                                 FLAGS.repeats)
    row = {"length": n, "exogenous_states": 3**n, "value": value,
           "exact_first_s": first, "exact_median_s": median}
    if 3**n <= FLAGS.max_brute_force_states:
      brute, _, bmedian = timed(
          lambda: cc.inference.query_by_enumeration(scm, q),  # noqa: B023
          max(1, FLAGS.repeats // 2))
      row.update(brute_force_value=brute, brute_force_median_s=bmedian,
                 abs_difference=abs(brute - value))
    rows.append(row)
    print(json.dumps(row))
  out = {"benchmark": "enumeration_chain", "machine": platform.machine(),
         "processor": platform.processor(), "cpus": os.cpu_count(),
         "rows": rows}
  cli.write_json(FLAGS.out, out)


if __name__ == "__main__":
  cli.run(main)
