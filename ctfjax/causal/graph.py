"""Semi-Markovian causal diagrams: directed edges plus bidirected confounding.

A `Graph` is immutable. Its text form is one edge per item, items separated by
';' or newlines: `A -> B` (A is an argument of B's mechanism), `A <-> B` (A and
B share unobserved confounding), or a bare `A` to declare an isolated node.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Mapping

from ctfjax.errors import UserError

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_EDGE = re.compile(rf"^\s*({_NAME})\s*(->|<->|<-)\s*({_NAME})\s*$")
_NODE = re.compile(rf"^\s*({_NAME})\s*$")


class GraphError(UserError):
  """An invalid causal diagram (cycle, self-loop, bad syntax, unknown node)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
  """A causal diagram over named nodes.

  Attributes:
    nodes: node names, in the order they were first declared.
    directed: set of (parent, child) pairs.
    bidirected: set of frozenset({a, b}) pairs.
  """

  nodes: tuple[str, ...]
  directed: frozenset[tuple[str, str]]
  bidirected: frozenset[frozenset[str]]

  def __post_init__(self):
    names = set(self.nodes)
    if len(names) != len(self.nodes):
      dup = [n for n in self.nodes if self.nodes.count(n) > 1][0]
      raise GraphError(f"node {dup!r} is declared twice")
    for a, b in self.directed:
      for n in (a, b):
        if n not in names:
          raise GraphError(f"edge {a} -> {b} names unknown node {n!r}")
      if a == b:
        raise GraphError(f"self-loop {a} -> {a}")
    for pair in self.bidirected:
      if len(pair) != 2:
        (a,) = tuple(pair)
        raise GraphError(f"self-loop {a} <-> {a}")
      for n in pair:
        if n not in names:
          a, b = sorted(pair)
          raise GraphError(f"edge {a} <-> {b} names unknown node {n!r}")
    cycle = _find_cycle(self.nodes, self.directed)
    if cycle:
      raise GraphError("cycle " + " -> ".join(cycle + [cycle[0]]))

  def __eq__(self, other):
    # Node order is presentation only: equal graphs have equal structure.
    if not isinstance(other, Graph):
      return NotImplemented
    return (set(self.nodes) == set(other.nodes) and
            self.directed == other.directed and
            self.bidirected == other.bidirected)

  def __hash__(self):
    return hash((frozenset(self.nodes), self.directed, self.bidirected))

  # Construction ---------------------------------------------------------------

  @classmethod
  def from_edges(
      cls,
      directed: Iterable[tuple[str, str]] = (),
      bidirected: Iterable[tuple[str, str]] = (),
      nodes: Iterable[str] = (),
  ) -> Graph:
    """Builds a graph; nodes are `nodes` then any new names from the edges."""
    directed = list(directed)
    bidirected = list(bidirected)
    order = list(dict.fromkeys(
        list(nodes) + [n for e in directed + bidirected for n in e]))
    return cls(
        nodes=tuple(order),
        directed=frozenset((a, b) for a, b in directed),
        bidirected=frozenset(frozenset((a, b)) for a, b in bidirected),
    )

  @classmethod
  def parse(cls, text: str) -> Graph:
    """Parses `"D <-> C; D -> B; C -> B"` (';' or newlines between items)."""
    if not isinstance(text, str):
      raise GraphError("graph text must be a string, got "
                       f"{type(text).__name__}")
    nodes, directed, bidirected = [], [], []
    for item in re.split(r"[;\n]", text):
      if not item.strip():
        continue
      m = _EDGE.match(item)
      if m:
        a, arrow, b = m.groups()
        nodes += [a, b]
        if arrow == "->":
          directed.append((a, b))
        elif arrow == "<-":
          directed.append((b, a))
        else:
          if a == b:
            raise GraphError(f"self-loop {a} <-> {a}")
          bidirected.append((a, b))
        continue
      m = _NODE.match(item)
      if m:
        nodes.append(m.group(1))
        continue
      raise GraphError(
          f"cannot parse graph item {item.strip()!r}: expected 'A -> B', "
          "'A <-> B' or a node name")
    return cls.from_edges(directed, bidirected, nodes)

  def __str__(self) -> str:
    items = [f"{a} -> {b}" for a, b in self._sorted_directed()]
    items += [f"{a} <-> {b}" for a, b in self._sorted_bidirected()]
    linked = {n for e in self.directed for n in e}
    linked |= {n for e in self.bidirected for n in e}
    items += [n for n in self.nodes if n not in linked]
    return "; ".join(items)

  def _sorted_directed(self):
    pos = {n: i for i, n in enumerate(self.nodes)}
    return sorted(self.directed, key=lambda e: (pos[e[1]], pos[e[0]]))

  def _sorted_bidirected(self):
    pos = {n: i for i, n in enumerate(self.nodes)}
    pairs = [tuple(sorted(p, key=pos.get)) for p in self.bidirected]
    return sorted(pairs, key=lambda e: (pos[e[0]], pos[e[1]]))

  # Queries --------------------------------------------------------------------

  def check_node(self, name: str) -> None:
    """Raises GraphError if `name` is not a node."""
    if name not in self.nodes:
      raise GraphError(
          f"unknown node {name!r}; the graph has {', '.join(self.nodes)}")

  def parents(self, node: str) -> tuple[str, ...]:
    self.check_node(node)
    return tuple(a for a in self.nodes if (a, node) in self.directed)

  def children(self, node: str) -> tuple[str, ...]:
    self.check_node(node)
    return tuple(b for b in self.nodes if (node, b) in self.directed)

  def spouses(self, node: str) -> tuple[str, ...]:
    """Nodes joined to `node` by a bidirected edge."""
    self.check_node(node)
    return tuple(
        b for b in self.nodes if frozenset((node, b)) in self.bidirected)

  def ancestors(self, nodes: str | Iterable[str]) -> frozenset[str]:
    """Ancestors of `nodes`, the nodes themselves included."""
    return self._reach(nodes, self.parents)

  def descendants(self, nodes: str | Iterable[str]) -> frozenset[str]:
    """Descendants of `nodes`, the nodes themselves included."""
    return self._reach(nodes, self.children)

  def _reach(self, nodes, step) -> frozenset[str]:
    todo = [nodes] if isinstance(nodes, str) else list(nodes)
    for n in todo:
      self.check_node(n)
    seen = set(todo)
    while todo:
      for m in step(todo.pop()):
        if m not in seen:
          seen.add(m)
          todo.append(m)
    return frozenset(seen)

  def reaching(self, node: str, world) -> tuple[tuple[str, object], ...]:
    """The interventions of `world` that can change `node`.

    `world` is an intervention as ((var, value), ...) pairs (or a mapping);
    the result keeps, in order, those whose variable is an ancestor of
    `node` (itself included) in the graph mutilated by the whole world. The
    others cannot reach `node`, so its copy in `world` equals its copy in
    the world of the result (node merging of the twin network).
    """
    world = tuple(world.items()) if isinstance(world, Mapping) else tuple(
        world)
    anc = self.do([k for k, _ in world]).ancestors(node)
    return tuple((k, x) for k, x in world if k in anc)

  def topological_order(self) -> tuple[str, ...]:
    """Parents before children; ties keep declaration order."""
    indeg = {n: 0 for n in self.nodes}
    for _, b in self.directed:
      indeg[b] += 1
    order = []
    ready = [n for n in self.nodes if indeg[n] == 0]
    while ready:
      n = ready.pop(0)
      order.append(n)
      for c in self.children(n):
        indeg[c] -= 1
        if indeg[c] == 0:
          ready.append(c)
      ready.sort(key=self.nodes.index)
    return tuple(order)

  def c_components(self) -> tuple[frozenset[str], ...]:
    """Maximal sets of nodes connected by bidirected paths, in node order."""
    comps, seen = [], set()
    for n in self.nodes:
      if n in seen:
        continue
      comp = self._reach_bidirected(n)
      seen |= comp
      comps.append(comp)
    return tuple(comps)

  def c_component_of(self, node: str) -> frozenset[str]:
    return self._reach_bidirected(node)

  def _reach_bidirected(self, node):
    self.check_node(node)
    comp, todo = {node}, [node]
    while todo:
      for m in self.spouses(todo.pop()):
        if m not in comp:
          comp.add(m)
          todo.append(m)
    return frozenset(comp)

  def c2_components(self) -> tuple[frozenset[str], ...]:
    """Maximal cliques of the bidirected part with at least two nodes.

    These are the latent-sharing groups of a G-constrained NCM (each also gets
    a per-node latent, so singletons are not listed). Bron-Kerbosch with
    pivoting; the bidirected part of a diagram is small.
    """
    nbrs = {n: set(self.spouses(n)) for n in self.nodes}
    cliques = []

    def expand(r, p, x):
      if not p and not x:
        if len(r) > 1:
          cliques.append(frozenset(r))
        return
      pivot = max(p | x, key=lambda n: len(nbrs[n] & p))
      for v in list(p - nbrs[pivot]):
        expand(r | {v}, p & nbrs[v], x & nbrs[v])
        p = p - {v}
        x = x | {v}

    expand(set(), set(self.nodes), set())
    pos = {n: i for i, n in enumerate(self.nodes)}
    return tuple(sorted(cliques, key=lambda c: sorted(pos[n] for n in c)))

  # Transforms -----------------------------------------------------------------

  def do(self, nodes: str | Iterable[str]) -> Graph:
    """The mutilated graph G_{bar X}: edges into `nodes` removed."""
    cut = {nodes} if isinstance(nodes, str) else set(nodes)
    for n in cut:
      self.check_node(n)
    return Graph(
        nodes=self.nodes,
        directed=frozenset(e for e in self.directed if e[1] not in cut),
        bidirected=frozenset(p for p in self.bidirected if not p & cut),
    )

  def subgraph(self, nodes: Iterable[str]) -> Graph:
    keep = set(nodes)
    for n in keep:
      self.check_node(n)
    return Graph(
        nodes=tuple(n for n in self.nodes if n in keep),
        directed=frozenset(e for e in self.directed if set(e) <= keep),
        bidirected=frozenset(p for p in self.bidirected if p <= keep),
    )

  def with_node(self, node: str, parents: Iterable[str]) -> Graph:
    """Adds `node` with the given parents (e.g. the image node of an ASCM)."""
    if node in self.nodes:
      raise GraphError(f"node {node!r} already exists")
    return Graph(
        nodes=self.nodes + (node,),
        directed=self.directed | {(p, node) for p in parents},
        bidirected=self.bidirected,
    )

  def as_dict(self) -> Mapping[str, object]:
    return {
        "nodes": list(self.nodes),
        "directed": [list(e) for e in self._sorted_directed()],
        "bidirected": [list(e) for e in self._sorted_bidirected()],
    }


def _find_cycle(nodes, directed) -> list[str] | None:
  """Returns one directed cycle as a node list, or None."""
  children = {n: [] for n in nodes}
  for a, b in sorted(directed, key=lambda e: (nodes.index(e[0]),
                                               nodes.index(e[1]))):
    children[a].append(b)
  state = dict.fromkeys(nodes, 0)  # 0 new, 1 on stack, 2 done
  stack: list[str] = []

  def visit(n):
    state[n] = 1
    stack.append(n)
    for c in children[n]:
      if state[c] == 1:
        return stack[stack.index(c):]
      if state[c] == 0:
        found = visit(c)
        if found:
          return found
    stack.pop()
    state[n] = 2
    return None

  for n in nodes:
    if state[n] == 0:
      found = visit(n)
      if found:
        return list(found)
  return None

