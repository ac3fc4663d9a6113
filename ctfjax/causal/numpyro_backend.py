"""NumPyro's own exact enumeration as a second backend of the discrete core.

`cc.query(scm, q, backend="numpyro")` and `cc.distribution(...,
backend="numpyro")` come here (`inference.py` parses and validates first, so
both backends refuse the same input with the same error). The query's twin
network is written as a NumPyro model:

* one `numpyro.sample` site per exogenous U the query reads, a Categorical
  over its prior marked `infer={"enumerate": "parallel"}`, shared by every
  world;
* for every variable in every world the query mentions, its value computed
  by the mechanism table from its inputs' values (a `numpyro.deterministic`
  site named like the variable, `Y_{X=1}`); an intervened variable is the
  constant it is set to. Tables are JAX arrays indexed by the enumerated
  values, so a value carries one axis per U it depends on;
* each event V_w = v (outcome and evidence) an observed `dist.Delta` site
  on that value, masked where a row leaves the event out.

`numpyro.contrib.funsor.log_density` under `enum` then sums the enumerated
U out exactly (funsor's variable elimination): it returns log P(events).
P(outcome | evidence) = exp(log P(outcome, evidence) - log P(evidence)).
Unlike `inference.py`, no copy of a variable is shared between worlds: each
(variable, world) gets its own site, so the agreement of the two backends
also checks the fast path's node merging.

Costs. The model is traced and compiled by XLA once per query *shape* (the
model's structure and the events' variables and worlds; the tables,
probabilities and event values are arguments), typically 0.2-2 s on a CPU,
then each call is a compiled function. The fast path has no compilation,
which is why it stays the default (docs/causal.md, "Two backends").

Precision: float64, inside `jax.enable_x64` here only (the library never
sets it process-wide); in float32 the log-space sums lose about 1e-7.

This module also reads a NumPyro model from a file (`load_model`), the
`--model=path.py:fn` of `launch.query` and `launch.bounds`.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import distributions as dist
from numpyro.contrib.funsor import enum
from numpyro.contrib.funsor import log_density

from ctfjax.causal.query import ZeroProbabilityError
from ctfjax.causal.query import Query, Term, Variable, World
from ctfjax.causal.table import SCMError

# Most joint values `distribution` enumerates (one row of the compiled
# function each).
MAX_DISTRIBUTION_VALUES = 2**12
# Compiled programs kept (one per query shape).
CACHE_SIZE = 256

# What a compiled program depends on besides its arguments: every exogenous
# (name, size), every mechanism (name, domain, inputs), and the events'
# (variable, world)s in order.
_Shape = tuple[tuple[tuple[str, int], ...],
               tuple[tuple[str, int, tuple[str, ...]], ...],
               tuple[tuple[str, World], ...]]


def query(scm: Any, q: Query) -> float:
  """P(outcome | evidence) by NumPyro's enumeration.

  Args:
    scm: the model.
    q: a parsed query whose names and values `q.validate` accepted.

  Returns:
    The probability.

  Raises:
    ZeroProbabilityError: the evidence has probability zero.
  """
  values = np.array([t.value for t in q.terms])
  given = np.arange(len(q.terms)) >= len(q.outcome)
  # Row 0: every event; row 1: the evidence only (log 1 = 0 without).
  logp = _log_probs(scm, q.terms, np.stack([values, values]),
                    np.stack([np.ones_like(given), given]))
  if logp[1] == -np.inf:
    raise _zero(q.evidence)
  return float(np.exp(logp[0] - logp[1]))


def distribution(scm: Any, variables: Sequence[Variable],
                 evidence: Sequence[Term]) -> dict:
  """Exact P(variables | evidence) as {value: prob}, zero entries left out.

  One row per joint value v of `variables` gives log P(variables = v,
  evidence); the rows run as one vectorised, compiled program. That is
  exact where `numpyro.infer.infer_discrete` is not: it draws samples of
  the enumerated sites (or their MAP), not the probabilities.

  Args:
    scm: the model.
    variables: parsed variables, validated against `scm.domains`.
    evidence: parsed evidence terms, validated.

  Returns:
    {value (a tuple for several variables): probability}, in increasing
    order of value, as `inference.distribution`.

  Raises:
    ZeroProbabilityError: the evidence has probability zero.
    SCMError: more than `MAX_DISTRIBUTION_VALUES` joint values.
  """
  sizes = [scm.endogenous[v.name].domain for v in variables]
  if math.prod(sizes) > MAX_DISTRIBUTION_VALUES:
    raise SCMError(f"{math.prod(sizes)} joint values of "
                   f"{', '.join(map(str, variables))} (more than "
                   f"{MAX_DISTRIBUTION_VALUES}) for the numpyro backend; "
                   "use backend='einsum'")
  events = tuple(evidence) + tuple(Term(v, 0) for v in variables)
  grid = np.array(list(itertools.product(*map(range, sizes))),
                  dtype=np.int64).reshape(-1, len(sizes))
  given = np.array([t.value for t in evidence], dtype=np.int64)
  values = np.concatenate([np.broadcast_to(given, (len(grid), len(given))),
                           grid], axis=1)
  logp = _log_probs(scm, events, values, np.ones(values.shape, dtype=bool))
  if np.all(logp == -np.inf):
    raise _zero(evidence)
  probs = np.exp(logp - np.logaddexp.reduce(logp))
  return {(tuple(map(int, v)) if len(sizes) > 1 else int(v[0])): float(p)
          for v, p in zip(grid, probs) if p > 0}


def _zero(evidence: Sequence[Term]) -> ZeroProbabilityError:
  return ZeroProbabilityError(
      f"evidence {', '.join(map(str, evidence))} has probability zero")


def _log_probs(scm: Any, events: Sequence[Term], values: np.ndarray,
               masks: np.ndarray) -> np.ndarray:
  """log P(the masked-in events take `values`), one per row.

  Args:
    scm: the model.
    events: the events' variables (their values are ignored).
    values: [R, len(events)] int, the value of each event in each row.
    masks: [R, len(events)] bool, which events each row conditions on.

  Returns:
    [R] float64 log-probabilities (-inf where impossible).
  """
  shape = (tuple((u, len(p)) for u, p in scm.exogenous.items()),
           tuple((v, m.domain, m.inputs) for v, m in scm.endogenous.items()),
           tuple((t.name, t.world) for t in events))
  with jax.enable_x64(True):
    fn = _compiled(shape)
    priors = {u: jnp.asarray(p, jnp.float64) for u, p in scm.exogenous.items()}
    tables = {v: jnp.asarray(m.table, jnp.int64)
              for v, m in scm.endogenous.items()}
    out = fn(priors, tables, jnp.asarray(values, jnp.int64),
             jnp.asarray(masks))
    return np.asarray(out, dtype=np.float64)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compiled(shape: _Shape) -> Callable:
  """The jitted rows -> log P program of one query shape."""
  _, mechanisms, events = shape
  inputs = {v: ins for v, _, ins in mechanisms}

  def one_row(priors, tables, values, mask):
    model = _twin_model(inputs, events, priors, tables, values, mask)
    # No plates: enumeration dims are allocated from the rightmost one.
    logp, _ = log_density(enum(model, first_available_dim=-1), (), {}, {})
    return logp

  # The programs are tiny and run once or a few times: XLA's optimisation
  # passes cost more compile time than they save.
  return jax.jit(jax.vmap(one_row, in_axes=(None, None, 0, 0)),
                 compiler_options={"xla_backend_optimization_level": 0})


def _twin_model(inputs: Mapping[str, tuple[str, ...]],
                events: Sequence[tuple[str, World]],
                priors: Mapping[str, jax.Array],
                tables: Mapping[str, jax.Array],
                values: jax.Array, mask: jax.Array) -> Callable[[], None]:
  """The twin network of `events` as a NumPyro model.

  Args:
    inputs: mechanism inputs of every endogenous variable.
    events: (variable, world) of each event.
    priors: exogenous name -> [size] probabilities.
    tables: endogenous name -> its table, one axis per input.
    values: [len(events)] the observed values.
    mask: [len(events)] whether each event is conditioned on.
  """

  def model():
    known: dict[object, jax.Array] = {}  # U name or (V, world) -> value

    def value(var: str, world: World) -> jax.Array:
      do = dict(world)
      if var in do:
        return jnp.asarray(do[var])
      if (var, world) not in known:
        index = tuple(exogenous(i) if i in priors else value(i, world)
                      for i in inputs[var])
        known[var, world] = numpyro.deterministic(
            str(Variable(var, world)), tables[var][index])
      return known[var, world]

    def exogenous(u: str) -> jax.Array:
      if u not in known:  # One site for every world: the worlds share U.
        known[u] = numpyro.sample(u, dist.Categorical(probs=priors[u]),
                                  infer={"enumerate": "parallel"})
      return known[u]

    for k, (var, world) in enumerate(events):
      node = value(var, world)
      numpyro.sample(f"event {k}: {Variable(var, world)}",
                     dist.Delta(node).mask(mask[k]), obs=values[k])

  return model
