"""Ctf-consistency: feature counterfactuals of generated pairs vs. bounds.

science.md section 3: the (factual, counterfactual) image pairs a model
generates induce feature counterfactual probabilities; the model is
ctf-consistent when each lies within the optimal bounds [l_Q, u_Q] that the
diagram and P(V) allow. Here each probability is estimated from the features
read off the generated pairs, with a 95% Wilson score interval, and called
consistent when that interval meets the bounds.

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

from ctfjax.causal.graph import Graph
from ctfjax.causal.query import QueryError, Variable, World
from ctfjax.causal.query import parse_terms, split_top_level, world_str
from ctfjax.metrics.errors import MetricError, check_lengths

# Slack when comparing a Wilson interval with LP bounds, which carry solver
# rounding of about 1e-9.
BOUNDS_TOL = 1e-7
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
  n = check_lengths({**{f"factual[{k!r}]": v for k, v in factual.items()},
                     **{f"counterfactual[{k!r}]": v
                        for k, v in counterfactual.items()},
                     **{f"intervention[{k!r}]": v
                        for k, v in intervention.items() if np.ndim(v)}})
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
                    confidence: float = 0.95,
                    tol: float = BOUNDS_TOL) -> list[dict]:
  """Rows of report.json's `ctf_consistency` list for one intervention.

  Args:
    factual: {var: [N]} factual feature values of the test set.
    counterfactual: {var: [N]} features read from the generated edits.
    intervention: {var: scalar or [N]} the do() each sample was edited with,
      e.g. {"C": 1 - c}.
    queries: query strings (or `PairQuery`s), e.g. from `protocol_queries`.
    bounds: {query: (lo, hi) | None} or a function query -> (lo, hi) | None:
      the optimal bounds.
    truth: likewise for the ground-truth value, or None.
    confidence: level of the Wilson intervals.
    tol: slack when checking that the interval meets the bounds.

  Returns:
    One dict per query: {"intervention": "C=1", "query": str, "estimate":
    float | None, "ci": [lo, hi], "bounds": [lo, hi] | None, "truth":
    float | None, "consistent": bool | None, "n": int, "successes": int}.
    "estimate" is None when no sample matches (n = 0); "consistent" is None
    when there is no estimate or no bounds, and otherwise whether
    ci meets bounds (ci_lo <= hi + tol and lo - tol <= ci_hi).
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
    rows.append({
        "intervention": world_str(q.world),
        "query": key.strip(),
        "estimate": k / n if n else None,
        "ci": [lo, hi],
        "bounds": b,
        "truth": None if t is None else float(t),
        "consistent": (None if b is None or n == 0 else
                       bool(lo <= b[1] + tol and b[0] - tol <= hi)),
        "n": n,
        "successes": k,
    })
  return rows


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
                     max_split: int = MAX_SPLIT) -> dict[str, list[str]]:
  """The ctf-consistency table's queries (science.md section 6), per family.

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

  Args:
    graph: the causal diagram over the features.
    domains: {var: number of values} for every node.
    max_split: see above.

  Returns:
    {"do(X)": [query strings]}, X in topological order.
  """
  g = graph if isinstance(graph, Graph) else Graph.parse(graph)
  missing = [v for v in g.nodes if v not in domains]
  if missing:
    raise MetricError(f"no domain size for {', '.join(missing)}")
  order = g.topological_order()
  out = {}
  for x_var in order:
    k = int(domains[x_var])
    below = g.descendants(x_var)
    rows = []
    for x_new in range(k):
      x_old = (x_new - k // 2) % k
      sub = f"{x_var}_{{{x_var}={x_new}}}"
      rows.append(f"P({sub}={x_new} | {x_var}={x_old})")
      for w in order:
        if w == x_var:
          continue
        w_sub = f"{w}_{{{x_var}={x_new}}}"
        if w not in below:
          rows.append(f"P({w_sub} = {w} | {x_var}={x_old})")
          continue
        split = [p for p in order if p in g.parents(w) and p != x_var
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
