"""Optimal bounds of counterfactual queries: linear and polynomial programs.

`bounds(graph, table, query)` returns the smallest and largest value of a
counterfactual query over the discrete SCMs compatible with a causal diagram
and an observational distribution (docs/concepts.md, "Optimal bounds").

Method: the canonical (response-function) model of Balke & Pearl and Zhang,
Tian & Bareinboim (2022).

1. Every variable V has a response function r_V: dom(Pa_V) -> dom(V); its
   *coordinates* are the values r_V(pa), one per parent configuration. Each
   c-component C has a distribution q_C over the joint of its coordinates;
   different c-components are independent.
2. The observational table fixes Tian's c-factor of every component,
   Q_C(c, pa(C)) = prod_{V_i in C} P(v_i | W_i) with
   W_i = (T_i u Pa(T_i)) minus V_i, where T_i is the c-component of V_i in
   the subgraph over V_i and its predecessors in topological order. Each
   value is one linear constraint q_C(r_V(pa_V) = v_V for V in C) = Q_C.
3. The query is expanded on the twin network (one copy per world it names)
   into a polynomial: a sum of monomials prod_C q_C(E_C), E_C a partial
   assignment of C's coordinates.
4. A component's LP variables are not its full joint (a binary child of a
   10-valued and a binary parent alone has 2^20 response functions) but the
   marginal tables of the maximal cliques of a min-fill triangulation of the
   graph whose vertices are the coordinates and whose cliques are the
   constraint and query events, tied together by equal separator marginals
   along a junction tree. Locally consistent marginals of a decomposable
   cover always extend to a joint distribution, so this is exact.

Graphs handled: every acyclic semi-Markovian diagram (directed and bidirected
edges) over discrete variables, with `table` a joint over exactly its nodes;
domain sizes come from the table's shape.

Queries handled: any query of the grammar of `ctfjax.causal.query` (joint
counterfactuals, counterfactual evidence). Once every c-component factor that
the table identifies (its minimum equals its maximum over the component's
polytope) is replaced by its value, two cases remain.

* The LP (the fast path, exact): the numerator P(outcome, evidence) is a
  sum of terms each linear in the masses of at most one c-component (one min
  and one max per component), or a constant plus a single product of free
  factors of different components (the products of the per-factor bounds:
  non-negative factors over independent polytopes); the denominator
  P(evidence) is identified (always, for factual evidence); and every
  c-component the query touches has a complete bidirected part.
* A polynomial program (`polynomial_bounds`, SCIP's spatial branch and
  bound, proven global optimum): everything else. E.g. P(B_{D=1}=1 | D=0,
  B=0) in the front-door graph D -> C -> B, D <-> B is bilinear in the
  {D, B} and {C} masses; evidence whose probability P(V) does not fix makes
  a ratio; and a bidirected part with two maximal cliques K1, K2 (the chain
  A <-> B <-> C) adds the constraint that the response functions of K1 - K2
  and K2 - K1 are independent (`_CanonicalModel.independence`), which the
  single joint of the LP would not impose. The program's variables are the
  same clique marginals, so its size is the LP's. A time limit leaves SCIP's
  dual bounds: valid, outer, with the gap to its best feasible point.

`bounds_certificate` says which was used, the gap, and whether the bounds are
exact. For the Colored-MNIST-bars graphs the LP covers every query of the
ctf-consistency table but front-door do(D) with C unobserved, which SCIP
solves in well under a second per query.

Tightness. The bounds are always valid. They are tight (optimal) when (a)
every c-component's bidirected part has at most two maximal cliques (one
latent per maximal clique; a complete part loses no generality with one
shared latent; with more than two cliques the canonical model also allows
dependences the diagram excludes: the bounds are then outer bounds, and
`Bounds.note` says so), (b) every conditioning event P(W_i = w) in the
c-factors is positive, and (c) SCIP finished within its time limit. A c-factor
row whose conditioning event has probability zero is dropped, unless another
of its factors is a well-defined zero (the row is then zero in every
compatible model); dropping rows is a relaxation, so bounds with zeros in the
table may be loose. Ratio programs consider models whose evidence has
probability at least `polynomial_bounds.MIN_EVIDENCE`.

Tables that no model compatible with the graph produces (e.g. violating the
instrumental inequality) make a component's constraints infeasible and raise
`BoundsError`; only the components a query touches are checked.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
from typing import Iterable, Sequence

import numpy as np
import scipy.optimize
import scipy.sparse

from ctfjax.causal import polynomial_bounds
from ctfjax.causal.table import Table
from ctfjax.errors import UserError
from ctfjax.causal.graph import Graph, GraphError
from ctfjax.causal.query import Query, Term, World

# Two LP optima this close are one value: the quantity is identified.
IDENTIFIED_TOL = 1e-9
# Probabilities at or below this are zero (conditioning events, evidence).
ZERO_TOL = 1e-12
# Largest LP (clique-marginal entries of one c-component) that is built.
MAX_LP_VARIABLES = 2_000_000
# Largest number of c-factor rows (assignments of C u Pa(C)) per component.
MAX_ROWS = 1_000_000
# Largest number of monomials the twin-network expansion may produce.
MAX_MONOMIALS = 200_000

# A coordinate of a response function: (variable, parent values in the order
# of graph.parents(variable)).
Coord = tuple[str, tuple[int, ...]]
# A partial assignment of coordinates, sorted: ((coord, value), ...).
Event = tuple[tuple[Coord, int], ...]
# A product of one event per c-component: sorted ((component index, event),).
Monomial = tuple[tuple[int, Event], ...]


class BoundsError(UserError):
  """Bad input to `bounds`, or a graph / query it cannot handle."""


class _NotLinear(BoundsError):
  """The query is a polynomial program, not an LP (`method='lp'` only)."""


@dataclasses.dataclass(frozen=True)
class Bounds:
  """Certified bounds of a counterfactual query (`bounds_certificate`).

  Attributes:
    lo, hi: valid bounds: every model compatible with the diagram and P(V)
      gives the query a value in [lo, hi].
    gap: how far lo and hi may each lie outside the optimal interval: 0 for
      the LP, SCIP's proven primal-dual gap (in query units) otherwise.
    method: 'lp' (linear program) or 'polynomial' (SCIP).
    exact: whether [lo, hi] is the optimal interval (to the solvers'
      tolerances, about 1e-6).
    note: why the bounds are not exact, or empty.
  """
  lo: float
  hi: float
  gap: float
  method: str
  exact: bool
  note: str = ""


def bounds(graph: Graph | str, table: Table,
           query: Query | str) -> tuple[float, float]:
  """Tight bounds of a counterfactual query given a diagram and P(V).

  `bounds_certificate` with its defaults, as a pair.

  Args:
    graph: the causal diagram (a `Graph` or its text form).
    table: the observational joint distribution, a `Table` over exactly the
      graph's nodes (any order); its shape gives the domain sizes.
    query: e.g. 'P(Y_{X=1}=1 | X=0, Y=0)'.

  Returns:
    (lo, hi): the minimum and maximum of the query over the canonical models
    compatible with `graph` and `table`, clipped to [0, 1]. See the module
    docstring for when they are tight.

  Raises:
    BoundsError: see `bounds_certificate`.
    QueryError: a malformed query, or one naming unknown variables or values.
  """
  b = bounds_certificate(graph, table, query)
  return b.lo, b.hi


def bounds_certificate(graph: Graph | str, table: Table, query: Query | str,
                       *, time_limit: float = 60.0,
                       method: str = "auto") -> Bounds:
  """Bounds of a counterfactual query with how they were proven.

  Args:
    graph: the causal diagram (a `Graph` or its text form).
    table: the observational joint distribution over the graph's nodes.
    query: e.g. 'P(B_{D=1}=1 | D=0, B=0)'.
    time_limit: seconds SCIP may spend on each end of a polynomial program;
      when it runs out, lo and hi are SCIP's dual bounds (valid, outer) and
      `exact` is False.
    method: 'auto' (the LP where it is exact, SCIP otherwise), 'lp' (refuse
      what the LP cannot solve) or 'polynomial' (SCIP even where the LP is
      exact; for tests).

  Returns:
    A `Bounds`.

  Raises:
    BoundsError: bad graph or table, evidence of probability zero, a table
      incompatible with the graph, a query outside the supported class
      (method 'lp'), or a program too large to build.
    QueryError: a malformed query, or one naming unknown variables or values.
  """
  if method not in ("auto", "lp", "polynomial"):
    raise BoundsError(f"method must be 'auto', 'lp' or 'polynomial', got "
                      f"{method!r}")
  if not (isinstance(time_limit, (int, float)) and math.isfinite(time_limit)
          and time_limit >= 0):
    raise BoundsError(f"time_limit must be a finite number of seconds >= 0, "
                      f"got {time_limit!r}")
  graph = _as_graph(graph)
  table = _as_table(graph, table)
  q = Query.parse(query)
  q.validate(table.domains)
  model = _CanonicalModel(graph, table)
  numerator = model.polynomial(q.terms)
  factual = all(not t.world for t in q.evidence)
  denominator = None if factual else model.polynomial(q.evidence)
  model.build_lps([numerator] + ([denominator] if denominator else []))
  den = None
  if not q.evidence:
    den = 1.0
  elif factual:
    given = {t.name: t.value for t in q.evidence}
    # Y=0 and Y=1 together: one dict entry would hide the contradiction.
    clash = len(given) < len({(t.name, t.value) for t in q.evidence})
    den = 0.0 if clash else table.prob(given)
  evidence = ", ".join(map(str, q.evidence))
  if den is not None and den <= ZERO_TOL:
    raise BoundsError(f"evidence {evidence} has probability zero")
  cliques = {c: model.clique_count(c) for c in model.lps}
  outer = sorted(model.lps[c].name for c, k in cliques.items() if k > 2)
  note = (f"outer bounds: the bidirected part of {', '.join(outer)} has more "
          "than two maximal cliques" if outer else "")
  if method != "polynomial":
    try:
      if den is None:
        lo, hi = model.range(denominator, q)
        if hi <= ZERO_TOL:
          raise BoundsError(f"evidence {evidence} has probability zero")
        if hi - lo > IDENTIFIED_TOL:
          raise _NotLinear(
              f"P({evidence}) is not identified from the table (it lies in "
              f"[{lo:.6g}, {hi:.6g}]), so {q} is a ratio of two free "
              "quantities")
        den = 0.5 * (lo + hi)
      lo, hi = model.range(numerator, q)
      if method == "lp" or all(k == 1 for k in cliques.values()) or outer:
        exact = all(k == 1 for k in cliques.values())
        return Bounds(float(np.clip(lo / den, 0.0, 1.0)),
                      float(np.clip(hi / den, 0.0, 1.0)), 0.0, "lp", exact,
                      "" if exact else note or "outer bounds: "
                      "a bidirected part is not a clique")
    except _NotLinear as e:
      if method == "lp":
        raise BoundsError(f"{e}; use method='auto'") from None
  return _polynomial_bounds(model, q, numerator, denominator, den,
                            time_limit, note)


def _polynomial_bounds(model, q, numerator, denominator, den, time_limit,
                       note) -> Bounds:
  """Both ends of the query by SCIP; `den` None means a ratio program."""
  polys = [numerator] if den is not None else [numerator, denominator]
  polytopes, factors, reduced = model.program(polys)
  ends = []
  for sense in ("minimize", "maximize"):
    try:
      ends.append(polynomial_bounds.optimise(
          polytopes, factors, reduced[0], None if den else reduced[1], sense,
          time_limit))
    except ValueError:
      raise BoundsError(
          "the table is not compatible with the graph: the observational "
          f"constraints of the components of {q} are infeasible") from None
  scale = 1.0 if den is None else den
  lo_end, hi_end = ends
  lo = float(np.clip(lo_end.dual / scale, 0.0, 1.0))
  hi = float(np.clip(hi_end.dual / scale, 0.0, 1.0))
  inner = (np.clip(lo_end.primal / scale, 0.0, 1.0),
           np.clip(hi_end.primal / scale, 0.0, 1.0))
  gap = max(inner[0] - lo, hi - inner[1])
  gap = float(hi - lo if math.isnan(gap) else max(gap, 0.0))
  optimal = lo_end.optimal and hi_end.optimal
  if not optimal:
    note = "; ".join(filter(None, [
        f"time limit {time_limit:g} s reached: SCIP's dual bounds, valid "
        f"but up to {gap:.3g} outside the optimum", note]))
  return Bounds(lo, hi, gap, "polynomial", optimal and not note, note)


def _as_graph(graph) -> Graph:
  if isinstance(graph, Graph):
    return graph
  if isinstance(graph, str):
    try:
      return Graph.parse(graph)
    except GraphError as e:
      raise BoundsError(f"bad graph: {e}") from None
  raise BoundsError(f"graph must be a Graph or a string, got "
                    f"{type(graph).__name__}")


def _as_table(graph: Graph, table) -> Table:
  """Checks that `table` covers exactly the graph's nodes; renormalises."""
  if not isinstance(table, Table):
    raise BoundsError(f"table must be a ctfjax.causal.Table, got "
                      f"{type(table).__name__}")
  missing = [n for n in graph.nodes if n not in table.variables]
  extra = [v for v in table.variables if v not in graph.nodes]
  if missing or extra:
    raise BoundsError(
        f"table variables {list(table.variables)} do not match the graph's "
        f"nodes {list(graph.nodes)} (missing {missing}, extra {extra})")
  # Table accepts sums off by 1e-6; the c-factors need an exact distribution.
  probs = np.clip(table.probs, 0.0, None)
  return Table(table.variables, probs / probs.sum())


