"""A NumPyro model read from a user's file: `path/to/model.py:fn` ->
`DiscreteSCM.from_numpyro` (the `--model` flag of launch.query and
launch.bounds)."""

from __future__ import annotations

from typing import Sequence

from ctfjax import files
from ctfjax.causal.discrete import DiscreteSCM
from ctfjax.causal.table import SCMError
from ctfjax.errors import UserError


# Reading a NumPyro model from a file --------------------------------------


def load_model(spec: str, domains: Sequence[str] = ()) -> DiscreteSCM:
  """The `DiscreteSCM` of the NumPyro model `path/to/model.py:fn`.

  Args:
    spec: a Python file and the name of a function in it that takes no
      arguments, joined by a colon.
    domains: "NAME=SIZE" items, the `domains=` of
      `DiscreteSCM.from_numpyro` (an endogenous site's domain when it is
      larger than one plus its largest value).

  Returns:
    `DiscreteSCM.from_numpyro(fn, domains=...)`.

  Raises:
    UserError: a bad spec or domain item, a missing or broken file, no such
      function, or a function that is not a discrete NumPyro model (named
      with the file and function).
  """
  path, colon, name = str(spec).rpartition(":")
  if not colon or not path or not name.isidentifier():
    raise UserError(f"--model must be path/to/model.py:function, got "
                    f"{spec!r}")
  sizes = _parse_domains(domains)
  module = files.python_module(path, "model file")
  fn = getattr(module, name, None)
  if fn is None:
    raise UserError(f"model file {path} has no function {name!r}")
  if not callable(fn):
    raise UserError(f"{spec}: {name!r} is a {type(fn).__name__}, not a "
                    "function")
  try:
    return DiscreteSCM.from_numpyro(fn, domains=sizes)
  except SCMError as e:
    raise SCMError(f"{spec}: {e}") from None
  except Exception as e:  # The file's code, not ours.
    raise UserError(f"{spec}: calling {name}() as a NumPyro model raised "
                    f"{type(e).__name__}: {e}") from None


def _parse_domains(items: Sequence[str]) -> dict[str, int]:
  """["I=16"] -> {"I": 16}."""
  out = {}
  for item in items:
    name, eq, size = item.partition("=")
    if not eq or not name.strip() or not size.strip().isdigit() or (
        int(size) < 1):
      raise UserError(f"--domains item {item!r} is not NAME=SIZE with a "
                      "positive integer size")
    out[name.strip()] = int(size)
  return out
