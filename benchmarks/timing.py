"""Timing helpers shared by the speed benchmarks (`benchmarks.*`)."""

import platform
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


def gflop(jitted, *args) -> float | None:
  """Billions of floating-point operations in one call of a jitted function,
  as XLA counts them on its lowered HLO (no compilation; a multiply-add is
  two), or None where the backend gives no count before compiling (XLA's
  GPU backend). XLA counts a loop's body once, whatever its trip count:
  count a `lax.scan` sampler by one pass of its network times its steps."""
  cost = jitted.lower(*args).cost_analysis()
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"]) / 1e9


def matmul_gflop_per_s(n: int = 2048, repeats: int = 5) -> float:
  """The machine's float32 rate on one n x n matrix product through XLA:
  about the most a convolution-bound step can hope for on it."""
  a = jax.random.normal(jax.random.key(0), (n, n), jax.numpy.float32)
  product = jax.jit(lambda x, y: x @ y)
  _, seconds = timed(lambda: product(a, a), repeats)
  return 2 * n ** 3 / 1e9 / seconds


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


def cpu_model() -> str:
  """The CPU's model name, as /proc/cpuinfo (or `platform`) gives it."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()
