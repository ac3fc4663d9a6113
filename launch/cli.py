"""Shared launcher plumbing: one-line errors and exit code 2 for bad input.

Every launcher calls `run(main)`. Flag errors and `UserError`s raised by the
library are printed as a single `error: ...` line on stderr with exit code 2;
any other exception is a bug and keeps its traceback. Process-wide settings
are the launcher's choice: one that trains passes `setup=host_memory.apply`.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable, Optional

from absl import app
from absl import flags
from absl import logging as absl_logging

from ctfjax import compiler
from ctfjax import files
from ctfjax.errors import UserError

# JAX reports at INFO level that it found no TPU on every CPU/GPU machine;
# that line is noise on a command's stderr.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


def fail(message: str) -> None:
  """Prints one line to stderr and exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _parse(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e).splitlines()[0])


def run(main: Callable[[], None],
        setup: Optional[Callable[[], object]] = None) -> None:
  """Runs `main()` under absl with the project's bad-input behaviour.

  Args:
    main: the launcher's body.
    setup: process-wide settings to apply after the flags are parsed and
      before `main` starts JAX (e.g. `launch.host_memory.apply`).
  """

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
      # A bad CTFJAX_XLA_CPU_OPTIONS fails here, before anything is written.
      compiler.enabled()
      main()
    except UserError as e:
      fail(str(e))
    except FileNotFoundError as e:
      fail(f"no such file: {e.filename}")

  app.run(wrapped, flags_parser=_parse)


def require(name: str) -> str:
  """The value of a required string flag, or a one-line error."""
  value = flags.FLAGS[name].value
  if not value:
    fail(f"--{name} is required")
  return value


def write_json(path: str, obj) -> None:
  """Writes `obj` as indented JSON atomically and says where."""
  files.write_json(path, obj, indent=1)
  print(f"wrote {path}")
