"""Atomic file writes: a reader never sees half a report or half a figure.

Every output is written to a temporary file in the destination folder and
moved into place with `os.replace`, which is atomic on one file system; an
interrupted run leaves the previous file (or none), never a truncated one.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from typing import Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary path that replaces `path` when the block succeeds.

  Args:
    path: the destination; its folder is created if missing.

  Yields:
    A fresh path in the same folder (so the final rename stays on one file
    system); removed if the block raises.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                             dir=path.parent)
  os.close(fd)
  tmp = pathlib.Path(tmp)
  # mkstemp creates 0600; give the file the permissions open() would.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
  """Writes `text` (UTF-8) to `path` atomically; returns the path."""
  with atomic_path(path) as tmp:
    tmp.write_text(text, encoding="utf-8")
  return pathlib.Path(path)


def write_with(path: str | os.PathLike,
               writer: Callable[[pathlib.Path], None]) -> pathlib.Path:
  """Calls `writer(tmp_path)` and moves its file to `path` atomically."""
  with atomic_path(path) as tmp:
    writer(tmp)
  return pathlib.Path(path)
