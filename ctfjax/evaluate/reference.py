"""The exact side of the ctf-consistency table: queries, bounds and truth.

For a synthetic dataset the feature-level SCM of its generator is known
exactly (`data.feature_scm`), so every query of the science.md section 6
protocol gets

* its optimal bounds from the TRUE diagram and the TRUE P(V)
  (`cc.bounds(graph, feature_scm.observational(), q)`), i.e. the range over
  every model a learner could have fitted to infinite data; `None` where the
  LP does not cover the query (`cc.BoundsError`, e.g. front-door do(D) with
  C unobserved), with the reason kept;
* its ground truth `cc.query(feature_scm, q)`.

Rows where every outcome is the intervened factor taking its value or a
non-descendant keeping its value have bounds [1, 1] and truth 1 in every
compatible model (`metrics.structural_bounds`); no LP is needed. The queries
are the same for every model of a run: they come from the dataset's diagram,
not from the diagram a model assumes.
"""

from __future__ import annotations

import dataclasses
import functools

from ctfjax import causal as cc
from ctfjax import data
from ctfjax import metrics
from ctfjax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Reference:
  """Protocol queries of one dataset with exact bounds and truth.

  Attributes:
    dataset: dataset name.
    graph: the true diagram, e.g. "D <-> C; D -> B; C -> B".
    domains: {factor: number of values}.
    queries: {"do(X)": [query, ...]} in the protocol's order.
    bounds: {query: (lo, hi) or None}.
    truth: {query: float}.
    notes: {query: why there are no bounds}.
  """

  dataset: str
  graph: str
  domains: dict[str, int]
  queries: dict[str, list[str]]
  bounds: dict[str, tuple[float, float] | None]
  truth: dict[str, float]
  notes: dict[str, str]


@functools.cache
def reference(dataset: str) -> Reference:
  """The protocol's exact reference for `dataset` (cached per process).

  Raises:
    UserError: the dataset has no exact feature SCM (real data).
  """
  if dataset not in data.COLORED:
    raise UserError(f"dataset {dataset!r} has no exact feature SCM; the "
                    "ctf-consistency evaluation needs one of "
                    f"{', '.join(data.COLORED)}")
  scm = data.feature_scm(dataset)
  graph = scm.graph
  table = scm.observational()
  queries = metrics.protocol_queries(graph, scm.domains)
  bounds, truth, notes = {}, {}, {}
  for rows in queries.values():
    for q in rows:
      point = metrics.structural_bounds(graph, q)
      if point is not None:
        bounds[q], truth[q] = point, 1.0
        continue
      try:
        lo, hi = cc.bounds(graph, table, q)
        bounds[q] = (float(lo), float(hi))
      except cc.BoundsError as e:
        bounds[q], notes[q] = None, str(e)
      truth[q] = float(cc.query(scm, q))
  return Reference(dataset, data.display(dataset)["graph"] or str(graph),
                   dict(scm.domains), queries, bounds, truth, notes)
