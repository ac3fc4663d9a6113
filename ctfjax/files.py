"""Atomic writes: a reader never sees half a file, figure or cached dataset.

Every output (report, metrics log, figure, cached dataset directory, launcher
JSON) is first written to a temporary sibling of its destination and then
moved into place with `os.replace`. The rename is atomic because the
temporary lives in the destination's own folder, hence on the same file
system; a process killed midway leaves the previous file (or nothing), and a
write that raises removes its temporary, so no debris accumulates.

The temporary's name is unique (a random hex part) rather than made by
`tempfile.mkstemp`, which forces mode 0600: a file created by the writer gets
the permissions the umask gives, as a plain `open` would, so shared outputs
(a data cache, a report folder) stay readable by the group.

Nothing is fsync'ed: the guarantee is against crashes and concurrent readers,
not against power loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import uuid
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike,
                directory: bool = False) -> Iterator[pathlib.Path]:
  """Yields a temporary path that is moved to `path` when the block succeeds.

  Args:
    path: the destination; its folder is created if missing.
    directory: False: the block writes one file at the yielded path (not
      created in advance). True: the yielded path is an empty directory the
      block fills; it is renamed into place only if `path` does not exist or
      is an empty directory, so when two writers race the first complete one
      wins and the second gets an `OSError`.

  Yields:
    A fresh path in the same folder as `path`, ending with the same suffix so
    writers that choose a format by extension (numpy, PIL, matplotlib) write
    the right one. It is removed (with its contents) if the block raises or
    the final rename fails.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # Hidden, so a listing or glob of the folder does not pick it up midway.
  tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")
  if directory:
    tmp.mkdir()
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    if directory:
      shutil.rmtree(tmp, ignore_errors=True)
    else:
      tmp.unlink(missing_ok=True)
    raise


def write_with(path: str | os.PathLike,
               writer: Callable[[pathlib.Path], Any]) -> pathlib.Path:
  """Calls `writer(tmp_path)` and moves the file it wrote to `path`.

  Args:
    path: the destination file.
    writer: writes one file at the path it is given (e.g. `fig.savefig`).

  Returns:
    `path`, as a `pathlib.Path`.
  """
  with atomic_path(path) as tmp:
    writer(tmp)
  return pathlib.Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
  """Writes `data` to `path` atomically and returns the path."""
  return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
  """Writes `text` (UTF-8) to `path` atomically and returns the path."""
  return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any,
               indent: int | None = 1) -> pathlib.Path:
  """Writes `json.dumps(obj, indent=indent)` to `path` atomically.

  Args:
    path: the destination file.
    obj: anything `json.dumps` accepts; it is serialised before the
      temporary is created, so an unserialisable value writes nothing.
    indent: as in `json.dumps`.

  Returns:
    `path`, as a `pathlib.Path`.
  """
  return write_text(path, json.dumps(obj, indent=indent))
