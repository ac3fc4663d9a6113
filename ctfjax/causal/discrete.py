"""Discrete SCMs given by mechanism tables (or vectorised functions).

The JSON-able spec (design.md): independent exogenous variables with their
probability vectors, and endogenous variables each with a domain size, a list
of inputs (exogenous or endogenous) and a table indexed by the input values in
the listed order whose leaves are the variable's value.

    {"exogenous": {"u_x": [0.4, 0.6], "u_xy": [0.5, 0.5], "u_y": [0.7, 0.3]},
     "endogenous": {
        "X": {"domain": 2, "inputs": ["u_x", "u_xy"],
              "table": [[0, 1], [1, 0]]},
        "Y": {"domain": 2, "inputs": ["X", "u_y"],
              "table": [[0, 1], [1, 1]]}}}

Two endogenous variables that read the same exogenous variable are confounded:
the induced diagram has a bidirected edge between them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Callable, Iterable, Mapping

import numpy as np

from ctfjax.causal.graph import Graph, GraphError
from ctfjax.causal.inference import joint
from ctfjax.causal.table import PROB_TOL, SCMError, Table

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
    """Builds from the JSON-able spec of design.md."""
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
    return cls.from_dict(spec)

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
      if not 0 <= int(x) < self.endogenous[k].domain:
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

  def sample_exogenous(self, rng: np.random.Generator,
                       n: int) -> dict[str, np.ndarray]:
    return {k: rng.choice(len(p), size=n, p=p)
            for k, p in self.exogenous.items()}

  def sample(self, rng: np.random.Generator, n: int,
             do: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Draws n samples of (U, V); the result holds both."""
    u = self.sample_exogenous(rng, n)
    return {**u, **self.evaluate(u, do)}

  def observational(self) -> Table:
    """The exact joint P(V) over endogenous variables, in spec order."""
    return joint(self, list(self.endogenous))
