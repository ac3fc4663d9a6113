"""How single-feature edits read back: the effect sweep's counting.

Flag-free helpers of `benchmarks.diffusion` and `benchmarks.fixed_edits`
(importable by tests and other launchers without defining their flags).
"""

import math

import numpy as np

from ctfjax.causal import kinds

# The standard normal's 97.5% quantile: two-sided 95% intervals.
Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> list[float]:
  """The Wilson score interval of a binomial fraction: the p0 whose score
  test |k/n - p0| / sqrt(p0 (1 - p0) / n) <= z accepts (95% for the
  default z). Unlike the normal approximation it stays inside [0, 1] and
  is not empty at 0 or n successes."""
  if n <= 0:
    raise ValueError(f"wilson: n must be positive, got {n}")
  p = successes / n
  shrink = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / shrink
  half = z / shrink * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
  # At 0 (n) successes the lower (upper) end is 0 (1) exactly; rounding
  # would leave it a hair off.
  return [0.0 if successes == 0 else max(0.0, centre - half),
          1.0 if successes == n else min(1.0, centre + half)]


def another(kind, values) -> tuple[np.ndarray, str]:
  """Another value of a feature per image, and how it was chosen (for
  titles): a categorical's next class, a continuous feature one data
  spread (its kind's `scale`) higher."""
  values = np.asarray(values)
  if isinstance(kind, kinds.Categorical):
    return (values + 1) % kind.size, "= next"
  return (values + kind.scale).astype(values.dtype), f"+ {kind.scale:.3g}"


def agreement(model, read, values) -> dict[str, dict]:
  """How readings match values, per feature: {"agree": {feature: fraction
  equal}, "agree_ci95": {feature: its 95% Wilson interval}} over the
  categorical features (the interval is over the edits' sampling only, not
  over trainings) and {"agree_mae": {feature: mean |read - value|}} over
  the others."""
  out = {}
  for j in model.order:
    r, v = np.asarray(read[j]), np.asarray(values[j])
    if isinstance(model.features[j], kinds.Categorical):
      equal = r == v
      out.setdefault("agree", {})[j] = float(np.mean(equal))
      out.setdefault("agree_ci95", {})[j] = wilson(int(equal.sum()),
                                                   equal.size)
    else:
      out.setdefault("agree_mae", {})[j] = float(np.mean(np.abs(
          r.astype(np.float64) - v)))
  return out


def by_others(model, k, read, drawn, labels) -> dict[str, dict]:
  """The "kept" readings of do(k)'s edits split by whether the edit also
  changed another feature (a descendant the NCM redrew):
  {"others_unchanged": {"n": edits, "kept": {...}}, "others_changed":
  {...}}, each without fractions when it has no edit."""
  changed = np.zeros(np.asarray(labels[k]).shape[0], bool)
  for j in model.order:
    if j != k:
      changed |= np.asarray(drawn[j]) != np.asarray(labels[j])
  out = {}
  for name, mask in (("others_unchanged", ~changed),
                     ("others_changed", changed)):
    part = {"n": int(mask.sum())}
    if mask.any():
      read_part, labels_part = ({j: np.asarray(d[j])[mask]
                                 for j in model.order}
                                for d in (read, labels))
      part.update({key.replace("agree", "kept"): v for key, v in
                   agreement(model, read_part, labels_part).items()})
    out[name] = part
  return out


def shares(read, do, drawn, features) -> dict:
  """"set": share of edits read with the intervened values; "follows":
  per other feature, share read with the value drawn for it."""
  n = len(next(iter(read.values())))
  set_ = np.ones(n, bool)
  for k, v in do.items():
    set_ &= np.asarray(read[k]) == v
  return {"set": float(set_.mean()),
          "follows": {k: float(np.mean(np.asarray(read[k]) ==
                                       np.asarray(drawn[k])))
                      for k in features if k not in do}}
