"""Ctf-consistency rows, Wilson intervals and the evaluation protocol."""

import math

import numpy as np
import pytest
import scipy.stats

from ctfjax import metrics
from ctfjax.causal import Query, QueryError

BACKDOOR = "D <-> C; D -> B; C -> B"
FRONTDOOR = "D -> C; C -> B; D <-> B"
DOMAINS = {"D": 10, "C": 2, "B": 2}


def _textbook_wilson(k, n, z):
  p = k / n
  centre = p + z * z / (2 * n)
  spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
  return ((centre - spread) / (1 + z * z / n),
          (centre + spread) / (1 + z * z / n))


def test_wilson_hand_value():
  lo, hi = metrics.wilson_interval(8, 10)
  assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)


@pytest.mark.parametrize("k,n", [(0, 1), (1, 3), (5, 10), (37, 40),
                                 (120, 1000), (7, 7)])
@pytest.mark.parametrize("confidence,z", [(0.95, 1.959963984540054),
                                          (0.9, 1.6448536269514722),
                                          (0.99, 2.5758293035489004)])
def test_wilson_matches_textbook(k, n, confidence, z):
  got = metrics.wilson_interval(k, n, confidence)
  want = _textbook_wilson(k, n, z)
  assert got == pytest.approx((max(want[0], 0.0), min(want[1], 1.0)),
                              abs=1e-12)


def test_wilson_edges():
  assert metrics.wilson_interval(0, 0) == (0.0, 1.0)
  # The ends at k = 0 and k = n are exact, not rounded (n = 7 gave 3e-17).
  for n in range(1, 200):
    assert metrics.wilson_interval(0, n)[0] == 0.0
    assert metrics.wilson_interval(n, n)[1] == 1.0
  with pytest.raises(metrics.MetricError):
    metrics.wilson_interval(3, 2)
  with pytest.raises(metrics.MetricError):
    metrics.wilson_interval(1, 2, confidence=1.0)


def test_pair_query_parse():
  q = metrics.PairQuery.parse("P(B_{C=1}=1 | C=0, B=0)")
  assert q.world == (("C", 1),)
  assert q.outcome == (("B", 1),)
  assert q.evidence == (("C", 0), ("B", 0))
  assert str(q) == "P(B_{C=1}=1 | C=0, B=0)"
  q = metrics.PairQuery.parse("P( D_{C=1} = D , B_{C=1}=0 | C=0 )")
  assert q.outcome == (("D", None), ("B", 0))
  assert str(q) == "P(D_{C=1} = D, B_{C=1}=0 | C=0)"
  for bad, match in [("P(B_{C=1}=1 | B_{C=0}=0)", "factual"),
                     ("P(B=1 | C=0)", "counterfactual"),
                     ("P(B_{C=1}=1, D_{C=0}=1)", "one world"),
                     ("P(B_{C=1}=D)", "integer or 'B'"),
                     ("B_{C=1}=1", "cannot parse")]:
    with pytest.raises(QueryError, match=match):
      metrics.PairQuery.parse(bad)


def _pairs():
  """16 samples with known fractions; do(C = 1 - c)."""
  c = np.array([0] * 8 + [1] * 8)
  b = np.array([0] * 5 + [1] * 3 + [0] * 4 + [1] * 4)
  d = np.arange(16) % 10
  # do(C=1) on C=0: of the 5 with B=0, 3 get B'=1; of the 3 with B=1, 1
  # gets B'=0. do(C=0) on C=1: of the 4 with B=0, none get B'=1.
  b_cf = np.array([1, 1, 1, 0, 0, 0, 1, 1] + [0, 0, 0, 0, 1, 1, 0, 1])
  d_cf = d.copy()
  d_cf[[2, 9]] = 7  # one digit of each group changes (9 -> 7 and 2 -> 7)
  c_cf = 1 - c
  c_cf[15] = 1      # one failed colour edit
  factual = {"D": d, "C": c, "B": b}
  counterfactual = {"D": d_cf, "C": c_cf, "B": b_cf}
  return factual, counterfactual, {"C": 1 - c}


