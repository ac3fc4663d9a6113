"""Optimal bounds (causal.optimal_bounds) vs closed forms and brute force.

Independent checks: the Frechet closed form (docs/concepts.md), the
natural (Manski) bounds, witness pair B, a brute-force LP over the full joint
of response functions for single-c-component graphs, and the exact query value
of random models compatible with each graph (it must lie inside the bounds);
for the polynomial programs (SCIP), closed forms derived by hand, vertex
enumeration and Charnes-Cooper LPs.
"""

import itertools

import numpy as np
import pytest
import scipy.optimize

from ctfjax import causal as cc
from ctfjax import data
from ctfjax.causal import optimal_bounds as cb
from ctfjax.causal import polynomial_bounds as pb
from ctfjax.causal.optimal_bounds import BoundsError, bounds

TOL = 1e-7

BACKDOOR = "D <-> C; D -> B; C -> B"
FRONTDOOR = "D -> C; C -> B; D <-> B"


def frechet(p, p_prime, b_obs):
  """Closed-form bounds of P(B_{x'} = 1 - b_obs | x, rest, B = b_obs).

  p = P(B=1 | x, rest), p_prime = P(B=1 | x', rest).
  """
  if b_obs == 0:
    return (max(0.0, p_prime - p) / (1 - p), min(p_prime, 1 - p) / (1 - p))
  return max(0.0, p - p_prime) / p, min(1 - p_prime, p) / p


def backdoor_scm():
  """The Colored-MNIST-bars backdoor feature SCM (docs/datasets.md)."""
  return cc.DiscreteSCM.from_functions(
      {"u_dc": [0.5, 0.5], "u_d": [0.2] * 5, "u_c": [0.8, 0.2],
       "u_b": [0.05] * 20},
      {"D": (10, ["u_dc", "u_d"], lambda dc, d: d + 5 * dc),
       "C": (2, ["u_dc", "u_c"], lambda dc, c: dc ^ c),
       "B": (2, ["D", "C", "u_b"],
             lambda d, c, u: (u + 0.5) / 20 < 0.9 - 0.05 * d - 0.3 * c)})


def frontdoor_scm():
  """The Colored-MNIST-bars front-door feature SCM (docs/datasets.md)."""
  return cc.DiscreteSCM.from_functions(
      {"u_db": [0.5, 0.5], "u_d": [0.2] * 5, "u_c": [0.02] * 50,
       "u_b": [0.05] * 20},
      {"D": (10, ["u_db", "u_d"], lambda db, d: d + 5 * db),
       "C": (2, ["D", "u_c"], lambda d, u: (u + 0.5) / 50 < 0.1 + 0.08 * d),
       "B": (2, ["C", "u_db", "u_b"],
             lambda c, db, u: (u + 0.5) / 20 < 0.8 - 0.5 * c - 0.2 * db)})


def random_scm(text, rng, domains):
  """A random discrete SCM whose induced diagram is exactly `text`."""
  graph = cc.Graph.parse(text)
  exo, inputs = {}, {v: list(graph.parents(v)) for v in graph.nodes}
  for v in graph.nodes:
    exo[f"u_{v}"] = rng.dirichlet(np.ones(4))
    inputs[v].append(f"u_{v}")
  for a, b in sorted(sorted(p) for p in graph.bidirected):
    exo[f"u_{a}{b}"] = rng.dirichlet(np.ones(3))
    inputs[a].append(f"u_{a}{b}")
    inputs[b].append(f"u_{a}{b}")
  sizes = {**{k: len(p) for k, p in exo.items()}, **domains}
  endo = {v: cc.Mechanism(domains[v], tuple(inputs[v]), rng.integers(
      0, domains[v], size=[sizes[i] for i in inputs[v]]))
          for v in graph.nodes}
  scm = cc.DiscreteSCM(exo, endo)
  assert scm.graph.directed == graph.directed
  assert scm.graph.bidirected == graph.bidirected
  return scm


def assert_contains(lo_hi, truth):
  lo, hi = lo_hi
  assert lo - TOL <= truth <= hi + TOL, (lo, truth, hi)


# Closed forms -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_frechet_single_parent(seed):
  rng = np.random.default_rng(seed)
  px, p0, p1 = rng.uniform(0.05, 0.95, size=3)
  p_b = np.array([p0, p1])
  probs = np.array([1 - px, px])[:, None] * np.stack([1 - p_b, p_b], axis=1)
  table = cc.Table(("X", "B"), probs)
  for x, b in itertools.product(range(2), range(2)):
    q = f"P(B_{{X={1 - x}}}={1 - b} | X={x}, B={b})"
    got = bounds("X -> B", table, q)
    assert got == pytest.approx(frechet(p_b[x], p_b[1 - x], b), abs=TOL), q