class _CanonicalModel:
  """The canonical model of a diagram constrained by an observational table."""

  def __init__(self, graph: Graph, table: Table):
    self.graph = graph
    self.table = table
    self.domains = table.domains
    self.order = graph.topological_order()
    self.parents = {v: graph.parents(v) for v in graph.nodes}
    self.components = graph.c_components()
    self.component_of = {v: i for i, c in enumerate(self.components)
                         for v in c}
    self.lps: dict[int, _ComponentLP] = {}

  # Query polynomial -----------------------------------------------------------

  def polynomial(self, terms: Sequence[Term]) -> dict[Monomial, float]:
    """P(all terms) as {monomial: coefficient}, by DFS over the twin network.

    The network has one copy of each non-intervened ancestor (in the
    mutilated graph) of each world's terms, one per set of interventions
    that reach it (`Graph.reaching`); a copy's value is its response
    function's coordinate at its parents' values, so copies that read the
    same coordinate agree by construction (node merging).
    """
    want: dict[tuple[str, World], int] = {}
    for t in terms:
      do = dict(t.world)
      if t.name in do:
        if do[t.name] != t.value:
          return {}  # X_{X=1}=0
        continue
      key = (t.name, self.graph.reaching(t.name, t.world))
      if want.setdefault(key, t.value) != t.value:
        return {}  # Y=0 and Y=1 in one world
    # One copy per (variable, interventions reaching it): the terms and
    # their non-intervened ancestors in the mutilated graphs.
    copies: dict[tuple[str, World], list] = {}
    todo = list(want)
    while todo:
      v, world = todo.pop()
      if (v, world) in copies:
        continue
      do = dict(world)
      sources = []
      for p in self.parents[v]:
        if p in do:
          sources.append(("const", do[p]))
        else:
          sources.append(("node", (p, self.graph.reaching(p, world))))
          todo.append(sources[-1][1])
      copies[v, world] = sources
    pos = {v: i for i, v in enumerate(self.order)}
    nodes = sorted(((v, w, s) for (v, w), s in copies.items()),
                   key=lambda n: (pos[n[0]], len(n[1]), n[1]))
    values: dict[tuple[str, World], int] = {}
    coords: dict[Coord, int] = {}
    out: dict[Monomial, float] = collections.defaultdict(float)

    def emit():
      if len(out) >= MAX_MONOMIALS:
        raise BoundsError(
            f"the twin-network expansion has more than {MAX_MONOMIALS} "
            "terms; condition on more variables or use smaller domains")
      by_comp = collections.defaultdict(list)
      for coord, val in coords.items():
        by_comp[self.component_of[coord[0]]].append((coord, val))
      out[tuple(sorted((c, tuple(sorted(e)))
                       for c, e in by_comp.items()))] += 1.0

    def visit(k):
      if k == len(nodes):
        emit()
        return
      v, world, sources = nodes[k]
      coord = (v, tuple(x if kind == "const" else values[x]
                        for kind, x in sources))
      target = want.get((v, world))
      if coord in coords:
        if target is not None and coords[coord] != target:
          return  # the shared coordinate contradicts this term
        values[(v, world)] = coords[coord]
        visit(k + 1)
      else:
        for val in ([target] if target is not None
                    else range(self.domains[v])):
          coords[coord] = val
          values[(v, world)] = val
          visit(k + 1)
        del coords[coord]
      del values[(v, world)]

    visit(0)
    return dict(out)

  # Observational constraints --------------------------------------------------

  def c_factor_rows(self, c: int) -> list[tuple[Event, float]]:
    """Tian's c-factor of component c as (event, probability) rows."""
    comp = self.components[c]
    pa_c = {p for v in comp for p in self.parents[v]}
    s_vars = [v for v in self.order if v in comp or v in pa_c]
    shape = [self.domains[v] for v in s_vars]
    size = math.prod(shape)
    if size > MAX_ROWS:
      raise BoundsError(
          f"c-component {{{', '.join(sorted(comp))}}} has {size} c-factor "
          f"rows (more than {MAX_ROWS}); the graph is too large for exact "
          "bounds")
    value = np.ones(shape)
    defined = np.ones(shape, dtype=bool)
    zero = np.zeros(shape, dtype=bool)
    for i, v in enumerate(self.order):
      if v not in comp:
        continue
      t_i = self.graph.subgraph(self.order[:i + 1]).c_component_of(v)
      pa_t = {p for x in t_i for p in self.parents[x]}
      w_i = [x for x in self.order if (x in t_i or x in pa_t) and x != v]
      cond, ok = self._conditional(v, w_i, s_vars)
      value = value * np.where(ok, cond, 1.0)
      defined = defined & ok
      # A zero P(v_i | w_i) with P(w_i) > 0 zeroes the row even where other
      # factors are undefined: Q[T_i](v_i, w_i) = 0 in every compatible
      # model, and Q_C summed over C's later members is Q[T_i] times other
      # c-factors.
      zero = zero | (ok & (cond <= ZERO_TOL))
    value = np.where(zero, 0.0, value)
    keep = defined | zero
    pos = {v: k for k, v in enumerate(s_vars)}
    rows = []
    for idx in zip(*np.nonzero(keep)):
      event = tuple(sorted(
          ((v, tuple(int(idx[pos[p]]) for p in self.parents[v])),
           int(idx[pos[v]])) for v in comp))
      rows.append((event, float(value[idx])))
    return rows

  def _conditional(self, v: str, given: list[str], s_vars: list[str]):
    """P(v | given) broadcast to axes `s_vars`, and where it is defined."""
    names = given + [v]
    joint = self.table.marginal(names).probs  # [*given, v]
    norm = joint.sum(axis=-1, keepdims=True)
    ok = np.broadcast_to(norm > ZERO_TOL, joint.shape)
    cond = np.where(ok, joint / np.where(ok, norm, 1.0), 0.0)
    perm = sorted(range(len(names)), key=lambda k: s_vars.index(names[k]))
    shape = [self.domains[x] if x in names else 1 for x in s_vars]
    return (np.transpose(cond, perm).reshape(shape),
            np.transpose(ok, perm).reshape(shape))

  # LPs ------------------------------------------------------------------------

  def build_lps(self, polynomials: Iterable[dict[Monomial, float]]):
    """Builds the LP of every component some monomial names."""
    events = collections.defaultdict(set)
    for poly in polynomials:
      for mono in poly:
        for c, e in mono:
          events[c].add(e)
    for c, evs in sorted(events.items()):
      name = "{" + ", ".join(sorted(self.components[c])) + "}"
      rows = self.c_factor_rows(c)
      sets = [[coord for coord, _ in e] for e, _ in rows]
      sets += [[coord for coord, _ in e] for e in evs]
      self.lps[c] = _ComponentLP(name, self.domains, rows, evs,
                                 self.independence(c, sets))

  def _event_ranges(self, items):
    """(min, max) of q_C(E) for each (component C, event E) of `items`."""
    return [self.lps[c].event_range(e) for c, e in items]

  def reduce(self, poly: dict[Monomial, float]):
    """Substitutes identified factors: (constant, linear, products).

    linear[c][E] is the coefficient of the free factor q_c(E); products are
    (coefficient, [(component, event), ...]) with at least two free factors.
    """
    const = 0.0
    linear = collections.defaultdict(lambda: collections.defaultdict(float))
    products = []
    for mono, coef in poly.items():
      if not mono:
        const += coef
        continue
      if len(mono) == 1:
        ((c, e),) = mono
        linear[c][e] += coef
        continue
      free = []
      for (c, e), (lo, hi) in zip(mono, self._event_ranges(mono)):
        if hi - lo <= IDENTIFIED_TOL:
          coef *= 0.5 * (lo + hi)
        else:
          free.append((c, e))
      if abs(coef) <= ZERO_TOL:  # A negative term is a term, not zero.
        continue
      if not free:
        const += coef
      elif len(free) == 1:
        linear[free[0][0]][free[0][1]] += coef
      else:
        products.append((coef, free))
    return const, linear, products

  def range(self, poly: dict[Monomial, float], q: Query):
    """(min, max) of a polynomial over the compatible canonical models."""
    const, linear, products = self.reduce(poly)
    parts = {c: self.lps[c].linear_range(obj) for c, obj in linear.items()}
    if not products:
      return (const + sum(lo for lo, _ in parts.values()),
              const + sum(hi for _, hi in parts.values()))
    varying = any(hi - lo > IDENTIFIED_TOL for lo, hi in parts.values())
    if len(products) == 1 and not varying:
      # One product of free factors plus constants: each factor ranges over
      # its own component's polytope, independently, and is non-negative.
      coef, free = products[0]
      const += sum(0.5 * (lo + hi) for lo, hi in parts.values())
      ranges = self._event_ranges(free)
      ends = (coef * math.prod(lo for lo, _ in ranges),
              coef * math.prod(hi for _, hi in ranges))
      return const + min(ends), const + max(ends)  # coef may be negative
    names = sorted({self.lps[c].name for _, free in products for c, _ in free})
    raise _NotLinear(
        f"{q} is not linear in one c-component's response-function masses "
        f"(it is a polynomial program over components {', '.join(names)})")

  # Polynomial programs --------------------------------------------------------

  def program(self, polys):
    """The SCIP program of `polys`: polytopes, factors, reduced polynomials."""
    reduced = []
    for poly in polys:
      const, linear, products = self.reduce(poly)
      terms = [(coef, [(c, e)]) for c, obj in linear.items()
               for e, coef in obj.items()]
      reduced.append((const, terms + products))
    comps = sorted({c for _, terms in reduced for _, keys in terms
                    for c, _ in keys})
    part = {c: i for i, c in enumerate(comps)}
    polytopes = [self.lps[c].polytope() for c in comps]
    factors = {}
    for _, terms in reduced:
      for _, keys in terms:
        for c, e in keys:
          if (c, e) not in factors:
            lo, hi = self.lps[c].event_range(e)
            factors[c, e] = polynomial_bounds.Factor(
                part[c], self.lps[c].columns(e), lo, hi)
    return polytopes, factors, reduced

  def clique_count(self, c: int) -> int:
    """Number of maximal cliques of component c's bidirected part."""
    return len(self._bidirected_cliques(c))

  def _bidirected_cliques(self, c: int) -> list[frozenset]:
    comp = self.components[c]
    nb = {v: {w for pair in self.graph.bidirected if v in pair
              for w in pair if w != v} for v in comp}
    cliques = []

    def grow(r, p, x):  # Bron-Kerbosch: the components are small
      if not p and not x:
        cliques.append(frozenset(r))
      for v in sorted(p):
        grow(r | {v}, p & nb[v], x & nb[v])
        p = p - {v}
        x = x | {v}

    grow(set(), set(comp), set())
    return sorted(cliques, key=sorted)

  def independence(self, c: int, sets) -> tuple[list, list] | None:
    """Coordinates that must be independent in a two-clique component.

    With one latent per maximal clique K1, K2 of the bidirected part, the
    response functions of K1 - K2 depend on K1's latent only, those of
    K2 - K1 on K2's only, and those of the shared variables on both (and
    their own noise). The joints this allows are exactly those in which
    r(K1 - K2) and r(K2 - K1) are independent: given such a joint, take the
    latents to be r(K1 - K2) plus a uniform seed, and r(K2 - K1), and draw
    the shared variables' responses from their conditional. Only the
    coordinates that some event names need the constraint: the others can
    be set independently.
    """
    cliques = self._bidirected_cliques(c)
    if len(cliques) != 2:
      return None
    k1, k2 = cliques
    named = sorted({coord for s in sets for coord in s})
    return ([coord for coord in named if coord[0] in k1 - k2],
            [coord for coord in named if coord[0] in k2 - k1])


