"""workdir/metrics.jsonl: one JSON object per logged step, safe across resumes.

Each line is `{"step": int, "train/loss": float, ..., "eval/<name>": float}`.
Non-finite values are written as null so every line stays valid JSON. On
resume the lines past the restored checkpoint are dropped (those steps are
about to be trained again), so the file never holds a step twice.
"""

import json
import math
import os
import pathlib
from typing import Any

from ctfjax import files

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
  """The records of a metrics file (or a workdir holding one), oldest first.

  A torn last line, left by a process killed mid-write, is skipped.
  """
  path = pathlib.Path(path)
  path = path / METRICS_FILE if path.is_dir() else path
  if not path.exists():
    return []
  records = []
  for line in path.read_text().splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue
    if isinstance(record, dict) and "step" in record:
      records.append(record)
  return records


def _jsonable(value: Any) -> Any:
  value = float(value)
  return value if math.isfinite(value) else None


class MetricsLog:
  """Appends records to workdir/metrics.jsonl, one flushed line each."""

  def __init__(self, workdir: str | os.PathLike[str], resume_step: int,
               enabled: bool = True):
    """Opens the log, keeping only records up to `resume_step`.

    Args:
      workdir: the run's folder.
      resume_step: the step training restarts from; later records go.
      enabled: False on non-primary hosts: nothing is read or written.
    """
    self.path = pathlib.Path(workdir) / METRICS_FILE
    self._file = None
    if not enabled:
      return
    kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
    # Rewritten atomically so a kill here loses nothing.
    files.write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
    self._file = open(self.path, "a")  # noqa: SIM115 - closed in close().

  def write(self, step: int, values: dict[str, Any]) -> dict[str, Any]:
    """Appends `{"step": step, **values}` and returns it."""
    record = {"step": int(step), **{k: _jsonable(v) for k, v in values.items()}}
    if self._file is not None:
      self._file.write(json.dumps(record) + "\n")
      self._file.flush()
    return record

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
