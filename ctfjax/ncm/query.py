"""Counterfactual query estimates from an NCM.

Any query of the grammar of `ctfjax.causal.query` (terms in any worlds, on
either side of the bar, categorical variables only) is estimated by the
weighted particles of the world engine's `ctfjax.causal.worlds.propagate`:

    Q^ = sum_k w_k h_k / sum_k w_k,

w_k = p(evidence | particle k) (likelihood weighting; exact abduction of
the noise of every observed node) and h_k the product of the outcome
indicators of particle k. The estimate is consistent in the number of
particles; for a fixed particle set its gradient flows through the weights
and, by the straight-through relaxation, through the outcome indicators and
the intermediate values: `query_value` is the differentiable form used by
min/max training, `estimate_query` the chunked float for reading it off.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ctfjax.causal.inference import ZeroProbabilityError
from ctfjax.causal.query import Query, QueryError
from ctfjax.causal.worlds import WorldPlan, propagate

Array = jax.Array
# ((node, slot), value) pairs.
Assignments = tuple[tuple[tuple[str, int], int], ...]


@dataclasses.dataclass(frozen=True)
class QueryPlan:
  """A query compiled against a graph: static and hashable.

  Attributes:
    query: the parsed query.
    worlds: the world layout (factual world first).
    evidence: evidence on computed slots.
    outcome: outcome terms left to check on computed slots.
    impossible: an outcome term contradicts an intervention or the
      evidence, so the query is 0.
  """

  query: Query
  worlds: WorldPlan
  evidence: Assignments
  outcome: Assignments
  impossible: bool

  @classmethod
  def build(cls, model: Any, query: Query | str) -> QueryPlan:
    """Parses, validates against the model's domains and lays out worlds.

    Raises:
      QueryError: malformed query, unknown variable or value.
      ZeroProbabilityError: evidence contradicting an intervention (or
        itself), which has probability zero in every model.
    """
    q = Query.parse(query)
    for t in q.terms:
      for name in (t.name, *dict(t.world)):
        if name in model.features and name not in model.domains:
          raise QueryError(f"{name!r} is a continuous feature; queries take "
                           "categorical variables only")
    q.validate(model.domains)
    worlds = tuple(dict.fromkeys(((),) + q.worlds))
    plan = WorldPlan.build(model.graph, worlds)
    index = {w: i for i, w in enumerate(worlds)}

    def place(terms):
      fixed, conflict = {}, False
      for t in terms:
        kind, j = plan.ref(t.name, index[t.world])
        if kind == "const":
          conflict |= j != t.value
        elif fixed.setdefault((t.name, j), t.value) != t.value:
          conflict = True
      return fixed, conflict

    evidence, conflict = place(q.evidence)
    if conflict:
      raise ZeroProbabilityError(
          f"evidence {', '.join(map(str, q.evidence))} has probability zero "
          "(it contradicts an intervention or itself)")
    outcome, impossible = place(q.outcome)
    for slot, value in list(outcome.items()):
      if slot in evidence:
        impossible |= evidence[slot] != value
        del outcome[slot]
    return cls(q, plan, tuple(sorted(evidence.items())),
               tuple(sorted(outcome.items())), impossible)


@functools.partial(jax.jit, static_argnums=(0, 2, 4))
def query_value(model: Any, params: Any, plan: QueryPlan, rng: Array,
                n: int, temperature: float | Array = 1.0
                ) -> tuple[Array, Array]:
  """Differentiable estimate of a compiled query from n particles.

  Args:
    model: the `NCM`.
    params: its parameters.
    plan: `QueryPlan.build(model, query)`.
    rng: PRNG key.
    n: particles.
    temperature: of the straight-through relaxation (gradients only).

  Returns:
    (q, log_evidence): the self-normalised estimate and
    log(sum_k w_k / n), which combines estimates from several chunks.
  """
  rng_u, rng_g = jax.random.split(rng)
  latents = model.sample_latents(rng_u, (n,))
  evidence = {s: jnp.full((n,), x, jnp.int32) for s, x in plan.evidence}
  with jax.threefry_partitionable(False):  # see model.plain_threefry
    out = propagate(model.scm(params), latents, rng_g, plan.worlds,
                    evidence, temperature)
  h = jnp.ones((n,))
  for slot, x in plan.outcome:
    h = h * out.encodings[slot][:, x]  # straight-through one-hot
  if plan.impossible:
    h = jnp.zeros((n,))
  log_z = jax.nn.logsumexp(out.log_weights)
  q = jnp.sum(jnp.exp(out.log_weights - log_z) * h)
  return q, log_z - math.log(n)


def estimate_query(model: Any, params: Any, query: Query | str,
                   rng: Array, n: int = 100_000, chunk: int = 50_000
                   ) -> float:
  """The model's value of a counterfactual query, e.g.
  'P(B_{C=1}=1 | C=0, B=0)', from n weighted particles.

  Args:
    model: the `NCM`.
    params: its parameters.
    query: the query (string or `Query`).
    rng: PRNG key.
    n: particles in all.
    chunk: particles per compiled call (bounds memory).

  Returns:
    The estimate, a float in [0, 1].

  Raises:
    QueryError / ZeroProbabilityError: bad query, or evidence that no
      particle reproduces (raise n, or the evidence is impossible).
  """
  plan = QueryPlan.build(model, query)
  chunks = max(1, -(-n // chunk))
  qs, log_zs = [], []
  for c, key in enumerate(jax.random.split(rng, chunks)):
    q, log_z = query_value(model, params, plan, key,
                           min(chunk, n - c * chunk))
    qs.append(float(q))
    log_zs.append(float(log_z) + math.log(min(chunk, n - c * chunk)))
  log_zs = np.asarray(log_zs)
  if not np.isfinite(log_zs.max()):
    raise ZeroProbabilityError(
        f"no particle of {n} reproduces the evidence of {plan.query}; "
        "use more particles")
  w = np.exp(log_zs - log_zs.max())
  qs = np.where(w > 0, qs, 0.0)  # a chunk without weight has q = nan
  # Self-normalised weights can sum to 1 + ulp: clip to a probability.
  return float(np.clip(np.dot(w, qs) / w.sum(), 0.0, 1.0))