@pytest.mark.parametrize("seed", range(3))
def test_frechet_with_non_descendant_parent(seed):
  rng = np.random.default_rng(seed)
  p_z = rng.dirichlet(np.ones(3))
  p_x = rng.uniform(0.05, 0.95, size=3)  # P(X=1 | z)
  p_b = rng.uniform(0.05, 0.95, size=(3, 2))  # P(B=1 | z, x)
  probs = (p_z[:, None, None] * np.stack([1 - p_x, p_x], 1)[:, :, None]
           * np.stack([1 - p_b, p_b], 2))
  table = cc.Table(("Z", "X", "B"), probs)
  for z, x, b in itertools.product(range(3), range(2), range(2)):
    q = f"P(B_{{X={1 - x}}}={1 - b} | X={x}, Z={z}, B={b})"
    got = bounds("Z -> X; Z -> B; X -> B", table, q)
    want = frechet(p_b[z, x], p_b[z, 1 - x], b)
    assert got == pytest.approx(want, abs=TOL), q


def test_witness_b_attains_both_bounds():
  def model(y_if_x1):
    return cc.DiscreteSCM.from_functions(
        {"u_x": [0.5, 0.5], "u_y": [0.1] * 10},
        {"X": (2, ["u_x"], lambda u: u),
         "Y": (2, ["X", "u_y"],
               lambda x, u: np.where(x == 0, u <= 1, y_if_x1(u)))})

  b1 = model(lambda u: u <= 5)
  b2 = model(lambda u: u >= 4)
  t1, t2 = b1.observational(), b2.observational()
  np.testing.assert_allclose(t1.probs, t2.probs, atol=1e-15)
  q = "P(Y_{X=1}=1 | X=0, Y=0)"
  assert cc.query(b1, q) == pytest.approx(0.5, abs=1e-12)
  assert cc.query(b2, q) == pytest.approx(0.75, abs=1e-12)
  assert bounds(b1.graph, t1, q) == pytest.approx((0.5, 0.75), abs=TOL)
  assert bounds("X -> Y", t2, q) == pytest.approx((0.5, 0.75), abs=TOL)


def test_natural_bounds_under_confounding():
  scm = random_scm("X -> Y; X <-> Y", np.random.default_rng(7),
                   {"X": 2, "Y": 2})
  table = scm.observational()
  p = table.probs  # [X, Y]
  got = bounds(scm.graph, table, "P(Y_{X=1}=1)")
  assert got == pytest.approx((p[1, 1], p[1, 1] + p[0].sum()), abs=TOL)
  # The effect of treatment on the untreated is not constrained at all.
  got = bounds(scm.graph, table, "P(Y_{X=1}=1 | X=0)")
  assert got == pytest.approx((0.0, 1.0), abs=TOL)


# Brute force over the full joint of response functions ------------------------


def brute_force_bounds(graph, table, query):
  """Bounds by an LP over the joint of ALL response functions.

  Only valid for a graph with one c-component, where that joint is the whole
  canonical model and P(V) constrains it linearly; evidence must be factual.
  """
  assert len(graph.c_components()) == 1
  _, _, a_eq, objective, den = joint_lp(graph, table, query)
  return solve_lp(objective, a_eq, table.probs.ravel(), den)


def joint_lp(graph, table, query):
  """The LP over all joint response functions: (the joints, the response
  choices, P(V) equality rows, the query's indicator, P(evidence))."""
  q = cc.Query.parse(query)
  _, _, choices, evaluate = responses(graph, table)
  joints = list(itertools.product(*choices))
  a_eq = np.zeros((table.probs.size, len(joints)))
  objective = np.zeros(len(joints))
  for j, resp in enumerate(joints):
    vals = evaluate(resp, ())
    a_eq[np.ravel_multi_index([vals[v] for v in table.variables],
                              table.probs.shape), j] = 1.0
    objective[j] = all(evaluate(resp, t.world)[t.name] == t.value
                       for t in q.terms)
  den = table.prob({t.name: t.value for t in q.evidence}) if q.evidence else 1
  return joints, choices, a_eq, objective, den


