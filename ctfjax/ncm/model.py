"""G-constrained neural causal models over mixed features (MLE-NCM).

An `NCM` is an SCM whose mechanisms are MLPs (docs/models.md; Xia et al.
2021, 2023), run by the world engine `ctfjax.causal.scm`. Built from a
causal diagram G and the variables' feature kinds (`ctfjax.causal.kinds`),
it has

* one latent U_C ~ Unif(0, 1)^d (or N(0, I)) per C^2-component C of G (a
  maximal bidirected clique) and one latent U_i per node: two variables
  joined by <-> read the SAME latent, two that are not share none (the
  engine's context latents);
* per node its kind's own noise: Gumbel(0, 1)^K for a categorical with K
  values, one N(0, 1) for a continuous feature;
* mechanisms V_i := kind.apply(h_i(pa_i, {U_C : V_i in C}, U_i), noise_i),
  with h_i an MLP fed the parents' encodings (one-hots, standardised
  values) and the latents as they are: V_i = argmax_k(h_ik + G_ik) for a
  categorical, V_i = loc + scale * (mu + exp(log_s) * eps) with (mu, log_s)
  = h_i for a continuous feature.

Per-node noise, and why abduction is exact in it. Given the latents u, the
mechanism draws V_i from p(v_i | pa_i, u) (a softmax, or a Gaussian), so the
likelihood of a full v is prod_i p(v_i | pa_i, u) (used for maximum
likelihood, below). The noise is part of the exogenous state, so every
mechanism is deterministic given (U, noise): counterfactuals are well
defined, and a variable whose parents are unchanged keeps its value.
Abduction of (U, noise) given an observed v is done in two exact steps: U by
importance sampling from the prior with weights p(v | u) (likelihood
weighting: unobserved nodes are sampled forward), then each node's noise
given (u, v) exactly (the truncated-Gumbel posterior, the inverse of the
affine map), so a null intervention reproduces v. The only approximation is
the finite number of prior particles for U.

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
terms (the variance of the plain MLE-NCM estimator).
Continuous features contribute log-densities.

Every method is a pure function of (params, inputs, rng): the `NCM` object
holds only static structure and the Flax graph definition; `params` is the
nnx.State from `nnx.split`, merged back at the boundary, so jit, grad and
vmap compose over it. Entry points are jitted with the model and sizes as
static arguments; intervention values are traced (one compilation per set
of intervened names), so do(C=0), do(C=1) and one value per row share it.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ctfjax.causal import kinds as kinds_lib
from ctfjax.causal import scm as engine
from ctfjax.causal.graph import Graph
from ctfjax.causal.query import Query
from ctfjax.causal.scm import Exogenous, Particles
from ctfjax.causal.table import Table
from ctfjax.errors import UserError
from ctfjax.ncm.query import QueryPlan, estimate_query, query_value
from ctfjax.nn.mlp import MLP

Array = jax.Array
Params = nnx.State
# An intervention {var: value or [B] values}. Inside jitted code the values
# are traced (the names are the pytree structure), so do(C=0), do(C=1) and
# per-row values share one compilation.
Do = Mapping[str, Any]
Features = Mapping[str, int | str | kinds_lib.Kind]

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


class Mechanisms(nnx.Module):
  """One MLP per node: [parent encodings, latents] -> its kind's head."""

  def __init__(self, input_dims: Mapping[str, int],
               head_sizes: Mapping[str, int], hidden: Sequence[int], *,
               rngs: nnx.Rngs):
    self.nets = nnx.Dict({
        v: MLP(input_dims[v], hidden, head_sizes[v], rngs=rngs)
        for v in head_sizes})

  def __call__(self, node: str, x: Array) -> Array:
    return self.nets[node](x)