def test_estimate_counts():
  f, cf, do = _pairs()
  assert metrics.estimate("P(B_{C=1}=1 | C=0, B=0)", f, cf, do) == (3, 5)
  assert metrics.estimate("P(B_{C=1}=0 | C=0, B=1)", f, cf, do) == (1, 3)
  assert metrics.estimate("P(B_{C=0}=1 | C=1, B=0)", f, cf, do) == (0, 4)
  assert metrics.estimate("P(D_{C=1} = D | C=0)", f, cf, do) == (7, 8)
  assert metrics.estimate("P(C_{C=0}=0 | C=1)", f, cf, do) == (7, 8)
  # No evidence: every sample edited with do(C=1).
  assert metrics.estimate("P(C_{C=1}=1)", f, cf, do) == (8, 8)
  with pytest.raises(metrics.MetricError, match="exactly the edited"):
    metrics.estimate("P(B_{D=1}=1)", f, cf, do)
  with pytest.raises(metrics.MetricError, match="no factual values"):
    metrics.estimate("P(B_{C=1}=1 | X=0)", f, cf, do)


def test_ctf_consistency_rows():
  f, cf, do = _pairs()
  queries = ["P(B_{C=1}=1 | C=0, B=0)", "P(B_{C=0}=1 | C=1, B=0)",
             "P(D_{C=1} = D | C=0)", "P(C_{C=1}=1 | C=0, D=8)"]
  bounds = {queries[0]: (0.1, 0.3), queries[1]: (0.25, 0.5),
            queries[2]: (1.0, 1.0)}
  rows = metrics.ctf_consistency(f, cf, do, queries, bounds=bounds,
                                 truth=lambda q: 0.2 if "B=0" in q else None)
  r = rows[0]
  assert r["intervention"] == "C=1"
  assert r["query"] == queries[0]
  assert r["estimate"] == pytest.approx(0.6)
  assert r["ci"] == pytest.approx(list(metrics.wilson_interval(3, 5)))
  assert r["bounds"] == [0.1, 0.3]
  assert r["truth"] == 0.2
  assert (r["n"], r["successes"]) == (5, 3)
  # Wilson(3/5) = [0.231, 0.882] meets [0.1, 0.3].
  assert r["consistent"] is True
  # 0/4: Wilson [0, 0.490] meets [0.25, 0.5].
  assert rows[1]["intervention"] == "C=0"
  assert rows[1]["estimate"] == 0.0 and rows[1]["consistent"] is True
  # 7/8 preserved: Wilson hi = 0.978 < 1, so not consistent with [1, 1].
  assert rows[2]["estimate"] == pytest.approx(7 / 8)
  assert rows[2]["ci"][1] < 1.0 and rows[2]["consistent"] is False
  assert rows[2]["truth"] is None
  # No sample with C=0, D=8: no estimate; no bounds given either.
  assert rows[3]["n"] == 0 and rows[3]["estimate"] is None
  assert rows[3]["ci"] == [0.0, 1.0]
  assert rows[3]["bounds"] is None and rows[3]["consistent"] is None


def test_consistency_tolerance_and_perfect_preservation():
  n = 30
  f = {"D": np.arange(n) % 10, "C": np.zeros(n, int)}
  rows = metrics.ctf_consistency(f, dict(f), {"C": 1},
                                 ["P(D_{C=1} = D | C=0)"],
                                 bounds={"P(D_{C=1} = D | C=0)": (1.0, 1.0)})
  assert rows[0]["estimate"] == 1.0 and rows[0]["consistent"] is True
  # An interval just below LP bounds (solver rounding) still counts.
  q = "P(D_{C=1}=0 | C=0, D=0)"
  far = metrics.ctf_consistency(f, dict(f), {"C": 1}, [q],
                                bounds={q: (0.0, 0.0)})
  assert far[0]["consistent"] is False
  with pytest.raises(metrics.MetricError, match="lo > hi"):
    metrics.ctf_consistency(f, dict(f), {"C": 1}, [q], bounds={q: (0.6, 0.4)})


