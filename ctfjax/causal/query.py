"""Counterfactual query objects and their text grammar.

Grammar (docs/causal.md, "Queries"):

    query = "P(" terms [ "|" terms ] ")"
    terms = term { "," term }
    term  = Var [ "_{" Var "=" int { "," Var "=" int } "}" ] "=" int

`Y_{X=1}=1` is the event that Y takes value 1 in the world where X is set to 1;
a term without a subscript lives in the factual world. Terms with different
subscripts may appear in one query (joint counterfactuals), on either side of
the bar (counterfactual evidence).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Mapping

from ctfjax.errors import UserError

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_INT = r"-?\d+"
_ASSIGN = re.compile(rf"^\s*({_NAME})\s*=\s*({_INT})\s*$")
_VAR = re.compile(rf"^\s*({_NAME})\s*(?:_\s*\{{([^}}]*)\}})?\s*$")
_TERM = re.compile(rf"^\s*({_NAME}\s*(?:_\s*\{{[^}}]*\}})?)\s*=\s*({_INT})\s*$")
_QUERY = re.compile(r"^\s*P\s*\((.*)\)\s*$", re.S)


class QueryError(UserError):
  """A malformed query, or one that names unknown variables or values."""


class ZeroProbabilityError(QueryError):
  """Conditioning on evidence of probability zero."""


# A world is identified by its intervention: sorted ((var, value), ...).
World = tuple[tuple[str, int], ...]


def make_world(do: Mapping[str, int] | Iterable[tuple[str, int]]) -> World:
  items = dict(do).items() if not isinstance(do, tuple) else do
  return tuple(sorted((str(k), int(v)) for k, v in items))


def world_str(world: World) -> str:
  return ", ".join(f"{k}={v}" for k, v in world)


@dataclasses.dataclass(frozen=True)
class Variable:
  """A (possibly counterfactual) variable, e.g. `I_{X=1}`."""

  name: str
  world: World = ()

  def __str__(self) -> str:
    if not self.world:
      return self.name
    return f"{self.name}_{{{world_str(self.world)}}}"

  @classmethod
  def parse(cls, text: str) -> Variable:
    m = _VAR.match(text)
    if not m:
      raise QueryError(f"cannot parse variable {text.strip()!r}; expected "
                       "'Y' or 'Y_{X=1}'")
    name, sub = m.groups()
    if sub is None:
      return cls(name)
    if not sub.strip():
      raise QueryError(f"empty intervention subscript in {text.strip()!r}")
    world = []
    for a in sub.split(","):
      am = _ASSIGN.match(a)
      if not am:
        raise QueryError(f"cannot parse intervention {a.strip()!r} in "
                         f"{text.strip()!r}; expected 'X=1'")
      world.append((am.group(1), int(am.group(2))))
    names = [k for k, _ in world]
    if len(set(names)) != len(names):
      raise QueryError(f"a variable is intervened on twice in {text.strip()!r}")
    return cls(name, make_world(world))


@dataclasses.dataclass(frozen=True)
class Term:
  """The event `variable = value`."""

  variable: Variable
  value: int

  @property
  def name(self) -> str:
    return self.variable.name

  @property
  def world(self) -> World:
    return self.variable.world

  def __str__(self) -> str:
    return f"{self.variable}={self.value}"

  @classmethod
  def parse(cls, text: str) -> Term:
    m = _TERM.match(text)
    if not m:
      raise QueryError(f"cannot parse term {text.strip()!r}; expected "
                       "'Y=1' or 'Y_{X=1}=1'")
    return cls(Variable.parse(m.group(1)), int(m.group(2)))


def split_top_level(text: str) -> list[str]:
  """Splits at commas that are not inside a {} subscript."""
  parts, depth, cur = [], 0, ""
  for ch in text:
    depth += {"{": 1, "}": -1}.get(ch, 0)
    if depth < 0:
      break
    if ch == "," and depth == 0:
      parts.append(cur)
      cur = ""
    else:
      cur += ch
  if depth != 0:
    raise QueryError(f"unbalanced braces in {text.strip()!r}")
  return parts + [cur]


def parse_terms(text: str) -> tuple[Term, ...]:
  """Parses a comma-separated list of terms."""
  if not text.strip():
    return ()
  return tuple(Term.parse(p) for p in split_top_level(text))


def parse_variables(text: str) -> tuple[Variable, ...]:
  """Parses 'Y, Y_{X=1}' into variables."""
  return tuple(Variable.parse(p) for p in split_top_level(text))


def validate_terms(terms: Iterable[Term], domains: Mapping[str, int]) -> None:
  """Checks every name and value of `terms` against `domains` (var -> size)."""
  for t in terms:
    _check(t.name, t.value, domains, str(t))
    for k, v in t.world:
      _check(k, v, domains, str(t))


@dataclasses.dataclass(frozen=True)
class Query:
  """P(outcome | evidence): both tuples of terms."""

  outcome: tuple[Term, ...]
  evidence: tuple[Term, ...] = ()

  def __str__(self) -> str:
    out = ", ".join(map(str, self.outcome))
    if self.evidence:
      return f"P({out} | {', '.join(map(str, self.evidence))})"
    return f"P({out})"

  @classmethod
  def parse(cls, text: str | Query) -> Query:
    if isinstance(text, Query):
      return text
    if not isinstance(text, str):
      raise QueryError(f"a query must be a string, got {type(text).__name__}")
    m = _QUERY.match(text)
    if not m:
      raise QueryError(f"cannot parse query {text.strip()!r}; expected "
                       "'P(Y_{X=1}=1 | X=0)'")
    body = m.group(1)
    if body.count("|") > 1:
      raise QueryError(f"more than one '|' in query {text.strip()!r}")
    out, _, given = body.partition("|")
    outcome = parse_terms(out)
    if not outcome:
      raise QueryError(f"query {text.strip()!r} has no outcome term")
    return cls(outcome, parse_terms(given))

  @property
  def terms(self) -> tuple[Term, ...]:
    return self.outcome + self.evidence

  @property
  def worlds(self) -> tuple[World, ...]:
    """Distinct worlds the query mentions, factual first when present."""
    return tuple(dict.fromkeys(sorted({t.world for t in self.terms},
                                      key=lambda w: (len(w), w))))

  def validate(self, domains: Mapping[str, int]) -> None:
    """Checks every name and value against `domains` (variable -> size)."""
    validate_terms(self.terms, domains)


def _check(name: str, value: int, domains: Mapping[str, int], where: str):
  if name not in domains:
    raise QueryError(f"unknown variable {name!r} in {where!r}; known: "
                     f"{', '.join(domains)}")
  if not 0 <= value < domains[name]:
    raise QueryError(f"value {value} of {name!r} in {where!r} is outside its "
                     f"domain 0..{domains[name] - 1}")
