"""CelebA loader on a small synthetic download in the official layout.

The fixture writes random 178x218 JPEGs, list_attr_celeba.txt (count line,
the 40 official attribute names, `filename  1 -1 ...` rows with the official
double-space alignment) and list_eval_partition.txt.
"""

import numpy as np
import pytest
from PIL import Image

from ctfjax import causal as cc
from ctfjax import data
from ctfjax.data import celeba
from ctfjax.data import folder  # noqa: F401 (data.folder in a test)
from ctfjax.data.errors import DataError

NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs "
    "Big_Lips Big_Nose Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows "
    "Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns "
    "Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
# Partition of the 12 fixture images: 6 train, 2 valid, 4 test, interleaved.
SPLIT_OF = [0, 0, 1, 0, 2, 0, 0, 2, 1, 2, 0, 2]


def _write_download(root, n=len(SPLIT_OF), seed=0):
  rng = np.random.default_rng(seed)
  (root / "img_align_celeba").mkdir(parents=True)
  files = [f"{k + 1:06d}.jpg" for k in range(n)]
  signs = rng.choice([-1, 1], size=(n, len(NAMES)))
  for f in files:
    pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "img_align_celeba" / f, quality=90)
  rows = [f + " " + "".join(f"{v:3d}" for v in s)
          for f, s in zip(files, signs)]
  (root / "list_attr_celeba.txt").write_text(
      f"{n}\n" + " ".join(NAMES) + " \n" + "\n".join(rows) + "\n")
  (root / "list_eval_partition.txt").write_text(
      "".join(f"{f} {s}\n" for f, s in zip(files, SPLIT_OF)))
  return files, signs


@pytest.fixture
def download(tmp_path):
  files, signs = _write_download(tmp_path)
  return tmp_path, files, signs


def test_splits_attributes_and_images(download):
  root, files, signs = download
  for split, code in celeba.SPLITS.items():
    ds = celeba.load(root, split, graph="complex")
    idx = [k for k, s in enumerate(SPLIT_OF) if s == code]
    assert ds["image"].shape == (len(idx), 64, 64, 3)
    assert ds["image"].dtype == np.uint8
    assert set(ds) == {"image", *celeba.ATTRIBUTES["complex"]}
    for a in celeba.ATTRIBUTES["complex"]:
      assert ds[a].dtype == np.int32
      # -1 -> 0, 1 -> 1, rows in partition-file order.
      np.testing.assert_array_equal(ds[a], signs[idx, NAMES.index(a)] > 0)


def test_images_are_centre_crop_150_resized_to_64(download):
  root, files, _ = download
  ds = celeba.load(root, "valid", graph="simple")
  with Image.open(root / "img_align_celeba" / files[2]) as im:
    expected = np.asarray(im.convert("RGB").crop((14, 34, 164, 184)).resize(
        (64, 64), Image.Resampling.BILINEAR))
  np.testing.assert_array_equal(ds["image"][0], expected)


def test_graphs_parse_over_their_attributes():
  for name, text in celeba.GRAPHS.items():
    g = cc.Graph.parse(text)
    assert set(g.nodes) == set(celeba.ATTRIBUTES[name])
  assert cc.Graph.parse(celeba.GRAPHS["simple"]).directed == frozenset()
  complex_ = cc.Graph.parse(celeba.GRAPHS["complex"])
  assert complex_.directed == {(p, c) for p in ("Young", "Male")
                               for c in ("No_Beard", "Bald")}
  paper = cc.Graph.parse(celeba.GRAPHS["paper"])
  assert paper.bidirected == {frozenset(("Male", "Young"))}
  assert paper.directed == {("Young", "Gray_Hair")}


def test_limit_keeps_the_first_images(download):
  root, _, signs = download
  ds = celeba.load(root, "train", graph="paper", limit=2)
  assert ds["image"].shape[0] == 2
  np.testing.assert_array_equal(ds["Gray_Hair"],
                                signs[[0, 1], NAMES.index("Gray_Hair")] > 0)
  with pytest.raises(DataError, match="limit must be a positive integer"):
    celeba.load(root, "train", limit=0)


def test_registry_loads_celeba(download, tmp_path):
  root, _, _ = download
  ds = data.load("celeba/paper", split="test", source=str(root), size=3,
                 data_dir=str(tmp_path / "cache"))
  assert ds["image"].shape == (3, 64, 64, 3)
  assert set(ds) == {"image", "Male", "Young", "Gray_Hair"}


@pytest.mark.parametrize("remove", [
    "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"])
