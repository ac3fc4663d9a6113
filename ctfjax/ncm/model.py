"""G-constrained neural causal models over discrete features (MLE-NCM).

An `NCM` is an SCM whose mechanisms are MLPs (science.md section 4; Xia et
al. 2021, 2023). Built from a causal diagram G and the variables' domain
sizes, it has

* one latent U_C ~ Unif(0, 1)^d (or N(0, I)) per C^2-component C of G (a
  maximal bidirected clique) and one latent U_i per node: two variables
  joined by <-> read the SAME latent, two that are not share none;
* per node a Gumbel(0, 1)^K noise vector G_i (K = |dom(V_i)|);
* mechanisms V_i := argmax_k(l_i(pa_i, {U_C : V_i in C}, U_i)_k + G_ik),
  with l_i an MLP fed the parents as one-hots and the latents as they are.

Per-node noise, and why abduction is exact in it. Given the latents u, the
Gumbel-max mechanism draws V_i from softmax(l_i(pa_i, u)), so
p(v_i | pa_i, u) is that categorical and the likelihood of a full v is
prod_i p(v_i | pa_i, u) (used for maximum likelihood, below). The noise G_i
is part of the exogenous state, so every mechanism is deterministic given
(U, G): counterfactuals are well defined, and a variable whose parents are
unchanged keeps its value. Abduction of (U, G) given an observed v is done
in two exact steps: U by importance sampling from the prior with weights
p(v | u) (likelihood weighting: unobserved nodes are sampled forward), then
G_i | (u, v) from the exact truncated-Gumbel posterior
(`ctfjax.causal.gumbel.posterior_noise`), so that argmax(l_i + G_i) = v_i
holds for every draw and a null intervention reproduces v exactly. The only
approximation is the finite number of prior particles for U.

What this does not pin down. P(V) fixes neither the latents' role nor the
coupling of a node's values across parent settings, so the counterfactuals
of one maximum-likelihood NCM are one member of the compatible set (the
Gumbel-max coupling of a binary node is monotone given u, and fits of the
bar data land on the lower bound of the bar query). `ctfjax.ncm.fit.
fit_bounds` trains the models at the two ends of that set.

Likelihood. Latents of different c-components are independent, so
P^(v) = prod_S E_u[prod_{i in S} p(v_i | pa_i, u)] over the c-components S
of G; each factor is estimated by Monte Carlo with the same latent draws for
every row of a batch and marginalised in log space with logsumexp. With
shared draws the estimated table sums to one over all v (sum out the nodes
in reverse topological order), and a node in no C^2-component has its own
latent averaged on its own rather than multiplied into a product of noisy
terms (the variance of the plain MLE-NCM estimator; science.md section 4).

Every method is a pure function of (params, inputs, rng): the `NCM` object
holds only static structure and the Flax graph definition; `params` is the
nnx.State from `nnx.split`, merged back at the boundary, so jit, grad and
vmap compose over it. Entry points are jitted with the model and sizes as
static arguments; intervention values are traced, so do(C=0) and do(C=1)
share a compilation.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ctfjax.causal.discrete import Table
from ctfjax.causal.graph import Graph
from ctfjax.causal.query import Query
from ctfjax.errors import UserError
from ctfjax.ncm.query import QueryPlan, estimate_query, query_value
from ctfjax.ncm.worlds import WorldPlan, propagate
from ctfjax.nn.mlp import MLP

Array = jax.Array
Params = nnx.State
# An intervention {var: value}. Inside jitted code the values are traced
# scalars (the names are the pytree structure), so do(C=0) and do(C=1)
# share one compilation.
Do = Mapping[str, Any]

# Largest joint table `model_table` enumerates.
MAX_TABLE_CELLS = 2_000_000
LATENT_PRIORS = ("uniform", "normal")


def plain_threefry():
  """Context for the NCM's random draws: the non-partitionable threefry.

  XLA:CPU compiles the partitionable threefry kernel (JAX's default) several
  times slower (seconds per jitted function here), and the NCM's draws are
  small and unsharded. Streams stay deterministic per key; they differ from
  what the same key gives outside this context.
  """
  return jax.threefry_partitionable(False)


class NCMError(UserError):
  """Bad input to an NCM: unknown variable, value outside its domain, ..."""


class Exogenous(NamedTuple):
  """The exogenous state of an NCM (a pytree; leading axes are a batch).

  Attributes:
    latents: latent name -> [..., d] draws (names from `NCM.latent_names`).
    noise: node -> [..., K] Gumbel noise of its mechanism.
  """

  latents: dict[str, Array]
  noise: dict[str, Array]


class Particles(NamedTuple):
  """A weighted posterior sample of the exogenous state given evidence.

  Attributes:
    exogenous: `Exogenous` with leading axes [B, m].
    log_weights: [B, m] unnormalised log importance weights p(evidence | u).
    values: node -> [B, m] factual values (observed ones repeat the evidence,
      unobserved ones are sampled with the particle).
  """

  exogenous: Exogenous
  log_weights: Array
  values: dict[str, Array]


class Mechanisms(nnx.Module):
  """One MLP per node: [one-hot parents, latents] -> logits [K]."""

  def __init__(self, input_dims: Mapping[str, int],
               domains: Mapping[str, int], hidden: Sequence[int], *,
               rngs: nnx.Rngs):
    self.nets = nnx.Dict({
        v: MLP(input_dims[v], hidden, domains[v], rngs=rngs)
        for v in domains})

  def __call__(self, node: str, x: Array) -> Array:
    return self.nets[node](x)


class NCM:
  """A G-constrained NCM: static structure plus the Flax graph definition.

  Build with `NCM.create`, which also returns the initial parameters. Two
  NCMs with the same graph, domains and hyper-parameters are equal and hash
  alike, so jitted functions taking the model as a static argument compile
  once per architecture.
  """

  def __init__(self, graph: Graph | str, domains: Mapping[str, int], *,
               latent_dim: int = 2, hidden: Sequence[int] = (64, 64),
               latent_prior: str = "uniform"):
    """Describes the architecture (no parameters; see `create`).

    Args:
      graph: the causal diagram (or its text form).
      domains: node -> number of values (at least 1); every node of the
        graph, nothing else (a `Table.domains` fits).
      latent_dim: d, the width of every latent U_C and U_i.
      hidden: hidden widths of each mechanism MLP.
      latent_prior: "uniform" (Unif(0, 1)^d) or "normal" (N(0, I)).
    """
    self.graph = graph if isinstance(graph, Graph) else Graph.parse(graph)
    missing = [v for v in self.graph.nodes if v not in domains]
    if missing:
      raise NCMError(f"no domain given for node {missing[0]!r}")
    extra = [v for v in domains if v not in self.graph.nodes]
    if extra:
      raise NCMError(f"domain given for {extra[0]!r}, which is not a node of "
                     f"the graph {self.graph}")
    for v, k in domains.items():
      if int(k) < 1:
        raise NCMError(f"domain of {v!r} must be a positive integer, got {k}")
    if latent_prior not in LATENT_PRIORS:
      raise NCMError(f"latent_prior must be one of {LATENT_PRIORS}, got "
                     f"{latent_prior!r}")
    if int(latent_dim) < 1:
      raise NCMError(f"latent_dim must be at least 1, got {latent_dim}")
    self.order = self.graph.topological_order()
    self.domains = {v: int(domains[v]) for v in self.order}
    self.latent_dim = int(latent_dim)
    self.hidden = tuple(int(h) for h in hidden)
    self.latent_prior = latent_prior
    pos = {v: i for i, v in enumerate(self.graph.nodes)}
    self.components = tuple(
        tuple(sorted(c, key=pos.get)) for c in self.graph.c2_components())
    self._latents_of = {
        v: tuple(_latent_name(c) for c in self.components if v in c)
        + (_latent_name((v,)),) for v in self.order}
    self.c_components = tuple(
        tuple(v for v in self.order if v in c)
        for c in self.graph.c_components())
    self.graphdef = None  # set by `create`

  # Identity ------------------------------------------------------------------

  def _key(self):
    return (self.graph, tuple(self.domains.items()), self.latent_dim,
            self.hidden, self.latent_prior)

  def __eq__(self, other):
    return isinstance(other, NCM) and self._key() == other._key()

  def __hash__(self):
    return hash(self._key())

  def __repr__(self):
    return (f"NCM(graph='{self.graph}', domains={self.domains}, "
            f"latent_dim={self.latent_dim}, hidden={self.hidden})")

  @classmethod
  def create(cls, graph: Graph | str, domains: Mapping[str, int],
             rng: Array | int, **kwargs) -> tuple[NCM, Params]:
    """Builds the model and its initial parameters.

    Args:
      graph: the causal diagram (or its text form).
      domains: node -> number of values.
      rng: a PRNG key or an int seed for the initialisation.
      **kwargs: `latent_dim`, `hidden`, `latent_prior` (see `__init__`).

    Returns:
      (model, params): the static model and its nnx.State parameters.
    """
    model = cls(graph, domains, **kwargs)
    mech = Mechanisms(model._input_dims(), model.domains, model.hidden,
                      rngs=nnx.Rngs(rng))
    model.graphdef, params = nnx.split(mech)
    return model, params

  # Structure -----------------------------------------------------------------

  @property
  def latent_names(self) -> tuple[str, ...]:
    """Latents: one per C^2-component, e.g. 'U(D,C)', then one per node."""
    return tuple(_latent_name(c) for c in self.components) + tuple(
        _latent_name((v,)) for v in self.order)

  def latents_of(self, node: str) -> tuple[str, ...]:
    """The latents `node`'s mechanism reads (its C^2-components', its own)."""
    self.graph.check_node(node)
    return self._latents_of[node]

  def _input_dims(self) -> dict[str, int]:
    return {v: sum(self.domains[p] for p in self.graph.parents(v))
            + self.latent_dim * len(self._latents_of[v]) for v in self.order}

  def module(self, params: Params) -> Mechanisms:
    if self.graphdef is None:
      raise NCMError("this NCM has no graph definition; build it with "
                     "NCM.create")
    return nnx.merge(self.graphdef, params)

  def logits(self, mech: Mechanisms, node: str,
              parents: Mapping[str, Array], latents: Mapping[str, Array],
              ) -> Array:
    """Logits [..., K] of `node` from parent one-hots and latents.

    `parents` maps each parent to a [..., K_p] one-hot (or relaxed one-hot)
    and `latents` each latent name to [..., d]; all broadcast together.
    """
    parts = [parents[p] for p in self.graph.parents(node)]
    parts += [latents[n] for n in self._latents_of[node]]
    shape = jnp.broadcast_shapes(*(x.shape[:-1] for x in parts))
    x = jnp.concatenate(
        [jnp.broadcast_to(x, shape + x.shape[-1:]).astype(jnp.float32)
         for x in parts], axis=-1)
    return mech(node, x)

  # Validation (at the boundary, in Python) ------------------------------------

  def check_values(self, values: Mapping[str, Any], what: str = "value"
                   ) -> dict[str, Array]:
    """Checks names and (concrete) values; returns int32 arrays."""
    out = {}
    for k, x in values.items():
      if k not in self.domains:
        raise NCMError(f"unknown variable {k!r} in the {what}; the model has "
                       f"{', '.join(self.order)}")
      if not isinstance(x, jax.core.Tracer):
        x = np.asarray(x)  # concrete: checked on the host
        if x.dtype.kind in "iu" and x.size and (
            x.min() < 0 or x.max() >= self.domains[k]):
          raise NCMError(f"{what} of {k!r} is outside its domain "
                         f"0..{self.domains[k] - 1}")
      if not jnp.issubdtype(x.dtype, jnp.integer):
        raise NCMError(f"{what} of {k!r} must be integers, got {x.dtype}")
      out[k] = jnp.asarray(x, jnp.int32)
    return out

  def check_do(self, do: Do | None) -> dict[str, Array]:
    """Checks an intervention; returns {var: int32 scalar}, sorted."""
    do = self.check_values(dict(do or {}), "intervention")
    for k, x in do.items():
      if x.ndim:
        raise NCMError(f"intervention on {k!r} must be one value, got shape "
                       f"{x.shape}")
    return dict(sorted(do.items()))

  # Exogenous ------------------------------------------------------------------

  def sample_latents(self, rng: Array, shape: tuple[int, ...]
                     ) -> dict[str, Array]:
    """Prior draws of every latent: name -> [*shape, d]."""
    # One draw for all latents: fewer random-bit kernels to compile.
    full = tuple(shape) + (len(self.latent_names), self.latent_dim)
    with plain_threefry():
      if self.latent_prior == "uniform":
        u = jax.random.uniform(rng, full)
      else:
        u = jax.random.normal(rng, full)
    return {n: u[..., i, :] for i, n in enumerate(self.latent_names)}

  def sample_exogenous(self, rng: Array, shape: tuple[int, ...]) -> Exogenous:
    """Prior draws of the whole exogenous state with leading axes `shape`."""
    rng_u, rng_g = jax.random.split(rng)
    sizes = [self.domains[v] for v in self.order]
    with plain_threefry():
      g = jax.random.gumbel(rng_g, tuple(shape) + (sum(sizes),))
    noise = dict(zip(self.order, jnp.split(g, np.cumsum(sizes)[:-1], -1)))
    return Exogenous(self.sample_latents(rng_u, shape), noise)

  # Forward model --------------------------------------------------------------

  def predict(self, params: Params, exogenous: Exogenous,
              do: Do | None = None,
              observed: Mapping[str, Array] | None = None
              ) -> dict[str, Array]:
    """Evaluates the (mutilated) model on a given exogenous state.

    The deterministic SCM evaluation: action do(X = x) replaces X's
    mechanism by the constant, every other node is argmax(logits + noise).
    Used for prediction after abduction.

    Args:
      params: model parameters.
      exogenous: `Exogenous` with leading axes [...].
      do: the intervention {var: value} (None or {} for none).
      observed: optional factual values {node: [...]} that `exogenous` was
        abducted from. Nodes that are not descendants of the intervened
        ones equal their factual values by construction; they are copied
        rather than recomputed, so that no floating-point difference
        between two compiled programs can flip a preserved value.

    Returns:
      node -> [...] int32 values.
    """
    do = dict(do or {})
    mech = self.module(params)
    affected = self.graph.descendants(do) if do else frozenset()
    observed = dict(observed or {})
    shape = next(iter(exogenous.noise.values())).shape[:-1]
    onehots, values = {}, {}
    for v in self.order:
      if v in do:
        values[v] = jnp.full(shape, do[v], jnp.int32)
      elif v in observed and v not in affected:
        values[v] = jnp.broadcast_to(jnp.asarray(observed[v], jnp.int32),
                                     shape)
      else:
        logits = self.logits(mech, v, onehots, exogenous.latents)
        values[v] = jnp.argmax(logits + exogenous.noise[v],
                               axis=-1).astype(jnp.int32)
      onehots[v] = jax.nn.one_hot(values[v], self.domains[v])
    return values

  def sample(self, params: Params, rng: Array, n: int,
             do: Do | None = None) -> dict[str, Array]:
    """n samples of V (under do, if given): node -> [n] int32."""
    return _sample(self, params, rng, int(n), self.check_do(do))

  # Likelihood -----------------------------------------------------------------

  def log_likelihood(self, params: Params, v: Mapping[str, Array],
                     rng: Array, num_latent_samples: int = 256) -> Array:
    """Monte-Carlo log P^(v) for a batch of full assignments.

    log P^(v) = sum over c-components S of
    logsumexp_k sum_{i in S} log p(v_i | pa_i, u^(k)) - log m, with the same
    m latent draws for every row (module docstring). Differentiable in
    params; a lower bound of log P^(v) in expectation (Jensen) that tightens
    as m grows.

    Args:
      params: model parameters.
      v: node -> [B] int values, every node.
      rng: PRNG key for the latent draws.
      num_latent_samples: m.

    Returns:
      [B] log-likelihoods.
    """
    v = self.check_values(v)
    missing = [n for n in self.order if n not in v]
    if missing:
      raise NCMError(f"log_likelihood needs every variable; {missing[0]!r} "
                     "is missing")
    mech = self.module(params)
    latents = self.sample_latents(rng, (1, num_latent_samples))  # [1, m, d]
    node_lp = self._node_log_probs(mech, v, latents)  # node -> [B, m]
    out = 0.0
    for comp in self.c_components:
      lp = sum(node_lp[n] for n in comp)
      out = out + jax.nn.logsumexp(lp, axis=-1) - math.log(num_latent_samples)
    return out

  def _node_log_probs(self, mech, v, latents) -> dict[str, Array]:
    """log p(v_i | pa_i, u) for every node: node -> [B, m]."""
    onehots = {n: jax.nn.one_hot(x, self.domains[n])[:, None, :]
               for n, x in v.items()}  # [B, 1, K]
    out = {}
    for n in self.order:
      logp = jax.nn.log_softmax(self.logits(mech, n, onehots, latents))
      # One-hot contraction broadcasts roots' [1, m, K] against [B, 1, K].
      out[n] = jnp.sum(onehots[n] * logp, axis=-1)
    return out

  def model_table(self, params: Params, rng: Array,
                  num_latent_samples: int = 100_000,
                  chunk: int = 10_000) -> Table:
    """Monte-Carlo estimate of the model's joint P^(V), every cell.

    Each c-factor is averaged over `num_latent_samples` prior draws, in
    chunks of `chunk` draws to bound memory; the same draws serve every cell,
    so the table sums to one up to rounding (it is renormalised for that).

    Returns:
      A `Table` over the nodes in topological order.
    """
    sizes = [self.domains[n] for n in self.order]
    cells = math.prod(sizes)
    if cells > MAX_TABLE_CELLS:
      raise NCMError(f"the joint table has {cells} cells (more than "
                     f"{MAX_TABLE_CELLS}); estimate marginals instead")
    grid = np.array(list(itertools.product(*map(range, sizes))), np.int32)
    v = {n: jnp.asarray(grid[:, i]) for i, n in enumerate(self.order)}
    chunks = max(1, -(-num_latent_samples // chunk))
    sums = None
    for c, key in enumerate(jax.random.split(rng, chunks)):
      m = min(chunk, num_latent_samples - c * chunk)
      part = _c_factor_sums(self, params, v, key, m)  # [S, cells]
      sums = part if sums is None else sums + part
    probs = np.prod(np.asarray(sums, np.float64) / num_latent_samples, axis=0)
    return Table(self.order, (probs / probs.sum()).reshape(sizes))

  # Abduction ------------------------------------------------------------------

  def abduct(self, params: Params, evidence: Mapping[str, Array],
             rng: Array, num_particles: int = 1024) -> Particles:
    """Weighted posterior particles of the exogenous state given evidence.

    Likelihood weighting in topological order: latents from the prior; an
    observed node contributes log p(v_i | pa_i, u) to the weight and gets
    its Gumbel noise from the exact posterior given v_i; an unobserved node
    is sampled forward with prior noise.

    Args:
      params: model parameters.
      evidence: node -> [B] observed values (any subset of the nodes).
      rng: PRNG key.
      num_particles: m, prior particles per row.

    Returns:
      `Particles` with leading axes [B, m].
    """
    evidence = self.check_values(evidence, "evidence")
    return _abduct(self, params, evidence, rng, int(num_particles))

  def counterfactual_sample(self, params: Params, v: Mapping[str, Array],
                            do: Do | None, rng: Array,
                            n: int = 1, num_particles: int = 1024
                            ) -> dict[str, Array]:
    """Samples V_{do} given the factual V = v: abduction, action, prediction.

    The particles of `abduct` are resampled in proportion to their weights
    (n draws per row, with replacement), then `predict` runs the mutilated
    model on them. Factual and counterfactual worlds share the exogenous
    state. With a null intervention the output equals v.

    Args:
      params: model parameters.
      v: node -> [B] factual values (any subset; unobserved nodes are
        sampled as part of the posterior).
      do: the intervention {var: value}.
      rng: PRNG key.
      n: counterfactual draws per row.
      num_particles: prior particles per row for the abduction.

    Returns:
      node -> [B, n] int32 counterfactual values.
    """
    v = self.check_values(v, "evidence")
    return _counterfactual_sample(self, params, v, self.check_do(do), rng,
                                  int(n), int(num_particles))

  # Queries --------------------------------------------------------------------

  def estimate_query(self, params: Params, query: Query | str, rng: Array,
                     n: int = 100_000) -> float:
    """The model's value of a query such as 'P(B_{C=1}=1 | C=0, B=0)'.

    See `ctfjax.ncm.query.estimate_query`.
    """
    return estimate_query(self, params, query, rng, n)

  def query_value(self, params: Params, query: Query | str | QueryPlan,
                  rng: Array, n: int = 4096, temperature: float = 1.0
                  ) -> Array:
    """Differentiable n-particle estimate of a query (a jnp scalar).

    See `ctfjax.ncm.query.query_value`; pass a `QueryPlan` to skip parsing
    inside a jitted loss.
    """
    plan = query if isinstance(query, QueryPlan) else QueryPlan.build(
        self, query)
    return query_value(self, params, plan, rng, int(n), temperature)[0]


def _latent_name(nodes: Sequence[str]) -> str:
  return "U(" + ",".join(nodes) + ")"


@functools.partial(jax.jit, static_argnums=(0, 3))
def _sample(model: NCM, params, rng, n: int, do: Do):
  return model.predict(params, model.sample_exogenous(rng, (n,)), do)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _c_factor_sums(model: NCM, params, v, rng, m: int) -> Array:
  """sum_k prod_{i in S} p(v_i | pa_i, u^(k)) per c-component: [S, cells]."""
  mech = model.module(params)
  latents = model.sample_latents(rng, (1, m))
  node_lp = model._node_log_probs(mech, v, latents)
  return jnp.stack([
      jnp.exp(sum(node_lp[n] for n in comp)).sum(-1)
      for comp in model.c_components])


@functools.partial(jax.jit, static_argnums=(0, 4))
def _abduct(model: NCM, params, evidence, rng, m: int) -> Particles:
  batch = jnp.broadcast_shapes(*(x.shape for x in evidence.values())) \
      if evidence else (1,)
  b = math.prod(batch)
  plan = WorldPlan.build(model.graph, ((),))
  rng_u, rng_p = jax.random.split(rng)
  latents = model.sample_latents(rng_u, (b * m,))
  slot_ev = {(k, 0): jnp.repeat(jnp.broadcast_to(x, batch).reshape(b), m)
             for k, x in evidence.items()}
  out = propagate(model, params, latents, rng_p, plan, slot_ev)
  unflat = lambda x: x.reshape(batch + (m,) + x.shape[1:])
  values = {k: unflat(jnp.argmax(out.onehots[(k, 0)], -1).astype(jnp.int32))
            for k in model.order}
  exo = Exogenous(jax.tree.map(unflat, latents),
                  jax.tree.map(unflat, out.noise))
  return Particles(exo, unflat(out.log_weights), values)


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _counterfactual_sample(model: NCM, params, v, do: Do, rng, n: int,
                           m: int):
  rng_a, rng_r = jax.random.split(rng)
  particles = _abduct(model, params, v, rng_a, m)
  lw = particles.log_weights  # [B, m]
  with plain_threefry():
    idx = jax.random.categorical(rng_r, lw[..., None, :], axis=-1,
                                 shape=lw.shape[:-1] + (n,))  # [B, n]
  pick = lambda x: jnp.take_along_axis(
      x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=idx.ndim - 1)
  exo = jax.tree.map(pick, particles.exogenous)
  factual = {k: pick(x) for k, x in particles.values.items()}  # [B, n]
  return model.predict(params, exo, do, observed=factual)