class NCM:
  """A G-constrained NCM: static structure plus the Flax graph definition.

  Build with `NCM.create`, which also returns the initial parameters. Two
  NCMs with the same graph, features and hyper-parameters are equal and hash
  alike, so jitted functions taking the model as a static argument compile
  once per architecture.

  Attributes:
    graph: the causal diagram.
    order: its nodes in topological order.
    features: node -> kind, in `order`.
    domains: node -> number of values, for the categorical nodes only.
  """

  def __init__(self, graph: Graph | str, features: Features, *,
               latent_dim: int = 2, hidden: Sequence[int] = (64, 64),
               latent_prior: str = "uniform"):
    """Describes the architecture (no parameters; see `create`).

    Args:
      graph: the causal diagram (or its text form).
      features: node -> an int K (categorical with K values), a kind name
        ("categorical" needs a size, so in practice "continuous") or a kind
        object; every node of the graph, nothing else (a `Table.domains`
        fits).
      latent_dim: d, the width of every latent U_C and U_i.
      hidden: hidden widths of each mechanism MLP.
      latent_prior: "uniform" (Unif(0, 1)^d) or "normal" (N(0, I)).
    """
    self.graph = graph if isinstance(graph, Graph) else Graph.parse(graph)
    missing = [v for v in self.graph.nodes if v not in features]
    if missing:
      raise NCMError(f"no feature kind given for node {missing[0]!r}")
    extra = [v for v in features if v not in self.graph.nodes]
    if extra:
      raise NCMError(f"feature given for {extra[0]!r}, which is not a node "
                     f"of the graph {self.graph}")
    if latent_prior not in LATENT_PRIORS:
      raise NCMError(f"latent_prior must be one of {LATENT_PRIORS}, got "
                     f"{latent_prior!r}")
    self.order = self.graph.topological_order()
    try:
      self.features = {v: kinds_lib.resolve(features[v]) for v in self.order}
    except kinds_lib.KindError as e:
      raise NCMError(str(e)) from None
    self.domains = {v: k.size for v, k in self.features.items()
                    if isinstance(k, kinds_lib.Categorical)}
    self.latent_dim = int(latent_dim)
    self.hidden = tuple(int(h) for h in hidden)
    self.latent_prior = latent_prior
    self.components = tuple(
        tuple(v for v in self.order if v in c)
        for c in self.graph.c2_components())
    self._latents_of = {
        v: tuple(_latent_name(c) for c in self.components if v in c)
        + (_latent_name((v,)),) for v in self.order}
    self.c_components = tuple(
        tuple(v for v in self.order if v in c)
        for c in self.graph.c_components())
    self.graphdef = None  # set by `create`

  # Identity ------------------------------------------------------------------

  def _key(self):
    return (self.graph, tuple(self.features.items()), self.latent_dim,
            self.hidden, self.latent_prior)

  def __eq__(self, other):
    return type(other) is type(self) and self._key() == other._key()

  def __hash__(self):
    return hash(self._key())

  def __repr__(self):
    return (f"NCM(graph='{self.graph}', features={self.features}, "
            f"latent_dim={self.latent_dim}, hidden={self.hidden})")

  @classmethod
  def create(cls, graph: Graph | str, features: Features,
             rng: Array | int, **kwargs) -> tuple[NCM, Params]:
    """Builds the model and its initial parameters.

    Args:
      graph: the causal diagram (or its text form).
      features: node -> int K, kind name or kind (see `__init__`).
      rng: a PRNG key or an int seed for the initialisation.
      **kwargs: `latent_dim`, `hidden`, `latent_prior` (see `__init__`).

    Returns:
      (model, params): the static model and its nnx.State parameters.
    """
    model = cls(graph, features, **kwargs)
    model.graphdef, params = nnx.split(model._mechanisms(nnx.Rngs(rng)))
    return model, params

  def _mechanisms(self, rngs: nnx.Rngs) -> nnx.Module:
    """The freshly initialised mechanism networks (`module`'s type)."""
    return Mechanisms(self._input_dims(),
                      {v: k.head_size for v, k in self.features.items()},
                      self.hidden, rngs=rngs)

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
    return {v: sum(self.features[p].width for p in self.graph.parents(v))
            + self.latent_dim * len(self._latents_of[v]) for v in self.order}

  def module(self, params: Params) -> Mechanisms:
    if self.graphdef is None:
      raise NCMError("this NCM has no graph definition; build it with "
                     "NCM.create")
    return nnx.merge(self.graphdef, params)

  def head(self, mech: Mechanisms, node: str, parents: Mapping[str, Array],
           latents: Mapping[str, Array]) -> Array:
    """The head [..., head_size] of `node` (logits, or (mu, log_s)).

    `parents` maps each parent to its [..., width] encoding (possibly a
    relaxed one-hot) and `latents` each latent name to [..., d]; all
    broadcast together.
    """
    parts = [parents[p] for p in self.graph.parents(node)]
    parts += [latents[n] for n in self._latents_of[node]]
    return mech(node, broadcast_concat(parts))

  def scm(self, params: Params | None) -> engine.SCM:
    """The model as a world-engine SCM (heads are the MLPs at `params`).

    With `params` None the SCM serves only the stages that run no
    mechanism (prior draws).
    """
    mech = None if params is None else self.module(params)

    def head(node, pa, ctx):
      if mech is None:
        raise NCMError("this stage runs the mechanisms: pass params")
      return self.head(mech, node, pa, ctx)

    return engine.SCM(
        {v: engine.Mechanism(self.graph.parents(v), self.features[v],
                             functools.partial(head, v), self._latents_of[v])
         for v in self.order}, self.sample_latents)

  def encode(self, values: Mapping[str, Array]) -> Array:
    """Encodings [..., sum of widths] of every node's values, in `order`
    (one-hots and standardised values)."""
    return kinds_lib.encode(self.features, values, self.order)

  @property
  def condition_dim(self) -> int:
    """Width of `condition`."""
    return sum(k.width for k in self.features.values())

  def condition(self, params: Params | None, values: Mapping[str, Array]
                ) -> Array:
    """What an image mechanism conditioned on these features reads
    [..., condition_dim]: here the fixed encodings (`encode`; `params`
    unused); a model with learned codes of its values
    (`ctfjax.ncm.codes.CodeNCM`) reads them from `params`."""
    del params
    return self.encode(values)

  # Validation (at the boundary, in Python) ------------------------------------

  def check_values(self, values: Mapping[str, Any], what: str = "value"
                   ) -> dict[str, Array]:
    """Checks names and (concrete) values; returns arrays of each kind's
    dtype (int32 classes, float32 reals)."""
    out = {}
    for k, x in values.items():
      if k not in self.features:
        raise NCMError(f"unknown variable {k!r} in the {what}; the model has "
                       f"{', '.join(self.order)}")
      try:
        out[k] = self.features[k].check(k, x, what)
      except kinds_lib.KindError as e:
        raise NCMError(str(e)) from None
    return out

  def check_do(self, do: Do | None) -> dict[str, Array]:
    """Checks an intervention; returns {var: [] or [B] value}, sorted."""
    do = self.check_values(dict(do or {}), "intervention")
    for k, x in do.items():
      if x.ndim > 1:
        raise NCMError(f"intervention on {k!r} must be one value or one per "
                       f"row, got shape {x.shape}")
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
    with plain_threefry():
      return engine.sample_exogenous(self.scm(None), rng, tuple(shape))

  # Forward model --------------------------------------------------------------

  def predict(self, params: Params, exogenous: Exogenous,
              do: Do | None = None,
              observed: Mapping[str, Array] | None = None
              ) -> dict[str, Array]:
    """Evaluates the (mutilated) model on a given exogenous state.

    Args:
      params: model parameters.
      exogenous: `Exogenous` with leading axes [...].
      do: the intervention {var: value} (None or {} for none).
      observed: optional factual values {node: [...]} that `exogenous` was
        abducted from; values the intervention cannot change are copied
        from it (`ctfjax.causal.scm.evaluate`).

    Returns:
      node -> [...] values.
    """
    scm = engine.do(self.scm(params), dict(do or {}))
    return engine.evaluate(scm, exogenous, observed=observed)

  def sample(self, params: Params, rng: Array, n: int,
             do: Do | None = None) -> dict[str, Array]:
    """n samples of V (under do, if given): node -> [n]."""
    return _sample(self, params, rng, int(n), self.check_do(do))

  # Likelihood -----------------------------------------------------------------

  def log_likelihood(self, params: Params, v: Mapping[str, Array],
                     rng: Array, num_latent_samples: int = 256,
                     nodes: Sequence[str] | None = None) -> Array:
    """Monte-Carlo log P^(v) for a batch of full assignments.

    log P^(v) = sum over c-components S of
    logsumexp_k sum_{i in S} log p(v_i | pa_i, u^(k)) - log m, with the same
    m latent draws for every row (module docstring); continuous features
    contribute log-densities. Differentiable in params; a lower bound of
    log P^(v) in expectation (Jensen) that tightens as m grows.

    Args:
      params: model parameters.
      v: node -> [B] values, every node (every node of `nodes`).
      rng: PRNG key for the latent draws.
      num_latent_samples: m.
      nodes: an ancestral set A (every ancestor of a member is a member):
        the marginal log P^(v_A), a product over the c-components of the
        subgraph on A (the other nodes integrate out to one); None = all.

    Returns:
      [B] log-likelihoods.
    """
    components = self.c_components
    if nodes is not None:
      nodes = tuple(nodes)
      for n in nodes:
        self.graph.check_node(n)
      outside = self.graph.ancestors(nodes) - set(nodes)
      if outside:
        raise NCMError(f"log_likelihood(nodes={list(nodes)}) needs an "
                       f"ancestral set; add {sorted(outside)[0]!r}")
      components = self.graph.subgraph(nodes).c_components()
    v = self.check_values(v)
    missing = [n for n in (nodes or self.order) if n not in v]
    if missing:
      raise NCMError(f"log_likelihood needs every variable; {missing[0]!r} "
                     "is missing")
    latents = self.sample_latents(rng, (1, num_latent_samples))  # [1, m, d]
    node_lp = self._node_log_probs(params, v, latents,
                                   nodes)  # node -> [B, m]
    out = 0.0
    for comp in components:
      lp = sum(node_lp[n] for n in comp)
      out = out + jax.nn.logsumexp(lp, axis=-1) - math.log(num_latent_samples)
    return out

  def _node_log_probs(self, params, v, latents, nodes=None
                      ) -> dict[str, Array]:
    """log p(v_i | pa_i, u) for every node (of `nodes`): node -> [B, m]."""
    # Values [B, 1] against latents [1, m, d] broadcast to [B, m].
    return engine.log_prob(self.scm(params),
                           {n: x[:, None] for n, x in v.items()}, latents,
                           nodes)

  def model_table(self, params: Params, rng: Array,
                  num_latent_samples: int = 100_000,
                  chunk: int = 10_000) -> Table:
    """Monte-Carlo estimate of the model's joint P^(V), every cell.

    Each c-factor is averaged over `num_latent_samples` prior draws, in
    chunks of `chunk` draws to bound memory; the same draws serve every cell,
    so the table sums to one up to rounding (it is renormalised for that).
    Categorical models only.

    Returns:
      A `Table` over the nodes in topological order.
    """
    self._check_categorical("model_table")
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

  def _check_categorical(self, what: str):
    for v, k in self.features.items():
      if v not in self.domains:
        raise NCMError(f"{what} needs categorical features; {v!r} is "
                       f"{type(k).__name__.lower()}")

  # Abduction ------------------------------------------------------------------

  def abduct(self, params: Params, evidence: Mapping[str, Array],
             rng: Array, num_particles: int = 1024) -> Particles:
    """Weighted posterior particles of the exogenous state given evidence.

    Likelihood weighting in topological order: latents from the prior; an
    observed node contributes log p(v_i | pa_i, u) to the weight and gets
    its noise from the exact posterior given v_i; an unobserved node is
    sampled forward with prior noise (`ctfjax.causal.scm.abduct`).

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
                            n: int = 1, num_particles: int = 1024,
                            evidence: Sequence[str] | None = None
                            ) -> dict[str, Array]:
    """Samples V_{do} given the factual V = v: abduction, action, prediction.

    The particles of `abduct` are resampled in proportion to their weights
    (n draws per row, with replacement), then the mutilated model runs on
    them (`ctfjax.causal.scm.counterfactual_sample`). Factual and
    counterfactual worlds share the exogenous state; values the
    intervention cannot change (non-descendants, and rows whose intervened
    values equal their factual ones) are copied from the factual world, so
    a null intervention returns v exactly.

    Args:
      params: model parameters.
      v: node -> [B] factual values (any subset; unobserved nodes are
        sampled as part of the posterior).
      do: the intervention {var: value}; a value is a scalar or one value
        per row [B]. One compilation serves every value of a set of names.
      rng: PRNG key.
      n: counterfactual draws per row.
      num_particles: prior particles per row for the abduction.
      evidence: the nodes of `v` the abduction conditions on (None: all of
        `v`). The others' factual values are ignored: they are drawn
        afresh from the posterior given the evidence, in both worlds (a
        care set, docs/evaluation.md "Care sets").

    Returns:
      node -> [B, n] counterfactual values.
    """
    v = self.check_values(v, "evidence")
    if evidence is not None:
      evidence = tuple(evidence)
      missing = [k for k in evidence if k not in v]
      if missing:
        raise NCMError(f"evidence names {missing[0]!r}, which has no value "
                       f"in v ({', '.join(v) or 'none'})")
    do = self.check_do(do)
    batch = jnp.broadcast_shapes(*(x.shape for x in v.values())) \
        if v else (1,)
    for k, x in do.items():
      if x.ndim and x.shape != batch[:1]:
        raise NCMError(f"intervention on {k!r} has {x.shape[0]} values for "
                       f"{batch[0]} rows")
    do = {k: jnp.broadcast_to(x, batch[:1]) for k, x in do.items()}
    return self.counterfactual_traced(params, v, do, rng, n, num_particles,
                                      evidence)

  def counterfactual_traced(self, params: Params, v: Mapping[str, Array],
                            do: Mapping[str, Array], rng: Array, n: int = 1,
                            num_particles: int = 1024,
                            evidence: Sequence[str] | None = None
                            ) -> dict[str, Array]:
    """`counterfactual_sample` without the checks, for traced inputs.

    `v` holds every node ([B], each kind's dtype) and `do` one [B] value
    per row for each intervened node; a training loss calls this inside
    its own jit, where the values cannot be inspected. `evidence` as in
    `counterfactual_sample`.
    """
    do = dict(sorted(do.items()))
    observed = dict(v) if evidence is None else {k: v[k] for k in evidence}
    if observed:
      return _counterfactual_sample(self, params, observed, do, rng, int(n),
                                    int(num_particles))
    # Nothing observed: the posterior is the prior, and V_{do} given
    # nothing is an interventional draw; n per row, each row's own do().
    rows = next(iter([*v.values(), *do.values()]), jnp.zeros(1)).shape[0]
    draws = _sample(self, params, rng, rows * int(n),
                    {k: jnp.repeat(x, int(n)) for k, x in do.items()})
    return {k: x.reshape(rows, int(n)) for k, x in draws.items()}

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


def broadcast_concat(parts: Sequence[Array]) -> Array:
  """[..., w_j] arrays broadcast over their leading axes and concatenated
  along the last, as float32: a mechanism network's input."""
  shape = jnp.broadcast_shapes(*(x.shape[:-1] for x in parts))
  return jnp.concatenate(
      [jnp.broadcast_to(x, shape + x.shape[-1:]).astype(jnp.float32)
       for x in parts], axis=-1)


def _latent_name(nodes: Sequence[str]) -> str:
  return "U(" + ",".join(nodes) + ")"


@functools.partial(jax.jit, static_argnums=(0, 3))
def _sample(model: NCM, params, rng, n: int, do: Do):
  with plain_threefry():
    scm = engine.do(model.scm(params), do)
    return engine.sample(scm, rng, (n,))[1]


@functools.partial(jax.jit, static_argnums=(0, 4))
def _c_factor_sums(model: NCM, params, v, rng, m: int) -> Array:
  """sum_k prod_{i in S} p(v_i | pa_i, u^(k)) per c-component: [S, cells]."""
  latents = model.sample_latents(rng, (1, m))
  node_lp = model._node_log_probs(params, v, latents)
  return jnp.stack([
      jnp.exp(sum(node_lp[n] for n in comp)).sum(-1)
      for comp in model.c_components])


@functools.partial(jax.jit, static_argnums=(0, 4))
def _abduct(model: NCM, params, evidence, rng, m: int) -> Particles:
  with plain_threefry():
    return engine.abduct_particles(model.scm(params), evidence, rng, m)


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _counterfactual_sample(model: NCM, params, v, do: Do, rng, n: int,
                           m: int):
  with plain_threefry():
    return engine.counterfactual_sample(
        model.scm(params), v, engine.Intervention.of(do), rng, n, m)
