"""The impossibility witnesses and Sardesai's 4-pixel ASCM, exactly."""

import numpy as np
import pytest

from ctfjax import causal as cc
from ctfjax.causal import examples as ex

# Sardesai's table, typed from the paper: u_I, u_x, u_y, u_xy, X, Y, I, P.
SEED_TABLE = [
    (0, 0, 0, 0, 0, 0, 0, 0.06), (0, 0, 0, 1, 1, 1, 6, 0.06),
    (0, 0, 1, 0, 0, 1, 5, 0.04), (0, 0, 1, 1, 1, 0, 3, 0.04),
    (0, 1, 0, 0, 1, 0, 11, 0.09), (0, 1, 0, 1, 0, 1, 5, 0.09),
    (0, 1, 1, 0, 1, 1, 14, 0.06), (0, 1, 1, 1, 0, 0, 0, 0.06),
    (1, 0, 0, 0, 0, 0, 3, 0.06), (1, 0, 0, 1, 1, 1, 5, 0.06),
    (1, 0, 1, 0, 0, 1, 6, 0.04), (1, 0, 1, 1, 1, 0, 0, 0.04),
    (1, 1, 0, 0, 1, 0, 8, 0.09), (1, 1, 0, 1, 0, 1, 6, 0.09),
    (1, 1, 1, 0, 1, 1, 13, 0.06), (1, 1, 1, 1, 0, 0, 3, 0.06),
]


def same_observational(m1, m2):
  t1, t2 = m1.observational(), m2.observational()
  return t1.variables == t2.variables and np.allclose(t1.probs, t2.probs)


def test_four_pixel_table_matches_the_seed():
  scm = ex.four_pixel_ascm()
  columns, rows = ex.exogenous_table(scm, ["u_I", "u_x", "u_y", "u_xy"])
  assert columns == ["u_I", "u_x", "u_y", "u_xy", "X", "Y", "I", "P"]
  assert [r[:-1] for r in rows] == [r[:-1] for r in SEED_TABLE]
  np.testing.assert_allclose([r[-1] for r in rows],
                             [r[-1] for r in SEED_TABLE], atol=1e-15)
  # P(I) by exact inference equals the table's sums.
  p_i = cc.distribution(scm, "I")
  want = {}
  for r in SEED_TABLE:
    want[r[6]] = want.get(r[6], 0) + r[7]
  assert p_i == pytest.approx(want, abs=1e-12)


def test_four_pixel_edit_is_a_distribution():
  scm = ex.four_pixel_ascm()
  # I = 5 = 0101 comes from three exogenous states (P .04, .09, .06); do(X=1)
  # sends them to 0110 = 6, 1110 = 14 and 0101 = 5 (Sardesai, section 3).
  got = cc.distribution(scm, "I_{X=1}", given="I=5")
  assert got == pytest.approx({5: 6 / 19, 6: 4 / 19, 14: 9 / 19}, abs=1e-12)
  assert ex.int_to_bits(14, 4) == (1, 1, 1, 0)
  assert ex.bits_to_int((0, 1, 1, 0)) == 6


def test_witness_a_no_diagram():
  a1, a2 = ex.witness_a()
  assert same_observational(a1, a2)
  assert a1.graph != a2.graph  # X -> Y versus X <-> Y
  edit = "I_{X=1}"
  start = f"I={ex.bits_to_int((0, 0, 0))}"
  assert cc.distribution(a1, edit, given=start) == {ex.bits_to_int((1, 1, 0)):
                                                    pytest.approx(1.0)}
  assert cc.distribution(a2, edit, given=start) == {ex.bits_to_int((1, 0, 0)):
                                                    pytest.approx(1.0)}


def test_witness_b_same_graph_different_counterfactual():
  b1, b2 = ex.witness_b()
  assert b1.graph == b2.graph == cc.Graph.parse("X -> Y")
  assert same_observational(b1, b2)
  t = b1.observational()
  assert t.prob({"X": 0, "Y": 1}) / t.prob({"X": 0}) == pytest.approx(0.2)
  assert t.prob({"X": 1, "Y": 1}) / t.prob({"X": 1}) == pytest.approx(0.6)
  q = "P(Y_{X=1}=1 | X=0, Y=0)"
  assert cc.query(b1, q) == pytest.approx(1 / 2, abs=1e-12)
  assert cc.query(b2, q) == pytest.approx(3 / 4, abs=1e-12)


def test_witness_c_image_level():
  c1, c2 = ex.witness_c()
  assert same_observational(c1, c2)
  assert c1.graph == c2.graph
  assert cc.distribution(c1, "I_{X=1}", given="I=0") == {2: pytest.approx(1)}
  assert cc.distribution(c2, "I_{X=1}", given="I=0") == {3: pytest.approx(1)}
