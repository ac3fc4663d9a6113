r"""Latency of exact queries on many small random discrete SCMs.

    python -m benchmarks.small_queries \
        --out=benchmarks/results/small_queries/small_queries.json

Draws `--models` random SCMs (fixed seed) of 2 to 5 endogenous variables with
private and shared (confounding) exogenous inputs, and asks each about four
random queries: observational, interventional, counterfactual given factual
evidence, and a joint counterfactual with counterfactual evidence. Every
query is timed, the first one on each model included (it pays for whatever
a new model costs), in one process. With `--check` each answer is compared
with a dense enumeration of every exogenous state.

Then the 4-pixel query P(I_{X=1}=14 | I=5) is timed with each backend of
`cc.query` (`four_pixel` in the JSON): the first call, which for the
numpyro backend traces and compiles the NumPyro model, and the median of
`--repeats` more (the numpyro backend then reuses its compiled program).
"""

import importlib
import json
import os
import platform
import statistics
import time

from absl import flags
import numpy as np

from ctfjax import causal as cc
from ctfjax.causal import examples
from launch import cli

FLAGS = flags.FLAGS

FOUR_PIXEL_QUERY = "P(I_{X=1}=14 | I=5)"


def random_scm(rng: np.random.Generator) -> cc.DiscreteSCM:
  """2-5 variables, random parents, one private and some shared noises."""
  n = int(rng.integers(2, 6))
  names = [f"V{i}" for i in range(n)]
  exo = {f"u{i}": rng.dirichlet(np.ones(rng.integers(2, 4))).tolist()
         for i in range(n)}
  exo["c0"] = rng.dirichlet(np.ones(2)).tolist()
  exo["c1"] = rng.dirichlet(np.ones(3)).tolist()
  domains = {v: int(rng.integers(2, 4)) for v in names}
  sizes = {**{k: len(p) for k, p in exo.items()}, **domains}
  endo = {}
  for i, v in enumerate(names):
    parents = [p for p in names[:i] if rng.random() < 0.6]
    shared = [c for c in ("c0", "c1") if rng.random() < 0.4]
    inputs = parents + [f"u{i}"] + shared
    table = rng.integers(0, domains[v], size=[sizes[k] for k in inputs])
    endo[v] = {"domain": domains[v], "inputs": inputs,
               "table": table.tolist()}
  used = {i for m in endo.values() for i in m["inputs"]}
  exo = {k: p for k, p in exo.items() if k in used}
  return cc.DiscreteSCM.from_dict({"exogenous": exo, "endogenous": endo})


def random_queries(rng: np.random.Generator,
                   scm: cc.DiscreteSCM) -> list[str]:
  """Four queries of the four kinds, on random variables and values."""
  dom = scm.domains
  names = list(dom)
  pick = lambda v: int(rng.integers(dom[v]))
  x, y, z = (str(v) for v in rng.choice(names, size=3))
  return [
      f"P({y}={pick(y)})",
      f"P({y}_{{{x}={pick(x)}}}={pick(y)})",
      f"P({y}_{{{x}={pick(x)}}}={pick(y)} | {x}={pick(x)}, {y}={pick(y)})",
      (f"P({y}_{{{x}={pick(x)}}}={pick(y)}, {z}_{{{y}={pick(y)}}}={pick(z)}"
       f" | {z}={pick(z)})"),
  ]


def time_four_pixel(repeats: int) -> dict:
  """{backend: value, first and median milliseconds} of the 4-pixel query."""
  # Loaded before the clock starts: the numpyro backend imports funsor.
  importlib.import_module("ctfjax.causal.numpyro_backend")
  scm = examples.four_pixel_ascm()
  out = {}
  for backend in cc.inference.BACKENDS:
    times = []
    for _ in range(repeats + 1):
      start = time.perf_counter()
      value = cc.query(scm, FOUR_PIXEL_QUERY, backend=backend)
      times.append(time.perf_counter() - start)
    out[backend] = {"value": value, "first_ms": 1e3 * times[0],
                    "median_ms": 1e3 * statistics.median(times[1:]),
                    "repeats": repeats}
  return out


def main():
  rng = np.random.default_rng(FLAGS.seed)
  rows = []
  for m in range(FLAGS.models):
    scm = random_scm(rng)
    for k, text in enumerate(random_queries(rng, scm)):
      start = time.perf_counter()
      try:
        value = cc.query(scm, text)
      except cc.ZeroProbabilityError:
        value = None
      seconds = time.perf_counter() - start
      row = {"model": m, "variables": len(scm.endogenous), "query": text,
             "first": k == 0, "seconds": seconds, "value": value}
      if FLAGS.check:
        brute = cc.inference.query_by_enumeration(scm, text)
        row["dense_value"] = brute
        row["agrees"] = (value is None) == (brute is None) and (
            value is None or abs(value - brute) <= 1e-12)
      rows.append(row)
  times = [r["seconds"] for r in rows]
  first = [r["seconds"] for r in rows if r["first"]]
  summary = {
      "queries": len(rows), "mean_ms": 1e3 * statistics.mean(times),
      "median_ms": 1e3 * statistics.median(times),
      "first_query_mean_ms": 1e3 * statistics.mean(first),
      "first_query_of_process_ms": 1e3 * times[0],
      "mean_excluding_process_first_ms": 1e3 * statistics.mean(times[1:]),
      "max_ms": 1e3 * max(times)}
  if FLAGS.check:
    summary["all_agree_with_dense"] = all(r["agrees"] for r in rows)
  four_pixel = {"query": FOUR_PIXEL_QUERY,
                "backends": time_four_pixel(FLAGS.repeats)}
  print(json.dumps(summary))
  print(json.dumps(four_pixel))
  out = {"benchmark": "small_queries", "machine": platform.machine(),
         "processor": platform.processor(), "cpus": os.cpu_count(),
         "load_average": os.getloadavg(), "summary": summary,
         "four_pixel": four_pixel, "rows": rows}
  cli.write_json(FLAGS.out, out)


def define_flags():
  """The command's flags, defined only when it runs as a command, so that
  tests may import its model generators beside other benchmarks' flags."""
  flags.DEFINE_string(
      "out", "benchmarks/results/small_queries/small_queries.json",
      "JSON output.")
  flags.DEFINE_integer("models", 200, "Number of random models.")
  flags.DEFINE_integer("seed", 0, "Seed of the model and query draws.")
  flags.DEFINE_bool("check", True,
                    "Compare each answer with dense enumeration.")
  flags.DEFINE_integer("repeats", 20, "Timed repeats of the 4-pixel query per "
                       "backend, after its first call.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
