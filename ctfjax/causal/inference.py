"""Exact layer-1/2/3 inference in a `DiscreteSCM` by variable elimination.

Counterfactual queries are answered on the twin (n-world) network: one copy of
each endogenous variable per world, all copies reading the same exogenous
variables. Every mechanism becomes a local indicator factor
1[V = f(inputs)] and every exogenous variable a prior factor P(u); the query is
a sum over all variables of the product of factors, contracted pairwise in
float64 numpy along opt_einsum's greedy elimination order (the order funsor,
the sum-product engine under NumPyro's enumeration, picks too). Cost is
exponential in the treewidth of the twin network, not in the number of
exogenous states: a 30-node chain with 3^30 exogenous states is answered in a
fraction of a second.

Why numpy rather than funsor on JAX: these networks are small and each query
has its own shapes, so a JAX backend traced and compiled every new
contraction (hundreds of milliseconds for a model's first query) to run
microseconds of arithmetic; eager numpy has no compilation and no tracing,
and the same greedy order keeps long chains as fast as before.

Two reductions keep the network small: only ancestors of the query's terms are
built, and a variable's copy in world `do(w)` is shared with the factual copy
(or a smaller world) whenever the interventions that are not its ancestors in
the mutilated graph are dropped (node merging of the twin network).

All arithmetic is float64. Every `scm` argument is a
`ctfjax.causal.discrete.DiscreteSCM` (which imports this module for its
`observational` table, so this one does not import it back).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import jax
import numpy as np
import opt_einsum

from ctfjax.causal.table import SCMError, Table
from ctfjax.causal.query import Query, Term, Variable, World
from ctfjax.causal.query import ZeroProbabilityError
from ctfjax.causal.query import parse_terms, parse_variables
from ctfjax.causal.query import validate_terms, world_str

# Largest exogenous posterior table `posterior_exogenous` will build.
MAX_POSTERIOR_STATES = 2**22

# Engines of `query` and `distribution`: this module's contraction (the
# default) and NumPyro's own enumeration (`numpyro_backend`).
BACKENDS = ("einsum", "numpyro")


Evidence = str | Sequence[Term] | Mapping[str, int] | None


def as_terms(evidence: Evidence) -> tuple[Term, ...]:
  """Evidence as terms: a string 'X=0, Y_{X=1}=1', terms, or {var: value}."""
  if evidence is None:
    return ()
  if isinstance(evidence, str):
    return parse_terms(evidence)
  if isinstance(evidence, Mapping):
    return tuple(Term(Variable(k), int(v)) for k, v in evidence.items())
  return tuple(evidence)


# A factor: a float64 array with one axis per named node, in order.
Factor = tuple[np.ndarray, tuple[str, ...]]


class _TwinNetwork:
  """Factors of the n-world network, built on demand for the needed nodes."""

  def __init__(self, scm):
    self.scm = scm
    self.factors: dict[object, Factor] = {}
    self.impossible = False  # an event contradicts an intervention

  def node(self, var: str, world: World) -> str | int:
    """Node name of `var` in `world`, or its constant if intervened."""
    do = dict(world)
    if var in do:
      return do[var]
    world = self.scm.graph.reaching(var, world)
    name = var if not world else f"{var}[{world_str(world)}]"
    if ("mech", name) not in self.factors:
      self._add_mechanism(var, world, name)
    return name

  def _add_mechanism(self, var: str, world: World, name: str):
    mech = self.scm.endogenous[var]
    names = []
    index = []
    for i in mech.inputs:
      if i in self.scm.exogenous:
        self._add_prior(i)
        src = i
      else:
        src = self.node(i, world)
      if isinstance(src, str):
        names.append(src)
        index.append(slice(None))
      else:
        index.append(src)
    sliced = mech.table[tuple(index)]
    onehot = (sliced[..., None] == np.arange(mech.domain)).astype(np.float64)
    self.factors[("mech", name)] = (onehot, (*names, name))

  def _add_prior(self, u: str):
    if ("prior", u) not in self.factors:
      self.factors[("prior", u)] = (self.scm.exogenous[u], (u,))

  def observe(self, terms: Iterable[Term]) -> list[Factor]:
    """Indicator factors of the events `terms` (added to the network)."""
    out = []
    for t in terms:
      node = self.node(t.name, t.world)
      if isinstance(node, int):
        self.impossible |= node != t.value
        continue
      onehot = np.zeros(self.scm.endogenous[t.name].domain)
      onehot[t.value] = 1.0
      out.append((onehot, (node,)))
    return out

  def contract(self, extra: Sequence[Factor] = (),
               keep: Sequence[str] = ()) -> np.ndarray:
    """Sums the product of all factors over every node not in `keep`.

    Returns an array with one axis per name in `keep`, in that order.
    """
    factors = list(self.factors.values()) + list(extra)
    if not factors:
      return np.ones(())
    ids: dict[str, int] = {}
    args = []
    for array, names in factors:
      args += [array, [ids.setdefault(n, len(ids)) for n in names]]
    args.append([ids[k] for k in keep])
    # Greedy is funsor's order too; the optimal searches cost more than the
    # contraction itself on networks this size.
    return np.asarray(opt_einsum.contract(*args, optimize="greedy"),
                      dtype=np.float64)


def _validate(scm, terms: Iterable[Term]):
  validate_terms(terms, scm.domains)


def _probability(scm, terms: Sequence[Term]) -> float:
  net = _TwinNetwork(scm)
  extra = net.observe(terms)
  if net.impossible:
    return 0.0
  return float(net.contract(extra))


def probability(scm, event: Evidence) -> float:
  """P(event) for a conjunction of (counterfactual) terms."""
  terms = as_terms(event)
  _validate(scm, terms)
  return _probability(scm, terms)


def _other_backend(name: str):
  """The module answering for backend `name`; None for this one."""
  if name not in BACKENDS:
    raise SCMError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
  if name == "einsum":
    return None
  # Imported on use: it imports this module (and funsor, slow to load).
  from ctfjax.causal import numpyro_backend  # pylint: disable=import-outside-toplevel
  return numpyro_backend


def query(scm, q: str | Query, backend: str = "einsum") -> float:
  """Exact value of a query such as 'P(Y_{X=1}=1 | X=0, Y=0)'.

  `backend` is one of `BACKENDS`: "einsum" (this module) or "numpyro"
  (the twin network as a NumPyro model, enumerated by NumPyro).
  """
  other = _other_backend(backend)
  q = Query.parse(q)
  q.validate(scm.domains)
  if other is not None:
    return other.query(scm, q)
  den = _probability(scm, q.evidence) if q.evidence else 1.0
  if den <= 0.0:
    raise ZeroProbabilityError(
        f"evidence {', '.join(map(str, q.evidence))} has probability zero")
  return _probability(scm, q.terms) / den


def _variables(spec: str | Variable | Sequence) -> tuple[Variable, ...]:
  if isinstance(spec, Variable):
    return (spec,)
  if isinstance(spec, str):
    return parse_variables(spec)
  return tuple(v if isinstance(v, Variable) else Variable.parse(v)
               for v in spec)


def distribution(scm, variables: str | Sequence,
                 given: Evidence = None, backend: str = "einsum") -> dict:
  """Exact P(variables | given) as {value: prob}, zero entries left out.

  Args:
    scm: the model.
    variables: 'I_{X=1}' or several, 'Y, Y_{X=1}' (keys are then tuples).
    given: evidence terms, e.g. 'I=5'.
    backend: one of `BACKENDS`, as for `query`.

  Returns:
    {value or tuple of values: probability}, in increasing order of value.
  """
  other = _other_backend(backend)
  variables = _variables(variables)
  evidence = as_terms(given)
  _validate(scm, evidence)
  for v in variables:
    _validate(scm, [Term(v, 0)])
  if other is not None:
    return other.distribution(scm, variables, evidence)
  net = _TwinNetwork(scm)
  extra = net.observe(evidence)
  nodes = [net.node(v.name, v.world) for v in variables]
  if net.impossible:
    raise ZeroProbabilityError(
        f"evidence {', '.join(map(str, evidence))} has probability zero")
  names = list(dict.fromkeys(n for n in nodes if isinstance(n, str)))
  table = net.contract(extra, keep=names)
  total = table.sum()
  if total <= 0.0:
    raise ZeroProbabilityError(
        f"evidence {', '.join(map(str, evidence))} has probability zero")
  table = table / total
  out = {}
  for idx in zip(*np.nonzero(table)) if names else [()]:
    p = float(table[idx])
    value = tuple(n if isinstance(n, int) else int(idx[names.index(n)])
                  for n in nodes)
    out[value[0] if len(value) == 1 else value] = p
  return dict(sorted(out.items()))


def joint(scm, variables: Sequence[str],
          do: Mapping[str, int] | None = None) -> Table:
  """The exact joint table of `variables` (factual, or under `do`)."""
  world = tuple(sorted((do or {}).items()))
  if len(set(variables)) != len(variables):
    raise SCMError(f"joint table variables repeat: {list(variables)}")
  for v in variables:
    _validate(scm, [Term(Variable(v, world), 0)])
  net = _TwinNetwork(scm)
  nodes = [net.node(v, world) for v in variables]
  names = [n for n in nodes if isinstance(n, str)]
  table = net.contract(keep=names)
  full = np.zeros([scm.endogenous[v].domain for v in variables])
  index = tuple(slice(None) if isinstance(n, str) else n for n in nodes)
  full[index] = table
  return Table(tuple(variables), full)


def posterior_exogenous(scm, evidence: Evidence) -> Table:
  """Exact P(U_rel | evidence) over the exogenous variables the evidence reads.

  Exogenous variables that no evidence term depends on keep their prior and
  are left out of the table.
  """
  terms = as_terms(evidence)
  _validate(scm, terms)
  net = _TwinNetwork(scm)
  extra = net.observe(terms)
  if net.impossible:
    raise ZeroProbabilityError(
        f"evidence {', '.join(map(str, terms))} has probability zero")
  rel = [u for u in scm.exogenous if ("prior", u) in net.factors]
  size = int(np.prod([len(scm.exogenous[u]) for u in rel]))
  if size > MAX_POSTERIOR_STATES:
    raise SCMError(
        f"the exogenous posterior has {size} states (more than "
        f"{MAX_POSTERIOR_STATES}); condition on fewer variables")
  table = net.contract(extra, keep=rel)
  total = table.sum()
  if total <= 0.0:
    raise ZeroProbabilityError(
        f"evidence {', '.join(map(str, terms))} has probability zero")
  return Table(tuple(rel), table / total)


def generator(rng, what: str) -> np.random.Generator:
  """The numpy Generator the discrete core draws with, from `rng`.

  Args:
    rng: a JAX key (`jax.random.key(seed)`, or a raw uint32[2] key): the
      random-key convention of the whole API; its bits seed the Generator.
      A numpy Generator is taken as it is (the dataset generators' own
      streams).
    what: the caller, for the error message.

  Raises:
    SCMError: naming the expected type for anything else.
  """
  if isinstance(rng, np.random.Generator):
    return rng
  if isinstance(rng, jax.Array):
    if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key) and not rng.shape:
      return np.random.default_rng(
          np.asarray(jax.random.key_data(rng)).ravel().tolist())
    if rng.dtype == np.uint32 and rng.shape == (2,):
      return np.random.default_rng(np.asarray(rng).tolist())
  raise SCMError(f"{what}: rng must be a JAX key such as jax.random.key(0), "
                 f"got {type(rng).__name__}"
                 + (f" {rng.dtype}{list(rng.shape)}"
                    if isinstance(rng, jax.Array) else ""))


def sample_posterior(scm, evidence: Evidence, rng,
                     n: int) -> dict[str, np.ndarray]:
  """n exact draws of every exogenous variable from P(U | evidence).

  Args:
    scm: a `DiscreteSCM`.
    evidence: e.g. "X=0, Y=0".
    rng: a JAX key (see `generator`).
    n: number of draws.
  """
  rng = generator(rng, "sample_posterior")
  post = posterior_exogenous(scm, evidence)
  flat = rng.choice(post.probs.size, size=n, p=post.probs.ravel())
  idx = np.unravel_index(flat, post.probs.shape)
  out = scm.sample_exogenous(rng, n)
  out.update({u: i.astype(np.int64) for u, i in zip(post.variables, idx)})
  return out


def query_by_enumeration(scm, q: str | Query) -> float | None:
  """The query by listing every exogenous state: the independent reference.

  Vectorised numpy over the product of the exogenous domains, so only for
  small models (benchmarks and tests check `query` against it).

  Args:
    scm: a `DiscreteSCM`.
    q: the query.

  Returns:
    The probability, or None if the evidence has probability 0.
  """
  q = Query.parse(q) if isinstance(q, str) else q
  names = list(scm.exogenous)
  grids = np.meshgrid(*[np.arange(len(scm.exogenous[u])) for u in names],
                      indexing="ij")
  u = {n: g.ravel() for n, g in zip(names, grids)}
  p = np.prod([np.asarray(scm.exogenous[n])[u[n]] for n in names], axis=0)

  def event(terms):
    ok = np.ones_like(p, dtype=bool)
    worlds = {}
    for t in terms:
      if t.world not in worlds:
        worlds[t.world] = scm.evaluate(u, do=dict(t.world))
      ok &= worlds[t.world][t.name] == t.value
    return p[ok].sum()

  den = event(q.evidence)
  return None if den <= 0 else float(event(q.terms) / den)
