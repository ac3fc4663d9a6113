"""A TFDS dataset the user prepared, read by random access without TensorFlow.

The way in for data a user already has in a TFDS data_dir (MNIST, CelebA, ...),
named `tfds:<name>` in configs. Only the reading happens here: nothing is
downloaded or generated. TFDS random-access data sources need the
array_record file format, so the dataset must have been prepared with it:

    builder = tfds.builder("celeb_a", data_dir=DIR, file_format="array_record")
    builder.download_and_prepare()

which lays out `DIR/<name>[/<config>]/<version>/` (dataset_info.json,
features.json, `<name>-<split>.array_record-*` shards). Preparing some
datasets needs TensorFlow (TFDS encodes numpy images and writes tfrecord
with it); reading them here does not, and TensorFlow is never imported.

`name` is TFDS's `dataset[/config][:version]`; without a version the newest
one in the data_dir is read. The config names the image field and the
attribute fields; nested fields are written with "/" (CelebA's
"attributes/Smiling"). Records come in the order TFDS stored them (it
shuffles them once, when preparing).

Images are centre-cropped to a square (`crop` pixels a side, or the shorter
side) and resized with PIL's bilinear filter, as `ctfjax.data.celeba` does;
`crop=150, image_size=64` on TFDS's celeb_a is that module's preprocessing.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import re

from typing import Mapping

import numpy as np
from PIL import Image

from ctfjax.data import base, storage
from ctfjax.data.errors import DataError

# The versions pinned in pyproject.toml; named in the "not installed" error.
INSTALL = "pip install tensorflow-datasets==4.9.10 array_record==0.8.6"

# Threads decoding images (PIL releases the GIL while decoding and resizing),
# each taking blocks of records.
_WORKERS = min(os.cpu_count() or 1, 8)
_BLOCK = 64

# A TFDS dataset version directory: "1.0.0".
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
# PIL modes for the channel counts an image field may have.
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def load(name: str, data_dir: str | os.PathLike, split: str,
         image_field: str, attributes: dict[str, str], image_size: int,
         limit: int | None = None, crop: int | None = None) -> dict:
  """Loads one split of a prepared TFDS dataset as numpy arrays.

  Args:
    name: TFDS name, `dataset[/config][:version]` (e.g. "celeb_a").
    data_dir: the TFDS data_dir the dataset was prepared in.
    split: a split of the dataset, in TFDS syntax ("train", "train[:10%]").
    image_field: the image feature, "/" between nested names.
    attributes: {output key: field}, each field a scalar bool, int or float
      feature ("attributes/Smiling", "label").
    image_size: side of the square output images, in pixels.
    limit: keep only the first `limit` records of the split (stored order).
    crop: side of the centred square cropped before resizing; None crops
      the largest one (the shorter side).

  Returns:
    {"image": uint8 [N, image_size, image_size, C] (C as stored: 1, 3 or 4),
    key: int32 [N] (bool and int fields, bool as 0/1) or float32 [N] (float
    fields) for each key of `attributes`}.

  Raises:
    DataError: tensorflow-datasets or array_record not installed; a missing
      data_dir; a dataset, version, split or field it does not hold; a field
      of the wrong kind; bad sizes or limit; an undecodable record.
  """
  _check_sizes(image_size, limit, crop)
  builder = _builder(name, data_dir)
  fields = _leaves(builder.info.features)
  channels = _check_image_field(name, fields, image_field)
  dtypes = {key: _attribute_dtype(name, fields, field)
            for key, field in attributes.items()}
  source = _data_source(builder, name, split)
  n = len(source) if limit is None else min(limit, len(source))
  out = {"image": np.empty((n, image_size, image_size, channels), np.uint8)}
  for key, dtype in dtypes.items():
    out[key] = np.empty(n, dtype)

  def block(start):
    stop = min(start + _BLOCK, n)
    try:
      records = source.__getitems__(list(range(start, stop)))
    except (OSError, ValueError) as e:
      raise DataError(f"cannot read records {start}-{stop - 1} of tfds:{name} "
                      f"split {split!r}: {_first_line(e)}") from None
    for k, record in enumerate(records, start=start):
      try:
        out["image"][k] = preprocess(_get(record, image_field), image_size,
                                     crop)
      except DataError as e:
        raise DataError(f"tfds:{name} split {split!r} record {k}: {e}"
                        ) from None
      for key, field in attributes.items():
        out[key][k] = _get(record, field)

  _in_blocks(n, block)
  return out


def preprocess(pixels: np.ndarray, image_size: int,
               crop: int | None = None) -> np.ndarray:
  """Centre-crops a square and resizes it: uint8 [image_size, image_size, C].

  Args:
    pixels: uint8 [H, W, C], C in {1, 3, 4}.
    image_size: output side, in pixels.
    crop: side of the centred square; None takes the shorter side.

  Raises:
    DataError: the image is smaller than `crop` on a side.
  """
  h, w, c = pixels.shape
  side = min(h, w) if crop is None else crop
  if side > min(h, w):
    raise DataError(f"image of size {w}x{h} is smaller than the {crop}-pixel "
                    "centre crop")
  # torchvision's CenterCrop rounds the offsets the same way (as celeba.py).
  top = int(round((h - side) / 2.0))
  left = int(round((w - side) / 2.0))
  square = pixels[top:top + side, left:left + side]
  image = Image.fromarray(square[..., 0] if c == 1 else square, _MODES[c])
  image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
  return np.asarray(image, np.uint8).reshape(image_size, image_size, c)


def _check_sizes(image_size, limit, crop) -> None:
  for what, value, optional in (("image_size", image_size, False),
                                ("limit", limit, True), ("crop", crop, True)):
    if optional and value is None:
      continue
    if isinstance(value, bool) or not isinstance(
        value, (int, np.integer)) or value < 1:
      raise DataError(f"{what} must be a positive integer"
                      f"{' or None' if optional else ''}, got {value!r}")


def _import_tfds():
  """tensorflow_datasets, imported on first use: most runs never need it."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError("tfds: datasets need tensorflow-datasets, which is not "
                    f"installed: {INSTALL}") from None
  return tfds