def test_missing_download_files_say_where_to_put_what(download, remove):
  root, _, _ = download
  path = root / remove
  if path.is_dir():
    for f in path.iterdir():
      f.unlink()
    path.rmdir()
  else:
    path.unlink()
  with pytest.raises(DataError) as e:
    celeba.load(root, "train")
  msg = str(e.value)
  assert "\n" not in msg
  assert f"missing {remove}" in msg
  assert str(root / "img_align_celeba") in msg
  assert "list_attr_celeba.txt" in msg and "list_eval_partition.txt" in msg
  assert "manually" in msg and celeba.OFFICIAL_PAGE in msg


def test_missing_directory(tmp_path):
  with pytest.raises(DataError, match="CelebA not found in .*nowhere"):
    celeba.load(tmp_path / "nowhere", "test")


def test_missing_and_corrupt_images(download):
  root, files, _ = download
  (root / "img_align_celeba" / files[4]).unlink()
  with pytest.raises(DataError, match=f"{files[4]} .* is missing"):
    celeba.load(root, "test")
  (root / "img_align_celeba" / files[2]).write_bytes(b"not a jpeg")
  with pytest.raises(DataError, match=f"cannot decode .*{files[2]}"):
    celeba.load(root, "valid")
  Image.new("RGB", (100, 218)).save(root / "img_align_celeba" / files[2])
  with pytest.raises(DataError, match="smaller than the 150-pixel"):
    celeba.load(root, "valid")


@pytest.mark.parametrize("split, graph, match", [
    ("validation", "simple", "unknown CelebA split 'validation'"),
    ("train", "full", "unknown CelebA graph 'full'"),
])
def test_bad_split_or_graph(download, split, graph, match):
  root, _, _ = download
  with pytest.raises(DataError, match=match):
    celeba.load(root, split, graph=graph)


def test_malformed_annotation_files(download):
  root, _, _ = download
  attr = root / "list_attr_celeba.txt"
  good = attr.read_text().splitlines()
  attr.write_text("\n".join(good[:3] + [good[3].replace("-1", " 0", 1)] +
                            good[4:]) + "\n")
  with pytest.raises(DataError, match=r"list_attr_celeba.txt:4: .* got '0'"):
    celeba.load(root, "train")
  attr.write_text("\n".join(good[:-1]) + "\n")
  with pytest.raises(DataError, match="announces 12 images but lists 11"):
    celeba.load(root, "train")
  attr.write_text("\n".join([good[0], good[1].replace("Smiling", "Smile")] +
                            good[2:]) + "\n")
  with pytest.raises(DataError, match="no attribute 'Smiling'"):
    celeba.load(root, "train", graph="simple")
  part = root / "list_eval_partition.txt"
  part.write_text("000001.jpg 3\n")
  with pytest.raises(DataError, match=r"list_eval_partition.txt:1: expected"):
    celeba.load(root, "train")


def test_celeba_hq_in_the_celebamask_hq_layout(tmp_path):
  root, n = tmp_path / "hq", 40
  (root / celeba.HQ_IMAGE_DIR).mkdir(parents=True)
  rng = np.random.default_rng(1)
  files = [f"{k}.jpg" for k in range(n)]
  pixels = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
  for f, px in zip(files, pixels):
    Image.fromarray(px).save(root / celeba.HQ_IMAGE_DIR / f, quality=95)
  signs = rng.choice([-1, 1], size=(n, len(NAMES)))
  (root / celeba.HQ_ATTRIBUTE_FILE).write_text(
      f"{n}\n" + " ".join(NAMES) + "\n" + "\n".join(
          f + " " + " ".join(str(v) for v in s)
          for f, s in zip(files, signs)) + "\n")
  entry = data.dataset("celeba_hq/paper", source=str(root), image_size=32)
  assert entry.image_shape == (32, 32, 3)
  assert entry.graph == "Male <-> Young; Young -> Gray_Hair"
  seen = 0
  for split in celeba.SPLITS:
    ds = entry.load(split, cache=False)
    rows = [k for k, f in enumerate(files)
            if data.folder.split_of(f) == split]
    seen += len(rows)
    assert ds["image"].shape == (len(rows), 32, 32, 3)
    for a in ("Male", "Young", "Gray_Hair"):
      np.testing.assert_array_equal(
          ds[a], (signs[rows, NAMES.index(a)] > 0).astype(np.int32))
    if rows:  # Decoded, then resized with PIL's bilinear filter.
      with Image.open(root / celeba.HQ_IMAGE_DIR / files[rows[0]]) as img:
        want = np.asarray(img.convert("RGB").resize((32, 32),
                                                    Image.BILINEAR))
      np.testing.assert_array_equal(ds["image"][0], want)
  assert seen == n
  with pytest.raises(DataError, match="CelebAMask-HQ layout"):
    data.dataset("celeba_hq/simple", source=str(tmp_path))