def test_structural_bounds():
  sb = metrics.structural_bounds
  assert sb(BACKDOOR, "P(D_{C=1} = D | C=0)") == (1.0, 1.0)
  assert sb(BACKDOOR, "P(C_{C=1}=1 | C=0)") == (1.0, 1.0)
  assert sb(BACKDOOR, "P(C_{D=3} = C | D=8)") == (1.0, 1.0)
  assert sb(BACKDOOR, "P(B_{C=1}=1 | C=0, B=0)") is None
  assert sb(BACKDOOR, "P(B_{C=1} = B | C=0)") is None  # descendant
  assert sb(BACKDOOR, "P(C_{C=1}=0 | C=0)") is None
  # Front-door: C is a descendant of D.
  assert sb(FRONTDOOR, "P(C_{D=3} = C | D=8)") is None
  assert sb(FRONTDOOR, "P(D_{B=1} = D, C_{B=1} = C | B=0)") == (1.0, 1.0)


def test_protocol_interventions():
  f = {"D": np.array([0, 4, 5, 9]), "C": np.array([0, 1, 1, 0]),
       "B": np.array([1, 1, 0, 0])}
  do = metrics.protocol_interventions(f, DOMAINS)
  np.testing.assert_array_equal(do["do(D)"]["D"], [5, 9, 0, 4])
  np.testing.assert_array_equal(do["do(C)"]["C"], [1, 0, 0, 1])
  np.testing.assert_array_equal(do["do(B)"]["B"], [0, 0, 1, 1])


def test_protocol_queries_backdoor():
  q = metrics.protocol_queries(BACKDOOR, DOMAINS)
  assert set(q) == {"do(D)", "do(C)", "do(B)"}
  assert q["do(C)"] == [
      "P(C_{C=0}=0 | C=1)", "P(D_{C=0} = D | C=1)",
      "P(B_{C=0}=1 | C=1, B=0)", "P(B_{C=0}=0 | C=1, B=1)",
      "P(C_{C=1}=1 | C=0)", "P(D_{C=1} = D | C=0)",
      "P(B_{C=1}=1 | C=0, B=0)", "P(B_{C=1}=0 | C=0, B=1)"]
  assert q["do(B)"][:3] == ["P(B_{B=0}=0 | B=1)", "P(D_{B=0} = D | B=1)",
                            "P(C_{B=0} = C | B=1)"]
  # do(D): 10 values x (effect, C preserved, B for 2 colours x 2 values).
  assert len(q["do(D)"]) == 60
  assert "P(C_{D=3} = C | D=8)" in q["do(D)"]
  assert "P(B_{D=3}=1 | D=8, C=0, B=0)" in q["do(D)"]
  for rows in q.values():
    for text in rows:
      metrics.PairQuery.parse(text)
      if " = " not in text:  # all but preservation rows are plain grammar
        Query.parse(text).validate(DOMAINS)


def test_protocol_queries_frontdoor():
  q = metrics.protocol_queries(FRONTDOOR, DOMAINS)
  d = q["do(D)"]
  assert "P(C_{D=3}=1 | D=8, C=0)" in d
  assert "P(B_{D=3}=0 | D=8, C=1, B=1)" in d
  assert not any("= C" in t for t in d)
  assert len(d) == 10 * (1 + 2 + 4)
  assert "P(D_{C=1} = D | C=0)" in q["do(C)"]