def solve_lp(objective, a_eq, b_eq, den):
  """(min, max) of objective . x / den over x >= 0 with a_eq x = b_eq."""
  out = []
  for sign in (1.0, -1.0):
    res = scipy.optimize.linprog(sign * objective, A_eq=a_eq, b_eq=b_eq,
                                 bounds=(0, None), method="highs")
    assert res.status == 0
    out.append(sign * res.fun / den)
  return tuple(out)


@pytest.mark.parametrize("text, domains, queries", [
    ("X -> Y; X <-> Y", {"X": 3, "Y": 2}, [
        "P(Y_{X=2}=1 | X=0, Y=0)", "P(Y_{X=1}=1, Y_{X=0}=0)",
        "P(Y_{X=0}=1, Y_{X=1}=1, Y_{X=2}=0)", "P(X_{Y=1}=2 | X=2)",
        "P(Y_{X=1}=1)"]),
    ("Z -> X; X -> Y; Z -> Y; Z <-> X; X <-> Y; Z <-> Y",
     {"Z": 2, "X": 2, "Y": 2}, [
         "P(Y_{X=1}=1 | Z=0, X=0, Y=0)", "P(Y_{X=1}=1, Y_{X=0}=0 | Z=1)",
         "P(Y_{Z=0}=1, X_{Z=1}=1 | Z=0)", "P(Y_{X=0, Z=1}=0 | Y=1)",
         "P(X_{Z=0}=1, Y_{Z=1, X=0}=1)", "P(Y_{X=0}=1 | Z=1)"]),
])
def test_matches_brute_force_single_component(text, domains, queries):
  for seed in range(2):
    scm = random_scm(text, np.random.default_rng(seed), domains)
    table = scm.observational()
    for q in queries:
      got = bounds(scm.graph, table, q)
      want = brute_force_bounds(scm.graph, table, q)
      assert got == pytest.approx(want, abs=1e-6), (seed, q)


def test_chordal_cover_fills_a_cycle():
  # A 4-cycle of pairwise events needs one chord: two triangles, joined by
  # the chord in the junction tree, and every event inside some clique.
  sets = [frozenset(p) for p in ("ab", "bc", "cd", "da")]
  # pylint: disable=protected-access
  cliques = cb._chordal_cover(sets, dict.fromkeys("abcd", 2))
  assert sorted(len(k) for k in cliques) == [3, 3]
  assert all(any(s <= set(k) for k in cliques) for s in sets)
  assert cb._junction_tree(cliques) == [(0, 1)]


def test_component_lp_single_event_range_is_ordered_for_any_sign():
  # q_{X,Y}(r_X(z=0) = 0, r_Y(x=1) = 1), i.e. P(X=0, Y_{X=1}=1 | Z=0), is
  # free in the {X, Y} polytope with 0 < lo < hi. Times c < 0 its range is
  # [c hi, c lo]; the same objective through the general LP path (a second
  # event with coefficient 0) is the independent check.
  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  table = cc.Table(("Z", "X", "Y"), rng.dirichlet(np.ones(8)).reshape(2, 2, 2))
  model = cb._CanonicalModel(cc.Graph.parse("Z -> X; X -> Y; X <-> Y"), table)
  model.build_lps([model.polynomial(cc.Query.parse("P(Y_{X=1}=1, X=0)").terms)])
  lp = model.lps[model.component_of["Y"]]
  event = ((("X", (0,)), 0), (("Y", (1,)), 1))
  lo, hi = lp.event_range(event)
  assert 0.1 < lo < hi - 0.1  # both ends matter
  for coef in (2.0, -2.0, -0.5):
    got = lp.linear_range({event: coef})
    assert got[0] <= got[1]
    assert got == pytest.approx(sorted([coef * lo, coef * hi]), abs=TOL)
    general = lp.linear_range({event: coef, event[:1]: 0.0})
    assert got == pytest.approx(general, abs=1e-7)


# Random models: the truth lies inside the bounds ------------------------------


