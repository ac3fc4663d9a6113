"""CelebA at 64x64 from the official manual download, with 3 attribute graphs.

CelebA cannot be downloaded here: fetch it by hand from the official page
(`OFFICIAL_PAGE`) and lay it out as the download unpacks:

    <data_dir>/img_align_celeba/000001.jpg ...   "Align&Cropped Images"
                                                 (img_align_celeba.zip),
                                                 178 x 218 JPEGs
    <data_dir>/list_attr_celeba.txt              Anno/: a count line, a line
                                                 of 40 attribute names, then
                                                 `filename  1 -1 ...` rows
    <data_dir>/list_eval_partition.txt           Eval/: `filename 0|1|2`
                                                 (train / valid / test)

Images are centre-cropped to 150 x 150 and resized to 64 x 64 with PIL's
bilinear filter, which antialiases when shrinking (torchvision's
CenterCrop(150) + Resize(64) on PIL images, as the peers preprocess).
Attributes are mapped from {-1, 1} to {0, 1}.

Graphs over the attributes (ctfjax.causal.Graph.parse syntax); the image is a
child of every attribute of its graph:

    simple:  Smiling, Eyeglasses (independent)
    complex: Young, Male -> No_Beard, Bald
    paper:   Male <-> Young, Young -> Gray_Hair
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib

import numpy as np
from PIL import Image

from ctfjax.data import base, storage
from ctfjax.data.errors import DataError

OFFICIAL_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
IMAGE_DIR = "img_align_celeba"
ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"

SPLITS = {"train": 0, "valid": 1, "test": 2}
# Bump when the same download would load differently (the cache key has it).
VERSION = 0
CROP = 150
IMAGE_SIZE = 64

GRAPHS = {
    "simple": "Smiling; Eyeglasses",
    "complex": ("Young -> No_Beard; Young -> Bald; "
                "Male -> No_Beard; Male -> Bald"),
    "paper": "Male <-> Young; Young -> Gray_Hair",
}
# Each graph's attributes, parents before children: the keys `load` returns.
ATTRIBUTES = {
    "simple": ("Smiling", "Eyeglasses"),
    "complex": ("Young", "Male", "No_Beard", "Bald"),
    "paper": ("Male", "Young", "Gray_Hair"),
}

# Panel titles and captions for values 0 and 1.
VALUE_NAMES = {
    "Smiling": ("Not Smiling", "Smiling"),
    "Eyeglasses": ("No Eyeglasses", "Eyeglasses"),
    "Young": ("Old", "Young"),
    "Male": ("Female", "Male"),
    "No_Beard": ("Beard", "No Beard"),
    "Bald": ("Not Bald", "Bald"),
    "Gray_Hair": ("No Gray Hair", "Gray Hair"),
}

# Threads decoding JPEGs (PIL releases the GIL while decoding and resizing),
# each taking blocks of images: one task per image would queue 160k futures.
_WORKERS = min(os.cpu_count() or 1, 8)
_BLOCK = 64


def load(data_dir: str | os.PathLike, split: str = "train",
         graph: str = "simple", limit: int | None = None) -> dict:
  """Loads one split of CelebA at 64x64 with one graph's attributes.

  Args:
    data_dir: the directory holding the manual download (layout above).
    split: "train", "valid" or "test" (the official partition).
    graph: "simple", "complex" or "paper"; selects the attributes returned.
    limit: keep only the first `limit` images of the split (file order).

  Returns:
    {"image": uint8 [N, 64, 64, 3], attribute: int32 [N] in {0, 1} for each
    name in ATTRIBUTES[graph]}.

  Raises:
    DataError: unknown split or graph, bad limit, missing or malformed
      download files, an unreadable image.
  """
  if split not in SPLITS:
    raise DataError(f"unknown CelebA split {split!r}; expected one of "
                    f"{', '.join(SPLITS)}")
  if graph not in GRAPHS:
    raise DataError(f"unknown CelebA graph {graph!r}; expected one of "
                    f"{', '.join(GRAPHS)}")
  if limit is not None and (isinstance(limit, bool) or not isinstance(
      limit, (int, np.integer)) or limit < 1):
    raise DataError(f"limit must be a positive integer or None, got {limit!r}")
  root = check_download(data_dir)
  files = [f for f, s in read_partition(root / PARTITION_FILE)
           if s == SPLITS[split]]
  files = files[:limit]
  names, listed, values = read_attributes(root / ATTRIBUTE_FILE)
  wanted = ATTRIBUTES[graph]
  missing = [a for a in wanted if a not in names]
  if missing:
    raise DataError(
        f"{root / ATTRIBUTE_FILE} has no attribute {missing[0]!r} (graph "
        f"{graph!r} needs {', '.join(wanted)}); is it the official file?")
  row_of = {f: k for k, f in enumerate(listed)}
  unlisted = [f for f in files if f not in row_of]
  if unlisted:
    raise DataError(f"{unlisted[0]} is in {PARTITION_FILE} but has no row in "
                    f"{root / ATTRIBUTE_FILE}")
  values = values[[row_of[f] for f in files]]
  out = {"image": _read_images(root / IMAGE_DIR, files)}
  for a in wanted:
    out[a] = values[:, names.index(a)].astype(np.int32)
  return out


def check_download(data_dir: str | os.PathLike) -> pathlib.Path:
  """The download directory, or a one-line DataError naming what to put where.

  Raises:
    DataError: the directory, the image folder or an annotation file is
      missing.
  """
  root = pathlib.Path(data_dir).expanduser()
  need = {IMAGE_DIR + "/": root / IMAGE_DIR,
          ATTRIBUTE_FILE: root / ATTRIBUTE_FILE,
          PARTITION_FILE: root / PARTITION_FILE}
  missing = [n for n, p in need.items()
             if not (p.is_dir() if n.endswith("/") else p.is_file())]
  if missing:
    raise DataError(
        f"CelebA not found in {str(root)!r} (missing {', '.join(missing)}): "
        f"put the aligned JPEGs (img_align_celeba.zip) in "
        f"{root / IMAGE_DIR}/ and {ATTRIBUTE_FILE} (Anno) and "
        f"{PARTITION_FILE} (Eval) in {root}/; nothing is downloaded here, "
        f"get them manually from {OFFICIAL_PAGE}")
  return root


def read_partition(path: str | os.PathLike) -> list[tuple[str, int]]:
  """Parses list_eval_partition.txt into [(filename, 0|1|2)], file order.

  Raises:
    DataError: a malformed line.
  """
  out = []
  for n, line in enumerate(_lines(path), start=1):
    parts = line.split()
    if not parts:
      continue
    if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
      raise DataError(f"{path}:{n}: expected 'filename 0|1|2', got "
                      f"{line.strip()[:60]!r}")
    out.append((parts[0], int(parts[1])))
  return out


def read_attributes(path: str | os.PathLike
                    ) -> tuple[list[str], list[str], np.ndarray]:
  """Parses list_attr_celeba.txt, mapping -1 -> 0.

  Returns:
    (attribute names, filenames, int8 [n_files, n_names] values), both in
    file order.

  Raises:
    DataError: a malformed header, row or value, or a row count that does not
      match the count line (a truncated download).
  """
  lines = _lines(path)
  if len(lines) < 2 or not lines[0].strip().isdigit():
    raise DataError(f"{path}:1: expected the image count, then a line of "
                    "attribute names")
  names = lines[1].split()
  files, rows = [], []
  for n, line in enumerate(lines[2:], start=3):
    parts = line.split()
    if not parts:
      continue
    if len(parts) != len(names) + 1:
      raise DataError(f"{path}:{n}: expected a filename and {len(names)} "
                      f"values, got {len(parts)} fields")
    bad = set(parts[1:]) - {"1", "-1"}
    if bad:
      raise DataError(f"{path}:{n}: attribute values must be 1 or -1, got "
                      f"{sorted(bad)[0]!r}")
    files.append(parts[0])
    # One string per row; decoded below in a single vectorised pass.
    rows.append(" ".join(parts[1:]))
  count = int(lines[0])
  if count != len(files):
    raise DataError(f"{path} announces {count} images but lists "
                    f"{len(files)}; the file looks truncated")
  signs = np.fromstring(" ".join(rows), dtype=np.int8, sep=" ")
  values = (signs.reshape(len(files), len(names)) > 0).astype(np.int8)
  return names, files, values  # 1 -> 1, -1 -> 0


def preprocess(image: Image.Image) -> np.ndarray:
  """Centre crop 150 and resize to 64: uint8 [64, 64, 3].

  Raises:
    DataError: the image is smaller than 150 pixels on a side.
  """
  w, h = image.size
  if min(w, h) < CROP:
    raise DataError(f"CelebA image of size {w}x{h} is smaller than the "
                    f"{CROP}-pixel centre crop; expected 178x218")
  # torchvision's CenterCrop rounds the offsets the same way.
  left = int(round((w - CROP) / 2.0))
  top = int(round((h - CROP) / 2.0))
  image = image.convert("RGB").crop((left, top, left + CROP, top + CROP))
  image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
  return np.asarray(image, np.uint8)


def _lines(path) -> list[str]:
  try:
    with open(path, encoding="utf-8") as f:
      return f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"cannot read {path}: {e}") from None


def _read_images(folder: pathlib.Path, files: list[str],
                 convert=preprocess, size: int = IMAGE_SIZE,
                 listed_in: str = PARTITION_FILE) -> np.ndarray:
  """Decodes `files` in order through `convert` (image -> uint8 [size,
  size, 3]): uint8 [N, size, size, 3]."""
  out = np.empty((len(files), size, size, 3), np.uint8)

  def one(k):
    path = folder / files[k]
    if not path.is_file():
      raise DataError(
          f"CelebA image {path} (listed in {listed_in}) is missing; "
          f"unpack all of the download from {OFFICIAL_PAGE} there")
    try:
      with Image.open(path) as image:
        out[k] = convert(image)
    except DataError as e:
      raise DataError(f"{path}: {e}") from None
    except (OSError, ValueError) as e:
      raise DataError(f"cannot decode CelebA image {path}: {e}") from None

  def block(start):
    for k in range(start, min(start + _BLOCK, len(files))):
      one(k)

  starts = range(0, len(files), _BLOCK)
  if _WORKERS < 2 or len(starts) < 2:
    for start in starts:
      block(start)
  else:
    with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
      # list() re-raises the first error of any block.
      list(pool.map(block, starts))
  return out


class CelebA(base.Dataset):
  """The dataset entry of "celeba/<graph>" (`ctfjax.data`).

  Settings: `source`, the folder of the manual download (required). The
  attributes are those of the graph (`GRAPHS`, `ATTRIBUTES`), binary.
  """

  EVALUATOR = "ctfjax.evaluate.datasets.attributes:Attributes"
  SETTINGS = ("source", "params")
  image_shape = (IMAGE_SIZE, IMAGE_SIZE, 3)
  value_names = VALUE_NAMES

  def __init__(self, name: str, *, source: str | None = None, params=None):
    base.no_params(name, params)
    if not source:
      raise DataError(f"{name} needs source=<directory of the CelebA manual "
                      f"download> (it cannot be downloaded here; see "
                      f"{OFFICIAL_PAGE})")
    self.name = name
    self.variant = name.split("/", 1)[1]
    self.source = source
    self.graph = GRAPHS[self.variant]
    self.kinds = {a: 2 for a in ATTRIBUTES[self.variant]}

  def identity(self, split="train"):
    root = pathlib.Path(self.source).expanduser().absolute()
    stats = [f"{f}:{(root / f).stat().st_size}:{(root / f).stat().st_mtime_ns}"
             for f in (ATTRIBUTE_FILE, PARTITION_FILE) if (root / f).is_file()]
    return {"source": [str(root), *stats], "version": VERSION}

  def load(self, split="train", size=None, *, data_dir=None, cache=True):
    base.check_size(size)
    # Decoding and resizing ~200k JPEGs is slow: the result is cached like
    # the generated sets, keyed by the download's annotation files.
    spec = {"name": self.name, "split": split, "size": size,
            **self.identity(split)}

    def build():
      return load(data_dir=self.source, split=split, graph=self.variant,
                  limit=size)

    if not cache:
      return build()
    return storage.cached(self.name, split, spec, build, data_dir)


# CelebA-HQ in the CelebAMask-HQ layout: 30,000 1024 x 1024 JPEGs and an
# annotation file in the format of list_attr_celeba.txt.
HQ_IMAGE_DIR = "CelebA-HQ-img"
HQ_ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"


class CelebAHQ(base.Dataset):
  """The dataset entry of "celeba_hq/<graph>" (`ctfjax.data`).

  Settings: `source`, the folder of the CelebAMask-HQ download
  (`CelebA-HQ-img/`, `CelebAMask-HQ-attribute-anno.txt`), and `image_size`
  (default 64: the square images are resized with PIL's bilinear filter).
  CelebAMask-HQ has no official split: a file is in test, valid or train by
  `folder.split_of` of its name (crc32 mod 10: 0, 1, the rest).
  """

  EVALUATOR = "ctfjax.evaluate.datasets.attributes:Attributes"
  SETTINGS = ("source", "image_size", "params")
  value_names = VALUE_NAMES

  def __init__(self, name: str, *, source: str | None = None,
               image_size: int = 64, params=None):
    base.no_params(name, params)
    if not source:
      raise DataError(f"{name} needs source=<directory of the CelebAMask-HQ "
                      "download>")
    root = pathlib.Path(source).expanduser()
    need = [root / HQ_IMAGE_DIR, root / HQ_ATTRIBUTE_FILE]
    if not need[0].is_dir() or not need[1].is_file():
      raise DataError(f"CelebA-HQ not found in {str(root)!r}: it needs "
                      f"{HQ_IMAGE_DIR}/ and {HQ_ATTRIBUTE_FILE} "
                      "(the CelebAMask-HQ layout)")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or \
        not 8 <= image_size <= 1024:
      raise DataError(f"data.image_size must be an integer in 8..1024, got "
                      f"{image_size!r}")
    self.name, self.root, self.size = name, root.absolute(), image_size
    self.variant = name.split("/", 1)[1]
    if self.variant not in GRAPHS:
      raise DataError(f"unknown CelebA graph {self.variant!r}; expected one "
                      f"of {', '.join(GRAPHS)}")
    self.graph = GRAPHS[self.variant]
    self.kinds = {a: 2 for a in ATTRIBUTES[self.variant]}
    self.image_shape = (image_size, image_size, 3)

  def identity(self, split="train"):
    st = (self.root / HQ_ATTRIBUTE_FILE).stat()
    return {"source": [str(self.root), st.st_size, st.st_mtime_ns],
            "image_size": self.size, "version": VERSION}

  def load(self, split="train", size=None, *, data_dir=None, cache=True):
    from ctfjax.data import folder  # pylint: disable=g-import-not-at-top
    base.check_size(size)
    if split not in SPLITS:
      raise DataError(f"unknown CelebA-HQ split {split!r}; expected one of "
                      f"{', '.join(SPLITS)}")
    spec = {"name": self.name, "split": split, "size": size,
            **self.identity(split)}

    def build():
      names, files, values = read_attributes(self.root / HQ_ATTRIBUTE_FILE)
      missing = [a for a in self.kinds if a not in names]
      if missing:
        raise DataError(f"{self.root / HQ_ATTRIBUTE_FILE} has no attribute "
                        f"{missing[0]!r}")
      rows = [k for k, f in enumerate(files)
              if folder.split_of(f) == split][:size]
      convert = lambda img: folder.to_square(img.convert("RGB"), self.size)
      out = {"image": _read_images(self.root / HQ_IMAGE_DIR,
                                   [files[k] for k in rows], convert,
                                   self.size, HQ_ATTRIBUTE_FILE)}
      for a in self.kinds:
        out[a] = values[rows, names.index(a)].astype(np.int32)
      return out

    if not cache:
      return build()
    return storage.cached(self.name, split, spec, build, data_dir)
