"""Shared launcher plumbing: one-line errors and exit code 2 for bad input.

Every launcher calls `run(main)`. Flag errors and `UserError`s raised by the
library are printed as a single `error: ...` line on stderr with exit code 2;
so are errors the operating system raises for a path (a read-only folder, a
file where a folder belongs), naming the path. Any other exception is a bug
and keeps its traceback. Process-wide settings are the launcher's choice:
one that trains passes `setup=host_memory.apply`.

`--help` prints the command's usage and exits 0 without loading JAX: a
launcher imports the library inside `main`, and this module imports only
absl and the standard library at the top.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable, Optional, Sequence

from absl import app
from absl import flags
from absl import logging as absl_logging

from ctfjax.errors import UserError

# JAX reports at INFO level that it found no TPU on every CPU/GPU machine;
# that line is noise on a command's stderr.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


def fail(message: str) -> None:
  """Prints one line to stderr and exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


HELP = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull")
CONFIG_PREFIX = "--config."
_OVERRIDES: list[str] = []


def _parse(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e).splitlines()[0])


def overrides() -> list[str]:
  """The command's `--config.KEY=VALUE` arguments, as ["KEY=VALUE", ...]."""
  return list(_OVERRIDES)


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """Separates `--config.KEY=VALUE` overrides from the other arguments.

  Returns:
    (the other arguments, ["KEY=VALUE", ...]) for `train.load_config`.
  """
  rest = [a for a in argv if not a.startswith(CONFIG_PREFIX)]
  return rest, [a[len(CONFIG_PREFIX):] for a in argv
                if a.startswith(CONFIG_PREFIX)]


def _os_error(e: OSError) -> str:
  """An operating-system error as one line naming its path."""
  what = e.strerror or type(e).__name__
  if e.filename is None:
    return what
  if isinstance(e, FileNotFoundError):
    return f"no such file or folder: {e.filename}"
  return f"cannot use {e.filename}: {what}"


def run(main: Callable[[], None],
        setup: Optional[Callable[[], object]] = None,
        argv: Optional[Sequence[str]] = None,
        config_overrides: bool = False) -> None:
  """Runs `main()` under absl with the project's bad-input behaviour.

  Args:
    main: the launcher's body.
    setup: process-wide settings to apply after the flags are parsed and
      before `main` starts JAX (e.g. `launch.host_memory.apply`).
    argv: the command line; default `sys.argv`.
    config_overrides: whether the command takes `--config.KEY=VALUE`
      arguments (read with `overrides()`); elsewhere they are unknown flags.
  """
  argv = list(sys.argv if argv is None else argv)
  _OVERRIDES.clear()
  if config_overrides:
    argv, _OVERRIDES[:] = split_overrides(argv)
  if any(a in HELP for a in argv[1:]):
    # absl's own --help exits 1; asking for help is not an error.
    app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)

  def wrapped(argv):
    # Orbax logs every checkpoint step at INFO and a read-only restore at
    # WARNING; a user wants the progress bar and errors. --verbosity=0 brings
    # the log lines back.
    if not flags.FLAGS["verbosity"].present:
      absl_logging.set_verbosity(absl_logging.ERROR)
    if len(argv) > 1:
      fail(f"unexpected argument {argv[1]!r} (flags look like --name=value)")
    try:
      if setup is not None:
        setup()
      from ctfjax import compiler  # pylint: disable=import-outside-toplevel
      # A bad CTFJAX_XLA_CPU_OPTIONS fails here, before anything is written.
      compiler.enabled()
      main()
    except UserError as e:
      fail(str(e))
    except OSError as e:  # From the OS below us: name the path, no trace.
      fail(_os_error(e))

  app.run(wrapped, argv=argv, flags_parser=_parse)


def require(name: str) -> str:
  """The value of a required string flag, or a one-line error."""
  value = flags.FLAGS[name].value
  if not value:
    fail(f"--{name} is required")
  return value


def write_json(path: str, obj) -> None:
  """Writes `obj` as indented JSON atomically and says where."""
  from ctfjax import files  # pylint: disable=import-outside-toplevel
  files.write_json(path, obj, indent=1)
  print(f"wrote {path}")
