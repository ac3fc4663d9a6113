"""SCMs with arbitrary JAX mechanisms: do(), n-world evaluation, abduction.

An `SCM` maps each endogenous variable to a `Mechanism`: its parents, the
name(s) of the exogenous noise it reads, and a pure batched structural
equation

    fn(parents: dict[str, Array], u) -> Array      # [B, ...]

where `u` is the noise array if `noise` is one name, or a dict {name: array}
if it is a tuple of names. An exogenous prior sampler `(rng, batch) ->
{name: Array}` completes the model. Two variables that read the same noise
name are confounded: the induced `Graph` has a bidirected edge between them
(this is how a G-constrained NCM shares one latent per C^2-component).

Nothing here assumes tables or a particular mechanism family: the neural
models build on these transforms. Interventions come in two forms:

* `do(scm, {X: value})` is a transform: it returns a new SCM whose graph is
  mutilated and whose X is the constant `value` (broadcast over the batch).
* An `Intervention` is data: per variable a boolean mask and a value, so
  interventions on different variables (or none: the null intervention) can
  be stacked along a world axis and vmapped. `worlds` evaluates the factual
  and any number of counterfactual worlds in one vmapped computation that
  shares the exogenous u (twin network: two worlds).

Abduction - action - prediction are separate pure functions, each one
`jax.jit`-compilable with the SCM as an argument (the SCM is a pytree: the
action values are its leaves, the mechanisms static): `abduct` draws u from
P(u | observed) with the posterior function each mechanism supplies (an
exact inverse for additive noise, the truncated-Gumbel posterior for
Gumbel-max categoricals), `act` is `do`, `predict` is `evaluate`, and
`counterfactual` composes them.

Per-mechanism abduction is exact when the noises are independent, each read
by one mechanism, and every ancestor of an observed variable is observed;
`abduct` refuses (naming the variable or noise) anything else. Confounded
models need a joint posterior: `ctfjax.causal.inference.sample_posterior`
for a `DiscreteSCM`, or rejection for a neural model.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from ctfjax.causal import gumbel
from ctfjax.causal.discrete import SCMError
from ctfjax.causal.graph import Graph, GraphError

Array = jax.Array
Values = Mapping[str, Array]


@dataclasses.dataclass(frozen=True)
class Mechanism:
  """One structural equation V := fn(pa, u), with its noise posterior.

  Attributes:
    parents: endogenous parent names.
    noise: one exogenous name (fn receives that array as u) or a tuple of
      names (fn receives {name: array}).
    fn: `fn(parents: dict[str, Array], u) -> Array`, pure and batched.
    posterior: optional `posterior(rng, parents, value) -> u`, a draw of the
      noise from P(u | pa, V = value) in the same form fn receives it
      (a deterministic inverse ignores rng). Needed only for abduction.
  """

  parents: tuple[str, ...]
  noise: str | tuple[str, ...]
  fn: Callable[[dict[str, Array], object], Array]
  posterior: Callable[[Array, dict[str, Array], Array], object] | None = None

  def __post_init__(self):
    object.__setattr__(self, "parents", tuple(self.parents))
    if not isinstance(self.noise, str):
      object.__setattr__(self, "noise", tuple(self.noise))

  @property
  def noise_names(self) -> tuple[str, ...]:
    return (self.noise,) if isinstance(self.noise, str) else self.noise

  def noise_of(self, u: Values):
    """The u argument of fn, taken from the full exogenous dict."""
    if isinstance(self.noise, str):
      return u[self.noise]
    return {n: u[n] for n in self.noise}


def additive(parents: Sequence[str], noise: str,
             mean: Callable[[dict[str, Array]], Array]) -> Mechanism:
  """An additive-noise mechanism V := mean(pa) + u, abducted as v - mean(pa).

  Args:
    parents: parent names.
    noise: the one exogenous name it reads.
    mean: `mean(parents) -> Array`, broadcast against u.

  Returns:
    The mechanism, with its exact (deterministic) inverse as posterior.
  """
  return Mechanism(
      parents, noise,
      fn=lambda pa, u: mean(pa) + u,
      posterior=lambda rng, pa, v: v - mean(pa))


def categorical(parents: Sequence[str], noise: str,
                logits: Callable[[dict[str, Array]], Array]) -> Mechanism:
  """A Gumbel-max mechanism V := argmax(logits(pa) + g), g ~ Gumbel(0, 1).

  The prior sampler must draw the noise as iid Gumbel(0, 1) of shape
  [B, K]; abduction is the exact truncated-Gumbel posterior (gumbel.py), so
  a null intervention always reproduces the observed class.

  Args:
    parents: parent names.
    noise: the one exogenous name it reads.
    logits: `logits(parents) -> [B, K]` (or [K], broadcast).

  Returns:
    The mechanism, with its exact posterior.
  """
  return Mechanism(
      parents, noise,
      fn=lambda pa, g: gumbel.gumbel_max(logits(pa), g),
      posterior=lambda rng, pa, v: gumbel.posterior_noise(rng, logits(pa), v))


class Intervention(NamedTuple):
  """An intervention as data: V := where(mask[V], value[V], f_V(pa, u)).

  Masks are bool of shape [] (every unit) or [B] (per unit, left-aligned to
  the variable's [B, ...] value); values broadcast numpy-style to the
  variable's shape. Stacked interventions (see `stack`) carry one more
  leading world axis on every mask and value.
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
  prior: Callable[[Array, int], dict[str, Array]]
  graph: Graph
  order: tuple[str, ...]


@jax.tree_util.register_pytree_node_class
class SCM:
  """A structural causal model with arbitrary JAX mechanisms.

  A pytree: the values set by `do` are its leaves, everything else is static,
  so an SCM can be passed to (or closed over by) jitted functions and `do`
  with new values does not recompile.

  Attributes:
    mechanisms: {name: Mechanism}, in declaration order.
    prior: `prior(rng, batch) -> {noise name: Array}` draws every noise.
    actions: {name: value} set by `do` (empty for the factual model).
    graph: the induced diagram, mutilated by the actions.
    order: a topological order of the endogenous variables.
    exogenous: every noise name, in first-read order.
  """

  def __init__(self, mechanisms: Mapping[str, Mechanism],
               prior: Callable[[Array, int], dict[str, Array]]):
    """Validates the model and builds its induced diagram.

    Args:
      mechanisms: {name: Mechanism} for every endogenous variable.
      prior: `prior(rng, batch) -> {noise name: Array}` for every noise name
        the mechanisms read (noises independent unless shared by name).

    Raises:
      SCMError: an unknown parent, a noise named like a variable, a cycle.
    """
    mechanisms = dict(mechanisms)
    for name, m in mechanisms.items():
      if not isinstance(m, Mechanism):
        raise SCMError(f"mechanism of {name!r} must be a Mechanism, got "
                       f"{type(m).__name__}")
      for p in m.parents:
        if p not in mechanisms:
          raise SCMError(f"mechanism of {name!r} reads unknown parent {p!r}")
      for n in m.noise_names:
        if n in mechanisms:
          raise SCMError(f"noise {n!r} of {name!r} is also an endogenous "
                         "variable")
    directed = [(p, v) for v, m in mechanisms.items() for p in m.parents]
    readers = _readers(mechanisms)
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
  def prior(self) -> Callable[[Array, int], dict[str, Array]]:
    return self._static.prior

  @property
  def order(self) -> tuple[str, ...]:
    return self._static.order

  @property
  def graph(self) -> Graph:
    """The induced diagram, with edges into intervened variables removed."""
    return self._static.graph.do(self.actions)

  @property
  def exogenous(self) -> tuple[str, ...]:
    return tuple(_readers(self.mechanisms))

  def __repr__(self) -> str:
    acts = f", do={sorted(self.actions)}" if self.actions else ""
    return f"SCM(graph='{self._static.graph}'{acts})"


def _readers(mechanisms: Mapping[str, Mechanism]) -> dict[str, list[str]]:
  """Noise name -> the variables whose mechanisms read it."""
  readers: dict[str, list[str]] = {}
  for v, m in mechanisms.items():
    for n in m.noise_names:
      readers.setdefault(n, []).append(v)
  return readers


def _check_names(scm: SCM, names, what: str):
  for n in names:
    if n not in scm.mechanisms:
      raise SCMError(f"{what} names unknown variable {n!r}; the SCM has "
                     f"{', '.join(scm.order)}")


# Action -----------------------------------------------------------------------


def do(scm: SCM, values: Mapping[str, object]) -> SCM:
  """The submodel M_x: each named variable replaced by a constant.

  Args:
    scm: the model (possibly already intervened; new values override).
    values: {X: value}; a value broadcasts numpy-style to X's [B, ...]
      shape and is cast to X's dtype.

  Returns:
    A new SCM with mutilated graph; `scm` is unchanged.
  """
  _check_names(scm, values, "do()")
  return scm._replace_actions(
      {**scm.actions, **{k: jnp.asarray(v) for k, v in values.items()}})


# The action step of abduction-action-prediction is do().
act = do


# Prediction -------------------------------------------------------------------


def evaluate(scm: SCM, u: Values,
             intervention: Mapping | Intervention | None = None
             ) -> dict[str, Array]:
  """Computes every endogenous variable from the exogenous u.

  Args:
    scm: the model; its `do` actions apply.
    u: {noise name: Array [B, ...]}, every noise the mechanisms read.
    intervention: None, a hard intervention {X: value} (as `do`), or an
      `Intervention` (mask, value) applied on top of the actions.

  Returns:
    {variable: Array [B, ...]} for every endogenous variable.
  """
  if intervention is None:
    intervention = Intervention({}, {})
  elif not isinstance(intervention, Intervention):
    scm, intervention = do(scm, intervention), Intervention({}, {})
  _check_names(scm, intervention.mask, "the intervention")
  for n in scm.exogenous:
    if n not in u:
      raise SCMError(f"missing value of exogenous {n!r}")
  mechanisms = scm.mechanisms
  vals: dict[str, Array] = {}
  for name in scm.order:
    m = mechanisms[name]
    args = ({p: vals[p] for p in m.parents}, m.noise_of(u))
    if name in scm.actions:
      # Only the shape and dtype of f_X are needed; no need to run it.
      out = jax.eval_shape(m.fn, *args)
      vals[name] = jnp.broadcast_to(scm.actions[name],
                                    out.shape).astype(out.dtype)
    else:
      vals[name] = m.fn(*args)
    if name in intervention.mask:
      out = vals[name]
      mask = jnp.asarray(intervention.mask[name], bool)
      mask = mask.reshape(mask.shape + (1,) * (out.ndim - mask.ndim))
      value = jnp.broadcast_to(intervention.value[name],
                               out.shape).astype(out.dtype)
      vals[name] = jnp.where(mask, value, out)
  return vals


# Prediction is evaluation of the (acted-on) model at the abducted u.
predict = evaluate


def sample(scm: SCM, rng: Array, batch: int,
           intervention: Mapping | Intervention | None = None
           ) -> tuple[dict[str, Array], dict[str, Array]]:
  """Draws u from the prior and evaluates; returns (u, values)."""
  u = scm.prior(rng, batch)
  return u, evaluate(scm, u, intervention)


def worlds(scm: SCM, u: Values,
           interventions: Intervention | Sequence[Mapping | Intervention]
           ) -> dict[str, Array]:
  """Evaluates several worlds that share the exogenous u, in one vmap.

  Args:
    scm: the model.
    u: {noise name: Array [B, ...]}, shared by every world.
    interventions: a stacked `Intervention` (leading world axis [W]) or a
      sequence of interventions to stack; `[{}, {"X": x1}]` is the twin
      network (factual world, then do(X = x1)).

  Returns:
    {variable: Array [W, B, ...]}.
  """
  if not isinstance(interventions, Intervention):
    interventions = stack(interventions)
  return jax.vmap(lambda iv: evaluate(scm, u, iv))(interventions)


# Abduction --------------------------------------------------------------------


def abduct(scm: SCM, observed: Values, rng: Array) -> dict[str, Array]:
  """Draws u ~ P(u | observed) with each mechanism's posterior function.

  Observed variables' noises come from their mechanisms' posteriors (given
  the observed parents); every other noise keeps its prior, which is exact
  because no observation depends on it.

  Args:
    scm: the factual model (no `do` actions).
    observed: {variable: Array [B, ...]} for an ancestrally closed set of
      variables (every ancestor of an observed variable is observed).
    rng: a PRNG key.

  Returns:
    {noise name: Array [B, ...]} for every noise.

  Raises:
    SCMError: naming the variable whose mechanism has no posterior, an
      unobserved ancestor of an observed variable, or a noise shared by an
      observed variable's mechanism (confounding needs a joint posterior).
  """
  if scm.actions:
    raise SCMError("abduct needs the factual model; this SCM has do("
                   f"{', '.join(sorted(scm.actions))}) applied")
  _check_names(scm, observed, "the observation")
  if not observed:
    raise SCMError("nothing is observed; draw u from scm.prior instead")
  graph = scm.graph
  readers = _readers(scm.mechanisms)
  for name in observed:
    for a in graph.ancestors(name):
      if a not in observed:
        raise SCMError(f"cannot abduct: {a!r} is not observed but its "
                       f"descendant {name!r} is")
    m = scm.mechanisms[name]
    for n in m.noise_names:
      if len(readers[n]) > 1:
        raise SCMError(
            f"noise {n!r} is shared by {' and '.join(readers[n])}: "
            "per-mechanism abduction needs unshared noise; use a joint "
            "posterior for confounded models")
    if m.posterior is None:
      raise SCMError(f"mechanism of {name!r} has no posterior function, so "
                     "its noise cannot be abducted")
  batch = jnp.shape(next(iter(observed.values())))[0]
  u = dict(scm.prior(jax.random.fold_in(rng, len(scm.order)), batch))
  for i, name in enumerate(scm.order):
    if name not in observed:
      continue
    m = scm.mechanisms[name]
    draw = m.posterior(jax.random.fold_in(rng, i),
                       {p: observed[p] for p in m.parents}, observed[name])
    if isinstance(m.noise, str):
      u[m.noise] = draw
    else:
      if not isinstance(draw, Mapping) or set(draw) != set(m.noise):
        raise SCMError(f"posterior of {name!r} must return a dict with keys "
                       f"{list(m.noise)}")
      u.update(draw)
  return u


def counterfactual(scm: SCM, observed: Values,
                   intervention: Mapping | Intervention,
                   rng: Array) -> dict[str, Array]:
  """Abduction, action, prediction: the observed units under an intervention.

  Args:
    scm: the factual model.
    observed: {variable: Array [B, ...]} (ancestrally closed, see `abduct`).
    intervention: {X: value} (hard) or an `Intervention` (masked).
    rng: a PRNG key for abduction.

  Returns:
    {variable: Array [B, ...]}, the counterfactual values.
  """
  return predict(scm, abduct(scm, observed, rng), intervention)
