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

Paths a user names are checked before any work or write, by the three
`existing_dir`, `writable_dir` and `writable_file`: every command and library
entry point uses them, so a read-only folder or a file where a folder belongs
is one clear error up front, not a traceback after a minute of work. A
Python file a user names (a config, a NumPyro model) is loaded by
`python_module`, with the same kind of errors.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import pathlib
import shutil
import types
import uuid
from typing import Any, Callable, Iterator

from ctfjax.errors import UserError


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


def existing_dir(path: str | os.PathLike, what: str) -> pathlib.Path:
  """`path` as a Path if it is an existing folder, else a UserError naming
  it as `what` (e.g. "workdir")."""
  path = pathlib.Path(path)
  if not path.exists():
    raise UserError(f"{what} {path} does not exist")
  if not path.is_dir():
    raise UserError(f"{what} {path} is a file, not a folder")
  return path


def _probe(folder: pathlib.Path, what: str, path: pathlib.Path) -> None:
  """Creates and removes a file in `folder`: the one sure test of write
  access (permission bits say nothing for root or a read-only mount)."""
  probe = folder / f".ctfjax-probe-{uuid.uuid4().hex}"
  try:
    os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
  except OSError as e:
    denied = e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    raise UserError(f"{what} {path} cannot be written: {folder} is "
                    f"{'read-only' if denied else e.strerror}") from None
  probe.unlink()


def _nearest_existing(path: pathlib.Path, what: str) -> pathlib.Path:
  """The deepest existing ancestor of `path` (which will hold what is
  created); it must be a folder."""
  parent = path.absolute().parent
  while not parent.exists():
    parent = parent.parent
  if not parent.is_dir():
    raise UserError(f"{what} {path} cannot be created: {parent} is a file, "
                    "not a folder")
  return parent


def writable_dir(path: str | os.PathLike, what: str) -> pathlib.Path:
  """`path` as a Path if it is (or can be created as) a folder this process
  can write in; else a UserError naming it as `what`. Creates nothing."""
  path = pathlib.Path(path)
  if path.exists():
    if not path.is_dir():
      raise UserError(f"{what} {path} is a file, not a folder")
    _probe(path, what, path)
  else:
    _probe(_nearest_existing(path, what), what, path)
  return path


def writable_file(path: str | os.PathLike, what: str) -> pathlib.Path:
  """`path` as a Path if a file can be written there (atomically, so its
  folder must be writable); else a UserError naming it. Creates nothing."""
  path = pathlib.Path(path)
  if path.is_dir():
    raise UserError(f"{what} {path} is a folder, not a file")
  if path.parent.exists():
    if not path.parent.is_dir():
      raise UserError(f"{what} {path} cannot be created: {path.parent} is a "
                      "file, not a folder")
    _probe(path.parent, what, path)
  else:
    _probe(_nearest_existing(path, what), what, path)
  return path


@contextlib.contextmanager
def removed_on_failure(folder: str | os.PathLike,
                       keep: Callable[[pathlib.Path], bool]
                       ) -> Iterator[pathlib.Path]:
  """Creates `folder` if missing; removes it again if the block raises,
  unless it existed before or `keep(folder)` (e.g. it holds a checkpoint
  to resume from). A rejected or failed first run leaves nothing behind.
  """
  folder = pathlib.Path(folder)
  existed = folder.exists()
  folder.mkdir(parents=True, exist_ok=True)
  try:
    yield folder
  except BaseException:
    if not existed and not keep(folder):
      shutil.rmtree(folder, ignore_errors=True)
    raise


def python_module(path: str | os.PathLike, what: str,
                  expects: str = "") -> types.ModuleType:
  """The module a user's Python file defines, executed under a private name.

  Args:
    path: the file.
    what: what the file is, for the errors ("config file").
    expects: what the file should hold, appended to the not-Python error
      (" with a get_config()").

  Raises:
    UserError: a missing file, a folder or non-.py file, or a file whose
      execution raises (its exception's type and message in the line).
  """
  file = pathlib.Path(path)
  if not file.exists():
    raise UserError(f"{what} {path} does not exist")
  if not file.is_file() or file.suffix != ".py":
    raise UserError(f"{what} {path} is not a Python file (.py){expects}")
  spec = importlib.util.spec_from_file_location(
      f"_ctfjax_{what.split()[0]}_{file.stem}", file)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # A broken file is the user's, not a bug here.
    raise UserError(f"{what} {path} fails to load: "
                    f"{type(e).__name__}: {e}") from None
  return module
