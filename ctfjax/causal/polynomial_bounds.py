"""Global optimisation of a polynomial over products of polytopes, by SCIP.

The part of `optimal_bounds` that the linear program cannot do. The canonical
model gives every c-component a polytope (clique marginals tied by linear
equalities); a query is a polynomial in the masses of events of several
components, and a diagram whose bidirected part is not a clique adds bilinear
independence constraints inside one component. Minimising or maximising
such a program is non-convex, so it goes to SCIP's spatial branch and bound
(PySCIPOpt), which proves global optimality: its dual bound is a valid bound
of the optimum, also when a time limit stops it early.

Ratios (a query conditioned on counterfactual evidence whose probability P(V)
does not fix) are written with an auxiliary variable z and the constraint
z * den = num, since SCIP's objective is linear.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Hashable, Sequence

import numpy as np
import pyscipopt
import scipy.sparse

# Smallest evidence probability of a model a ratio program considers: a model
# whose evidence has probability zero gives the query no value, and below
# this the constraint z * den = num no longer pins z within SCIP's tolerances.
MIN_EVIDENCE = 1e-6
# SCIP's feasibility tolerance. Tighter than its default 1e-6 because the
# bounds are compared with LP optima to 1e-6; at 1e-9 SCIP warns that its
# LP solver cannot follow.
FEASTOL = 1e-8
# A range narrower than this is one value (as in optimal_bounds).
IDENTIFIED_TOL = 1e-9


@dataclasses.dataclass
class Polytope:
  """{x >= 0 : a_eq x = b_eq}, plus products `sum(joint) = sum(l) * sum(r)`.

  Attributes:
    a_eq: [rows, n] sparse equality matrix.
    b_eq: [rows] right-hand side.
    products: (joint columns, left key, right key), one bilinear equality
      each (an independence constraint of a non-clique bidirected component).
    sides: key -> (columns, lo, hi) of the products' factors, with a valid
      range of their mass.
  """
  a_eq: scipy.sparse.csr_matrix
  b_eq: np.ndarray
  products: Sequence[tuple[np.ndarray, Hashable, Hashable]] = ()
  sides: dict[Hashable, tuple[np.ndarray, float, float]] = (
      dataclasses.field(default_factory=dict))


@dataclasses.dataclass
class Factor:
  """The mass of one event: the sum of `columns` of polytope `part`."""
  part: int
  columns: np.ndarray
  lo: float  # valid range (from the LP relaxation), helps the branching
  hi: float


# A polynomial: (constant, [(coefficient, [factor key, ...]), ...]).
Polynomial = tuple[float, Sequence[tuple[float, Sequence[Hashable]]]]


@dataclasses.dataclass(frozen=True)
class Solution:
  """One end of the range: `dual` is proven, `primal` is attained."""
  dual: float
  primal: float  # nan when SCIP found no feasible point in time
  optimal: bool
  seconds: float


def optimise(polytopes: Sequence[Polytope], factors: dict[Hashable, Factor],
             numerator: Polynomial, denominator: Polynomial | None,
             sense: str, time_limit: float) -> Solution:
  """Minimises or maximises numerator (/ denominator) over the polytopes.

  Args:
    polytopes: one per c-component the program touches.
    factors: event masses the polynomials name, by key.
    numerator: the objective (or the ratio's numerator).
    denominator: None, or the ratio's denominator (restricted to at least
      MIN_EVIDENCE).
    sense: 'minimize' or 'maximize'.
    time_limit: seconds SCIP may spend.

  Returns:
    The proven (dual) and attained (primal) optimum.

  Raises:
    ValueError: the constraints are infeasible.
  """
  m = pyscipopt.Model()
  m.hideOutput()
  m.setParam("limits/time", float(time_limit))
  m.setParam("numerics/feastol", FEASTOL)
  m.setParam("parallel/maxnthreads", 1)
  used = {k for _, keys in _terms(numerator, denominator) for k in keys}
  parts = sorted({factors[k].part for k in used})
  x = {}
  for p in parts:
    poly = polytopes[p]
    xs = [m.addVar(lb=0.0, ub=1.0) for _ in range(poly.a_eq.shape[1])]
    x[p] = xs
    a = poly.a_eq.tocsr()
    for r in range(a.shape[0]):
      row = slice(a.indptr[r], a.indptr[r + 1])
      m.addCons(pyscipopt.quicksum(
          float(v) * xs[c] for c, v in zip(a.indices[row], a.data[row]))
                == float(poly.b_eq[r]))
    side = {}
    for k, (cols, lo, hi) in poly.sides.items():
      if hi - lo <= IDENTIFIED_TOL:
        side[k] = 0.5 * (lo + hi)  # keeps the product linear
      else:
        # A bounded variable per side lets SCIP branch on it directly.
        side[k] = m.addVar(lb=max(0.0, lo), ub=min(1.0, hi))
        m.addCons(side[k] == _sum(xs, cols))
    for joint, left, right in poly.products:
      m.addCons(_sum(xs, joint) == side[left] * side[right])
  s = {}
  for k in sorted(used, key=repr):
    f = factors[k]
    s[k] = m.addVar(lb=max(0.0, f.lo), ub=min(1.0, f.hi))
    m.addCons(s[k] == _sum(x[f.part], f.columns))
  num = _expression(numerator, s)
  if denominator is None:
    z = m.addVar(lb=-1.0, ub=2.0)
    m.addCons(z == num)
  else:
    z = m.addVar(lb=0.0, ub=1.0)
    den = m.addVar(lb=MIN_EVIDENCE, ub=1.0)
    m.addCons(den == _expression(denominator, s))
    m.addCons(z * den == num)
  m.setObjective(z, sense)
  m.optimize()
  status = m.getStatus()
  if status == "infeasible":
    raise ValueError("infeasible")
  primal = m.getPrimalbound() if m.getNSols() else math.nan
  return Solution(float(m.getDualbound()), float(primal),
                  status == "optimal", float(m.getSolvingTime()))


def _terms(*polys):
  for poly in polys:
    if poly is not None:
      yield from poly[1]


def _sum(xs, columns):
  return pyscipopt.quicksum(xs[int(c)] for c in columns)


def _expression(poly: Polynomial, s):
  const, terms = poly
  return const + pyscipopt.quicksum(
      coef * math.prod((s[k] for k in keys), start=1.0)
      for coef, keys in terms)