@pytest.mark.parametrize("text, domains, x, y", [
    ("X -> Y; X <-> Y", {"X": 2, "Y": 3}, "X", "Y"),
    ("Z -> X; X -> Y; Z <-> Y", {"Z": 2, "X": 2, "Y": 2}, "X", "Y"),
    ("Z -> X; X -> Y; X <-> Y", {"Z": 2, "X": 2, "Y": 2}, "X", "Y"),
    ("X -> M; M -> Y; X <-> M; M <-> Y", {"X": 2, "M": 2, "Y": 2}, "X", "Y"),
    (BACKDOOR, {"D": 3, "C": 2, "B": 2}, "C", "B"),
    (BACKDOOR, {"D": 3, "C": 2, "B": 2}, "D", "B"),
    (FRONTDOOR, {"D": 3, "C": 2, "B": 2}, "C", "B"),
    (FRONTDOOR, {"D": 3, "C": 2, "B": 2}, "D", "B"),
])
@pytest.mark.slow
def test_random_models_truth_inside_bounds(text, domains, x, y):
  for seed in range(3):
    rng = np.random.default_rng(seed)
    scm = random_scm(text, rng, domains)
    table = scm.observational()
    s = {k: int(v[0]) for k, v in scm.sample(rng, 1).items()}
    x1 = (s[x] + 1) % domains[x]
    others = ", ".join(f"{v}={s[v]}" for v in scm.graph.nodes)
    queries = [
        f"P({y}_{{{x}={x1}}}={s[y]} | {x}={s[x]}, {y}={s[y]})",
        f"P({y}_{{{x}={x1}}}=1 | {others})",
        f"P({y}_{{{x}={x1}}}=0)",
        f"P({y}_{{{x}=1}}=1, {y}_{{{x}=0}}=0)",
        f"P({y}_{{{x}=1}}=1 | {y}_{{{x}=0}}=0)",
        f"P({y}={s[y]} | {x}={s[x]})",
    ]
    for q in queries:
      try:
        truth = cc.query(scm, q)
      except cc.ZeroProbabilityError:
        continue
      got = cc.bounds_certificate(scm.graph, table, q)
      assert got.exact, (q, got)
      assert_contains((got.lo, got.hi), truth)


# Colored MNIST with bars ------------------------------------------------------


def test_backdoor_bar_queries_match_frechet_aggregated_over_digits():
  scm = backdoor_scm()
  table = scm.observational()
  p_dc = table.marginal(("D", "C")).probs  # [D, C]
  p_b = table.probs[:, :, 1] / p_dc  # P(B=1 | d, c), table is [D, C, B]
  assert table.variables == ("D", "C", "B")
  for c, b in itertools.product(range(2), range(2)):
    q = f"P(B_{{C={1 - c}}}={1 - b} | C={c}, B={b})"
    # P(d | C=c, B=b) weights the per-digit closed form.
    p_obs = np.where(b == 1, p_b[:, c], 1 - p_b[:, c])
    weights = p_dc[:, c] * p_obs / (p_dc[:, c] * p_obs).sum()
    per_digit = np.array([frechet(p_b[d, c], p_b[d, 1 - c], b)
                          for d in range(10)])
    want = weights @ per_digit
    got = bounds(scm.graph, table, q)
    assert got == pytest.approx(tuple(want), abs=TOL), q
    assert_contains(got, cc.query(scm, q))
    assert got[1] - got[0] > 0.1  # a genuine interval, not identified


def test_backdoor_digit_queries_match_frechet():
  scm = backdoor_scm()
  table = scm.observational()
  p_b = table.probs[:, :, 1] / table.marginal(("D", "C")).probs
  for d, d1, c in [(2, 7, 0), (9, 0, 1), (4, 5, 0), (0, 9, 1)]:
    q = f"P(B_{{D={d1}}}=1 | D={d}, C={c}, B=0)"
    got = bounds(scm.graph, table, q)
    assert got == pytest.approx(frechet(p_b[d, c], p_b[d1, c], 0), abs=TOL)
    assert_contains(got, cc.query(scm, q))


@pytest.mark.parametrize("text, q", [
    (BACKDOOR, "P(D_{C=1}=3 | D=3, C=0)"),
    (BACKDOOR, "P(C_{D=7}=0 | C=0, D=2)"),
    (BACKDOOR, "P(C_{D=7}=1 | C=1, D=2)"),
    (BACKDOOR, "P(D_{B=0}=8, C_{B=0}=1 | D=8, C=1, B=1)"),
    (BACKDOOR, "P(C_{C=1}=1 | C=0)"),
    (FRONTDOOR, "P(D_{C=1}=3 | D=3, C=0)"),
    (FRONTDOOR, "P(D_{B=1}=6, C_{B=1}=1 | D=6, C=1, B=0)"),
])
def test_non_descendants_collapse_to_a_point(text, q):
  scm = backdoor_scm() if text == BACKDOOR else frontdoor_scm()
  assert scm.graph == cc.Graph.parse(text)
  assert bounds(scm.graph, scm.observational(), q) == pytest.approx(
      (1.0, 1.0), abs=TOL)


