"""What a command that edits with a trained model reads from its flags:
NAME=VALUE assignments, typed by the model's features, and the model of a
workdir (launch.edit, benchmarks.fixed_edits)."""

import math
import pathlib
from typing import Any

from ctfjax.errors import UserError


def parse_assignments(text: str, what: str) -> dict[str, str]:
  """'C=1, t=2.5' -> {'C': '1', 't': '2.5'}: the syntax only; `typed`
  converts each value by its feature's kind."""
  out = {}
  for item in text.split(","):
    name, eq, value = item.partition("=")
    name, value = name.strip(), value.strip()
    if not eq or not name or not value:
      raise UserError(f"cannot parse {what} item {item.strip()!r}; expected "
                      "NAME=VALUE")
    if name in out:
      raise UserError(f"{what} names {name!r} twice")
    out[name] = value
  return out


def typed(values: dict[str, str], domains: dict[str, Any],
          what: str) -> dict[str, int | float]:
  """Each named factor exists and each value fits its kind: an integer in
  0..K-1 for a categorical (an int K), a finite number for a continuous
  kind."""
  out = {}
  for k, text in values.items():
    if k not in domains:
      raise UserError(f"{what}: unknown factor {k!r}; the model has "
                      f"{', '.join(domains)}")
    kind = domains[k]
    if isinstance(kind, int):
      if not text.lstrip("-").isdigit():
        raise UserError(f"{what}: {k}={text} is not an integer (a class "
                        f"0..{kind - 1})")
      v = int(text)
      if not 0 <= v < kind:
        raise UserError(f"{what}: {k}={v} is outside its domain "
                        f"0..{kind - 1}")
    else:
      try:
        v = float(text)
      except ValueError:
        v = math.nan
      if not math.isfinite(v):
        raise UserError(f"{what}: {k}={text} is not a finite number")
    out[k] = v
  return out


def model_dir(workdir: str, model: str, model_given: bool) -> pathlib.Path:
  """A launch.train workdir is the model; a launch.run workdir holds several.

  Args:
    workdir: the --workdir flag.
    model: the --model flag.
    model_given: whether --model was on the command line; naming a model of
      a single-model workdir is an error, not ignored.
  """
  from ctfjax import files  # pylint: disable=import-outside-toplevel
  from ctfjax.ancm import fit  # pylint: disable=import-outside-toplevel
  root = files.existing_dir(workdir, "workdir")
  if (root / fit.CONFIG_FILE).is_file():
    if model_given:
      raise UserError(f"--model={model}: {workdir} is a single trained model "
                      "(a launch.train workdir); drop --model")
    return root
  sub = root / "models" / model
  if (sub / fit.CONFIG_FILE).is_file():
    return sub
  known = sorted(p.name for p in (root / "models").glob("*")
                 if (p / fit.CONFIG_FILE).is_file())
  if known:
    raise UserError(f"no trained model {model!r} in {workdir}; it has "
                    f"{', '.join(known)}")
  raise UserError(f"{workdir} is not a trained run: it has no "
                  f"{fit.CONFIG_FILE} and no models/")


def interventions(text: str, domains) -> list[dict]:
  """'C=1;D=8' -> [{'C': 1}, {'D': 8}], each checked against `domains`."""
  out = [typed(parse_assignments(part, "--do"), domains, "--do")
         for part in text.split(";") if part.strip()]
  if not out:
    raise UserError("--do names no intervention, e.g. --do='C=1;D=8'")
  return out
