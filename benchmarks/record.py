r"""Runs a command and records what it wrote, where, when and on what.

    python -m benchmarks.record --out=benchmarks/results/quickstart \
        --files=runs/quickstart/report.json,runs/quickstart/report.md,\
runs/quickstart/edits.png,runs/quickstart/bounds.png -- \
        python -m launch.run --config=configs/quickstart.py \
        --workdir=runs/quickstart

Runs the command after `--` (its output shown and saved as stdout.txt),
then copies --files into --out and writes provenance.json: the command, the
commit and whether the tree had uncommitted changes, the machine (CPU model,
cores, platform, JAX backend and version), the start time and the wall-clock
seconds. Every number in docs/ comes from a folder written this way (or by a
benchmark that records the same itself). With --no_run the files of an
earlier run are collected and --wall_seconds, if given, recorded as its time.
"""

import datetime
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time

import jax
from absl import flags

from benchmarks import timing
from launch import cli

flags.DEFINE_string("out", None, "Folder to write the record into.")
flags.DEFINE_list("files", [], "Files the command writes, to copy into --out.")
flags.DEFINE_bool("run", True, "Run the command; --norun only collects.")
flags.DEFINE_float("wall_seconds", None, "With --norun: the run's seconds.")
FLAGS = flags.FLAGS
COMMAND: list[str] = []


def git(*args: str) -> str:
  """`git args` in this checkout; '' where git or the checkout is absent."""
  try:
    return subprocess.run(["git", *args], capture_output=True, text=True,
                          check=True, cwd=pathlib.Path(__file__).parent
                          ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return ""


def machine() -> dict:
  return {"cpu": timing.cpu_model(), "cpus": os.cpu_count(),
          "platform": platform.platform(), "python": platform.python_version(),
          "jax": jax.__version__, "backend": jax.default_backend()}


def main():
  out = pathlib.Path(cli.require("out"))
  if not COMMAND:
    cli.fail("give the command after --, e.g. -- python -m launch.run ...")
  missing = [f for f in FLAGS.files if not FLAGS.run and
             not pathlib.Path(f).is_file()]
  if missing:
    cli.fail(f"--files: no such file {missing[0]!r}")
  started = datetime.datetime.now(datetime.timezone.utc)
  record = {"command": " ".join(COMMAND), "commit": git("rev-parse", "HEAD"),
            "uncommitted_changes": bool(git("status", "--porcelain",
                                            "--untracked-files=no")),
            "machine": machine(), "started": started.isoformat(
                timespec="seconds"), "wall_seconds": FLAGS.wall_seconds}
  out.mkdir(parents=True, exist_ok=True)
  if FLAGS.run:
    t0 = time.perf_counter()
    with open(out / "stdout.txt", "w", encoding="utf-8") as log:
      proc = subprocess.Popen(COMMAND, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
      for line in proc.stdout:
        sys.stdout.write(line)
        log.write(line)
      if proc.wait():
        cli.fail(f"the command exited with {proc.returncode}; nothing "
                 f"copied (its output: {out / 'stdout.txt'})")
    record["wall_seconds"] = round(time.perf_counter() - t0, 1)
  for name in FLAGS.files:
    shutil.copy2(name, out / pathlib.Path(name).name)
  record["files"] = sorted(pathlib.Path(f).name for f in FLAGS.files)
  cli.write_json(str(out / "provenance.json"), record)


if __name__ == "__main__":
  if "--" in sys.argv:
    cut = sys.argv.index("--")
    sys.argv, COMMAND[:] = sys.argv[:cut], sys.argv[cut + 1:]
  cli.run(main)