def test_frontdoor_bar_queries_contain_the_truth():
  scm = frontdoor_scm()
  table = scm.observational()
  for c, b in itertools.product(range(2), range(2)):
    q = f"P(B_{{C={1 - c}}}={1 - b} | C={c}, B={b})"
    got = bounds(scm.graph, table, q)
    assert_contains(got, cc.query(scm, q))
    assert got[1] - got[0] > 0.1
  # do(D) with C observed: a product of free factors of {D, B} and {C}.
  for d, d1, c in [(2, 7, 0), (8, 1, 1), (5, 5, 0)]:
    q = f"P(B_{{D={d1}}}=1 | D={d}, C={c}, B=0)"
    got = bounds(scm.graph, table, q)
    assert_contains(got, cc.query(scm, q))
  assert bounds(scm.graph, table, "P(B_{D=5}=1 | D=5, C=0, B=0)") == (0, 0)


def test_frontdoor_bilinear_query_is_refused_by_the_lp_only():
  scm = frontdoor_scm()
  with pytest.raises(BoundsError, match="not linear in one c-component"):
    cc.bounds_certificate(scm.graph, scm.observational(),
                          "P(B_{D=1}=1 | D=0, B=0)", method="lp")


# Polynomial programs (SCIP) ---------------------------------------------------


def frontdoor_closed_form(table, d, d1):
  """Exact range of P(B_{D=d1}=1 | D=d, B=0) in the front-door graph.

  Derived by hand: with s = P(r_C(d)=0, r_C(d1)=1) and u = P(r_B(0)=0,
  r_B(1)=1 | r_D=d) (the only couplings the query reads), the numerator is
  P(d) [s u + (s + p - p1)(u + b0 - b1)], p = P(C=1 | d), p1 = P(C=1 | d1),
  b_c = P(B=1 | d, c); s and u range over Frechet intervals independently,
  and a bilinear function of a box is extreme at its corners.
  """
  probs = table.marginal(("D", "C", "B")).probs  # [D, C, B]
  p_d = probs.sum(axis=(1, 2))
  p_c = probs[:, 1].sum(-1) / p_d  # P(C=1 | D)
  b = probs[d, :, 1] / probs[d].sum(-1)  # P(B=1 | d, c), [C]
  p, p1 = p_c[d], p_c[d1]
  s_range = (max(0.0, p1 - p), min(p1, 1 - p))
  u_range = (max(0.0, b[1] - b[0]), min(b[1], 1 - b[0]))
  values = [p_d[d] * (s * u + (s + p - p1) * (u + b[0] - b[1]))
            / probs[d, :, 0].sum()
            for s in s_range for u in u_range]
  return min(values), max(values)


def test_frontdoor_digit_query_matches_closed_form():
  scm = data.feature_scm("colored_mnist_bars/frontdoor")
  table = scm.observational()
  for d, d1 in [(0, 1), (3, 8), (9, 2)]:
    q = f"P(B_{{D={d1}}}=1 | D={d}, B=0)"
    got = cc.bounds_certificate(scm.graph, table, q)
    assert got.method == "polynomial" and got.exact, got
    assert got.gap <= 1e-6
    assert (got.lo, got.hi) == pytest.approx(
        frontdoor_closed_form(table, d, d1), abs=1e-6), q
    assert_contains((got.lo, got.hi), cc.query(scm, q))
    assert bounds(scm.graph, table, q) == (got.lo, got.hi)


def polytope_vertices(a, b):
  """Vertices of {x >= 0 : a x = b}, by trying every column support."""
  out = []
  for k in range(1, a.shape[1] + 1):
    for cols in itertools.combinations(range(a.shape[1]), k):
      sub = a[:, cols]
      if np.linalg.matrix_rank(sub) < k:
        continue  # not a basic support
      y = np.linalg.lstsq(sub, b, rcond=None)[0]
      if np.allclose(sub @ y, b, atol=1e-10) and (y >= -1e-12).all():
        x = np.zeros(a.shape[1])
        x[list(cols)] = y
        out.append(x)
  return out