def test_protocol_end_to_end_with_a_faithful_editor():
  """Rows of a model that edits features exactly like the true SCM."""
  rng = np.random.default_rng(0)
  n = 4000
  # Backdoor generator of Colored MNIST with bars (docs/datasets.md).
  u_dc, u_d = rng.integers(0, 2, n), rng.integers(0, 5, n)
  u_c, u_b = (rng.random(n) < 0.2).astype(int), rng.integers(0, 20, n)
  d = u_d + 5 * u_dc
  bar = lambda d, c: ((u_b + 0.5) / 20 < 0.9 - 0.05 * d - 0.3 * c).astype(int)
  c = u_dc ^ u_c
  f = {"D": d, "C": c, "B": bar(d, c)}
  do = metrics.protocol_interventions(f, DOMAINS)["do(C)"]
  cf = {"D": d, "C": do["C"], "B": bar(d, do["C"])}
  queries = metrics.protocol_queries(BACKDOOR, DOMAINS)["do(C)"]
  # The truth of the bar rows by enumeration of (D, U_B) given the evidence.
  def truth(q):
    s = metrics.structural_bounds(BACKDOOR, q)
    if s is not None:
      return s[0]
    pq = metrics.PairQuery.parse(q)
    (cv,), (_, b_new) = [v for _, v in pq.world], pq.outcome[0]
    c_old, b_old = dict(pq.evidence)["C"], dict(pq.evidence)["B"]
    num = den = 0.0
    for dv in range(10):
      p_d_c = 0.1 * (0.8 if (dv >= 5) == (c_old == 1) else 0.2)
      for ub in range(20):
        fb = int((ub + 0.5) / 20 < 0.9 - 0.05 * dv - 0.3 * c_old)
        cb = int((ub + 0.5) / 20 < 0.9 - 0.05 * dv - 0.3 * cv)
        if fb == b_old:
          den += p_d_c / 20
          num += p_d_c / 20 * (cb == b_new)
    return num / den

  rows = metrics.ctf_consistency(
      f, cf, do, queries, truth=truth,
      bounds=lambda q: metrics.structural_bounds(BACKDOOR, q))
  assert len(rows) == 8
  for r in rows:
    assert r["ci"][0] - 1e-9 <= r["truth"] <= r["ci"][1] + 1e-9, r
    if r["bounds"] is not None:
      assert r["consistent"] and r["estimate"] == 1.0
  # Raising the colour removes bars: P(B_{C=1}=1 | C=0, B=0) = 0.
  assert rows[6]["query"] == "P(B_{C=1}=1 | C=0, B=0)"
  assert rows[6]["truth"] == 0.0 and rows[6]["estimate"] == 0.0


# The decision rule -----------------------------------------------------------


def test_bounds_p_value_is_the_exact_binomial_tail():
  binom = scipy.stats.binom
  # Below the lower end: P_lo(X <= k); the upper side adds nothing here.
  assert metrics.bounds_p_value(64, 215, [0.4, 0.68]) == pytest.approx(
      binom.cdf(64, 215, 0.4), rel=1e-4)
  assert metrics.bounds_p_value(168, 215, [0.4, 0.68]) == pytest.approx(
      binom.sf(167, 215, 0.68), rel=1e-4)
  # Inside the bounds nothing is extreme enough.
  assert metrics.bounds_p_value(120, 215, [0.4, 0.68]) > 0.99
  # A point null in the interior is the two-sided exact test.
  assert metrics.bounds_p_value(2, 10, [0.5, 0.5]) == pytest.approx(
      2 * binom.cdf(2, 10, 0.5))
  # [1, 1] and [0, 0]: one violation is proof, none is no evidence.
  assert metrics.bounds_p_value(499, 500, [1.0, 1.0]) == 0.0
  assert metrics.bounds_p_value(500, 500, [1.0, 1.0]) == 1.0
  assert metrics.bounds_p_value(1, 10, [0.0, 0.0]) == 0.0
  # LP rounding: 1 - 1e-9 is 1, and an end 1e-9 off does not fail the truth.
  assert metrics.bounds_p_value(499, 500, [1 - 1e-9, 1.0]) == 0.0
  assert metrics.bounds_p_value(86, 215, [0.4 + 1e-9, 0.68]) > 0.5
  # Bounds [0, 1] cannot be violated.
  assert metrics.bounds_p_value(0, 7, [0.0, 1.0]) == 1.0


