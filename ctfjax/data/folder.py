"""`folder`: any images with an attribute table and the user's diagram.

    <source>/attributes.csv     file,Smiling,age[,split]
                                img/0001.jpg,yes,31.5,train
    <source>/img/0001.jpg ...   PNG or JPEG, any size

A config names the folder and declares the columns it uses:

    config.data.name = "folder"
    config.data.source = "/data/faces"
    config.data.attributes = {"Smiling": "categorical",       # values from
                              "Glasses": ["no", "yes"],       # the data, or
                              "age": "continuous"}            # listed
    config.data.graph = "age -> Glasses; Smiling"
    config.data.image_size = 64

`file` paths are relative to the folder. A categorical column's values map to
0..K-1 in the listed order, else in sorted order (numerically when every
value is a number); a continuous column holds numbers. The optional `split`
column says train / valid / test per row; without it the split is a
deterministic function of the file name (crc32 mod 10: 0 test, 1 valid, the
rest train). Images are centre-cropped to a square and resized to
`image_size` with PIL's bilinear filter (a no-op at that size already); all
must be grayscale (L) or all RGB.

Everything is checked when the entry is built, before any work: the table,
the columns, the values, the diagram against the columns, every listed file
(present and readable as an image, with one mode), non-empty train and test
splits. Each problem is one `DataError` line naming the file, row or column.
"""

from __future__ import annotations

import csv
import math
import pathlib
import zlib
from typing import Any, Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from ctfjax.data import base, storage
from ctfjax.data.errors import DataError

TABLE = "attributes.csv"
FILE_COLUMN = "file"
SPLIT_COLUMN = "split"
SPLITS = ("train", "valid", "test")
MODES = {"L": 1, "RGB": 3}
# Bump when the same folder would load differently (the cache key has it).
VERSION = 1


def split_of(file: str) -> str:
  """The split of a file when the table has no split column."""
  r = zlib.crc32(file.encode()) % 10
  return "test" if r == 0 else "valid" if r == 1 else "train"


def _number(text: str) -> float | None:
  try:
    value = float(text)
  except ValueError:
    return None
  return value if math.isfinite(value) else None


def _read_table(root: pathlib.Path) -> list[dict[str, str]]:
  path = root / TABLE
  if not path.is_file():
    raise DataError(f"folder {root} has no {TABLE} (a '{FILE_COLUMN}' column "
                    "and one column per attribute)")
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      reader = csv.DictReader(f)
      rows = [{k.strip(): (v or "").strip() for k, v in row.items()
               if k is not None} for row in reader]
      columns = [c.strip() for c in reader.fieldnames or []]
  except (UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"{path} cannot be read as CSV: {e}") from None
  if FILE_COLUMN not in columns:
    raise DataError(f"{path} has no '{FILE_COLUMN}' column; its columns: "
                    f"{', '.join(columns) or 'none'}")
  if not rows:
    raise DataError(f"{path} has no rows")
  return rows


def _categories(name: str, spec: Any, column: list[str], where) -> list[str]:
  """The values of a categorical column, in their index order."""
  if isinstance(spec, (list, tuple)):
    listed = [str(v).strip() for v in spec]
    if len(set(listed)) != len(listed):
      raise DataError(f"data.attributes.{name} lists a value twice")
    for i, v in enumerate(column):
      if v not in listed:
        raise DataError(f"value {v!r} of column '{name}' ({where(i)}) is not "
                        f"one of the listed {', '.join(listed)}")
    values = listed
  else:
    values = sorted(set(column))
    if all(_number(v) is not None for v in values):
      values = sorted(values, key=float)
  if len(set(column)) < 2:
    raise DataError(f"attribute '{name}' has a single value "
                    f"{column[0]!r}; it cannot be intervened on")
  return values


def _continuous(name: str, column: list[str], where) -> np.ndarray:
  out = np.empty(len(column), np.float32)
  for i, v in enumerate(column):
    x = _number(v)
    if x is None:
      raise DataError(f"continuous column '{name}' has {v!r} ({where(i)}), "
                      "not a finite number")
    out[i] = x
  if np.ptp(out) == 0:
    raise DataError(f"attribute '{name}' has a single value {column[0]!r}; "
                    "it cannot be intervened on")
  return out


def _image_mode(path: pathlib.Path, file: str) -> str:
  try:
    with Image.open(path) as img:
      mode = img.mode
  except FileNotFoundError:
    raise DataError(f"image {file} listed in {TABLE} is missing") from None
  except (UnidentifiedImageError, OSError) as e:
    raise DataError(f"image {file} cannot be read as an image ({e})") from None
  if mode not in MODES:
    raise DataError(f"image {file} has mode {mode}; use grayscale (L) or RGB "
                    "images")
  return mode


def to_square(img: Image.Image, size: int) -> np.ndarray:
  """Centre-crop to a square, resize to size x size (bilinear)."""
  w, h = img.size
  s = min(w, h)
  left, top = (w - s) // 2, (h - s) // 2
  if (w, h) != (s, s):
    img = img.crop((left, top, left + s, top + s))
  if s != size:
    img = img.resize((size, size), Image.BILINEAR)
  return np.asarray(img, np.uint8)


