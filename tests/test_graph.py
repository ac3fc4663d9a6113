"""Graph parsing, validation and structure against hand-derived answers."""

import pytest

from ctfjax import causal as cc

BACKDOOR = "D <-> C; D -> B; C -> B"


def test_parse_and_structure():
  g = cc.Graph.parse(BACKDOOR)
  assert g.nodes == ("D", "C", "B")
  assert g.parents("B") == ("D", "C")
  assert g.children("D") == ("B",)
  assert g.spouses("C") == ("D",)
  assert g.descendants("C") == {"C", "B"}
  assert g.ancestors("B") == {"D", "C", "B"}
  assert g.topological_order() == ("D", "C", "B")
  assert g.c_components() == (frozenset("DC"), frozenset("B"))
  assert g.c2_components() == (frozenset("DC"),)
  assert str(g) == "D -> B; C -> B; D <-> C"
  assert cc.Graph.parse(str(g)) == g


def test_newlines_reverse_arrows_and_isolated_nodes():
  g = cc.Graph.parse("B <- A\nC\n")
  assert g.nodes == ("B", "A", "C")
  assert g.parents("B") == ("A",)
  assert g.topological_order() == ("A", "B", "C")
  assert g.c_components() == (frozenset("B"), frozenset("A"), frozenset("C"))


def test_c2_components_are_maximal_bidirected_cliques():
  # A triangle A,B,C plus a pendant C <-> D: cliques {A,B,C} and {C,D}.
  g = cc.Graph.parse("A <-> B; B <-> C; A <-> C; C <-> D; E")
  assert set(g.c2_components()) == {frozenset("ABC"), frozenset("CD")}
  assert g.c_components() == (frozenset("ABCD"), frozenset("E"))
  # A path A <-> B <-> C is one c-component but two C^2-components.
  p = cc.Graph.parse("A <-> B; B <-> C")
  assert set(p.c2_components()) == {frozenset("AB"), frozenset("BC")}


def test_do_mutilates():
  g = cc.Graph.parse("Z -> X; X -> Y; X <-> Y; Z <-> Y")
  m = g.do("X")
  assert m.parents("X") == ()
  assert m.spouses("X") == ()
  assert m.spouses("Y") == ("Z",)
  assert m.parents("Y") == ("X",)
  assert g.parents("X") == ("Z",)  # the original is untouched


def test_front_door_components():
  g = cc.Graph.parse("D -> C; C -> B; D <-> B")
  assert g.c_components() == (frozenset("DB"), frozenset("C"))
  assert g.descendants("D") == {"D", "C", "B"}


@pytest.mark.parametrize("text, message", [
    ("A -> B; B -> C; C -> A", "cycle A -> B -> C -> A"),
    ("A -> A", "self-loop A -> A"),
    ("A <-> A", "self-loop A <-> A"),
    ("A => B", "cannot parse graph item 'A => B'"),
    ("A -> ", "cannot parse graph item 'A ->'"),
])
def test_errors_name_the_problem(text, message):
  with pytest.raises(cc.GraphError, match=message):
    cc.Graph.parse(text)


def test_unknown_node():
  g = cc.Graph.parse(BACKDOOR)
  with pytest.raises(cc.GraphError, match="unknown node 'Q'"):
    g.parents("Q")
  with pytest.raises(cc.GraphError, match="unknown node 'Q'"):
    cc.Graph(nodes=("A",), directed=frozenset({("A", "Q")}),
             bidirected=frozenset())