def responses(graph, table):
  """Response-function coordinates: (order, parent configurations per
  variable, each variable's response functions (one value per parent
  configuration), and `evaluate(joint response, world) -> values`)."""
  dom = table.domains
  order = graph.topological_order()
  configs = {v: list(itertools.product(*[range(dom[p])
                                         for p in graph.parents(v)]))
             for v in order}
  choices = [list(itertools.product(range(dom[v]), repeat=len(configs[v])))
             for v in order]

  def evaluate(resp, world):
    vals, do = {}, dict(world)
    for v, r in zip(order, resp):
      pa = tuple(vals[p] for p in graph.parents(v))
      vals[v] = do[v] if v in do else r[configs[v].index(pa)]
    return vals

  return order, configs, choices, evaluate


def brute_force_frontdoor(graph, table, query):
  """Exact bounds for D -> C -> B, D <-> B over all response functions.

  The masses are q_DB(r_D, r_B) q_C(r_C) with q_C in its own polytope
  (q_C(r_C(d) = c) = P(c | d)). The query is linear in q_C for fixed q_DB,
  so its extremes lie at vertices of that polytope: for each vertex, an LP
  over q_DB subject to all of P(V).
  """
  order, configs, choices, evaluate = responses(graph, table)
  assert list(order) == ["D", "C", "B"]
  q = cc.Query.parse(query)
  p_dc = table.marginal(("D", "C")).probs  # [D, C]
  p_c_d = p_dc / p_dc.sum(-1, keepdims=True)
  rows, rhs = [np.ones(len(choices[1]))], [1.0]
  for d, c in itertools.product(*map(range, p_dc.shape)):
    rows.append(np.array([r[d] == c for r in choices[1]], float))
    rhs.append(p_c_d[d, c])
  rest = list(itertools.product(choices[0], choices[2]))  # (r_D, r_B)
  den = table.prob({t.name: t.value for t in q.evidence}) if q.evidence else 1
  out = [np.inf, -np.inf]
  for q_c in polytope_vertices(np.array(rows), np.array(rhs)):
    a_eq = np.zeros((table.probs.size, len(rest)))
    objective = np.zeros(len(rest))
    for (j, (r_d, r_b)), (k, r_c) in itertools.product(
        enumerate(rest), enumerate(choices[1])):
      resp = (r_d, r_c, r_b)
      vals = evaluate(resp, ())
      a_eq[np.ravel_multi_index([vals[v] for v in table.variables],
                                table.probs.shape), j] += q_c[k]
      objective[j] += q_c[k] * all(evaluate(resp, t.world)[t.name] == t.value
                                   for t in q.terms)
    for i, sign in enumerate((1.0, -1.0)):
      res = scipy.optimize.linprog(sign * objective, A_eq=a_eq,
                                   b_eq=table.probs.ravel(), bounds=(0, None),
                                   method="highs")
      if res.status == 0:
        val = sign * res.fun / den
        out[i] = min(out[i], val) if i == 0 else max(out[i], val)
  return tuple(out)


@pytest.mark.parametrize("domains", [{"D": 2, "C": 2, "B": 2},
                                     {"D": 3, "C": 2, "B": 2}])
@pytest.mark.slow
def test_frontdoor_matches_brute_force(domains):
  queries = ["P(B_{D=1}=1 | D=0, B=0)", "P(B_{D=0}=0 | D=1, B=1)",
             "P(B_{D=1}=1, B_{D=0}=0)", "P(B_{D=0}=1 | D=1, C=1, B=0)",
             "P(C_{D=1}=1, B_{D=0}=1)"]
  for seed in range(2):
    scm = random_scm(FRONTDOOR, np.random.default_rng(seed), domains)
    table = scm.observational()
    for q in queries:
      got = cc.bounds_certificate(scm.graph, table, q)
      assert got.exact, (q, got)
      want = brute_force_frontdoor(scm.graph, table, q)
      assert (got.lo, got.hi) == pytest.approx(want, abs=1e-6), (seed, q)


CHAIN = "A -> B; B -> C; A <-> B; B <-> C"


def brute_force_chain(graph, table, query):
  """Exact bounds for the chain A -> B -> C, A <-> B <-> C (binary).

  With latents U_AB and U_BC, r_A and r_C are independent; conversely every
  joint with r_A independent of r_C comes from such latents. A is a root,
  so P(r_A = a) = P(A = a) and the independence is linear:
  P(A=1) q(r_A=0, r_C) = P(A=0) q(r_A=1, r_C). One LP over all response
  functions.
  """
  assert list(graph.topological_order()) == ["A", "B", "C"]
  joint, choices, a_eq, objective, den = joint_lp(graph, table, query)
  p_a = table.marginal(("A",)).probs
  indep = np.zeros((len(choices[2]), len(joint)))
  for j, resp in enumerate(joint):
    r_a = resp[0][0]
    indep[choices[2].index(resp[2]), j] = p_a[1] if r_a == 0 else -p_a[0]
  return solve_lp(objective, np.concatenate([a_eq, indep]),
                  np.concatenate([table.probs.ravel(),
                                  np.zeros(len(indep))]), den)


