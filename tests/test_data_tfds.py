"""tfds_source on tiny datasets that TFDS itself prepares, without TensorFlow.

The session fixture runs two GeneratorBasedBuilders defined here with
file_format="array_record" in a temporary data_dir: 48x40 RGB faces with
bool, int, float and array fields, and 28x28 grayscale digits with a
ClassLabel. Images go in as PIL images (TFDS then encodes them with PIL, not
TensorFlow) and as PNG, so what comes back must equal them exactly. TFDS
shuffles records when preparing, so rows are matched through an "id" field.
"""

import json
import shutil
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from ctfjax import data as ctfjax_data
from ctfjax.data import tfds_source
from ctfjax.data.errors import DataError

FACES = "ctfjax_tfds_faces"
DIGITS = "ctfjax_tfds_digits"
# Every scalar field of FACES, keyed as load returns them.
FACE_ATTRIBUTES = {"Smiling": "attributes/Smiling",
                   "Eyeglasses": "attributes/Eyeglasses",
                   "id": "id", "age": "age", "score": "score"}


def _faces(first_id, n, seed):
  rng = np.random.default_rng(seed)
  return {"id": np.arange(first_id, first_id + n, dtype=np.int32),
          "image": rng.integers(0, 256, (n, 48, 40, 3), dtype=np.uint8),
          "Smiling": rng.integers(0, 2, n).astype(bool),
          "Eyeglasses": rng.integers(0, 2, n).astype(bool),
          "age": rng.integers(18, 90, n),
          "score": rng.normal(size=n).astype(np.float32),
          "landmarks": rng.integers(0, 40, (n, 2), dtype=np.int32),
          "depth": rng.normal(size=(n, 6, 5, 1)).astype(np.float32),
          "flow": rng.integers(0, 256, (n, 6, 5, 2), dtype=np.uint8)}


def _digits(n, seed):
  rng = np.random.default_rng(seed)
  return {"id": np.arange(n, dtype=np.int32),
          "image": rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
          "label": rng.integers(0, 10, n)}


# What the builders write, per split; ids are unique across splits.
FACE_DATA = {"train": _faces(0, 24, seed=1), "test": _faces(100, 8, seed=2)}
DIGIT_DATA = {"train": _digits(30, seed=3)}


class CtfjaxTfdsFaces(tfds.core.GeneratorBasedBuilder):
  """48x40 RGB PNGs with nested bools, an int, a float and arrays."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(48, 40, 3), encoding_format="png"),
        "attributes": {"Smiling": np.bool_, "Eyeglasses": np.bool_},
        "id": np.int32,
        "age": np.int64,
        "score": np.float32,
        "landmarks": tfds.features.Tensor(shape=(2,), dtype=np.int32),
        # Rank 3 like an image, but float and two-channel: not images.
        "depth": tfds.features.Tensor(shape=(6, 5, 1), dtype=np.float32),
        "flow": tfds.features.Tensor(shape=(6, 5, 2), dtype=np.uint8),
    })
    # Not dataset_info_from_configs: it reads metadata beside the module.
    return tfds.core.DatasetInfo(builder=self, features=features)

  def _split_generators(self, dl_manager):
    return {s: self._generate_examples(d) for s, d in FACE_DATA.items()}

  def _generate_examples(self, d):
    for k in range(len(d["id"])):
      yield int(d["id"][k]), {
          "image": Image.fromarray(d["image"][k]),
          "attributes": {"Smiling": d["Smiling"][k],
                         "Eyeglasses": d["Eyeglasses"][k]},
          "id": d["id"][k], "age": d["age"][k], "score": d["score"][k],
          "landmarks": d["landmarks"][k], "depth": d["depth"][k],
          "flow": d["flow"][k]}


class CtfjaxTfdsDigits(tfds.core.GeneratorBasedBuilder):
  """28x28 grayscale PNGs with a ClassLabel, like TFDS's mnist."""

  VERSION = tfds.core.Version("2.0.0")

  def _info(self):
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(28, 28, 1), encoding_format="png"),
        "label": tfds.features.ClassLabel(num_classes=10),
        "id": np.int32,
    })
    return tfds.core.DatasetInfo(builder=self, features=features)

  def _split_generators(self, dl_manager):
    return {s: self._generate_examples(d) for s, d in DIGIT_DATA.items()}

  def _generate_examples(self, d):
    for k in range(len(d["id"])):
      yield int(d["id"][k]), {"image": Image.fromarray(d["image"][k, ..., 0]),
                              "label": d["label"][k], "id": d["id"][k]}