class Folder(base.Dataset):
  """The dataset entry of "folder" (see the module docstring)."""

  EVALUATOR = "ctfjax.evaluate.datasets.attributes:Attributes"
  SETTINGS = ("source", "attributes", "graph", "image_size", "params")

  def __init__(self, name: str, *, source: str | None = None,
               attributes: Mapping[str, Any] | None = None,
               graph: str | None = None, image_size: int = 64, params=None):
    base.no_params(name, params)
    if not source:
      raise DataError("folder needs data.source=<folder holding "
                      f"{TABLE} and the images>")
    root = pathlib.Path(source).expanduser()
    if not root.is_dir():
      raise DataError(f"data.source {source} is not a folder")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or \
        not 8 <= image_size <= 1024:
      raise DataError(f"data.image_size must be an integer in 8..1024, got "
                      f"{image_size!r}")
    if not attributes or not isinstance(attributes, Mapping):
      raise DataError("folder needs data.attributes: {column: 'categorical' "
                      "| 'continuous' | [values]}")
    self.name, self.root, self.size = name, root.absolute(), image_size
    rows = _read_table(root)
    columns = set(rows[0])
    for a in attributes:
      if a not in columns:
        raise DataError(f"attribute '{a}' is not a column of {root / TABLE}; "
                        f"its columns: {', '.join(sorted(columns))}")
    diagram = base.diagram(graph, attributes)
    self.graph = graph
    self.files = [r[FILE_COLUMN] for r in rows]
    where = lambda i: f"row {i + 2}, file {self.files[i]}"
    self.splits = self._splits(rows, where)
    self.kinds, self.value_names, self.values = {}, {}, {}
    for a in diagram.topological_order():
      self._add_attribute(a, attributes[a], [r[a] for r in rows], where)
    self.mode = self._check_images()
    self.image_shape = (image_size, image_size, MODES[self.mode])

  def _splits(self, rows, where) -> np.ndarray:
    if SPLIT_COLUMN in rows[0]:
      out = [r[SPLIT_COLUMN].lower() for r in rows]
      for i, s in enumerate(out):
        if s not in SPLITS:
          raise DataError(f"split {s!r} ({where(i)}) is not one of "
                          f"{', '.join(SPLITS)}")
    else:
      out = [split_of(f) for f in self.files]
    out = np.asarray(out)
    for s in ("train", "test"):
      if not np.any(out == s):
        raise DataError(f"the {s} split of {self.root / TABLE} is empty")
    return out

  def _add_attribute(self, name, spec, column, where):
    if spec == "continuous":
      x = _continuous(name, column, where)
      train = x[self.splits == "train"]
      self.values[name] = x
      self.kinds[name] = {"kind": "continuous", "loc": float(train.mean()),
                          "scale": float(train.std()) or 1.0}
    elif spec == "categorical" or isinstance(spec, (list, tuple)):
      names = _categories(name, spec, column, where)
      index = {v: i for i, v in enumerate(names)}
      self.values[name] = np.array([index[v] for v in column], np.int32)
      self.kinds[name] = len(names)
      self.value_names[name] = tuple(names)
    else:
      raise DataError(f"data.attributes.{name} must be 'categorical', "
                      f"'continuous' or a list of values, got {spec!r}")

  def _check_images(self) -> str:
    modes = {}
    for file in self.files:
      mode = _image_mode(self.root / file, file)
      if modes and mode not in modes:
        other = next(iter(modes.items()))
        raise DataError(f"mixed image modes: {file} is {mode}, {other[1]} is "
                        f"{other[0]}; convert them to one (L or RGB)")
      modes.setdefault(mode, file)
    return next(iter(modes))

  def load(self, split="train", size=None, *, data_dir=None, cache=True):
    base.check_size(size)
    if split not in SPLITS:
      raise DataError(f"unknown split {split!r}; expected one of "
                      f"{', '.join(SPLITS)}")
    index = np.flatnonzero(self.splits == split)[:size]
    if not len(index):
      raise DataError(f"the {split} split of {self.root / TABLE} is empty")
    spec = {"name": self.name, "split": split, "size": size,
            **self.identity(split)}

    def build():
      images = np.stack([self._image(self.files[i]) for i in index])
      return {"image": images.reshape(len(index), *self.image_shape),
              **{a: v[index] for a, v in self.values.items()}}

    if not cache:
      return build()
    return storage.cached("folder", split, spec, build, data_dir)

  def identity(self, split="train"):
    st = (self.root / TABLE).stat()
    return {"source": [str(self.root), st.st_size, st.st_mtime_ns],
            "kinds": self.kinds, "values": self.value_names,
            "image_size": self.size, "version": VERSION}

  def _image(self, file: str) -> np.ndarray:
    try:
      with Image.open(self.root / file) as img:
        img.load()
        return to_square(img, self.size)
    except (UnidentifiedImageError, OSError) as e:
      raise DataError(f"image {file} cannot be read as an image ({e})"
                      ) from None

  def display(self):
    return {"group_by": None, "sort_by": None,
            "value_names": dict(self.value_names), "graph": self.graph}