def test_chain_matches_brute_force_and_beats_the_lp():
  queries = ["P(B_{A=1}=1, C_{B=0}=0)", "P(C_{B=0}=1 | A=1, B=1)",
             "P(C_{A=1}=1 | A=0, C=0)", "P(C_{A=1}=0, A_{B=0}=1)"]
  tighter = 0
  for seed in range(3):
    scm = random_scm(CHAIN, np.random.default_rng(seed),
                     {"A": 2, "B": 2, "C": 2})
    table = scm.observational()
    for q in queries:
      got = cc.bounds_certificate(scm.graph, table, q)
      assert got.method == "polynomial" and got.exact, got
      want = brute_force_chain(scm.graph, table, q)
      assert (got.lo, got.hi) == pytest.approx(want, abs=1e-6), (seed, q)
      assert_contains((got.lo, got.hi), cc.query(scm, q))
      lp = cc.bounds_certificate(scm.graph, table, q, method="lp")
      assert not lp.exact and "not a clique" in lp.note
      assert lp.lo <= got.lo + TOL and got.hi <= lp.hi + TOL
      tighter += (got.hi - got.lo) < (lp.hi - lp.lo) - 1e-3
  assert tighter >= 3  # the independence of r_A and r_C matters


@pytest.mark.parametrize("text, domains, queries", [
    (BACKDOOR, {"D": 3, "C": 2, "B": 2},
     ["P(B_{C=1}=1 | C=0, B=0)", "P(B_{D=2}=0 | D=0, C=1, B=1)",
      "P(B_{C=1}=1, B_{C=0}=0)"]),
    (FRONTDOOR, {"D": 2, "C": 2, "B": 2},
     ["P(B_{C=1}=1 | C=0, B=0)", "P(B_{D=1}=1 | D=0, C=0, B=0)"]),
])
def test_lp_and_polynomial_agree_where_the_lp_is_exact(text, domains,
                                                      queries):
  scm = random_scm(text, np.random.default_rng(4), domains)
  table = scm.observational()
  for q in queries:
    lp = cc.bounds_certificate(scm.graph, table, q)
    poly = cc.bounds_certificate(scm.graph, table, q, method="polynomial")
    assert lp.method == "lp" and lp.exact and lp.gap == 0
    assert poly.method == "polynomial" and poly.exact
    assert (poly.lo, poly.hi) == pytest.approx((lp.lo, lp.hi), abs=1e-6), q


def test_time_limit_gives_valid_outer_bounds(monkeypatch):
  scm = data.feature_scm("colored_mnist_bars/frontdoor")
  table = scm.observational()
  q = "P(B_{D=1}=1 | D=0, B=0)"
  exact = cc.bounds_certificate(scm.graph, table, q)
  real = pb.optimise

  def stopped(*args, **kwargs):
    out = real(*args, **kwargs)
    # What SCIP reports when stopped early: a proven bound short of the
    # attained value.
    shift = 0.002 if args[4] == "minimize" else -0.002
    return pb.Solution(out.dual - shift, out.primal, False, out.seconds)

  monkeypatch.setattr(pb, "optimise", stopped)
  got = cc.bounds_certificate(scm.graph, table, q, time_limit=1.0)
  assert not got.exact and "time limit 1 s reached" in got.note
  assert got.lo <= exact.lo and got.hi >= exact.hi
  # lo = 0 is clipped; hi moves by 0.002 / P(D=0, B=0).
  assert got.gap == pytest.approx(0.002 / table.prob({"D": 0, "B": 0}))
  assert got.hi == pytest.approx(exact.hi + got.gap)


def test_scip_time_limit_is_honoured():
  scm = random_scm(FRONTDOOR, np.random.default_rng(0),
                   {"D": 3, "C": 2, "B": 2})
  got = cc.bounds_certificate(scm.graph, scm.observational(),
                              "P(B_{D=1}=1 | D=0, B=0)", time_limit=1e-3)
  assert 0.0 <= got.lo <= got.hi <= 1.0
  assert got.exact == (got.note == "")


# Bad input --------------------------------------------------------------------


