"""Timing helpers shared by the speed benchmarks (`launch.benchmark_*`)."""

import resource
import statistics
import time

import jax


def timed(fn, repeats):
  """(compile+first-call seconds, median steady seconds) of fn()."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return first, statistics.median(times)


def timed_train(step, state, batch, repeats):
  """`timed` for a donating train step: each call feeds the state back."""
  box = [state]

  def call():
    box[0], metrics = step(box[0], batch)
    return metrics

  return timed(call, repeats)


def peak_memory():
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return {"device_peak_bytes": int(stats["peak_bytes_in_use"])}
  return {"process_peak_rss_bytes":
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def abduct_predict(module):
  """A jitted counterfactual edit of an image mechanism wrapped in a
  `train.PureModule`: `(params, x, pa, pa_new) -> images`, abduction under
  the factual parents, prediction under the new ones."""

  @jax.jit
  def edit(params, x, pa, pa_new):
    m = module.merge(params)
    key = jax.random.key(0)
    return m.predict(pa_new, m.abduct(x, pa, key), key)

  return edit
