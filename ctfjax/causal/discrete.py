"""Discrete SCMs given by mechanism tables (or vectorised functions).

The JSON-able spec (docs/causal.md, "A JSON spec"): independent exogenous
variables with their probability vectors, and endogenous variables each with
a domain size, a list of inputs (exogenous or endogenous) and a table indexed
by the input values in the listed order whose leaves are the variable's
value.

    {"exogenous": {"u_x": [0.4, 0.6], "u_xy": [0.5, 0.5], "u_y": [0.7, 0.3]},
     "endogenous": {
        "X": {"domain": 2, "inputs": ["u_x", "u_xy"],
              "table": [[0, 1], [1, 0]]},
        "Y": {"domain": 2, "inputs": ["X", "u_y"],
              "table": [[0, 1], [1, 1]]}}}

Two endogenous variables that read the same exogenous variable are confounded:
the induced diagram has a bidirected edge between them.

A model may also be written as a NumPyro program (`DiscreteSCM.from_numpyro`);
its structural equations are recovered by intervening on its sites.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Callable, Iterable, Mapping

import jax
import numpy as np
from numpyro import distributions as dist
from numpyro import handlers
from numpyro.primitives import Messenger

from ctfjax.causal.graph import Graph, GraphError
from ctfjax.causal.inference import generator, joint
from ctfjax.causal.table import PROB_TOL, SCMError, Table

# Most joint values of the sites before one site that `from_numpyro`
# tabulates it over (one vectorised run of the model), and the most it
# evaluates one at a time when the model cannot run on arrays.
MAX_NUMPYRO_CELLS = 2**20
MAX_NUMPYRO_LOOP_CELLS = 2**12

@dataclasses.dataclass(frozen=True)
class Mechanism:
  """V := table[inputs...]; `table` is an int array, one axis per input."""

  domain: int
  inputs: tuple[str, ...]
  table: np.ndarray


class DiscreteSCM:
  """A discrete SCM: independent exogenous U, mechanism tables for V."""

  def __init__(self, exogenous: Mapping[str, Iterable[float]],
               endogenous: Mapping[str, Mechanism]):
    self.exogenous = {}
    for name, probs in exogenous.items():
      p = np.asarray(probs, dtype=np.float64)
      if p.ndim != 1 or p.size == 0:
        raise SCMError(f"exogenous {name!r} needs a non-empty probability list")
      if np.any(p < 0) or not np.all(np.isfinite(p)):
        raise SCMError(f"exogenous {name!r} has a negative or non-finite "
                       "probability")
      if abs(p.sum() - 1) > PROB_TOL:
        raise SCMError(f"probabilities of exogenous {name!r} sum to "
                       f"{p.sum():.6g}, not 1")
      self.exogenous[name] = p / p.sum()
    self.endogenous = dict(endogenous)
    both = set(self.exogenous) & set(self.endogenous)
    if both:
      raise SCMError(f"{sorted(both)[0]!r} is both exogenous and endogenous")
    for name, mech in self.endogenous.items():
      self._check_mechanism(name, mech)
    directed = [(i, v) for v, m in self.endogenous.items() for i in m.inputs
                if i in self.endogenous]
    readers: dict[str, list[str]] = {}
    for v, m in self.endogenous.items():
      for i in m.inputs:
        if i in self.exogenous:
          readers.setdefault(i, []).append(v)
    bidirected = {tuple(sorted((a, b))) for vs in readers.values()
                  for k, a in enumerate(vs) for b in vs[k + 1:] if a != b}
    try:
      self.graph = Graph.from_edges(directed, sorted(bidirected),
                                    nodes=self.endogenous)
    except GraphError as e:
      raise SCMError(f"mechanisms are not acyclic: {e}") from None
    self.order = self.graph.topological_order()

  def _check_mechanism(self, name: str, mech: Mechanism):
    shape = []
    for i in mech.inputs:
      if i in self.exogenous:
        shape.append(len(self.exogenous[i]))
      elif i in self.endogenous:
        shape.append(self.endogenous[i].domain)
      else:
        raise SCMError(f"mechanism of {name!r} reads unknown input {i!r}")
    if len(set(mech.inputs)) != len(mech.inputs):
      raise SCMError(f"mechanism of {name!r} lists an input twice")
    if mech.domain < 1:
      raise SCMError(f"domain of {name!r} must be a positive integer")
    if tuple(mech.table.shape) != tuple(shape):
      raise SCMError(f"table of {name!r} has shape {tuple(mech.table.shape)}; "
                     f"its inputs {list(mech.inputs)} need {tuple(shape)}")
    if mech.table.size and (mech.table.min() < 0 or
                            mech.table.max() >= mech.domain):
      bad = mech.table[(mech.table < 0) | (mech.table >= mech.domain)][0]
      raise SCMError(f"table of {name!r} has value {bad} outside its domain "
                     f"0..{mech.domain - 1}")

  # Construction ---------------------------------------------------------------

  @classmethod
  def from_dict(cls, spec: Mapping) -> DiscreteSCM:
    """Builds from the JSON-able spec (docs/causal.md, "A JSON spec")."""
    if not isinstance(spec, Mapping):
      raise SCMError("an SCM spec must be a mapping with 'exogenous' and "
                     "'endogenous'")
    for key in spec:
      if key not in ("exogenous", "endogenous"):
        raise SCMError(f"unknown SCM spec key {key!r}; expected 'exogenous' "
                       "and 'endogenous'")
    for key in ("exogenous", "endogenous"):
      if not isinstance(spec.get(key), Mapping):
        raise SCMError(f"SCM spec needs a mapping {key!r}")
    endo = {}
    for name, m in spec["endogenous"].items():
      if not isinstance(m, Mapping):
        raise SCMError(f"endogenous {name!r} must be a mapping with 'domain', "
                       "'inputs' and 'table'")
      for key in m:
        if key not in ("domain", "inputs", "table"):
          raise SCMError(f"unknown key {key!r} in endogenous {name!r}")
      for key in ("domain", "inputs", "table"):
        if key not in m:
          raise SCMError(f"endogenous {name!r} is missing {key!r}")
      try:
        table = np.asarray(m["table"])
      except ValueError:
        raise SCMError(f"table of {name!r} is ragged") from None
      if table.dtype == object or (table.size and
                                   not np.issubdtype(table.dtype, np.integer)):
        raise SCMError(f"table of {name!r} must hold integers")
      if not isinstance(m["domain"], int) or isinstance(m["domain"], bool):
        raise SCMError(f"domain of {name!r} must be a positive integer")
      endo[name] = Mechanism(int(m["domain"]), tuple(m["inputs"]),
                             table.astype(np.int64))
    return cls(spec["exogenous"], endo)

  @classmethod
  def from_json(cls, path: str | os.PathLike) -> DiscreteSCM:
    try:
      with open(path) as f:
        spec = json.load(f)
    except FileNotFoundError:
      raise SCMError(f"SCM spec file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as e:
      raise SCMError(f"SCM spec file {str(path)!r} is not valid JSON: "
                     f"{e.msg} at line {e.lineno}") from None
    try:
      return cls.from_dict(spec)
    except SCMError as e:  # Name the file the bad spec came from.
      raise SCMError(f"SCM spec file {str(path)!r}: {e}") from None

  @classmethod
  def from_functions(
      cls,
      exogenous: Mapping[str, Iterable[float]],
      endogenous: Mapping[str, tuple[int, Iterable[str], Callable]],
  ) -> DiscreteSCM:
    """Builds from vectorised functions: {V: (domain, inputs, fn)}.

    `fn(*inputs)` receives integer arrays broadcast over every combination of
    its inputs' values and returns V's value for each; it is tabulated once.
    """
    sizes = {k: len(list(v)) for k, v in exogenous.items()}
    sizes.update({k: int(d) for k, (d, _, _) in endogenous.items()})
    endo = {}
    for name, (domain, inputs, fn) in endogenous.items():
      inputs = tuple(inputs)
      for i in inputs:
        if i not in sizes:
          raise SCMError(f"mechanism of {name!r} reads unknown input {i!r}")
      grids = np.meshgrid(*[np.arange(sizes[i]) for i in inputs],
                          indexing="ij")
      out = np.asarray(fn(*grids))
      shape = tuple(sizes[i] for i in inputs)
      table = np.broadcast_to(out, shape).astype(np.int64)
      if not np.array_equal(table, np.broadcast_to(out, shape)):
        raise SCMError(f"mechanism of {name!r} returned non-integer values")
      endo[name] = Mechanism(int(domain), inputs, table)
    return cls(exogenous, endo)

  @classmethod
  def from_numpyro(cls, model_fn: Callable[[], object], *,
                   domains: Mapping[str, int] | None = None) -> DiscreteSCM:
    """Builds from a NumPyro model, recovering its structural equations.

    Exogenous variables are `numpyro.sample` sites with a scalar Categorical
    or Bernoulli distribution whose parameters are constants; endogenous ones
    are `numpyro.deterministic` sites (or `numpyro.sample` with `dist.Delta`)
    with non-negative integer values. Each site is tabulated over every joint
    value of the sites the model ran before it, those substituted (for an
    endogenous site, an intervention), so an endogenous site's inputs are
    the sites it reads - an endogenous parent, not the noise behind it - and
    counterfactuals are those of the program. Contract: compute each
    endogenous value only from the values `numpyro.sample` and
    `numpyro.deterministic` return; a dependence through another Python value
    cannot be seen.

    Args:
      model_fn: the model, called with no arguments (bind any with
        functools.partial).
      domains: optional {endogenous site: domain size}; by default one more
        than the largest value its table takes.

    Returns:
      The `DiscreteSCM`, sites in the order the model runs them.
    """
    exo: dict[str, np.ndarray] = {}
    endo: dict[str, Mechanism] = {}
    sizes: dict[str, int] = {}
    domains = dict(domains or {})
    sites = _numpyro_sites(model_fn)
    for name in domains:
      if sites.get(name, 0) is not None:
        raise SCMError(f"domains names {name!r}, not an endogenous site of "
                       "the model")
    for name, probs in sites.items():
      before = list(sizes)
      values = _numpyro_site_grid(model_fn, name, probs is not None,
                                  [sizes[k] for k in before], before)
      if probs is not None:
        exo[name] = probs
        sizes[name] = len(probs)
        continue
      inputs = [k for axis, k in enumerate(before)
                if np.any(np.diff(values, axis=axis) != 0)]
      table = np.asarray(
          values[tuple(slice(None) if k in inputs else 0 for k in before)])
      domain = domains.get(name, int(table.max()) + 1)
      endo[name] = Mechanism(int(domain), tuple(inputs), table)
      sizes[name] = int(domain)
    return cls(exo, endo)

  def to_dict(self) -> dict:
    return {
        "exogenous": {k: v.tolist() for k, v in self.exogenous.items()},
        "endogenous": {
            k: {"domain": m.domain, "inputs": list(m.inputs),
                "table": m.table.tolist()}
            for k, m in self.endogenous.items()},
    }

  # Properties -----------------------------------------------------------------

  @property
  def domains(self) -> dict[str, int]:
    """Endogenous variable -> domain size."""
    return {k: m.domain for k, m in self.endogenous.items()}

  @property
  def num_exogenous_states(self) -> int:
    return math.prod(len(p) for p in self.exogenous.values())

  def __repr__(self) -> str:
    return (f"DiscreteSCM(graph='{self.graph}', exogenous="
            f"{list(self.exogenous)})")

  # Evaluation -----------------------------------------------------------------

  def evaluate(self, u: Mapping[str, np.ndarray],
               do: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Computes every endogenous value from exogenous values (vectorised).

    Args:
      u: exogenous name -> int array (all of one shape).
      do: optional intervention {variable: value}.

    Returns:
      endogenous name -> int array of the same shape.
    """
    do = dict(do or {})
    for k, x in do.items():
      if k not in self.endogenous:
        raise SCMError(f"cannot intervene on unknown variable {k!r}")
      if not _is_value(x, self.endogenous[k].domain):
        raise SCMError(f"do({k}={x}) is outside its domain "
                       f"0..{self.endogenous[k].domain - 1}")
    shape = np.shape(next(iter(u.values()))) if u else ()
    vals = {k: np.asarray(v, dtype=np.int64) for k, v in u.items()}
    for k in self.exogenous:
      if k not in vals:
        raise SCMError(f"missing value of exogenous {k!r}")
    for v in self.order:
      if v in do:
        vals[v] = np.full(shape, int(do[v]), dtype=np.int64)
      else:
        m = self.endogenous[v]
        vals[v] = m.table[tuple(vals[i] for i in m.inputs)]
    return {v: vals[v] for v in self.endogenous}

  def sample_exogenous(self, rng, n: int) -> dict[str, np.ndarray]:
    """n draws of every exogenous variable; `rng` a JAX key
    (`inference.generator`)."""
    rng = generator(rng, "sample_exogenous")
    return {k: rng.choice(len(p), size=n, p=p)
            for k, p in self.exogenous.items()}

  def sample(self, rng, n: int,
             do: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Draws n samples of (U, V); the result holds both. `rng`: a JAX key
    (`inference.generator`)."""
    u = self.sample_exogenous(generator(rng, "sample"), n)
    return {**u, **self.evaluate(u, do)}

  def observational(self) -> Table:
    """The exact joint P(V) over endogenous variables, in spec order."""
    return joint(self, list(self.endogenous))


def _is_value(x, domain: int) -> bool:
  """Whether `x` is one integer in 0..domain-1 (1.5 or "a" is not)."""
  try:
    return np.ndim(x) == 0 and float(x) == int(x) and 0 <= int(x) < domain
  except (TypeError, ValueError):
    return False


# The NumPyro front end ------------------------------------------------------


class _Stop(Exception):
  """Ends a model run once the wanted site has been processed."""


class _Capture(Messenger):
  """Records the message of one site, then stops the model."""

  def __init__(self, name: str):
    super().__init__()
    self.name = name
    self.msg = None

  def postprocess_message(self, msg):
    if msg.get("name") == self.name:
      self.msg = dict(msg)
      raise _Stop


def _is_endogenous(msg) -> bool:
  return msg["type"] == "deterministic" or (
      msg["type"] == "sample" and isinstance(msg["fn"], dist.Delta))


def _numpyro_sites(model_fn) -> dict[str, np.ndarray | None]:
  """Site name -> its probabilities if exogenous, None if endogenous.

  In the order the model runs them.
  """
  # Exogenous draws are pinned to 0 so that integer arithmetic on them runs.
  def zero(msg):
    return None if _is_endogenous(msg) else np.int64(0)

  with jax.enable_x64(True):
    trace = handlers.trace(handlers.seed(handlers.substitute(
        model_fn, substitute_fn=zero), 0)).get_trace()
  sites = {}
  for name, msg in trace.items():
    if msg["type"] not in ("sample", "deterministic", "param", "plate"):
      continue
    if msg["type"] in ("param", "plate") or msg.get("cond_indep_stack"):
      raise SCMError(f"site {name!r} is a {msg['type']} or inside a plate; "
                     "from_numpyro takes one scalar site per variable")
    if msg["type"] == "sample" and msg.get("is_observed") and not (
        _is_endogenous(msg)):
      raise SCMError(f"sample site {name!r} is observed; give evidence to "
                     "the query instead")
    sites[name] = (None if _is_endogenous(msg) else
                   _exogenous_probs(name, msg["fn"]))
  if not sites:
    raise SCMError("the NumPyro model has no sample or deterministic sites")
  return sites


def _run_site(model_fn, name: str, data: Mapping[str, object]):
  """The message of site `name` with the sites in `data` substituted."""
  capture = _Capture(name)
  with jax.enable_x64(True):
    try:
      with capture:
        handlers.seed(handlers.substitute(model_fn, data=data), 0)()
    except _Stop:
      pass
  if capture.msg is None:
    raise SCMError(f"site {name!r} did not run once earlier sites were "
                   "substituted; sites must not be skipped by branches")
  return capture.msg


def _numpyro_site_grid(model_fn, name: str, exogenous: bool,
                       shape: list[int], before: list[str]):
  """Runs the model up to site `name` over every joint value of `before`.

  Returns:
    For an endogenous site its int values, one axis per site in `before`
    (shape `shape`); for an exogenous one None, once its distribution is
    checked not to depend on the earlier sites.
  """
  cells = math.prod(shape)
  if cells > MAX_NUMPYRO_CELLS:
    raise SCMError(f"site {name!r} follows sites with {cells} joint values "
                   f"(more than {MAX_NUMPYRO_CELLS}); use fewer or smaller "
                   "sites, or a JSON spec")
  pin = {name: np.int64(0)} if exogenous else {}
  grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
  try:
    msg = _run_site(model_fn, name, {**dict(zip(before, grids)), **pin})
    msgs = [msg]
    raw = np.broadcast_to(np.asarray(msg["value"]), shape)
  except SCMError:
    raise
  except Exception:  # pylint: disable=broad-except
    # Python branches on site values cannot take arrays: one run per cell.
    if cells > MAX_NUMPYRO_LOOP_CELLS:
      raise SCMError(f"site {name!r} could not be computed on arrays of site "
                     f"values and follows {cells} joint values (more than "
                     f"{MAX_NUMPYRO_LOOP_CELLS} to run one by one); use jnp "
                     "operations instead of Python branches") from None
    msgs = [_run_site(model_fn, name, {
        **{k: np.int64(i) for k, i in zip(before, idx)}, **pin})
            for idx in np.ndindex(*shape)]
    raw = np.reshape([np.asarray(m["value"]) for m in msgs], shape)
  if exogenous:
    # Scalar when read alone (checked), so a batch shape comes from the grid.
    fn = msgs[0]["fn"]
    stochastic = fn.batch_shape != () or any(
        not np.array_equal(_params(m["fn"]), _params(fn)) for m in msgs[1:])
    if stochastic:
      raise SCMError(f"sample site {name!r} draws from a distribution that "
                     "depends on other sites (a stochastic endogenous "
                     "variable); make it a deterministic site of its own "
                     "noise site")
    return None
  if raw.dtype == bool:
    raw = raw.astype(np.int64)
  if not np.issubdtype(raw.dtype, np.number) or not np.all(np.isfinite(raw)):
    raise SCMError(f"endogenous site {name!r} takes non-numeric or "
                   "non-finite values")
  bad = raw[(raw != np.round(raw)) | (raw < 0)]
  if bad.size:
    raise SCMError(f"endogenous site {name!r} takes the value {bad[0]}; "
                   "values must be integers 0, 1, 2, ...")
  return raw.astype(np.int64)


def _params(fn) -> np.ndarray:
  return np.asarray(getattr(fn, "probs", getattr(fn, "logits", np.nan)))


def _exogenous_probs(name: str, fn) -> np.ndarray:
  """The probability vector of a scalar Categorical or Bernoulli site."""
  kind = type(fn).__name__
  if not fn.is_discrete:
    raise SCMError(f"exogenous site {name!r} has the continuous distribution "
                   f"{kind}; from_numpyro takes Categorical or Bernoulli")
  if fn.batch_shape != () or fn.event_shape != ():
    raise SCMError(f"exogenous site {name!r} has batch shape "
                   f"{fn.batch_shape}; from_numpyro takes scalar sites")
  if isinstance(fn, (dist.CategoricalProbs, dist.CategoricalLogits)):
    return np.asarray(fn.probs, dtype=np.float64)
  if isinstance(fn, (dist.BernoulliProbs, dist.BernoulliLogits)):
    p = float(fn.probs)
    return np.array([1.0 - p, p])
  raise SCMError(f"exogenous site {name!r} has the distribution {kind}; "
                 "from_numpyro takes Categorical or Bernoulli")