class _ComponentLP:
  """The polytope of one c-component's canonical masses, as clique marginals.

  LP variables are the entries of one table per maximal clique of a chordal
  cover of the coordinates (the marginal of q_C over that clique); equality
  rows say that each table sums to one, that neighbouring tables of the
  junction tree agree on their separator, and that the c-factor events have
  their observed probabilities.
  """

  def __init__(self, name: str, domains: dict[str, int],
               rows: list[tuple[Event, float]], events: set[Event],
               independent: tuple[list, list] | None = None):
    self.name = name
    self.domains = domains
    self.independent = independent
    sets = [frozenset(c for c, _ in e) for e, _ in rows]
    sets += [frozenset(c for c, _ in e) for e in events]
    if independent and all(independent):
      # One clique holds both sides, so their joint is an LP variable.
      sets.append(frozenset(independent[0] + independent[1]))
    # A coordinate r_V(pa) takes V's values.
    sizes = {c: domains[c[0]] for s in sets for c in s}
    self.cliques = _chordal_cover(sets, sizes)
    total = sum(math.prod(sizes[c] for c in k) for k in self.cliques)
    if total > MAX_LP_VARIABLES:
      raise BoundsError(
          f"the LP of c-component {name} needs {total} variables (more than "
          f"{MAX_LP_VARIABLES}); the query or graph is too large for exact "
          "bounds")
    self.axes = [{c: a for a, c in enumerate(k)} for k in self.cliques]
    self.shapes = [tuple(sizes[c] for c in k) for k in self.cliques]
    self.offsets = np.cumsum([0] + [math.prod(s) for s in self.shapes])
    self.n = int(self.offsets[-1])
    self.home = {}  # coordinate set -> index of a clique containing it
    r_idx, c_idx, data, b = [], [], [], []

    def add_row(cols, vals, rhs):
      r_idx.append(np.full(len(cols), len(b)))
      c_idx.append(cols)
      data.append(vals)
      b.append(rhs)

    for k in range(len(self.cliques)):
      cols = np.arange(self.offsets[k], self.offsets[k + 1])
      add_row(cols, np.ones(len(cols)), 1.0)
    for k1, k2 in _junction_tree(self.cliques):
      sep = sorted(set(self.cliques[k1]) & set(self.cliques[k2]))
      base = len(b)
      for k, sign in ((k1, 1.0), (k2, -1.0)):
        grid = np.indices(self.shapes[k]).reshape(len(self.shapes[k]), -1)
        sep_idx = np.ravel_multi_index(
            [grid[self.axes[k][c]] for c in sep],
            [self.shapes[k][self.axes[k][c]] for c in sep])
        r_idx.append(base + sep_idx)
        c_idx.append(np.arange(self.offsets[k], self.offsets[k + 1]))
        data.append(np.full(grid.shape[1], sign))
      b.extend([0.0] * math.prod(sizes[c] for c in sep))
    for event, value in rows:
      cols = self.columns(event)
      add_row(cols, np.ones(len(cols)), value)
    self.a_eq = scipy.sparse.csr_matrix(
        (np.concatenate(data), (np.concatenate(r_idx), np.concatenate(c_idx))),
        shape=(len(b), self.n))
    self.b_eq = np.asarray(b)
    self._cache: dict[Event, tuple[float, float]] = {}

  def polytope(self) -> polynomial_bounds.Polytope:
    """The LP's polytope, plus the independence of a two-clique component."""
    products, sides = [], {}
    if self.independent and all(self.independent):
      left, right = self.independent
      events = [[tuple(zip(coords, vals)) for vals in itertools.product(
          *[range(self.domains[c[0]]) for c in coords])]
                for coords in (left, right)]
      for e in events[0] + events[1]:
        # The LP range of each side's masses: when it is a point (a root's
        # response, fixed by P(V)), the product is linear.
        sides[e] = (self.columns(e), *self.event_range(e))
      for a, b in itertools.product(*events):
        products.append((self.columns(tuple(sorted(a + b))), a, b))
    return polynomial_bounds.Polytope(self.a_eq, self.b_eq, products, sides)

  def columns(self, event: Event) -> np.ndarray:
    """LP columns whose clique entry agrees with `event`."""
    coords = frozenset(c for c, _ in event)
    if coords not in self.home:
      self.home[coords] = next(
          k for k, clique in enumerate(self.cliques) if coords <= set(clique))
    k = self.home[coords]
    mask = np.zeros(self.shapes[k], dtype=bool)
    index = [slice(None)] * len(self.shapes[k])
    for c, val in event:
      index[self.axes[k][c]] = val
    mask[tuple(index)] = True
    return self.offsets[k] + np.flatnonzero(mask)

  def _optimum(self, objective: np.ndarray, sign: float) -> float:
    res = scipy.optimize.linprog(
        sign * objective, A_eq=self.a_eq, b_eq=self.b_eq, bounds=(0, None),
        method="highs")
    if res.status == 2:
      raise BoundsError(
          f"the table is not compatible with the graph: the observational "
          f"constraints of c-component {self.name} are infeasible")
    if res.status != 0:
      raise BoundsError(f"LP of c-component {self.name} failed: {res.message}")
    return sign * float(res.fun)

  def linear_range(self, objective: dict[Event, float]) -> tuple[float, float]:
    """(min, max) of sum_E coef_E q_C(E) over the polytope."""
    if len(objective) == 1:
      ((event, coef),) = objective.items()
      lo, hi = self.event_range(event)
      # A negative coefficient turns the event's range around.
      return min(coef * lo, coef * hi), max(coef * lo, coef * hi)
    vec = np.zeros(self.n)
    for event, coef in objective.items():
      vec[self.columns(event)] += coef
    return self._optimum(vec, 1.0), self._optimum(vec, -1.0)

  def event_range(self, event: Event) -> tuple[float, float]:
    """(min, max) of q_C(event) over the polytope (cached)."""
    if event not in self._cache:
      vec = np.zeros(self.n)
      vec[self.columns(event)] = 1.0
      self._cache[event] = (self._optimum(vec, 1.0),
                            self._optimum(vec, -1.0))
    return self._cache[event]


