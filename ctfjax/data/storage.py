"""On-disk cache of generated datasets: one `.npy` file per array.

A dataset is a (possibly nested) dict of numpy arrays. It is cached in
`<data dir>/<name>/<split>-<key>/`, one `<field>.npy` per array (nested keys
joined by '.') plus `spec.json`, where `key` hashes everything that determines
the content (name, split, size, seed, resolved parameters, source identity,
generator version). Reading memory-maps the files, so opening a cached 60,000
image set costs milliseconds and nothing is copied until indexed.

Why not array_record read by grain (or a TF-free TFDS builder)? For 60,000
32x32x3 samples on a 2-core CPU, `.npy` files write, and serve a shuffled
epoch of batches by fancy indexing of the memory map, one to two orders of
magnitude faster than array_record records written by a TFDS builder or read
through `grain.MapDataset`. The data fit in memory, so per-record
serialisation buys nothing here.

Writes are atomic: everything goes to a sibling temporary directory that is
renamed into place only once complete, so a crash or a concurrent writer never
leaves a half-written dataset where a reader would find it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import shutil
from typing import Any, Callable, Mapping

import numpy as np

from ctfjax import files
from ctfjax.data.errors import DataError

# Environment variable naming the data directory; ~/.cache/ctfjax otherwise.
DATA_DIR_ENV = "CTFJAX_DATA_DIR"
_SPEC_FILE = "spec.json"


def data_dir(path: str | os.PathLike | None = None) -> pathlib.Path:
  """The directory holding cached datasets.

  Args:
    path: explicit directory; default $CTFJAX_DATA_DIR, else ~/.cache/ctfjax.

  Returns:
    The directory as an absolute path (it need not exist yet).
  """
  if path is None:
    path = os.environ.get(DATA_DIR_ENV) or pathlib.Path.home() / ".cache" / (
        "ctfjax")
  return pathlib.Path(path).expanduser().absolute()


def cache_key(spec: Mapping[str, Any]) -> str:
  """A short stable hash of a JSON-able spec (key order does not matter)."""
  text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for k, v in tree.items():
    if not isinstance(k, str) or not k or "." in k or os.sep in k:
      raise DataError(f"dataset field name {k!r} must be a non-empty string "
                      "without '.' or path separators")
    if isinstance(v, Mapping):
      flat.update(_flatten(v, f"{prefix}{k}."))
    else:
      flat[prefix + k] = np.asarray(v)
  return flat


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for key, v in flat.items():
    *parents, leaf = key.split(".")
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree


def save(ds: Mapping[str, Any], path: str | os.PathLike,
         spec: Mapping[str, Any] | None = None) -> None:
  """Writes a dataset to `path` atomically (temporary sibling, then rename).

  Args:
    ds: nested dict of numpy arrays.
    path: the directory to create; it must not exist yet.
    spec: JSON-able description, stored with the field order in spec.json.

  Raises:
    OSError: `path` already holds a dataset (e.g. a concurrent writer
      won: the rename fails with ENOTEMPTY or EEXIST).
  """
  flat = _flatten(ds)
  # The rename fails if a complete copy is already there (another process
  # won the race); `cached` then reads theirs.
  with files.atomic_path(path, directory=True) as tmp:
    for key, arr in flat.items():
      np.save(tmp / f"{key}.npy", arr, allow_pickle=False)
    # Written last: a directory with spec.json is complete. It also keeps
    # the field order, which a directory listing would lose.
    meta = {"spec": dict(spec or {}), "fields": list(flat)}
    (tmp / _SPEC_FILE).write_text(json.dumps(meta, indent=1))


def read(path: str | os.PathLike) -> dict[str, Any]:
  """Reads (memory-maps, read-only) a dataset written by `save`.

  Raises:
    DataError: `path` is not a complete dataset directory.
  """
  path = pathlib.Path(path)
  if not (path / _SPEC_FILE).is_file():
    raise DataError(f"{str(path)!r} is not a saved dataset (no {_SPEC_FILE})")
  try:
    fields = json.loads((path / _SPEC_FILE).read_text())["fields"]
  except (ValueError, KeyError, TypeError) as e:
    raise DataError(f"{str(path / _SPEC_FILE)!r} is corrupt: {e}") from None
  flat = {}
  for key in fields:
    f = path / f"{key}.npy"
    try:
      flat[key] = np.load(f, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
      raise DataError(f"cached array {str(f)!r} is corrupt: {e}") from None
  return _unflatten(flat)


def cached(name: str, split: str, spec: Mapping[str, Any],
           build: Callable[[], Mapping[str, Any]],
           directory: str | os.PathLike | None = None) -> dict[str, Any]:
  """Returns the cached dataset for `spec`, building and saving it if absent.

  Args:
    name: dataset name; '/' in it becomes a sub-directory.
    split: split name, part of the directory name.
    spec: JSON-able; everything that determines the content.
    build: computes the dataset (nested dict of numpy arrays).
    directory: data directory (see `data_dir`).

  Returns:
    The dataset, memory-mapped from the cache.
  """
  try:
    key = cache_key(spec)
  except TypeError:
    raise DataError(f"the spec of {name!r} must be JSON-able (numbers, "
                    f"strings, lists, dicts), got {spec!r}") from None
  path = data_dir(directory).joinpath(*name.split("/"), f"{split}-{key}")
  if path.exists():
    try:
      return read(path)
    except DataError as e:
      # A damaged cache is rebuilt rather than reported: it holds nothing
      # that cannot be regenerated.
      logging.warning("rebuilding damaged cache: %s", e)
      shutil.rmtree(path, ignore_errors=True)
  ds = build()
  try:
    save(ds, path, spec)
  except OSError as e:
    # If the path exists, another process finished the same dataset first
    # (the rename failed with ENOTEMPTY): use theirs.
    if not path.exists():
      raise DataError(f"cannot write the data cache {str(path)!r}: "
                      f"{e.strerror or e}") from None
  return read(path)
