"""The world engine: SCMs of feature-kind mechanisms, do(), worlds, abduction.

Every model of the library (the NCM, the ANCM's feature part, hand-built test
models) runs its stages here. An `SCM` maps each endogenous variable V to a
`Mechanism`

    V := kind.apply(head(pa_V, u_ctx), noise_V)

with `kind` one of `ctfjax.causal.kinds` (categorical: Gumbel-max; continuous:
a conditional affine map of a standard normal), `head` a pure batched
function of the parents' encodings (one-hots, standardised values) and of the
shared *context latents* it reads, and noise_V the variable's own exogenous
noise. Two variables that read the same context latent are confounded: the
induced `Graph` has a bidirected edge between them (a G-constrained NCM reads
one latent per C^2-component). A prior sampler `(rng, shape) -> {context
name: [*shape, d]}` completes the model; the kinds draw the per-node noise.

Because the kind gives log p(v | pa, u_ctx) and the exact posterior of
noise_V given (v, pa, u_ctx) (truncated Gumbel, or the inverse of the affine
map), abduction has two parts:

* each node's own noise exactly, given its value, its parents and the
  context (`abduct`; a null intervention then reproduces the values
  bit-for-bit);
* the context latents by likelihood weighting: particles from the prior,
  weighted by prod_i p(v_i | pa_i, u_ctx) (`abduct` returns the weights;
  `counterfactual_sample` resamples them).

Interventions come in two forms:

* `do(scm, {X: value})` is a transform: it returns a new SCM whose graph is
  mutilated and whose X is the constant `value` (broadcast over the batch).
* An `Intervention` is data: per variable a boolean mask and a value, both
  left-aligned to the unit axes (a value of shape [B] sets one value per
  unit), so interventions on different variables, with different values per
  unit, or none (the null intervention) share one compilation and can be
  stacked along a world axis and vmapped. `worlds` evaluates the factual and
  any number of counterfactual worlds in one vmapped computation that shares
  the exogenous state (twin network: two worlds). Queries over several
  worlds use the slot-merging form in `ctfjax.causal.worlds`.

Abduction - action - prediction are separate pure functions, each
`jax.jit`-compilable with the SCM as an argument (the SCM is a pytree: the
action values are its leaves, the mechanisms static): `abduct`, `act` (=
`do`), `predict` (= `evaluate`), composed by `counterfactual` (one exact
draw, for models whose observed mechanisms read no context) and
`counterfactual_sample` (weighted particles, any model).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from ctfjax.causal import kinds as kinds_lib
from ctfjax.causal.graph import Graph, GraphError
from ctfjax.causal.table import SCMError
from ctfjax.causal.worlds import WorldPlan, propagate

Array = jax.Array
Values = Mapping[str, Array]
Head = Callable[[dict[str, Array], dict[str, Array]], Array]
Prior = Callable[[Array, tuple[int, ...]], dict[str, Array]]


@dataclasses.dataclass(frozen=True)
class Mechanism:
  """One structural equation V := kind.apply(head(pa, u_ctx), noise_V).

  Attributes:
    parents: endogenous parent names.
    kind: the feature kind (`ctfjax.causal.kinds`).
    head: `head(parents, context) -> [..., kind.head_size]`, pure and
      batched: `parents` maps each parent to its encoding [..., width]
      (a one-hot, possibly relaxed; a standardised value), `context` each
      name of `context` to [..., d]; batch axes broadcast.
    context: the shared context latents the head reads.
  """

  parents: tuple[str, ...]
  kind: kinds_lib.Kind
  head: Head
  context: tuple[str, ...] = ()

  def __post_init__(self):
    object.__setattr__(self, "parents", tuple(self.parents))
    object.__setattr__(self, "context", tuple(self.context))


def additive(parents: Sequence[str], mean: Callable[[dict[str, Array]], Array],
             scale: float = 1.0) -> Mechanism:
  """V := mean(pa) + scale * eps, eps ~ N(0, 1): a continuous mechanism.

  Args:
    parents: parent names.
    mean: `mean(parent encodings) -> [...]`.
    scale: the noise scale.

  Returns:
    The mechanism (standard `Continuous` kind; abduction is v - mean(pa)).
  """
  if not (isinstance(scale, (int, float)) and math.isfinite(scale)
          and scale > 0):
    raise SCMError(f"additive(): scale must be a finite number > 0, got "
                   f"{scale!r}")

  def head(pa, ctx):
    del ctx
    mu = jnp.asarray(mean(pa), jnp.float32)
    return jnp.stack([mu, jnp.full_like(mu, math.log(scale))], -1)
  return Mechanism(parents, kinds_lib.Continuous(), head)


def categorical(parents: Sequence[str], size: int,
                logits: Callable[[dict[str, Array]], Array]) -> Mechanism:
  """V := argmax(logits(pa) + g), g ~ Gumbel(0, 1)^size.

  Args:
    parents: parent names.
    size: number of classes.
    logits: `logits(parent encodings) -> [..., size]`.

  Returns:
    The mechanism, abducted by the exact truncated-Gumbel posterior.
  """
  return Mechanism(parents, kinds_lib.Categorical(size),
                   lambda pa, ctx: logits(pa))


class Exogenous(NamedTuple):
  """The exogenous state of an SCM (a pytree; leading axes are a batch).

  Attributes:
    context: context latent name -> [..., d].
    noise: node -> [..., noise_size] its own noise.
  """

  context: dict[str, Array]
  noise: dict[str, Array]


class Particles(NamedTuple):
  """A weighted posterior sample of the exogenous state given evidence.

  Attributes:
    exogenous: `Exogenous` with leading axes [...].
    log_weights: [...] unnormalised log importance weights p(evidence | u).
    values: node -> [...] factual values (observed ones repeat the evidence,
      unobserved ones are sampled with the particle).
  """

  exogenous: Exogenous
  log_weights: Array
  values: dict[str, Array]


class Intervention(NamedTuple):
  """An intervention as data: V := where(mask[V], value[V], f_V(pa, u)).

  Masks are bool and values of any shape left-aligned to the variable's
  unit axes: [] for every unit, [B] per unit of a [B, ...] batch. Stacked
  interventions (see `stack`) carry one more leading world axis on every
  mask and value.
  """

  mask: dict[str, Array]
  value: dict[str, Array]

  @classmethod
  def of(cls, values: Mapping[str, object],
         mask: Mapping[str, object] | None = None) -> Intervention:
    """{X: x'} as data; `mask` (default all True) may switch units off."""
    mask = dict(mask or {})
    unknown = set(mask) - set(values)
    if unknown:
      raise SCMError(f"mask names {sorted(unknown)[0]!r}, which has no value")
    return cls(
        mask={k: jnp.asarray(mask.get(k, True), bool) for k in values},
        value={k: jnp.asarray(v) for k, v in values.items()})


def stack(interventions: Sequence[Mapping | Intervention]) -> Intervention:
  """Stacks interventions along a new leading world axis.

  A variable that an item does not intervene on gets mask False there, so
  `stack([{}, {"X": 1}])` is the twin network (factual, do(X=1)).

  Args:
    interventions: mappings {X: value} or `Intervention`s.

  Returns:
    One `Intervention` whose masks and values have a leading axis [W].
  """
  items = [i if isinstance(i, Intervention) else Intervention.of(i)
           for i in interventions]
  if not items:
    raise SCMError("stack needs at least one intervention")
  names = list(dict.fromkeys(n for it in items for n in it.mask))
  mask, value = {}, {}
  for n in names:
    have = [it for it in items if n in it.mask]
    mshape = jnp.broadcast_shapes(*(jnp.shape(it.mask[n]) for it in have))
    vshape = jnp.broadcast_shapes(*(jnp.shape(it.value[n]) for it in have))
    dtype = jnp.result_type(*(it.value[n] for it in have))
    mask[n] = jnp.stack([
        jnp.broadcast_to(it.mask[n], mshape) if n in it.mask
        else jnp.zeros(mshape, bool) for it in items])
    value[n] = jnp.stack([
        jnp.broadcast_to(it.value[n], vshape).astype(dtype) if n in it.mask
        else jnp.zeros(vshape, dtype) for it in items])
  return Intervention(mask, value)


@dataclasses.dataclass(frozen=True)
class _Static:
  """The hashable, trace-invariant part of an SCM (pytree aux data)."""

  mechanisms: tuple[tuple[str, Mechanism], ...]
  prior: Prior | None
  graph: Graph
  order: tuple[str, ...]


@jax.tree_util.register_pytree_node_class
class SCM:
  """A structural causal model of feature-kind mechanisms.

  A pytree: the values set by `do` are its leaves, everything else is static,
  so an SCM can be passed to (or closed over by) jitted functions and `do`
  with new values does not recompile.

  Attributes:
    mechanisms: {name: Mechanism}, in declaration order.
    prior: `prior(rng, shape) -> {context name: [*shape, d]}`.
    actions: {name: value} set by `do` (empty for the factual model).
    base_graph: the induced diagram of the factual model.
    graph: the induced diagram, mutilated by the actions.
    order: a topological order of the endogenous variables.
    context: every context latent name, in first-read order.
  """

  def __init__(self, mechanisms: Mapping[str, Mechanism],
               prior: Prior | None = None):
    """Validates the model and builds its induced diagram.

    Args:
      mechanisms: {name: Mechanism} for every endogenous variable.
      prior: `prior(rng, shape) -> {name: [*shape, d]}` for every context
        latent the mechanisms read (None when they read none).

    Raises:
      SCMError: an unknown parent, a context latent named like a variable,
        a missing prior, a cycle.
    """
    mechanisms = dict(mechanisms)
    for name, m in mechanisms.items():
      if not isinstance(m, Mechanism):
        raise SCMError(f"mechanism of {name!r} must be a Mechanism, got "
                       f"{type(m).__name__}")
      for p in m.parents:
        if p not in mechanisms:
          raise SCMError(f"mechanism of {name!r} reads unknown parent {p!r}")
      for n in m.context:
        if n in mechanisms:
          raise SCMError(f"context latent {n!r} of {name!r} is also an "
                         "endogenous variable")
    readers = _readers(mechanisms)
    if readers and prior is None:
      raise SCMError(f"the mechanisms read context latent "
                     f"{next(iter(readers))!r} but no prior is given")
    directed = [(p, v) for v, m in mechanisms.items() for p in m.parents]
    bidirected = sorted({(a, b) for vs in readers.values()
                         for i, a in enumerate(vs) for b in vs[i + 1:]})
    try:
      graph = Graph.from_edges(directed, bidirected, nodes=mechanisms)
    except GraphError as e:
      raise SCMError(f"mechanisms are not acyclic: {e}") from None
    self._static = _Static(tuple(mechanisms.items()), prior, graph,
                           graph.topological_order())
    self.actions: dict[str, Array] = {}

  # Pytree ---------------------------------------------------------------------

  def tree_flatten(self):
    return (self.actions,), self._static

  @classmethod
  def tree_unflatten(cls, static, children):
    # No validation: leaves may be tracers or abstract values here.
    scm = object.__new__(cls)
    scm._static = static
    (scm.actions,) = children
    return scm

  def _replace_actions(self, actions: dict[str, Array]) -> SCM:
    return SCM.tree_unflatten(self._static, (actions,))

  # Structure ------------------------------------------------------------------

  @property
  def mechanisms(self) -> dict[str, Mechanism]:
    return dict(self._static.mechanisms)

  @property
  def prior(self) -> Prior | None:
    return self._static.prior

  @property
  def order(self) -> tuple[str, ...]:
    return self._static.order

  @property
  def base_graph(self) -> Graph:
    return self._static.graph

  @property
  def graph(self) -> Graph:
    """The induced diagram, with edges into intervened variables removed."""
    return self._static.graph.do(self.actions)

  @property
  def context(self) -> tuple[str, ...]:
    return tuple(_readers(self.mechanisms))

  def __repr__(self) -> str:
    acts = f", do={sorted(self.actions)}" if self.actions else ""
    return f"SCM(graph='{self._static.graph}'{acts})"


def _readers(mechanisms: Mapping[str, Mechanism]) -> dict[str, list[str]]:
  """Context latent name -> the variables whose mechanisms read it."""
  readers: dict[str, list[str]] = {}
  for v, m in mechanisms.items():
    for n in m.context:
      readers.setdefault(n, []).append(v)
  return readers


def _check_names(scm: SCM, names, what: str):
  for n in names:
    if n not in scm.mechanisms:
      raise SCMError(f"{what} names unknown variable {n!r}; the SCM has "
                     f"{', '.join(scm.order)}")


def _left(x, ndim: int) -> Array:
  """`x` with trailing unit axes up to `ndim` (left-aligned broadcasting)."""
  x = jnp.asarray(x)
  return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def _head(m: Mechanism, encodings: Values, context: Values) -> Array:
  return m.head({p: encodings[p] for p in m.parents},
                {c: context[c] for c in m.context})


# Exogenous prior --------------------------------------------------------------


def sample_exogenous(scm: SCM, rng: Array, shape: tuple[int, ...]
                     ) -> Exogenous:
  """Prior draws of the whole exogenous state with leading axes `shape`."""
  rng_u, rng_g = jax.random.split(rng)
  context = scm.prior(rng_u, tuple(shape)) if scm.context else {}
  mechanisms = scm.mechanisms
  noise = kinds_lib.sample_noise([mechanisms[v].kind for v in scm.order],
                                 rng_g, tuple(shape))
  return Exogenous(dict(context), dict(zip(scm.order, noise)))


# Action -----------------------------------------------------------------------


def do(scm: SCM, values: Mapping[str, object]) -> SCM:
  """The submodel M_x: each named variable replaced by a constant.

  Args:
    scm: the model (possibly already intervened; new values override).
    values: {X: value}; a value is left-aligned to X's unit axes ([] or
      [B]) and cast to X's dtype.

  Returns:
    A new SCM with mutilated graph; `scm` is unchanged.
  """
  _check_names(scm, values, "do()")
  mechanisms = scm.mechanisms
  return scm._replace_actions(
      {**scm.actions, **{k: mechanisms[k].kind.check(k, v, "do() value")
                         for k, v in values.items()}})


# The action step of abduction-action-prediction is do().
act = do


# Prediction -------------------------------------------------------------------


def evaluate(scm: SCM, u: Exogenous,
             intervention: Mapping | Intervention | None = None,
             observed: Values | None = None) -> dict[str, Array]:
  """Computes every endogenous variable from the exogenous state.

  Args:
    scm: the model; its `do` actions apply.
    u: `Exogenous` with leading axes [...], every context latent and noise.
    intervention: None, a hard intervention {X: value} (as `do`), or an
      `Intervention` (mask, value) applied on top of the actions.
    observed: optional factual values {node: [...]} that `u` was abducted
      from. A node that no intervened variable reaches equals its factual
      value by construction, and so does every node of a unit whose
      intervened values all equal their factual ones: such values are
      copied rather than recomputed, so that no floating-point difference
      between two compiled programs can change a preserved value (a null
      intervention returns `observed` exactly, continuous values included).

  Returns:
    {variable: Array [...]} for every endogenous variable.
  """
  if intervention is None:
    intervention = Intervention({}, {})
  elif not isinstance(intervention, Intervention):
    intervention = Intervention.of(intervention)
  _check_names(scm, intervention.mask, "the intervention")
  for v in scm.order:
    if v not in u.noise:
      raise SCMError(f"missing noise of {v!r}")
  for n in scm.context:
    if n not in u.context:
      raise SCMError(f"missing value of context latent {n!r}")
  observed = dict(observed or {})
  mechanisms, graph = scm.mechanisms, scm.base_graph
  shape = next(iter(u.noise.values())).shape[:-1]
  ndim = len(shape)
  # Per observed node, the units where its value may differ from the
  # factual one (None: none); an unobserved node counts as changed.
  changed: dict[str, Array | None] = {}
  vals, enc = {}, {}
  for v in scm.order:
    m = mechanisms[v]
    cast = lambda x, k=m.kind: jnp.broadcast_to(_left(x, ndim), shape
                                                ).astype(k.dtype)
    parents = [changed[p] for p in graph.parents(v)
               if changed[p] is not None]
    upstream = jnp.stack(parents).any(0) if parents else None
    intervened = v in scm.actions or v in intervention.mask
    if v in observed and upstream is None and not intervened:
      x, changed[v] = cast(observed[v]), None
    else:
      hit = None
      if v in scm.actions:
        x, hit = cast(scm.actions[v]), jnp.ones(shape, bool)
      else:
        x = m.kind.apply(_head(m, enc, u.context), u.noise[v])
      if v in intervention.mask:
        mask = jnp.broadcast_to(_left(intervention.mask[v], ndim), shape)
        x = jnp.where(mask, cast(intervention.value[v]), x)
        hit = mask if hit is None else hit | mask
      if v in observed:
        fact = cast(observed[v])
        ch = upstream if upstream is not None else jnp.zeros(shape, bool)
        if hit is not None:
          ch = jnp.where(hit, x != fact, ch)
        x, changed[v] = jnp.where(ch, x, fact), ch
      else:
        changed[v] = jnp.ones(shape, bool)
    vals[v] = x
    enc[v] = m.kind.encode(x)
  return vals


# Prediction is evaluation of the (acted-on) model at the abducted u.
predict = evaluate


def sample(scm: SCM, rng: Array, shape: int | tuple[int, ...],
           intervention: Mapping | Intervention | None = None
           ) -> tuple[Exogenous, dict[str, Array]]:
  """Draws u from the prior and evaluates; returns (u, values)."""
  shape = (shape,) if isinstance(shape, int) else tuple(shape)
  u = sample_exogenous(scm, rng, shape)
  return u, evaluate(scm, u, intervention)


def worlds(scm: SCM, u: Exogenous,
           interventions: Intervention | Sequence[Mapping | Intervention]
           ) -> dict[str, Array]:
  """Evaluates several worlds that share the exogenous state, in one vmap.

  Args:
    scm: the model.
    u: `Exogenous` with leading axes [B, ...], shared by every world.
    interventions: a stacked `Intervention` (leading world axis [W]) or a
      sequence of interventions to stack; `[{}, {"X": x1}]` is the twin
      network (factual world, then do(X = x1)).

  Returns:
    {variable: Array [W, B, ...]}.
  """
  if not isinstance(interventions, Intervention):
    interventions = stack(interventions)
  return jax.vmap(lambda iv: evaluate(scm, u, iv))(interventions)


# Likelihood -------------------------------------------------------------------


def log_prob(scm: SCM, values: Values, context: Values,
             nodes: Sequence[str] | None = None) -> dict[str, Array]:
  """log p(v_i | pa_i, u_ctx) of every node (the noise integrated out).

  Args:
    scm: the model.
    values: node -> [...] values of every node (of `nodes` and their
      parents).
    context: context latent name -> [..., d]; batch axes broadcast against
      the values' (e.g. values [B, 1] and context [1, m, d] give [B, m]).
    nodes: the nodes to score; None = every node.

  Returns:
    node -> [...] log-probabilities (categorical) or log-densities
    (continuous).
  """
  mechanisms = scm.mechanisms
  enc = {k: mechanisms[k].kind.encode(x) for k, x in values.items()}
  return {v: mechanisms[v].kind.log_prob(
      _head(mechanisms[v], enc, context), values[v])
      for v in (scm.order if nodes is None else nodes)}


# Abduction --------------------------------------------------------------------


def abduct(scm: SCM, observed: Values, rng: Array,
           context: Values | None = None) -> Particles:
  """One weighted draw of the exogenous state given observed values.

  Likelihood weighting in topological order: the context latents are given
  (or drawn from the prior); an observed node adds log p(v | pa, u_ctx) to
  the weight and takes its noise from its kind's exact posterior given v,
  so it reproduces v; an unobserved node is sampled forward with prior
  noise. Each node's noise is thus an exact posterior draw given the
  context; the context is exact only through the weights.

  Args:
    scm: the factual model (no `do` actions).
    observed: {variable: Array [...]} for any subset of the variables.
    rng: a PRNG key.
    context: optional context latents [..., d] (then `rng` only draws the
      noise); default prior draws with the observations' batch shape.

  Returns:
    `Particles` with the observations' batch shape.
  """
  if scm.actions:
    raise SCMError("abduct needs the factual model; this SCM has do("
                   f"{', '.join(sorted(scm.actions))}) applied")
  _check_names(scm, observed, "the observation")
  mechanisms = scm.mechanisms
  observed = {k: mechanisms[k].kind.check(k, x, "observation")
              for k, x in observed.items()}
  if context is None:
    if not observed:
      raise SCMError("nothing is observed; draw u from the prior instead")
    rng_u, rng = jax.random.split(rng)
    shape = jnp.broadcast_shapes(*(x.shape for x in observed.values()))
    context = scm.prior(rng_u, shape) if scm.context else {}
  plan = WorldPlan.build(scm.base_graph, ((),))
  out = propagate(scm, context, rng, plan,
                  {(k, 0): x for k, x in observed.items()})
  values = {k: out.values[k, 0] for k in scm.order}
  return Particles(Exogenous(dict(context), out.noise), out.log_weights,
                   values)


def counterfactual(scm: SCM, observed: Values,
                   intervention: Mapping | Intervention,
                   rng: Array) -> dict[str, Array]:
  """Abduction, action, prediction as one exact draw per unit.

  Exact when every ancestor of an observed variable is observed and no
  observed mechanism reads a context latent (nothing needs weighting);
  confounded models take `counterfactual_sample`.

  Args:
    scm: the factual model.
    observed: {variable: Array [B]}.
    intervention: {X: value} (hard) or an `Intervention` (masked).
    rng: a PRNG key for abduction.

  Returns:
    {variable: Array [B]}, the counterfactual values.

  Raises:
    SCMError: naming an unobserved ancestor of an observed variable, or an
      observed variable whose mechanism reads a context latent.
  """
  _check_names(scm, observed, "the observation")
  for name in observed:
    for a in scm.base_graph.ancestors(name):
      if a not in observed:
        raise SCMError(f"cannot abduct exactly: {a!r} is not observed but "
                       f"its descendant {name!r} is")
    for c in scm.mechanisms[name].context:
      readers = " and ".join(_readers(scm.mechanisms)[c])
      raise SCMError(f"context latent {c!r} (read by {readers}) needs "
                     "weighted particles: use counterfactual_sample")
  particles = abduct(scm, observed, rng)
  return predict(scm, particles.exogenous, intervention, particles.values)


def abduct_particles(scm: SCM, observed: Values, rng: Array,
                     num_particles: int) -> Particles:
  """`num_particles` weighted particles of `abduct` per observed row.

  Args:
    scm: the factual model.
    observed: node -> [B...] values (any subset of the nodes).
    rng: PRNG key (split into the context prior draws and the noise).
    num_particles: m, prior particles per row.

  Returns:
    `Particles` with leading axes [B..., m] ([1, m] when nothing is
    observed).
  """
  batch = jnp.broadcast_shapes(*(jnp.shape(x) for x in observed.values())) \
      if observed else (1,)
  b, m = math.prod(batch), int(num_particles)
  flat = {k: jnp.repeat(jnp.broadcast_to(x, batch).reshape(b), m)
          for k, x in observed.items()}
  rng_u, rng_p = jax.random.split(rng)
  context = scm.prior(rng_u, (b * m,)) if scm.context else {}
  if not context and not flat:
    raise SCMError("nothing is observed and nothing is latent: draw u from "
                   "the prior instead")
  particles = abduct(scm, flat, rng_p, context)
  return jax.tree.map(lambda x: x.reshape(batch + (m,) + x.shape[1:]),
                      particles)


def counterfactual_sample(scm: SCM, observed: Values,
                          intervention: Mapping | Intervention, rng: Array,
                          n: int = 1, num_particles: int = 1024
                          ) -> dict[str, Array]:
  """Samples the intervened values given observed ones, for any model.

  Per row, the weighted particles of `abduct_particles` are resampled in
  proportion to their weights (n draws, with replacement); `predict` runs
  the intervention on them. Factual and counterfactual worlds share the
  exogenous state, and values that the intervention cannot change are
  copied from the particle (`evaluate`).

  Args:
    scm: the factual model.
    observed: node -> [B] values (any subset; the others are sampled as
      part of the posterior).
    intervention: {X: value} or an `Intervention`; values and masks are
      [] or one per row [B].
    rng: PRNG key.
    n: draws per row.
    num_particles: prior particles per row.

  Returns:
    node -> [B, n] values.
  """
  if not isinstance(intervention, Intervention):
    intervention = Intervention.of(intervention)
  rng_a, rng_r = jax.random.split(rng)
  particles = abduct_particles(scm, observed, rng_a, num_particles)
  lw = particles.log_weights  # [B, m]
  idx = jax.random.categorical(rng_r, lw[..., None, :], axis=-1,
                               shape=lw.shape[:-1] + (int(n),))  # [B, n]
  pick = lambda x: jnp.take_along_axis(
      x, idx.reshape(idx.shape + (1,) * (x.ndim - idx.ndim)),
      axis=idx.ndim - 1)
  exo = jax.tree.map(pick, particles.exogenous)
  factual = {k: pick(x) for k, x in particles.values.items()}  # [B, n]
  return predict(scm, exo, intervention, factual)