def test_bad_input_is_explained():
  table = cc.Table(("X", "Y"), [[0.3, 0.2], [0.1, 0.4]])
  with pytest.raises(cc.QueryError, match="unknown variable 'W'"):
    bounds("X -> Y", table, "P(W_{X=1}=1)")
  with pytest.raises(cc.QueryError, match="outside its domain"):
    bounds("X -> Y", table, "P(Y_{X=2}=1)")
  with pytest.raises(cc.QueryError, match="cannot parse"):
    bounds("X -> Y", table, "Y_{X=1}=1")
  with pytest.raises(BoundsError, match="do not match the graph's nodes"):
    bounds("X -> Y; Z -> Y", table, "P(Y_{X=1}=1)")
  with pytest.raises(BoundsError, match="must be a ctfjax.causal.Table"):
    bounds("X -> Y", table.probs, "P(Y_{X=1}=1)")
  with pytest.raises(BoundsError, match="bad graph"):
    bounds("X -> Y; Y -> X", table, "P(Y_{X=1}=1)")


def test_zero_probability_evidence():
  table = cc.Table(("X", "Y"), [[0.0, 0.0], [0.6, 0.4]])
  with pytest.raises(BoundsError, match="probability zero"):
    bounds("X -> Y", table, "P(Y_{X=1}=1 | X=0)")
  with pytest.raises(BoundsError, match="probability zero"):
    bounds("X -> Y", table, "P(Y=1 | X=1, X=0)")
  with pytest.raises(BoundsError, match="probability zero"):
    bounds("X -> Y", table, "P(Y=1 | X_{X=1}=0)")
  # Dropped c-factor rows leave Y's response to X=0 free: still valid.
  assert bounds("X -> Y", table, "P(Y_{X=0}=1 | X=1, Y=0)") == pytest.approx(
      (0.0, 1.0), abs=TOL)


def test_unidentified_evidence_is_a_ratio_program():
  scm = random_scm("X -> Y; X <-> Y", np.random.default_rng(3),
                   {"X": 2, "Y": 2})
  table = scm.observational()
  q = "P(Y_{X=1}=1 | Y_{X=0}=0)"
  with pytest.raises(BoundsError, match="is not identified"):
    cc.bounds_certificate(scm.graph, table, q, method="lp")
  got = cc.bounds_certificate(scm.graph, table, q)
  assert got.method == "polynomial" and got.exact
  # Charnes-Cooper over the full joint of response functions (one
  # component): max N(x) / D(x) is the LP max N(y), D(y) = 1, A y = t b.
  p = table.probs  # [X, Y]
  resp = list(itertools.product(range(2), itertools.product(range(2),
                                                            repeat=2)))
  a = np.zeros((4, 8))
  for j, (x, r_y) in enumerate(resp):
    a[2 * x + r_y[x], j] = 1.0
  num = np.array([r_y[1] == 1 and r_y[0] == 0 for _, r_y in resp], float)
  den = np.array([r_y[0] == 0 for _, r_y in resp], float)
  a_cc = np.concatenate([np.concatenate([a, -p.reshape(4, 1)], 1),
                         np.append(den, 0.0)[None]])
  b_cc = np.append(np.zeros(4), 1.0)
  want = [sign * scipy.optimize.linprog(
      sign * np.append(num, 0.0), A_eq=a_cc, b_eq=b_cc, bounds=(0, None),
      method="highs").fun for sign in (1.0, -1.0)]
  assert (got.lo, got.hi) == pytest.approx(want, abs=1e-5)
  assert_contains((got.lo, got.hi), cc.query(scm, q))


def test_incompatible_table_is_detected():
  # Z=0 forces (X, Y) = (0, 0) and Z=1 forces (0, 1): Y's response to X=0
  # would have to be both 0 and 1 (the instrumental inequality fails).
  probs = np.zeros((2, 2, 2))
  probs[0, 0, 0] = probs[1, 0, 1] = 0.5
  table = cc.Table(("Z", "X", "Y"), probs)
  with pytest.raises(BoundsError, match="not compatible with the graph"):
    bounds("Z -> X; X -> Y; X <-> Y", table, "P(Y_{X=0}=1)")


def test_lp_size_guard(monkeypatch):
  monkeypatch.setattr(cb, "MAX_LP_VARIABLES", 10)
  scm = backdoor_scm()
  with pytest.raises(BoundsError, match="too large for exact bounds"):
    bounds(scm.graph, scm.observational(), "P(B_{C=1}=1 | C=0, B=0)")
