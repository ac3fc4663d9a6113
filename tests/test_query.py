"""The query grammar: parsing, printing and validation."""

import pytest

from ctfjax import causal as cc


def test_parse_joint_counterfactual_with_evidence():
  q = cc.Query.parse("P(Y_{X=1}=1, Z_{X=0, W=2}=0 | X=0, Y=0)")
  assert [str(t) for t in q.outcome] == ["Y_{X=1}=1", "Z_{W=2, X=0}=0"]
  assert [str(t) for t in q.evidence] == ["X=0", "Y=0"]
  assert q.outcome[1].world == (("W", 2), ("X", 0))
  assert q.worlds == ((), (("X", 1),), (("W", 2), ("X", 0)))
  assert cc.Query.parse(str(q)) == q


def test_parse_without_evidence_and_spaces():
  q = cc.Query.parse("  P( Y_{ X = 1 } = 1 )")
  assert str(q) == "P(Y_{X=1}=1)"
  assert q.evidence == ()


@pytest.mark.parametrize("text, message", [
    ("Y=1", "cannot parse query"),
    ("P()", "no outcome"),
    ("P(Y=1 | X=0 | Z=1)", "more than one"),
    ("P(Y_{X=1=1)", "unbalanced"),
    ("P(Y_{X}=1)", "cannot parse intervention 'X'"),
    ("P(Y_{X=1, X=0}=1)", "intervened on twice"),
    ("P(Y=a)", "cannot parse term 'Y=a'"),
])
def test_malformed(text, message):
  with pytest.raises(cc.QueryError, match=message):
    cc.Query.parse(text)


def test_validate_names_and_domains():
  q = cc.Query.parse("P(Y_{X=2}=1)")
  with pytest.raises(cc.QueryError, match="value 2 of 'X'.*0..1"):
    q.validate({"X": 2, "Y": 2})
  with pytest.raises(cc.QueryError, match="unknown variable 'Y'"):
    q.validate({"X": 3})
