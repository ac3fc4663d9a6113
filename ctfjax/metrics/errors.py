"""The error metrics raise for bad input, and the checks that raise it."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ctfjax.errors import UserError


class MetricError(UserError):
  """Inputs a metric cannot use: mismatched shapes, empty sets, bad ranges."""


def check_lengths(arrays: Mapping[str, object]) -> int:
  """Returns the common leading length of `arrays` (name -> array).

  Raises:
    MetricError: if an array is a scalar or the lengths differ.
  """
  lengths = {}
  for name, a in arrays.items():
    shape = np.shape(a)
    if not shape:
      raise MetricError(f"{name} must be an array with one row per sample, "
                        "got a scalar")
    lengths[name] = shape[0]
  if len(set(lengths.values())) > 1:
    listing = ", ".join(f"{k}: {v}" for k, v in lengths.items())
    raise MetricError(f"inputs have different numbers of samples ({listing})")
  return next(iter(lengths.values()))
