"""Ctf-consistency: feature counterfactuals of generated pairs vs. bounds.

The (factual, counterfactual) image pairs a model generates induce feature
counterfactual probabilities; the model is ctf-consistent when each lies
within the optimal bounds [l_Q, u_Q] that the diagram and P(V) allow
(docs/concepts.md, "Ctf-consistency").

The features of an edit are known twice: the values the model drew for it
(exact) and what the readers see in the image (noisy: the digit reader errs
on a few percent of real digits). A row of the table is therefore decided on
two hypotheses (`decide`):

* features: the probability of the model's drawn features lies within the
  bounds. Exact binomial test of the interval null (`bounds_p_value`). Where
  the bounds are a point at 0 or 1 ([1, 1]: effectiveness, preservation of a
  non-descendant) the test is exact: a single drawn violation rejects and,
  under the null, none can occur, so such rows cost no error rate.
* images: the readers agree with the model's drawn features on its edits at
  least as often as they agree with the truth's features on the true
  counterfactual images of the same test units (their own floor, measured):
  one-sided Fisher exact test (`images_p_value`).

The size is controlled over the whole table by a weighted Holm procedure
(family-wise error rate ALPHA; half of it for each kind of hypothesis,
shared within a kind in proportion to the rows' n, which the design fixes
before any edit is seen). Holm rather than Benjamini-Hochberg because the
claim to be carried is "every row is consistent": a single false alarm
would brand the truth itself inconsistent, so it is the family-wise error
that must be bounded, not the expected share of false alarms; and rows
share edits (one edit enters an effectiveness, a preservation and a
descendant row), a dependence under which Holm stays valid and plain
Benjamini-Hochberg does not. Each row reports n, the Wilson interval of
what the readers saw, its Holm-adjusted p-value and decision, and the
smallest violation it detects with probability POWER (`detectable`).

Queries use the grammar of `ctfjax.causal.query`, restricted to what pairs
can estimate: outcome terms all in one counterfactual world (the edit), and
factual evidence. One extension: an outcome `W_{X=x'} = W` (a variable
name instead of a value) means "W keeps its factual value", for the
preservation rows of the protocol:

    P(B_{C=1}=1 | C=0, B=0)   among samples with factual C=0, B=0 edited
                              with do(C=1): the fraction whose edit has B=1
    P(D_{C=1} = D | C=0)      ... edited with do(C=1): the fraction whose
                              edit keeps the digit

Such an estimate targets the query only if which samples got which edit
depends on nothing beyond the query's evidence; the protocol's edits are a
function of the intervened variable alone (`protocol_interventions`), whose
factual value every protocol query states.

Bounds and ground truth come from the caller, e.g. for a row's query q:
`structural_bounds(g, q) or cc.bounds(g, table, q)` and, on synthetic data,
`cc.query(true_scm, q)` (a preservation row's truth is 1).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.stats

from ctfjax.causal.discrete import Table
from ctfjax.causal.graph import Graph
from ctfjax.causal.optimal_bounds import bounds as optimal_bounds
from ctfjax.causal.query import QueryError, Variable, World
from ctfjax.causal.query import parse_terms, split_top_level, world_str
from ctfjax.metrics.errors import MetricError, check_lengths

# Slack when comparing estimates with LP bounds, which carry solver rounding
# of about 1e-9; bounds this close to 0 or 1 are taken as exactly 0 or 1.
BOUNDS_TOL = 1e-7
# Family-wise error rate of a whole ctf-consistency table (`decide`).
ALPHA = 0.05
# Power at which a row's smallest detectable violation is reported.
POWER = 0.8
# A row's decision -> its "consistent" field (report.json): True, False, or
# None where the row cannot be judged.
DECISIONS = {"pass": True, "fail: features": False, "fail: images": False,
             "fail: features, images": False, "no data": None,
             "no bounds": None}
# Parents of a descendant with at most this many values are split on in the
# protocol's descendant rows; a 10-valued digit would leave about a tenth of
# the samples per row, so it is pooled instead.
MAX_SPLIT = 2

_QUERY = re.compile(r"^\s*P\s*\((.*)\)\s*$", re.S)
_INT = re.compile(r"^\s*-?\d+\s*$")

Pair = tuple[float, float]
Lookup = Mapping[str, object] | Callable[[str], object] | None


def wilson_interval(successes: int, n: int,
                    confidence: float = 0.95) -> tuple[float, float]:
  """Wilson score interval of a binomial proportion.

  Args:
    successes: number of successes k (0 <= k <= n).
    n: number of trials; with n = 0 the interval is [0, 1] (no information).
    confidence: two-sided confidence level in (0, 1).

  Returns:
    (lo, hi) within [0, 1].
  """
  k, n = int(successes), int(n)
  if n < 0 or not 0 <= k <= max(n, 0):
    raise MetricError(f"need 0 <= successes <= n, got {k} of {n}")
  if not 0.0 < confidence < 1.0:
    raise MetricError(f"confidence must be in (0, 1), got {confidence}")
  if n == 0:
    return 0.0, 1.0
  z = float(scipy.stats.norm.ppf(0.5 + 0.5 * confidence))
  p = k / n
  denom = 1.0 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
  # At k = 0 (k = n) the lower (upper) end is exactly 0 (1); the formula
  # gets there only up to rounding.
  lo = 0.0 if k == 0 else max(0.0, centre - half)
  hi = 1.0 if k == n else min(1.0, centre + half)
  return lo, hi


@dataclasses.dataclass(frozen=True)
class PairQuery:
  """A feature counterfactual query that generated pairs can estimate.

  Attributes:
    world: the intervention, e.g. (("C", 1),).
    outcome: ((var, value), ...); value None means "equals its factual
      value".
    evidence: ((var, value), ...) on the factual features.
  """

  world: World
  outcome: tuple[tuple[str, int | None], ...]
  evidence: tuple[tuple[str, int], ...] = ()

  def __str__(self) -> str:
    sub = f"_{{{world_str(self.world)}}}"
    out = ", ".join(f"{v}{sub} = {v}" if x is None else f"{v}{sub}={x}"
                    for v, x in self.outcome)
    if self.evidence:
      return f"P({out} | {', '.join(f'{v}={x}' for v, x in self.evidence)})"
    return f"P({out})"

  @classmethod
  def parse(cls, text: str | PairQuery) -> PairQuery:
    """Parses e.g. 'P(B_{C=1}=1 | C=0, B=0)' or 'P(D_{C=1} = D | C=0)'."""
    if isinstance(text, PairQuery):
      return text
    text = str(text)
    m = _QUERY.match(text)
    if not m or m.group(1).count("|") > 1:
      raise QueryError(f"cannot parse query {text.strip()!r}; expected "
                       "'P(B_{C=1}=1 | C=0, B=0)'")
    out, _, given = m.group(1).partition("|")
    evidence = parse_terms(given)
    if any(t.world for t in evidence):
      raise QueryError(f"{text.strip()!r}: generated pairs can only be "
                       "conditioned on factual features")
    outcome, worlds = [], set()
    for part in split_top_level(out):
      lhs, eq, rhs = part.rpartition("=")
      var = Variable.parse(lhs) if eq else None
      if var is None or not var.world:
        raise QueryError(f"{text.strip()!r}: outcome term {part.strip()!r} "
                         "must be counterfactual, e.g. 'B_{C=1}=1'")
      if _INT.match(rhs):
        value = int(rhs)
      elif rhs.strip() == var.name:
        value = None
      else:
        raise QueryError(f"{text.strip()!r}: the value of {part.strip()!r} "
                         f"must be an integer or {var.name!r}")
      outcome.append((var.name, value))
      worlds.add(var.world)
    if len(worlds) != 1:
      raise QueryError(f"{text.strip()!r}: all outcome terms must be in one "
                       "world, the edit's")
    return cls(worlds.pop(), tuple(outcome),
               tuple((t.name, t.value) for t in evidence))


def estimate(query: str | PairQuery, factual: Mapping[str, object],
             counterfactual: Mapping[str, object],
             intervention: Mapping[str, object]) -> tuple[int, int]:
  """Counts (successes, n) for a query over generated pairs.

  Args:
    query: a `PairQuery` or its text.
    factual: {var: [N]} factual feature values.
    counterfactual: {var: [N]} features read from the generated
      counterfactuals.
    intervention: {var: scalar or [N]} the do() each sample was edited with.

  Returns:
    n: samples whose edit is the query's world and whose factual features
    match its evidence; successes: those whose counterfactual features
    satisfy every outcome term.
  """
  q = PairQuery.parse(query)
  keep = _matching(q, factual, intervention, counterfactual=counterfactual)
  hit = keep.copy()
  for var, value in q.outcome:
    target = _column(factual, var, "factual", q) if value is None else value
    hit &= _column(counterfactual, var, "counterfactual", q) == target
  return int(hit.sum()), int(keep.sum())


def ctf_consistency(factual: Mapping[str, object],
                    counterfactual: Mapping[str, object],
                    intervention: Mapping[str, object],
                    queries: Sequence[str | PairQuery], *,
                    bounds: Lookup, truth: Lookup = None,
                    drawn: Mapping[str, object] | None = None,
                    reference: tuple[Mapping[str, object],
                                     Mapping[str, object]] | None = None,
                    confidence: float = 0.95, alpha: float = ALPHA,
                    tol: float = BOUNDS_TOL) -> list[dict]:
  """Rows of report.json's `ctf_consistency` list for one intervention.

  The rows are decided as one table (`decide`); a caller that joins the
  rows of several calls into one table decides them again together.

  Args:
    factual: {var: [N]} factual feature values of the test set.
    counterfactual: {var: [N]} features read from the generated edits.
    intervention: {var: scalar or [N]} the do() each sample was edited with,
      e.g. {"C": 1 - c}.
    queries: query strings (or `PairQuery`s), e.g. from `protocol_queries`.
    bounds: {query: (lo, hi) | None} or a function query -> (lo, hi) | None:
      the optimal bounds.
    truth: likewise for the ground-truth value, or None.
    drawn: {var: [N]} the features the model drew for its edits (exact);
      None to test the read features against the bounds instead.
    reference: (true features, their reading) of the true counterfactuals
      of the same test units, {var: [N]} each: the readers' own agreement
      with the truth, against which theirs with `drawn` is tested; None for
      no image test (then `drawn` alone is judged).
    confidence: level of the Wilson intervals.
    alpha: family-wise error rate of the table.
    tol: slack when comparing with the bounds.

  Returns:
    One dict per query: {"intervention": "C=1", "query": str, "estimate":
    float | None (read features), "ci": [lo, hi] (its Wilson interval),
    "bounds": [lo, hi] | None, "truth": float | None, "n": int,
    "successes": int, "estimate_features": float | None and
    "successes_features": int (drawn features, or the read ones without
    `drawn`), "agreement" and "agreement_truth": [k, n] | None (test units
    whose read outcome features match the drawn ones, on the edits and on
    the true images), and `decide`'s fields.
  """
  rows = []
  for text in queries:
    q = PairQuery.parse(text)
    key = text if isinstance(text, str) else str(q)
    k, n = estimate(q, factual, counterfactual, intervention)
    lo, hi = wilson_interval(k, n, confidence)
    b = _lookup(bounds, key)
    if b is not None:
      b = [float(b[0]), float(b[1])]
      if not b[0] <= b[1] + tol:
        raise MetricError(f"bounds {b} of {key} have lo > hi")
    t = _lookup(truth, key)
    kd = k if drawn is None else estimate(q, factual, drawn, intervention)[0]
    agree = agree_truth = None
    if drawn is not None and reference is not None:
      agree = agreement(q, factual, counterfactual, drawn, intervention)
      agree_truth = agreement(q, factual, reference[1], reference[0],
                              intervention)
    rows.append({
        "intervention": world_str(q.world),
        "query": key.strip(),
        "estimate": k / n if n else None,
        "ci": [lo, hi],
        "bounds": b,
        "truth": None if t is None else float(t),
        "n": n,
        "successes": k,
        "estimate_features": kd / n if n else None,
        "successes_features": kd,
        "agreement": agree,
        "agreement_truth": agree_truth,
    })
  return decide(rows, alpha=alpha, tol=tol)


def agreement(query: str | PairQuery, factual: Mapping[str, object],
              read: Mapping[str, object], drawn: Mapping[str, object],
              intervention: Mapping[str, object]) -> list[int]:
  """[k, n]: of the n samples a query counts, those whose read outcome
  features all equal the drawn ones (the readers see what was decided)."""
  q = PairQuery.parse(query)
  keep = _matching(q, factual, intervention, read=read, drawn=drawn)
  same = keep.copy()
  for var, _ in q.outcome:
    same &= (_column(read, var, "read", q) ==
             _column(drawn, var, "drawn", q))
  return [int(same.sum()), int(keep.sum())]


def _matching(q: PairQuery, factual: Mapping[str, object],
              intervention: Mapping[str, object],
              **others: Mapping[str, object]) -> np.ndarray:
  """[N] bool: samples edited with the query's world whose factual features
  match its evidence; every column (of `others` too) must have length N."""
  columns = {f"factual[{k!r}]": v for k, v in factual.items()}
  for name, values in others.items():
    columns.update({f"{name}[{k!r}]": v for k, v in values.items()})
  columns.update({f"intervention[{k!r}]": v
                  for k, v in intervention.items() if np.ndim(v)})
  n = check_lengths(columns)
  world = dict(q.world)
  if set(world) != set(intervention):
    raise MetricError(f"{q}: the query's world ({world_str(q.world)}) must "
                      f"set exactly the edited variables "
                      f"({', '.join(sorted(intervention))})")
  keep = np.ones(n, bool)
  for var, value in q.world:
    keep &= np.broadcast_to(np.asarray(intervention[var]), (n,)) == value
  for var, value in q.evidence:
    keep &= _column(factual, var, "factual", q) == value
  return keep


def _snap(bounds: Sequence[float], tol: float) -> tuple[float, float]:
  """Bounds widened by `tol`, with ends within `tol` of 0 or 1 set to it
  (LP rounding must neither fail the truth nor make a point bound soft)."""
  lo, hi = float(bounds[0]), float(bounds[1])
  lo = 1.0 if lo >= 1.0 - tol else max(0.0, lo - tol)
  hi = 0.0 if hi <= tol else min(1.0, hi + tol)
  return lo, hi


def _bounds_p_values(n: int, lo: float, hi: float) -> np.ndarray:
  """p-values [n + 1] of every count k under H0: p in [lo, hi].

  k is the more extreme the smaller T(k) = min(P_lo(X <= k), P_hi(X >= k))
  (a side that cannot be violated is left out); p(k) = sup over p in
  [lo, hi] of P_p(T(X) <= T(k)), attained at lo or hi (the probability of
  {X <= a} + {X >= b} is quasi-convex in p).
  """
  ks = np.arange(n + 1)
  t = np.ones(n + 1)
  if lo > 0.0:
    t = np.minimum(t, scipy.stats.binom.cdf(ks, n, lo))
  if hi < 1.0:
    t = np.minimum(t, scipy.stats.binom.sf(ks - 1, n, hi))
  order = np.argsort(t, kind="stable")
  # Ties within rounding count as equally extreme.
  rank = np.searchsorted(t[order], t * (1 + 1e-9), side="right")
  p = np.zeros(n + 1)
  for end in (lo, hi):
    mass = np.cumsum(scipy.stats.binom.pmf(ks, n, end)[order])
    p = np.maximum(p, mass[rank - 1])
  return np.minimum(p, 1.0)


def bounds_p_value(successes: int, n: int, bounds: Sequence[float],
                   tol: float = BOUNDS_TOL) -> float:
  """Exact binomial p-value of "the probability lies within `bounds`".

  Args:
    successes: k of n samples satisfy the query.
    n: samples (> 0).
    bounds: [lo, hi].
    tol: see `_snap`.

  Returns:
    p in [0, 1]; 1 where no count can violate the bounds ([0, 1]), and
    exactly 0 for any k < n against bounds [1, 1].
  """
  lo, hi = _snap(bounds, tol)
  return float(_bounds_p_values(int(n), lo, hi)[int(successes)])


def _is_exact(bounds: Sequence[float], tol: float) -> bool:
  """Point bounds at 0 or 1: a violation is certain once one is seen."""
  lo, hi = _snap(bounds, tol)
  return lo == 1.0 or hi == 0.0


def _is_vacuous(bounds: Sequence[float], tol: float) -> bool:
  lo, hi = _snap(bounds, tol)
  return lo == 0.0 and hi == 1.0


def detectable(n: int, bounds: Sequence[float], level: float,
               power: float = POWER, tol: float = BOUNDS_TOL
               ) -> float | None:
  """Smallest violation of `bounds` a test at `level` finds with `power`.

  Args:
    n: samples of the row.
    bounds: [lo, hi].
    level: the test's size (the row's share of the table's error rate).
    power: required probability of rejecting.
    tol: see `_snap`.

  Returns:
    The largest over the bounds' violable sides of the smallest distance
    d outside the bounds (true probability lo - d or hi + d) at which the
    exact test rejects with probability >= power; None where no violation
    is possible (bounds [0, 1]) or some side cannot be detected at all.
  """
  lo, hi = _snap(bounds, tol)
  if n <= 0 or (lo == 0.0 and hi == 1.0):
    return None
  ks = np.arange(n + 1)
  reject = _bounds_p_values(n, lo, hi) <= level
  power_at = lambda p: float(scipy.stats.binom.pmf(ks, n, p)[reject].sum())
  worst = 0.0
  for end, far in ((lo, 0.0), (hi, 1.0)):
    if end == far:
      continue  # This side cannot be violated.
    if power_at(far) < power:
      return None  # Even the most extreme truth is missed too often.
    near_d, far_d = 0.0, abs(end - far)
    for _ in range(40):  # Bisection to ~1e-12; power grows with distance.
      mid = 0.5 * (near_d + far_d)
      p = end - mid if far == 0.0 else end + mid
      near_d, far_d = (near_d, mid) if power_at(p) >= power else (mid, far_d)
    worst = max(worst, far_d)
  return worst


def images_p_value(agree: Sequence[int], agree_truth: Sequence[int]) -> float:
  """One-sided Fisher exact p-value of "the readers agree with the model's
  features no less often than with the truth's".

  Args:
    agree: [k, n] on the model's edits.
    agree_truth: [k, n] on the true counterfactual images.

  Returns:
    P(K <= k) for K hypergeometric given both margins (1 if n = 0).
  """
  k, n = (int(v) for v in agree)
  kt, nt = (int(v) for v in agree_truth)
  if n == 0 or nt == 0:
    return 1.0
  return float(min(1.0, scipy.stats.hypergeom.cdf(k, n + nt, k + kt, n)))


def decide(rows: Sequence[Mapping], alpha: float = ALPHA,
           power: float = POWER, tol: float = BOUNDS_TOL) -> list[dict]:
  """Decides every row of a ctf-consistency table at family-wise level alpha.

  The one implementation of the decision rule (see the module docstring);
  tables, figures and the report schema read its fields.

  Per row with n > 0 and bounds, up to two hypotheses: "features" (from
  "successes_features" of "n", `bounds_p_value`; rows with bounds [0, 1]
  have none) and "images" (from "agreement" and "agreement_truth" when
  both are given, `images_p_value`). Exact hypotheses (bounds [1, 1] or
  [0, 0]) are rejected when violated and cost nothing. The others share
  alpha by weighted Holm: half to each kind present (all to a lone kind),
  within a kind in proportion to n. Holm's first step, a hypothesis's own
  share alpha * w, is the level at which "detectable" is computed.

  Args:
    rows: rows as `ctf_consistency` builds them (each needs "n", "bounds",
      "successes_features" or "successes", optionally "agreement" and
      "agreement_truth").
    alpha: family-wise error rate of the whole table.
    power: the power of "detectable".
    tol: see `_snap`.

  Returns:
    Copies of the rows with "p_features" and "p_images" (raw p-values or
    None), "p_value" (the row's smallest Holm-adjusted p-value; None when
    the row is not judged), "decision" (a key of DECISIONS), "consistent"
    (its value there) and "detectable" (`detectable` at the row's level,
    None where none).
  """
  out = [dict(r) for r in rows]
  tests = []  # (row index, kind, raw p, weight before normalising)
  for i, r in enumerate(out):
    r["p_features"] = r["p_images"] = None
    n, b = int(r.get("n") or 0), r.get("bounds")
    if n == 0 or b is None:
      continue
    if not _is_vacuous(b, tol):
      k = r.get("successes_features", r.get("successes"))
      r["p_features"] = bounds_p_value(k, n, b, tol)
      tests.append((i, "features", r["p_features"],
                    0.0 if _is_exact(b, tol) else float(n)))
    if r.get("agreement") is not None and r.get("agreement_truth") is not None:
      r["p_images"] = images_p_value(r["agreement"], r["agreement_truth"])
      tests.append((i, "images", r["p_images"], float(n)))
  totals = {}
  for _, kind, _, w in tests:
    totals[kind] = totals.get(kind, 0.0) + w
  kinds = [k for k, t in totals.items() if t > 0]
  weights = [w / totals[kind] / len(kinds) if w > 0 else 0.0
             for _, kind, _, w in tests]
  adjusted = _weighted_holm([t[2] for t in tests], weights)
  failed = {}
  best = {}
  level = {}
  for (i, kind, _, _), adj, w in zip(tests, adjusted, weights):
    best[i] = min(best.get(i, 1.0), adj)
    if adj <= alpha:
      failed.setdefault(i, []).append(kind)
    if kind == "features":
      level[i] = alpha * w
  for i, r in enumerate(out):
    if not r.get("n"):
      decision = "no data"
    elif r.get("bounds") is None:
      decision = "no bounds"
    else:
      decision = ("fail: " + ", ".join(failed[i]) if i in failed
                  else "pass")
    r["decision"] = decision
    r["consistent"] = DECISIONS[decision]
    judged = DECISIONS[decision] is not None
    r["p_value"] = best.get(i, 1.0) if judged else None
    r["detectable"] = (detectable(int(r["n"]), r["bounds"], level[i], power,
                                  tol) if i in level else None)
  return out


def _weighted_holm(p: Sequence[float], w: Sequence[float]) -> list[float]:
  """Holm-adjusted p-values with weights (Holm 1979, weighted form).

  Hypotheses are taken in order of p / w; the j-th is rejected at level
  alpha when every earlier one is and p_j / w_j * (sum of the weights from
  j on) <= alpha. Weight 0 marks an exact test (its p is 0 or 1 and can
  never be wrong): it keeps its own p and leaves the others' shares alone.
  """
  adjusted = list(p)
  order = sorted((i for i in range(len(p)) if w[i] > 0),
                 key=lambda i: p[i] / w[i])
  left, running = sum(w[i] for i in order), 0.0
  for i in order:
    running = max(running, min(1.0, p[i] / w[i] * left))
    adjusted[i] = running
    left -= w[i]
  return adjusted


def structural_bounds(graph: Graph | str,
                      query: str | PairQuery) -> Pair | None:
  """Bounds that hold in every model compatible with the diagram, or None.

  (1, 1) when every outcome term is either the intervened variable taking
  its set value (effectiveness) or a non-descendant of the intervened
  variables keeping its factual value (preservation); None otherwise, for
  the caller to compute (`cc.bounds`). The same value is the ground truth.
  """
  g = graph if isinstance(graph, Graph) else Graph.parse(graph)
  q = PairQuery.parse(query)
  world = dict(q.world)
  for var in [*world, *(v for v, _ in q.outcome)]:
    g.check_node(var)
  changed = g.descendants(world)
  for var, value in q.outcome:
    if var in world:
      if value != world[var]:
        return None
    elif value is not None or var in changed:
      return None
  return 1.0, 1.0


def counterfactual_value(value, domain: int):
  """The protocol's edit of a variable: x' = (x + domain // 2) mod domain.

  1 - x for a binary variable; for the 10 digits, d + 5 mod 10, which swaps
  the "small" and "large" halves that the Colored MNIST confounder acts on.
  """
  return (np.asarray(value) + domain // 2) % domain


def protocol_interventions(factual: Mapping[str, object],
                           domains: Mapping[str, int]) -> dict[str, dict]:
  """Per-sample edits of the protocol, one family per variable.

  Args:
    factual: {var: [N]} factual feature values.
    domains: {var: number of values}; one family per entry.

  Returns:
    {"do(X)": {X: [N] values (x + |X| // 2) mod |X|}}.
  """
  out = {}
  for var, k in domains.items():
    if var not in factual:
      raise MetricError(f"no factual values for {var!r}")
    out[f"do({var})"] = {var: counterfactual_value(factual[var], int(k))}
  return out


def protocol_queries(graph: Graph | str, domains: Mapping[str, int],
                     max_split: int = MAX_SPLIT,
                     care: Sequence[str] | None = None
                     ) -> dict[str, list[str]]:
  """The ctf-consistency table's queries (docs/evaluation.md), per family.

  For the edit x -> x' = (x + |X| // 2) mod |X| of each variable X (see
  `protocol_interventions`), and each x' with its source value x:

  * effectiveness: P(X_{X=x'}=x' | X=x);
  * every non-descendant W: preservation P(W_{X=x'} = W | X=x);
  * every descendant W and pair of values w != v:
    P(W_{X=x'}=v | X=x, S=s, W=w) for each assignment s of W's other
    parents with at most `max_split` values (the rest are pooled).

  For the Colored MNIST backdoor graph this gives, e.g., under do(C):
  P(D_{C=1} = D | C=0), P(C_{C=1}=1 | C=0), P(B_{C=1}=1 | C=0, B=0),
  P(B_{C=1}=0 | C=0, B=1); under do(D): P(B_{D=d'}=1 | D=d, C=c, B=0).

  With a care set W only the W-specific queries remain (`care_specific`):
  rows about W's members (W less X in the family of X), split on parents
  in W only. Under do(D) with W = {B} the bar rows pool C:
  P(B_{D=d'}=1 | D=d, B=0), whose bounds differ from the split rows'.

  Args:
    graph: the causal diagram over the features.
    domains: {var: number of values} for every node.
    max_split: see above.
    care: the care set W, or None for every variable.

  Returns:
    {"do(X)": [query strings]}, X in topological order.
  """
  g = graph if isinstance(graph, Graph) else Graph.parse(graph)
  missing = [v for v in g.nodes if v not in domains]
  if missing:
    raise MetricError(f"no domain size for {', '.join(missing)}")
  order = g.topological_order()
  for var in care or ():
    g.check_node(var)
  out = {}
  for x_var in order:
    k = int(domains[x_var])
    below = g.descendants(x_var)
    kept = set(order if care is None else care) - {x_var}
    rows = []
    for x_new in range(k):
      x_old = (x_new - k // 2) % k
      sub = f"{x_var}_{{{x_var}={x_new}}}"
      rows.append(f"P({sub}={x_new} | {x_var}={x_old})")
      for w in order:
        if w not in kept:
          continue
        w_sub = f"{w}_{{{x_var}={x_new}}}"
        if w not in below:
          rows.append(f"P({w_sub} = {w} | {x_var}={x_old})")
          continue
        split = [p for p in order if p in g.parents(w) and p in kept
                 and int(domains[p]) <= max_split]
        for s in np.ndindex(*[int(domains[p]) for p in split]):
          given = "".join(f", {p}={v}" for p, v in zip(split, s))
          for w_old in range(int(domains[w])):
            for w_new in range(int(domains[w])):
              if w_new != w_old:
                rows.append(f"P({w_sub}={w_new} | {x_var}={x_old}{given}, "
                            f"{w}={w_old})")
    out[f"do({x_var})"] = rows
  return out


# Care sets --------------------------------------------------------------------

# `parse_care`'s spelling of the empty care set (an empty text means "every
# feature", the default).
NO_CARE = "none"


def parse_care(text: str, what: str) -> tuple[str, ...] | None:
  """A care set as written on a command line or in `eval.care`.

  Args:
    text: "" (every feature: None), "none" (the empty set: ()), or names
      joined by commas, "D,B".
    what: the flag or key, for the message.

  Returns:
    The names in the order given, () or None. Only the syntax is checked;
    the names are checked against a model's or dataset's features by the
    caller.

  Raises:
    MetricError: an empty item or a name given twice.
  """
  text = text.strip()
  if not text:
    return None
  if text == NO_CARE:
    return ()
  names = tuple(item.strip() for item in text.split(","))
  for i, name in enumerate(names):
    if not name:
      raise MetricError(f"{what}={text}: an empty feature name; expected "
                        f"names joined by commas, e.g. D,B, or "
                        f"{NO_CARE!r} for the empty care set")
    if name in names[:i]:
      raise MetricError(f"{what}={text} names {name!r} twice")
  return names


def care_specific(query: str | PairQuery, care: Sequence[str] | None) -> bool:
  """Whether a query is W-specific: each of its evidence and outcome
  variables is in the care set W or intervened (every query is, for W =
  None: every feature)."""
  if care is None:
    return True
  q = PairQuery.parse(query)
  allowed = set(care) | {v for v, _ in q.world}
  return all(v in allowed for v, _ in (*q.outcome, *q.evidence))


def care_bounds(graph: Graph | str, table: Table, query: str | PairQuery,
                care: Sequence[str] | None = None) -> Pair:
  """Bounds of a query for an estimator consistent w.r.t. a care set W.

  A W-specific query (`care_specific`) keeps its optimal bounds over the
  models compatible with the diagram and P(V): `structural_bounds` where
  the diagram alone fixes them, else the exact program (`cc.bounds`).
  Any other query carries no guarantee, [0, 1]: a feature outside W is
  treated like unlabelled image content (docs/concepts.md). E.g. under
  do(C) in the backdoor graph, P(D_{C=1}=3 | D=3) is [1, 1] for W = {D}
  and [0, 1] for W = {}: the estimator may redraw the digit.

  Raises:
    BoundsError: the program cannot bound a W-specific query.
  """
  q = PairQuery.parse(query)
  if not care_specific(q, care):
    return 0.0, 1.0
  point = structural_bounds(graph, q)
  if point is not None:
    return point
  lo, hi = optimal_bounds(graph, table, str(q))
  return float(lo), float(hi)


def _column(values: Mapping[str, object], var: str, what: str,
            q: PairQuery) -> np.ndarray:
  if var not in values:
    raise MetricError(f"{q}: no {what} values for {var!r}; have "
                      f"{', '.join(values)}")
  return np.asarray(values[var])


def _lookup(source: Lookup, key: str):
  if source is None:
    return None
  if callable(source):
    return source(key)
  return source.get(key)
