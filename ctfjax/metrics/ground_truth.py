"""Ground-truth error: generated counterfactuals vs. the true ones.

Only synthetic data has it: its generator is an explicit ASCM that stores the
exogenous values of every sample, so the true counterfactual image and
features of any do() can be computed (docs/datasets.md). No peer reports
it. Note the true image is one member of the set of ctf-consistent answers
(unlabelled content is not identifiable), so a large pixel error with
matching features is not by itself a failure.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ctfjax.metrics.distances import pixel_l1
from ctfjax.metrics.errors import MetricError, check_lengths


def ground_truth_error(generated, true, *,
                       generated_features: Mapping[str, object] | None = None,
                       true_features: Mapping[str, object] | None = None,
                       pixel_range: tuple[float, float] = (0.0, 255.0),
                       clip: bool = True) -> dict:
  """Distance of generated counterfactual images to the true ones.

  Args:
    generated: [N, ...] generated counterfactual images on `pixel_range`.
    true: [N, ...] true counterfactual images from the known generator, on
      the same range.
    generated_features: optional {var: [N]} features read from `generated`.
    true_features: {var: [N]} the true counterfactual features; needed with
      `generated_features`, for the variables it names.
    pixel_range: (lo, hi) of the pixel values; see `pixel_l1`.
    clip: see `pixel_l1`.

  Returns:
    {"l1": mean per-image L1 on the 0-255 scale, "n": N}, plus, with
    features, "feature_match" (fraction of samples whose every feature
    matches) and "feature_match_per_var" ({var: fraction}).
  """
  l1 = np.asarray(pixel_l1(generated, true, pixel_range, clip), np.float64)
  out = {"l1": float(l1.mean()), "n": int(l1.shape[0])}
  if generated_features is None:
    return out
  if true_features is None:
    raise MetricError("generated_features need true_features to compare with")
  missing = sorted(set(generated_features) - set(true_features))
  if missing:
    raise MetricError(f"no true features for {', '.join(missing)}")
  check_lengths({"images": l1,
                 **{f"generated_features[{k!r}]": v
                    for k, v in generated_features.items()},
                 **{f"true_features[{k!r}]": true_features[k]
                    for k in generated_features}})
  match = {k: np.asarray(v) == np.asarray(true_features[k])
           for k, v in generated_features.items()}
  every = np.logical_and.reduce(list(match.values()), initial=True)
  every = np.broadcast_to(every, l1.shape)
  out["feature_match"] = float(every.mean())
  out["feature_match_per_var"] = {k: float(m.mean()) for k, m in match.items()}
  return out
