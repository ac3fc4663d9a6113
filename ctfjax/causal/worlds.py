"""Several worlds of one SCM run side by side on a shared exogenous state.

A counterfactual query names worlds (the factual one and one per distinct
intervention subscript); all of them read the same context latents and the
same per-node noise (the twin / n-world network). A node's copy in world
do(w) equals its copy in do(w') whenever the interventions that reach it
agree (`Graph.reaching`), so each node is computed once per distinct *slot*
(that restricted intervention), not once per world: merged copies are the
same array, not two evaluations that rounding could tell apart.

`propagate` runs the worlds forward with likelihood weighting:

* context latents are given by the caller (prior draws);
* per node, in topological order, the head of each slot is computed from
  its parents' slots (or the intervened constants);
* if evidence fixes one or more slots of the node, the first of them (the
  anchor) adds log p(v | pa, u) to the particle's log weight and draws the
  node's noise from its kind's exact posterior given that value, so the
  anchor reproduces the evidence; further evidence slots (counterfactual
  evidence on a node also observed elsewhere) are checked by indicator;
* otherwise the noise is drawn from its prior.

The weighted particles are an importance sample of the exogenous posterior
given the evidence; `P(outcome | evidence)` is the self-normalised weighted
mean of the outcome indicator. With one world this is the abduction step of
`ctfjax.causal.scm.abduct`.

Parents reach a head as encodings. A computed value's encoding is its kind's
`relaxed_encode` (for a categorical a straight-through one-hot: the exact
argmax forward, a softmax gradient backward), so estimates are exact samples
while gradients exist for min/max training; evidence values are exact
encodings (their dependence on the parameters is in the weights).

The module is duck-typed on the SCM (its `mechanisms`) so that
`ctfjax.causal.scm` can build on it without an import cycle.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from ctfjax.causal.graph import Graph

Array = jax.Array
World = tuple[tuple[str, Any], ...]
# Where a node's value in a world comes from: ("const", value) when it is
# intervened on there, ("slot", j) for its j-th computed copy.
Ref = tuple[str, Any]


@dataclasses.dataclass(frozen=True)
class WorldPlan:
  """Static layout of the worlds: which slot holds each (node, world).

  Attributes:
    worlds: the worlds, each a sorted ((var, value), ...); index 0 is the
      first one given (the factual world () when there is one).
    refs: ((node, world index), Ref) pairs.
    slots: (node, (((parent, Ref), ...) per slot, ...)) in topological
      order: the parents' sources of every computed copy of the node.
  """

  worlds: tuple[World, ...]
  refs: tuple[tuple[tuple[str, int], Ref], ...]
  slots: tuple[tuple[str, tuple[tuple[tuple[str, Ref], ...], ...]], ...]

  @classmethod
  def build(cls, graph: Graph, worlds: tuple[World, ...]) -> WorldPlan:
    refs: dict[tuple[str, int], Ref] = {}
    slots = []
    for v in graph.topological_order():
      keys, parents = [], []
      for i, w in enumerate(worlds):
        do = dict(w)
        if v in do:
          refs[v, i] = ("const", do[v])
          continue
        key = graph.reaching(v, w)
        if key not in keys:
          keys.append(key)
          parents.append(tuple((p, refs[p, i]) for p in graph.parents(v)))
        refs[v, i] = ("slot", keys.index(key))
      slots.append((v, tuple(parents)))
    return cls(tuple(worlds), tuple(refs.items()), tuple(slots))

  def ref(self, node: str, world: int) -> Ref:
    return dict(self.refs)[node, world]


class Propagation(NamedTuple):
  """Output of `propagate`; [N...] is the particle batch shape.

  Attributes:
    values: (node, slot) -> [N...] values (the evidence where observed).
    encodings: (node, slot) -> [N..., width] (relaxed) encodings.
    log_weights: [N...] log p(evidence | particle); -inf where an indicator
      fails.
    noise: node -> [N..., noise_size] the noise each node used.
  """

  values: dict[tuple[str, int], Array]
  encodings: dict[tuple[str, int], Array]
  log_weights: Array
  noise: dict[str, Array]


def propagate(scm: Any, context: Mapping[str, Array], rng: Array,
              plan: WorldPlan, evidence: Mapping[tuple[str, int], Array],
              temperature: float | Array = 1.0) -> Propagation:
  """Runs every world of `plan` forward with likelihood weighting.

  Args:
    scm: the `ctfjax.causal.scm.SCM` (factual: its actions are ignored).
    context: context latent name -> [N..., d] prior draws.
    rng: PRNG key for the noise.
    plan: the worlds (`WorldPlan.build(graph, worlds)` on the SCM's graph).
    evidence: (node, slot) -> [N...] observed values.
    temperature: of the straight-through relaxation (gradients only).

  Returns:
    A `Propagation`.
  """
  mechanisms = scm.mechanisms
  shape = jnp.broadcast_shapes(
      *(x.shape[:-1] for x in context.values()),
      *(jnp.shape(x) for x in evidence.values()))
  log_w = jnp.zeros(shape)
  values, encodings, noise = {}, {}, {}
  keys = jax.random.split(rng, len(plan.slots))
  for (v, slot_parents), key in zip(plan.slots, keys):
    if not slot_parents:  # intervened on in every world
      continue
    mech = mechanisms[v]
    kind = mech.kind
    heads = []
    for refs in slot_parents:
      pa = {p: (mechanisms[p].kind.encode(jnp.asarray(j)) if src == "const"
                else encodings[p, j])
            for p, (src, j) in refs}
      heads.append(mech.head(pa, {c: context[c] for c in mech.context}))
    observed = [j for j in range(len(heads)) if (v, j) in evidence]
    if observed:
      anchor = observed[0]
      obs = evidence[v, anchor]
      log_w = log_w + kind.log_prob(heads[anchor], obs)
      u = kind.abduct(key, heads[anchor], obs)
    else:
      anchor = None
      u = kind.sample_noise(key, shape)
    noise[v] = u
    for j, head in enumerate(heads):
      if j == anchor:
        values[v, j] = jnp.broadcast_to(obs, shape).astype(kind.dtype)
        encodings[v, j] = kind.encode(values[v, j])
        continue
      values[v, j] = kind.apply(head, u)
      encodings[v, j] = kind.relaxed_encode(head, u, temperature)
      if (v, j) in evidence:
        match = values[v, j] == evidence[v, j]
        log_w = log_w + jnp.where(match, 0.0, -jnp.inf)
  return Propagation(values, encodings, log_w, noise)
