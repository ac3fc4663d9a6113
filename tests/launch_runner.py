"""Runs many command lines of one launcher in one process (for test_bad_input).

    python tests/launch_runner.py launch.edit ROOT < cases.json > results.json

Each case is a list of arguments. The launcher's `main` runs under
`launch.cli.run` exactly as `python -m launch.X ARGS` would, minus the
process-wide setup, with the flags reset between cases; for each case the
result holds the exit code, stderr, and the paths under ROOT that the case
created, removed or modified. One process per launcher keeps a sweep of a
hundred bad inputs to seconds instead of a JAX import per case.
"""

import contextlib
import importlib
import io
import json
import os
import pathlib
import sys
import traceback

# tests/ is not a package: put the repository root on the path.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import flags  # pylint: disable=wrong-import-position

from launch import cli  # pylint: disable=wrong-import-position

# The launchers that take --config.KEY=VALUE (cli.run(config_overrides=True)).
TAKES_OVERRIDES = {"launch.run", "launch.train", "launch.evaluate",
                   "launch.benchmark"}


def snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
  """path -> (size, mtime_ns) of everything under root."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      path = pathlib.Path(dirpath) / name
      st = path.lstat()
      # A folder counts by its presence: checking that it is writable
      # creates and removes a file in it, which changes its mtime.
      out[str(path.relative_to(root))] = (
          (st.st_size, st.st_mtime_ns) if name in filenames else (0, 0))
  return out


def run_case(module, args: list[str], root: pathlib.Path) -> dict:
  flags.FLAGS.unparse_flags()
  before = snapshot(root)
  err, out = io.StringIO(), io.StringIO()
  code = 0
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
    try:
      cli.run(module.main, argv=[module.__name__, *args],
              config_overrides=module.__name__ in TAKES_OVERRIDES)
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None
                                                      else 1)
    except Exception:  # pylint: disable=broad-except
      err.write(traceback.format_exc())
      code = "traceback"
  after = snapshot(root)
  changed = sorted(k for k in set(before) | set(after)
                   if before.get(k) != after.get(k))
  return {"args": args, "code": code, "stderr": err.getvalue(),
          "changed": changed}


def main():
  module = importlib.import_module(sys.argv[1])
  root = pathlib.Path(sys.argv[2])
  cases = json.load(sys.stdin)
  results = [run_case(module, args, root) for args in cases]
  sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
  main()