def _builder(name: str, data_dir: str | os.PathLike):
  """The read-only builder of `name` in `data_dir`, from its files alone.

  Built from the prepared files (features.json, dataset_info.json), never
  from TFDS's generation code, so nothing is downloaded or generated and a
  version prepared by an older TFDS still reads.
  """
  tfds = _import_tfds()
  root = pathlib.Path(data_dir).expanduser()
  if not root.is_dir():
    raise DataError(f"TFDS data_dir {str(root)!r} does not exist; prepare "
                    f"tfds:{name} there with TFDS (file_format='array_record')")
  try:
    return tfds.core.read_only_builder.builder_from_files(
        name, data_dir=os.fspath(root))
  except tfds.core.DatasetNotFoundError:
    found = ", ".join(_prepared(root)) or "nothing"
    raise DataError(f"no prepared TFDS dataset {name!r} in {str(root)!r}; "
                    f"it holds: {found}") from None
  except (OSError, ValueError) as e:  # A malformed name or metadata file.
    raise DataError(f"cannot open tfds:{name} in {str(root)!r}: "
                    f"{_first_line(e)}") from None


def _prepared(root: pathlib.Path) -> list[str]:
  """The datasets prepared in `root`, as `name[/config]:version`."""
  found = []
  for info in [*root.glob("*/*/features.json"),
               *root.glob("*/*/*/features.json")]:
    *parts, version = info.parent.relative_to(root).parts
    if _VERSION.match(version):
      found.append(f"{'/'.join(parts)}:{version}")
  return sorted(found)


def _leaves(features, prefix: str = "") -> dict:
  """{"a/b": feature} for every feature that is not a FeaturesDict."""
  from tensorflow_datasets import features as tfds_features  # pylint: disable=g-import-not-at-top
  out = {}
  for key, feature in features.items():
    path = prefix + key
    if isinstance(feature, tfds_features.FeaturesDict):
      out.update(_leaves(feature, path + "/"))
    else:
      out[path] = feature
  return out


def _field(name: str, fields: dict, field: str):
  if field not in fields:
    raise DataError(f"tfds:{name} has no field {field!r}; its fields: "
                    f"{', '.join(sorted(fields))}")
  return fields[field]


def _check_image_field(name: str, fields: dict, field: str) -> int:
  """The channel count of the uint8 [H, W, C] image field `field`."""
  feature = _field(name, fields, field)
  shape, dtype = tuple(feature.shape), np.dtype(feature.np_dtype)
  if len(shape) != 3 or dtype != np.uint8 or shape[-1] not in _MODES:
    raise DataError(
        f"tfds:{name} field {field!r} is {dtype.name} of shape {shape}, not a "
        f"uint8 image [H, W, C] with C in {{1, 3, 4}}")
  return shape[-1]


def _attribute_dtype(name: str, fields: dict, field: str) -> np.dtype:
  """int32 for a scalar bool or int field, float32 for a float one."""
  feature = _field(name, fields, field)
  shape, dtype = tuple(feature.shape), np.dtype(feature.np_dtype)
  if shape == () and (dtype == np.bool_ or np.issubdtype(dtype, np.integer)):
    return np.dtype(np.int32)
  if shape == () and np.issubdtype(dtype, np.floating):
    return np.dtype(np.float32)
  raise DataError(f"tfds:{name} field {field!r} is {dtype.name} of shape "
                  f"{shape}; an attribute must be a scalar bool, int or float")


def _data_source(builder, name: str, split: str):
  """The random-access source of `split` (array_record shards)."""
  known = ", ".join(builder.info.splits)
  # Each "+"-joined part of a TFDS split may carry a "[...]" slice.
  for part in split.split("+"):
    if part.partition("[")[0].strip() not in builder.info.splits:
      raise DataError(f"tfds:{name} has no split {part.strip()!r}; its "
                      f"splits: {known}")
  try:
    return builder.as_data_source(split=split)
  except NotImplementedError:
    raise DataError(
        f"tfds:{name} in {str(builder.data_dir)!r} is stored as "
        f"{builder.info.file_format.value}, which has no random access; "
        "prepare it again with file_format='array_record'") from None
  except ImportError:
    raise DataError("tfds: datasets need array_record, which is not "
                    f"installed: {INSTALL}") from None
  except ValueError as e:  # A malformed slice, e.g. "train[:x]".
    raise DataError(f"bad split {split!r} for tfds:{name}: "
                    f"{_first_line(e)}") from None


