"""Several worlds of one NCM evaluated side by side on a shared exogenous state.

A counterfactual query names worlds (the factual one and one per distinct
intervention subscript); all of them read the same latents U and the same
Gumbel noise G (the twin / n-world network). A node's copy in world do(w)
equals its copy in do(w') whenever the interventions that are its ancestors
in the mutilated graph agree (node merging, as in
`ctfjax.causal.inference`), so each node is computed once per distinct
*slot* (that restricted intervention), not once per world: merged copies are
the same array, not two evaluations that rounding could tell apart.

`propagate` runs the worlds forward with likelihood weighting:

* latents come from the prior (given by the caller);
* per node, in topological order, the logits of each slot are computed from
  its parents' slots (or the intervened constants);
* if evidence fixes one or more slots of the node, the first of them (the
  anchor) adds log p(v | pa, u) to the particle's log weight and draws the
  node's noise from the exact Gumbel posterior given that value, so the
  anchor reproduces the evidence; further evidence slots (counterfactual
  evidence on a node also observed elsewhere) are checked by indicator;
* otherwise the noise is drawn from its Gumbel prior.

The weighted particles are an importance sample of the exogenous posterior
given the evidence; `P(outcome | evidence)` is the self-normalised weighted
mean of the outcome indicator.

Values travel as one-hots. A computed (non-evidence) value is a
straight-through one-hot: the exact argmax forward, the gradient of
softmax((logits + noise) / temperature) backward. Estimates are therefore
exact samples while gradients exist for min/max training; evidence values
are exact one-hots (their dependence on the parameters is in the weights).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from ctfjax.causal.graph import Graph
from ctfjax.causal.gumbel import posterior_noise

Array = jax.Array
World = tuple[tuple[str, int], ...]
# Where a node's value in a world comes from: ("const", value) when it is
# intervened on there, ("slot", j) for its j-th computed copy.
Ref = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class WorldPlan:
  """Static layout of the worlds: which slot holds each (node, world).

  Attributes:
    worlds: the worlds, each a sorted ((var, value), ...); index 0 is the
      first one given (the factual world () when there is one).
    refs: ((node, world index), Ref) pairs.
    slots: (node, ((parent Ref, ...) per slot, ...)) in topological order:
      the parents' sources of every computed copy of the node.
  """

  worlds: tuple[World, ...]
  refs: tuple[tuple[tuple[str, int], Ref], ...]
  slots: tuple[tuple[str, tuple[tuple[Ref, ...], ...]], ...]

  @classmethod
  def build(cls, graph: Graph, worlds: tuple[World, ...]) -> WorldPlan:
    refs: dict[tuple[str, int], Ref] = {}
    slots = []
    for v in graph.topological_order():
      keys, parents = [], []
      for i, w in enumerate(worlds):
        do = dict(w)
        if v in do:
          refs[v, i] = ("const", int(do[v]))
          continue
        # Interventions that reach v in the mutilated graph pick its copy.
        anc = graph.do(do).ancestors(v)
        key = tuple((k, x) for k, x in w if k in anc)
        if key not in keys:
          keys.append(key)
          parents.append(tuple(refs[p, i] for p in graph.parents(v)))
        refs[v, i] = ("slot", keys.index(key))
      slots.append((v, tuple(parents)))
    return cls(tuple(worlds), tuple(refs.items()), tuple(slots))

  def ref(self, node: str, world: int) -> Ref:
    return dict(self.refs)[node, world]


class Propagation(NamedTuple):
  """Output of `propagate`; N is the flat particle axis.

  Attributes:
    onehots: (node, slot) -> [N, K] values (straight-through one-hots).
    log_weights: [N] log p(evidence | particle); -inf where an indicator
      fails.
    noise: node -> [N, K] the Gumbel noise each node used.
  """

  onehots: dict[tuple[str, int], Array]
  log_weights: Array
  noise: dict[str, Array]


def propagate(model: Any, params: Any, latents: Mapping[str, Array],
              rng: Array, plan: WorldPlan,
              evidence: Mapping[tuple[str, int], Array],
              temperature: float = 1.0) -> Propagation:
  """Runs every world of `plan` forward with likelihood weighting.

  Args:
    model: the `NCM`.
    params: its parameters.
    latents: latent name -> [N, d] prior draws.
    rng: PRNG key for the noise.
    plan: the worlds.
    evidence: (node, slot) -> [N] int observed values.
    temperature: of the straight-through relaxation (gradients only).

  Returns:
    A `Propagation`.
  """
  with jax.threefry_partitionable(False):  # see model.plain_threefry
    return _propagate(model, params, latents, rng, plan, evidence,
                      temperature)


def _propagate(model, params, latents, rng, plan, evidence, temperature):
  mech = model.module(params)
  n = next(iter(latents.values())).shape[0]
  log_w = jnp.zeros((n,))
  onehots, noise = {}, {}
  keys = jax.random.split(rng, len(plan.slots))
  for (v, slot_parents), key in zip(plan.slots, keys):
    if not slot_parents:  # intervened on in every world
      continue
    k = model.domains[v]
    logits = []
    for refs in slot_parents:
      pa = {}
      for p, (kind, j) in zip(model.graph.parents(v), refs):
        pa[p] = (jax.nn.one_hot(j, model.domains[p])[None] if kind == "const"
                 else onehots[p, j])
      logits.append(model.logits(mech, v, pa, latents))  # [N, K]
    observed = [j for j in range(len(logits)) if (v, j) in evidence]
    if observed:
      anchor = observed[0]
      obs = evidence[v, anchor]
      logp = jax.nn.log_softmax(logits[anchor])
      log_w = log_w + jnp.take_along_axis(logp, obs[:, None], -1)[:, 0]
      g = posterior_noise(key, logits[anchor], obs)
    else:
      anchor = None
      g = jax.random.gumbel(key, (n, k))
    noise[v] = g
    for j, l in enumerate(logits):
      if j == anchor:
        onehots[v, j] = jax.nn.one_hot(obs, k)
        continue
      z = l + g
      hard = jax.nn.one_hot(jnp.argmax(z, -1), k)
      soft = jax.nn.softmax(z / temperature)
      onehots[v, j] = hard + soft - jax.lax.stop_gradient(soft)
      if (v, j) in evidence:
        match = jnp.argmax(z, -1) == evidence[v, j]
        log_w = log_w + jnp.where(match, 0.0, -jnp.inf)
  return Propagation(onehots, log_w, noise)