def test_detectable_violation_has_the_stated_power():
  # [1, 1]: the exact test rejects on one failure; 1 - (1 - d)^n = power.
  for n in (12, 250):
    assert metrics.detectable(n, [1.0, 1.0], 0.0) == pytest.approx(
        1 - 0.2 ** (1 / n))
  # Interval bounds: at the reported distance the exact test rejects with
  # probability 0.8, a little closer with less.
  n, b, level = 215, [0.4, 0.68], 0.005
  d = metrics.detectable(n, b, level)
  assert 0.05 < d < 0.2
  ks = np.arange(n + 1)
  reject = np.array([metrics.bounds_p_value(k, n, b) <= level for k in ks])
  def power(p):
    return scipy.stats.binom.pmf(ks, n, p)[reject].sum()
  assert min(power(0.4 - d), power(0.68 + d)) == pytest.approx(0.8, abs=1e-6)
  assert min(power(0.4 - d + 0.01), power(0.68 + d - 0.01)) < 0.8
  # Nothing to violate, or a side no count can reject.
  assert metrics.detectable(n, [0.0, 1.0], level) is None
  assert metrics.detectable(3, [0.3, 0.6], 0.001) is None


def test_images_p_value_is_fishers_one_sided_test():
  p = metrics.images_p_value([237, 250], [250, 250])
  want = scipy.stats.fisher_exact([[237, 13], [250, 0]],
                                  alternative="less").pvalue
  assert p == pytest.approx(want)
  assert metrics.images_p_value([250, 250], [240, 250]) == 1.0
  assert metrics.images_p_value([0, 0], [5, 5]) == 1.0


def _decided(**fields):
  base = {"n": 100, "bounds": [0.4, 0.6], "successes": 50,
          "successes_features": 50, "agreement": None,
          "agreement_truth": None}
  return {**base, **fields}


def test_decide_controls_the_whole_table_by_weighted_holm():
  rows = [
      # 0.3 of 200 against [0.4, 0.6]: p = 0.002.
      _decided(n=200, successes_features=60),
      _decided(n=100, successes_features=50),
      # [1, 1] rows: exact, outside the error budget.
      _decided(bounds=[1.0, 1.0], successes_features=99),
      _decided(bounds=[1.0, 1.0], successes_features=100),
      _decided(n=0, successes=0, successes_features=0),
      _decided(bounds=None),
      _decided(bounds=[0.0, 1.0], successes_features=3),
  ]
  out = metrics.decide(rows)
  assert [r["decision"] for r in out] == [
      "fail: features", "pass", "fail: features", "pass", "no data",
      "no bounds", "pass"]
  p = metrics.bounds_p_value(60, 200, [0.4, 0.6])
  assert 0.001 < p < 0.003 and out[0]["p_features"] == p
  # Two weighted hypotheses, weights 2/3 and 1/3: Holm's first step
  # multiplies p by (sum of the weights) / w = 3/2.
  assert out[0]["p_value"] == pytest.approx(1.5 * p)
  assert [r["consistent"] for r in out[:6]] == [False, True, False, True,
                                                None, None]
  assert out[2]["p_value"] == 0.0 and out[2]["detectable"] == pytest.approx(
      1 - 0.2 ** (1 / 100))
  assert out[4]["p_value"] is None and out[6]["detectable"] is None
  # The row's level is its share of alpha: 0.05 * 2/3.
  assert out[0]["detectable"] == pytest.approx(
      metrics.detectable(200, [0.4, 0.6], 0.05 * 2 / 3))


def _holm_rejects(p, w, alpha):
  """The weighted Holm step-down test at level alpha, straight from its
  definition: take hypotheses by p / w; reject each while
  p / w * (weight of those not yet rejected) <= alpha, stop at the first
  that fails. Returns the set of rejected indices (weight-0 ones: p <= 0)."""
  rejected = {i for i in range(len(p)) if w[i] == 0 and p[i] <= alpha}
  left = [i for i in range(len(p)) if w[i] > 0]
  while left:
    i = min(left, key=lambda j: p[j] / w[j])
    if p[i] / w[i] * sum(w[j] for j in left) > alpha:
      break
    rejected.add(i)
    left.remove(i)
  return rejected


