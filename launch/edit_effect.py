"""How single-feature edits read back: the effect sweep's counting.

Flag-free helpers of `launch.benchmark_diffusion` (importable by tests and
other launchers without defining its flags).
"""

import numpy as np

from ctfjax.causal import kinds


def another(kind, values) -> tuple[np.ndarray, str]:
  """Another value of a feature per image, and how it was chosen (for
  titles): a categorical's next class, a continuous feature one data
  spread (its kind's `scale`) higher."""
  values = np.asarray(values)
  if isinstance(kind, kinds.Categorical):
    return (values + 1) % kind.size, "= next"
  return (values + kind.scale).astype(values.dtype), f"+ {kind.scale:.3g}"


def agreement(model, read, values) -> dict[str, dict[str, float]]:
  """How readings match values, per feature: {"agree": {feature: fraction
  equal}} over the categorical features and {"agree_mae": {feature: mean
  |read - value|}} over the others."""
  out = {}
  for j in model.order:
    r, v = np.asarray(read[j]), np.asarray(values[j])
    if isinstance(model.features[j], kinds.Categorical):
      out.setdefault("agree", {})[j] = float(np.mean(r == v))
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