def _first_line(error: Exception) -> str:
  """The first line of TFDS's message (some span lines), for one-line errors."""
  return (str(error).splitlines() or [type(error).__name__])[0]


def _get(record: dict, field: str):
  for key in field.split("/"):
    record = record[key]
  return record


def _in_blocks(n: int, block) -> None:
  """Runs block(start) for start = 0, _BLOCK, ... < n, on threads if many."""
  starts = range(0, n, _BLOCK)
  if _WORKERS < 2 or len(starts) < 2:
    for start in starts:
      block(start)
  else:
    with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
      # list() re-raises the first error of any block.
      list(pool.map(block, starts))


class TFDS(base.Dataset):
  """The dataset entry of "tfds:<name>" (`ctfjax.data`).

  Settings (`config.data.*`): `source`, the TFDS data_dir; `image_field`
  (default "image"); `attributes`, {attribute: K (categorical with values
  0..K-1; a bool field is K = 2) or "continuous"}; `fields`, {attribute:
  TFDS field} where the field is not the attribute's own name (CelebA:
  {"Smiling": "attributes/Smiling"}); `graph`, the diagram over the
  attributes; `image_size` (default 64) and `crop` (see `load`). A
  continuous attribute is standardised by the mean and spread of the
  train split's first `STATS_RECORDS` records.
  """

  EVALUATOR = "ctfjax.evaluate.datasets.attributes:Attributes"
  SETTINGS = ("source", "image_field", "attributes", "fields", "graph",
              "image_size", "crop", "params")
  STATS_RECORDS = 1000

  def __init__(self, name: str, *, source: str | None = None,
               image_field: str = "image", attributes=None, fields=None,
               graph: str | None = None, image_size: int = 64,
               crop: int | None = None, params=None):
    base.no_params(name, params)
    self.name, self.tfds_name = name, name.split(":", 1)[1]
    if not source:
      raise DataError(f"{name} needs data.source=<the TFDS data_dir it was "
                      "prepared in>")
    if not attributes or not isinstance(attributes, Mapping):
      raise DataError(f"{name} needs data.attributes: {{attribute: K | "
                      "'continuous'}}")
    _check_sizes(image_size, None, crop)
    self.source, self.image_field = source, image_field
    self.image_size, self.crop = image_size, crop
    self.fields = {a: (fields or {}).get(a, a) for a in attributes}
    unknown = set(fields or {}) - set(attributes)
    if unknown:
      raise DataError(f"data.fields names {sorted(unknown)[0]!r}, which is "
                      "not a declared attribute")
    diagram = base.diagram(graph, attributes)
    self.graph = graph
    builder = _builder(self.tfds_name, source)
    leaves = _leaves(builder.info.features)
    channels = _check_image_field(self.tfds_name, leaves, image_field)
    self.image_shape = (image_size, image_size, channels)
    self.kinds = {}
    for a in diagram.topological_order():
      dtype = _attribute_dtype(self.tfds_name, leaves, self.fields[a])
      self.kinds[a] = self._kind(a, attributes[a], dtype)

  def _kind(self, attribute: str, spec, dtype: np.dtype):
    if spec == "continuous":
      x = self._attributes("train", self.STATS_RECORDS)[attribute]
      return {"kind": "continuous", "loc": float(np.mean(x)),
              "scale": float(np.std(x)) or 1.0}
    if isinstance(spec, bool) or not isinstance(spec, int) or spec < 2:
      raise DataError(f"data.attributes.{attribute} must be a number of "
                      f"classes >= 2 or 'continuous', got {spec!r}")
    if dtype != np.int32:
      raise DataError(f"attribute {attribute!r} is categorical but field "
                      f"{self.fields[attribute]!r} holds floats")
    return spec

  def _attributes(self, split, limit):
    return load(self.tfds_name, self.source, split, self.image_field,
                self.fields, self.image_size, limit=limit, crop=self.crop)

  def identity(self, split="train"):
    root = pathlib.Path(self.source).expanduser().absolute()
    return {"source": str(root), "tfds": self.tfds_name,
            "image_field": self.image_field, "fields": self.fields,
            "image_size": self.image_size, "crop": self.crop}

  def load(self, split="train", size=None, *, data_dir=None, cache=True):
    base.check_size(size)
    spec = {"name": self.name, "split": split, "size": size,
            **self.identity(split)}

    def build():
      ds = self._attributes(split, size)
      for a, k in self.kinds.items():
        if isinstance(k, int) and ds[a].size and (
            ds[a].min() < 0 or ds[a].max() >= k):
          raise DataError(f"attribute {a!r} of {self.name} split {split!r} "
                          f"has values outside 0..{k - 1}")
      return ds

    if not cache:
      return build()
    return storage.cached(self.name.replace(":", "/"), split, spec, build,
                          data_dir)