def test_weighted_holm_is_monotone_in_the_step_down_order():
  holm = metrics.consistency._weighted_holm  # pylint: disable=protected-access
  # Equal weights: the second step's own value 0.04 / 0.5 * 0.5 = 0.04 is
  # below the first's 0.03 / 0.5 * 1 = 0.06; a hypothesis is rejected only
  # after every earlier one, so it inherits 0.06.
  assert holm([0.03, 0.04], [0.5, 0.5]) == pytest.approx([0.06, 0.06])
  assert holm([0.04, 0.03], [0.5, 0.5]) == pytest.approx([0.06, 0.06])
  # Unequal weights, by hand. Order by p / w: index 2 (0.02), 1 (0.03),
  # 0 (0.04). Steps: 0.02 * 1.0 = 0.02; 0.03 * 0.8 = 0.024;
  # 0.04 * 0.5 = 0.02, raised to 0.024 by the step before it. The
  # weight-0 (exact) test keeps its own p and takes no share.
  p, w = [0.02, 0.009, 0.004, 0.0], [0.5, 0.3, 0.2, 0.0]
  assert holm(p, w) == pytest.approx([0.024, 0.024, 0.02, 0.0])
  # Capped at 1.
  assert holm([0.6, 0.9], [0.5, 0.5]) == pytest.approx([1.0, 1.0])
  # Against the step-down test itself: adjusted p_i <= alpha exactly when
  # the test at level alpha rejects i, for random p, w and every alpha.
  rng = np.random.default_rng(0)
  for _ in range(50):
    m = int(rng.integers(2, 7))
    p = list(rng.uniform(0, 0.1, m) ** 2)
    w = list(rng.dirichlet(np.ones(m)))
    adjusted = holm(p, w)
    for alpha in np.linspace(0.0005, 0.05, 100):
      assert {i for i in range(m) if adjusted[i] <= alpha} == _holm_rejects(
          p, w, alpha)


def test_decide_reports_the_monotone_holm_p_value():
  # Two rows of equal n (weights 1/2): p = 0.0052 and 0.0080. The second
  # row's adjusted p is max(2 * 0.0052, 0.0080) = 0.0105, not 0.0080.
  rows = [_decided(n=200, successes_features=62),
          _decided(n=200, successes_features=63)]
  p1, p2 = (metrics.bounds_p_value(k, 200, [0.4, 0.6]) for k in (62, 63))
  assert p2 < 2 * p1  # the case where the running max matters
  out = metrics.decide(rows)
  assert out[0]["p_value"] == pytest.approx(2 * p1)
  assert out[1]["p_value"] == pytest.approx(2 * p1)


def test_decide_images_against_the_readers_floor():
  # The readers agree with the truth on 240 of 250 true images; with the
  # model's features on 200 of its 250 edits: failed on images only.
  rows = [_decided(n=250, successes_features=125, agreement=[200, 250],
                   agreement_truth=[240, 250]),
          _decided(n=250, successes_features=125, agreement=[238, 250],
                   agreement_truth=[240, 250])]
  out = metrics.decide(rows)
  assert [r["decision"] for r in out] == ["fail: images", "pass"]
  # Half of alpha for each kind, each shared by n: Holm's first step
  # multiplies the smallest p by 4 (weights 1/4 each).
  p = metrics.images_p_value([200, 250], [240, 250])
  assert out[0]["p_images"] == p and out[0]["p_value"] == pytest.approx(4 * p)
  assert out[0]["detectable"] == pytest.approx(
      metrics.detectable(250, [0.4, 0.6], 0.05 / 4))
  # Both hypotheses failing are both named.
  both = metrics.decide([_decided(n=250, successes_features=50,
                                  agreement=[200, 250],
                                  agreement_truth=[240, 250])])
  assert both[0]["decision"] == "fail: features, images"