def _chordal_cover(sets: list[frozenset], sizes: dict) -> list[tuple]:
  """Maximal cliques of a min-fill triangulation of the sets' primal graph.

  Ties between equal fill-in go to the smaller clique table, since the LP
  has one variable per clique entry. Returns cliques as sorted tuples.
  """
  adj = collections.defaultdict(set)
  for s in sets:
    for a in s:
      adj[a].update(s - {a})
  remaining = set(adj)
  vertices = sorted(adj)  # sorted for a deterministic elimination order
  cliques = set()
  while remaining:
    best, best_key = None, None
    for v in vertices:
      if v not in remaining:
        continue
      nb = adj[v] & remaining
      fill = sum(1 for a, b in itertools.combinations(nb, 2)
                 if b not in adj[a])
      key = (fill, sizes[v] * math.prod(sizes[x] for x in nb))
      if best_key is None or key < best_key:
        best, best_key = v, key
    nb = adj[best] & remaining
    for a, b in itertools.combinations(nb, 2):
      adj[a].add(b)
      adj[b].add(a)
    cliques.add(frozenset(nb | {best}))
    remaining.remove(best)
  maximal = [k for k in cliques if not any(k < o for o in cliques)]
  return sorted(tuple(sorted(k)) for k in maximal)


def _junction_tree(cliques: list[tuple]) -> list[tuple[int, int]]:
  """Edges of a maximum-weight spanning forest (weight = separator size).

  For the maximal cliques of a chordal graph this forest has the running
  intersection property, so local consistency along it is global.
  """
  sets = [frozenset(k) for k in cliques]
  pairs = sorted(((len(sets[i] & sets[j]), i, j)
                  for i, j in itertools.combinations(range(len(sets)), 2)
                  if sets[i] & sets[j]), key=lambda p: -p[0])
  root = list(range(len(sets)))

  def find(i):
    while root[i] != i:
      root[i] = root[root[i]]
      i = root[i]
    return i

  edges = []
  for _, i, j in pairs:
    ri, rj = find(i), find(j)
    if ri != rj:
      root[ri] = rj
      edges.append((i, j))
  return edges
