"""Joint tables over discrete variables, and the error of a bad discrete model.

Shared by the discrete SCMs (`ctfjax.causal.discrete`), exact inference
(`ctfjax.causal.inference`) and the bounds, none of which needs the others
to read a table.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import numpy as np

from ctfjax.errors import UserError

# Probabilities must sum to one within this tolerance.
PROB_TOL = 1e-6


class SCMError(UserError):
  """An invalid SCM spec: bad probabilities, table shapes, names or values."""


@dataclasses.dataclass(frozen=True)
class Table:
  """A joint distribution over discrete variables: one axis of probs per var."""

  variables: tuple[str, ...]
  probs: np.ndarray

  def __post_init__(self):
    probs = np.asarray(self.probs, dtype=np.float64)
    object.__setattr__(self, "probs", probs)
    object.__setattr__(self, "variables", tuple(self.variables))
    if probs.ndim != len(self.variables):
      raise SCMError(f"table over {len(self.variables)} variables has "
                     f"{probs.ndim} axes")
    if len(set(self.variables)) != len(self.variables):
      raise SCMError(f"table variables repeat: {self.variables}")
    if not np.all(np.isfinite(probs)) or np.any(probs < -PROB_TOL):
      raise SCMError("table probabilities must be finite and non-negative")
    if abs(probs.sum() - 1.0) > PROB_TOL:
      raise SCMError(f"table probabilities sum to {probs.sum():.6g}, not 1")

  @property
  def domains(self) -> dict[str, int]:
    return dict(zip(self.variables, self.probs.shape))

  def marginal(self, variables: Iterable[str]) -> Table:
    """The marginal table over `variables`, in the order given."""
    variables = tuple(variables)
    for v in variables:
      if v not in self.variables:
        raise SCMError(f"unknown variable {v!r}; the table has "
                       f"{', '.join(self.variables)}")
    drop = tuple(i for i, v in enumerate(self.variables) if v not in variables)
    probs = self.probs.sum(axis=drop)
    kept = [v for v in self.variables if v in variables]
    perm = [kept.index(v) for v in variables]
    return Table(variables, np.transpose(probs, perm))

  def prob(self, assignment: Mapping[str, int]) -> float:
    """P(assignment) for a partial assignment {var: value}."""
    m = self.marginal(tuple(assignment))
    idx = []
    for v, x in assignment.items():
      if not 0 <= int(x) < m.domains[v]:
        raise SCMError(f"value {x} of {v!r} is outside its domain "
                       f"0..{m.domains[v] - 1}")
      idx.append(int(x))
    return float(m.probs[tuple(idx)])

  def as_dict(self) -> dict:
    return {"variables": list(self.variables), "probs": self.probs.tolist()}
