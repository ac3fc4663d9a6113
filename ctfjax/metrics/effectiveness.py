"""Effectiveness: do the edited images show the parent values they should?

Anti-causal predictors g_k (trained on real data) read every parent from the
counterfactual images; each reading is compared with the value the parent
should take: the intervened value for the intervened parent, the propagated
value for its descendants, the factual value for the rest (Melistas et al.
2024, eq. 8). Categorical parents get accuracy and F1, continuous ones the
mean absolute error.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ctfjax.metrics.errors import MetricError, check_lengths

CATEGORICAL = "categorical"
CONTINUOUS = "continuous"


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
  """Counts [K, K]: row = true class, column = predicted class."""
  y_true, y_pred = _class_ids(y_true, "y_true"), _class_ids(y_pred, "y_pred")
  check_lengths({"y_true": y_true, "y_pred": y_pred})
  top = max(int(y_true.max(initial=0)), int(y_pred.max(initial=0)))
  if top >= num_classes:
    raise MetricError(f"class {top} is outside 0..{num_classes - 1}")
  flat = np.bincount(y_true * num_classes + y_pred,
                     minlength=num_classes * num_classes)
  return flat.reshape(num_classes, num_classes)


def classification_scores(y_true, y_pred) -> dict:
  """Accuracy, macro-F1 and per-class F1 of predicted class ids.

  Macro-F1 averages the F1 of every class that occurs in `y_true` or
  `y_pred` (scikit-learn's default label set); a class that is never
  predicted, or never true, has F1 = 0. F1 is computed as
  2 TP / (2 TP + FP + FN), which is defined whenever the class occurs.

  Args:
    y_true: [N] expected class ids (ints >= 0).
    y_pred: [N] predicted class ids, or [N, K] scores (argmax is taken).

  Returns:
    {"accuracy": float, "f1": float (macro), "f1_per_class": {"k": float},
    "n": int}; for a two-class parent "f1_per_class"["1"] is the binary F1
    of the positive class that Melistas et al. (2024) report for CelebA.
  """
  y_pred = np.asarray(y_pred)
  if y_pred.ndim == 2:
    y_pred = np.argmax(y_pred, axis=1)
  y_true, y_pred = _class_ids(y_true, "y_true"), _class_ids(y_pred, "y_pred")
  n = check_lengths({"y_true": y_true, "y_pred": y_pred})
  if n == 0:
    raise MetricError("no samples to score")
  k = max(int(y_true.max()), int(y_pred.max())) + 1
  cm = confusion_matrix(y_true, y_pred, k)
  tp = np.diag(cm).astype(np.float64)
  fp = cm.sum(axis=0) - tp
  fn = cm.sum(axis=1) - tp
  present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
  f1 = 2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])
  return {
      "accuracy": float(tp.sum() / n),
      "f1": float(np.mean(f1)),
      "f1_per_class": {str(c): float(v)
                       for c, v in zip(np.flatnonzero(present), f1)},
      "n": int(n),
  }


def regression_scores(y_true, y_pred) -> dict:
  """Mean absolute error of continuous predictions.

  Args:
    y_true: [N] expected values.
    y_pred: [N] or [N, 1] predicted values.

  Returns:
    {"mae": float, "n": int}.
  """
  y_true = np.asarray(y_true, np.float64).reshape(-1)
  y_pred = np.asarray(y_pred, np.float64)
  if y_pred.ndim == 2 and y_pred.shape[1] == 1:
    y_pred = y_pred[:, 0]
  n = check_lengths({"y_true": y_true, "y_pred": y_pred})
  if n == 0:
    raise MetricError("no samples to score")
  if y_pred.ndim != 1:
    raise MetricError(f"continuous predictions must be [N] or [N, 1], got "
                      f"{y_pred.shape}")
  return {"mae": float(np.mean(np.abs(y_true - y_pred))), "n": int(n)}


def effectiveness(predictions: Mapping[str, object],
                  targets: Mapping[str, object],
                  kinds: Mapping[str, str] | None = None) -> dict[str, dict]:
  """Scores every parent read from counterfactual images.

  Args:
    predictions: {parent: predictor output on the counterfactual images}:
      [N] class ids or [N, K] scores for categorical parents, [N] values for
      continuous ones.
    targets: {parent: [N]} the values each parent should take in the
      counterfactual (intervened, propagated or preserved).
    kinds: {parent: "categorical" | "continuous"}; a parent left out is
      categorical when its targets have an integer or boolean dtype and
      continuous otherwise.

  Returns:
    {parent: `classification_scores` or `regression_scores` dict}, one entry
    per parent of `targets`.
  """
  missing = sorted(set(targets) - set(predictions))
  if missing:
    raise MetricError(f"no predictions for parent(s) {', '.join(missing)}")
  kinds = dict(kinds or {})
  out = {}
  for name, y_true in targets.items():
    y_true = np.asarray(y_true)
    kind = kinds.get(name, CATEGORICAL if y_true.dtype.kind in "biu"
                     else CONTINUOUS)
    if kind == CATEGORICAL:
      out[name] = classification_scores(y_true, predictions[name])
    elif kind == CONTINUOUS:
      out[name] = regression_scores(y_true, predictions[name])
    else:
      raise MetricError(f"kind of parent {name!r} must be {CATEGORICAL!r} or "
                        f"{CONTINUOUS!r}, got {kind!r}")
  return out


def _class_ids(y, name: str) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim != 1:
    raise MetricError(f"{name} must be [N] class ids, got shape {y.shape}")
  if y.size and (not np.all(np.isfinite(y)) or np.any(y != np.round(y))
                 or y.min() < 0):
    raise MetricError(f"{name} must hold non-negative integer class ids")
  return y.astype(np.int64)