class CtfjaxTfdsBroken(tfds.core.GeneratorBasedBuilder):
  """Three records whose second image is not a PNG (TFDS stores bytes as is)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 3), encoding_format="png")})
    return tfds.core.DatasetInfo(builder=self, features=features)

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    good = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    for k, image in enumerate((good, b"not a png", good)):
      yield k, {"image": image}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  for cls in (CtfjaxTfdsFaces, CtfjaxTfdsDigits, CtfjaxTfdsBroken):
    cls(data_dir=str(root), file_format="array_record").download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return root


def _rows(data, ids):
  """Rows of the generated `data` in the order of `ids`."""
  index = {int(i): k for k, i in enumerate(data["id"])}
  return [index[int(i)] for i in ids]


def _faces_load(data_dir, split="train", **kwargs):
  kwargs.setdefault("image_size", 40)
  return tfds_source.load(FACES, data_dir, split, "image", FACE_ATTRIBUTES,
                          **kwargs)


def test_reads_back_exactly_what_the_builder_wrote(data_dir, monkeypatch):
  # Blocks of 5 records: several blocks, on threads where there are cores.
  monkeypatch.setattr(tfds_source, "_BLOCK", 5)
  for split, data in FACE_DATA.items():
    ds = _faces_load(data_dir, split)
    n = len(data["id"])
    assert set(ds) == {"image", *FACE_ATTRIBUTES}
    assert ds["image"].shape == (n, 40, 40, 3)
    assert ds["image"].dtype == np.uint8
    assert sorted(ds["id"]) == list(data["id"])
    rows = _rows(data, ds["id"])
    # 48x40 -> the centred 40x40 square (rows 4..43), resized to itself.
    np.testing.assert_array_equal(ds["image"], data["image"][rows, 4:44])
    for key in ("Smiling", "Eyeglasses", "age"):
      assert ds[key].dtype == np.int32
      np.testing.assert_array_equal(ds[key], data[key][rows])
    assert ds["score"].dtype == np.float32
    np.testing.assert_array_equal(ds["score"], data["score"][rows])
  # Random access through array_record alone: TensorFlow never came in
  # (it is not a dependency; where a user has it, it must still stay out).
  assert "tensorflow" not in sys.modules


def test_centre_crop_and_resize_are_pil_bilinear(data_dir):
  data = FACE_DATA["train"]
  for crop, size, (top, left) in ((None, 16, (4, 0)), (30, 20, (9, 5))):
    ds = _faces_load(data_dir, image_size=size, crop=crop)
    side = crop or 40
    for k, row in enumerate(_rows(data, ds["id"])):
      square = data["image"][row, top:top + side, left:left + side]
      expected = Image.fromarray(square).resize(
          (size, size), Image.Resampling.BILINEAR)
      np.testing.assert_array_equal(ds["image"][k], np.asarray(expected))


def test_grayscale_images_and_class_labels(data_dir):
  data = DIGIT_DATA["train"]
  ds = tfds_source.load(DIGITS, data_dir, "train", "image",
                        {"digit": "label", "id": "id"}, image_size=28)
  rows = _rows(data, ds["id"])
  assert ds["image"].shape == (30, 28, 28, 1)
  np.testing.assert_array_equal(ds["image"], data["image"][rows])
  assert ds["digit"].dtype == np.int32
  np.testing.assert_array_equal(ds["digit"], data["label"][rows])


def test_limit_slices_and_versions_keep_the_stored_order(data_dir):
  full = _faces_load(data_dir)
  for ds in (_faces_load(data_dir, limit=5),
             _faces_load(data_dir, "train[:5]")):
    for key in full:
      np.testing.assert_array_equal(ds[key], full[key][:5])
  pinned = tfds_source.load(FACES + ":1.0.0", data_dir, "train", "image",
                            {"id": "id"}, image_size=40)
  np.testing.assert_array_equal(pinned["id"], full["id"])
  both = _faces_load(data_dir, "train+test")
  assert sorted(both["id"]) == [*FACE_DATA["train"]["id"],
                                *FACE_DATA["test"]["id"]]


def _tfrecord_copy(data_dir, tmp_path):
  """The faces dataset, its dataset_info.json saying tfrecord."""
  shutil.copytree(data_dir / FACES, tmp_path / FACES)
  path = tmp_path / FACES / "1.0.0" / "dataset_info.json"
  info = json.loads(path.read_text())
  info["fileFormat"] = "tfrecord"
  path.write_text(json.dumps(info))
  return tmp_path


@pytest.mark.parametrize("change, message", [
    (dict(data_dir="missing"), "data_dir '.*missing' does not exist"),
    (dict(name="celeb_a"), "no prepared TFDS dataset 'celeb_a' in .* holds: "
     f"ctfjax_tfds_broken:1.0.0, {DIGITS}:2.0.0, {FACES}:1.0.0$"),
    (dict(name="ctfjax_tfds_broken", attributes={}), "cannot read records 0-2 "
     "of tfds:ctfjax_tfds_broken split 'train': .*"),
    (dict(name=FACES + ":9.9.9"), f"no prepared TFDS dataset '{FACES}:9.9.9'"),
    (dict(split="valid"), "no split 'valid'; its splits: train, test$"),
    (dict(split="train[:x]"), "bad split 'train\\[:x\\]'"),
    (dict(image_field="picture"), "no field 'picture'; its fields: "
     "age, attributes/Eyeglasses, attributes/Smiling, depth, flow, id, image, "
     "landmarks, score$"),
    (dict(image_field="score"), "'score' is float32 of shape \\(\\), not a "
     "uint8 image"),
    (dict(image_field="depth"), "'depth' is float32 of shape \\(6, 5, 1\\), "
     "not a uint8 image"),
    (dict(image_field="flow"), "'flow' is uint8 of shape \\(6, 5, 2\\), not a "
     "uint8 image \\[H, W, C\\] with C in \\{1, 3, 4\\}$"),
    (dict(attributes={"smile": "Smiling"}), "no field 'Smiling'"),
    (dict(attributes={"l": "landmarks"}), "'landmarks' is int32 of shape "
     "\\(2,\\); an attribute must be a scalar"),
    (dict(attributes={"x": "image"}), "'image' is uint8 of shape"),
    (dict(image_size=0), "image_size must be a positive integer, got 0"),
    (dict(limit=True), "limit must be a positive integer or None"),
    (dict(crop=41), "record 0: image of size 40x48 is smaller than the "
     "41-pixel centre crop"),
    (dict(data_dir="tfrecord"), "stored as tfrecord, which has no random "
     "access; prepare it again with file_format='array_record'"),
])
def test_one_line_errors(data_dir, tmp_path, change, message):
  args = dict(name=FACES, data_dir=data_dir, split="train",
              image_field="image", attributes={"id": "id"}, image_size=40)
  args.update(change)
  if args["data_dir"] == "missing":
    args["data_dir"] = tmp_path / "missing"
  elif args["data_dir"] == "tfrecord":
    args["data_dir"] = _tfrecord_copy(data_dir, tmp_path)
  with pytest.raises(DataError, match=message) as e:
    tfds_source.load(**args)
  assert "\n" not in str(e.value)


def test_missing_packages_name_the_install(data_dir, monkeypatch):
  args = (FACES, data_dir, "train", "image", {}, 8)
  with monkeypatch.context() as m:
    m.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(DataError, match="need tensorflow-datasets, which is "
                       "not installed: pip install tensorflow-datasets=="):
      tfds_source.load(*args)

  class Missing:  # TFDS's lazy import of array_record, when it is absent.
    def __getattr__(self, attr):
      raise ModuleNotFoundError("No module named 'array_record'")

  from tensorflow_datasets.core.data_sources import array_record
  monkeypatch.setattr(array_record, "array_record_data_source", Missing())
  with pytest.raises(DataError, match="need array_record, which is not "
                     "installed: pip install .*array_record=="):
    tfds_source.load(*args)


def test_the_registry_entry_reads_a_tfds_dataset_as_a_dataset(data_dir,
                                                              tmp_path):
  entry = ctfjax_data.dataset(
      f"tfds:{FACES}", source=str(data_dir), graph="age -> Smiling; Eyeglasses",
      attributes={"Smiling": 2, "Eyeglasses": 2, "age": "continuous"},
      fields={"Smiling": "attributes/Smiling",
              "Eyeglasses": "attributes/Eyeglasses"}, image_size=40)
  assert list(entry.kinds) == ["age", "Smiling", "Eyeglasses"]
  ages = FACE_DATA["train"]["age"]
  assert entry.kinds["age"]["loc"] == pytest.approx(ages.mean())
  assert entry.kinds["age"]["scale"] == pytest.approx(ages.std(), rel=1e-5)
  assert entry.image_shape == (40, 40, 3)
  ds = entry.load("test", data_dir=str(tmp_path))
  direct = _faces_load(data_dir, "test")
  for key in ("image", "Smiling", "Eyeglasses", "age"):
    np.testing.assert_array_equal(ds[key], direct[key])
  # A config's data section resolves to the same entry.
  again = ctfjax_data.from_config({"name": f"tfds:{FACES}", "seed": 0,
                            "source": str(data_dir), "image_size": 40,
                            "graph": entry.graph,
                            "attributes": {"Smiling": 2, "Eyeglasses": 2,
                                           "age": "continuous"},
                            "fields": entry.fields})
  assert again.kinds == entry.kinds
  with pytest.raises(DataError, match="data.graph names 'Bald'"):
    ctfjax_data.dataset(f"tfds:{FACES}", source=str(data_dir), graph="Bald",
                 attributes={"Smiling": 2})
  with pytest.raises(DataError, match="number of classes >= 2"):
    ctfjax_data.dataset(f"tfds:{FACES}", source=str(data_dir), graph="age",
                 attributes={"age": "categorical"})
