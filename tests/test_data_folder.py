"""The `folder` dataset: any images with an attribute table and a diagram."""

import csv
import pathlib

import jax
import numpy as np
import pytest
from PIL import Image

from ctfjax import data
from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.data import folder

BACKDOOR = "colored_mnist_bars/backdoor"
TRUE_GRAPH = "D <-> C; D -> B; C -> B"
SIZES = {"train": 64, "test": 32}
COLOURS = ("green", "red")


def export(root: pathlib.Path, names=("D", "C", "B"), colour_words=False,
           split_column=True) -> dict:
  """Writes the built-in backdoor Colored MNIST's first SIZES images of
  each split as PNG files plus attributes.csv; returns the arrays."""
  root.mkdir(parents=True, exist_ok=True)
  rows, arrays = [], {}
  for split, n in SIZES.items():
    ds = data.load(BACKDOOR, split, size=n)
    arrays[split] = ds
    for i in range(n):
      file = f"{split}/{i:05d}.png"
      (root / split).mkdir(exist_ok=True)
      Image.fromarray(np.asarray(ds["image"][i])).save(root / file)
      c = int(ds["C"][i])
      row = {"file": file, names[0]: int(ds["D"][i]),
             names[1]: COLOURS[c] if colour_words else c,
             names[2]: int(ds["B"][i])}
      if split_column:
        row["split"] = split
      rows.append(row)
  with open(root / folder.TABLE, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return arrays


def settings(root, **changes):
  out = {"source": str(root), "graph": TRUE_GRAPH, "image_size": 32,
         "attributes": {"D": "categorical", "C": "categorical",
                        "B": "categorical"}}
  out.update(changes)
  return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  root = tmp_path_factory.mktemp("folder") / "colored"
  return root, export(root)


def test_an_exported_folder_loads_exactly_the_built_in_data(exported,
                                                            tmp_path):
  root, arrays = exported
  entry = data.dataset("folder", **settings(root))
  assert entry.kinds == {"D": 10, "C": 2, "B": 2}  # parents before children
  assert entry.image_shape == (32, 32, 3)
  assert entry.value_names["D"] == tuple(str(d) for d in range(10))
  for split, want in arrays.items():
    got = entry.load(split, data_dir=str(tmp_path))
    for k in ("image", "D", "C", "B"):
      np.testing.assert_array_equal(got[k], want[k])
  # From a config's data section, as the pipeline resolves it.
  section = {"name": "folder", "seed": 0, "size": 0, **settings(root)}
  again = data.from_config(section)
  assert again.kinds == entry.kinds and again.graph == TRUE_GRAPH


def test_the_example_config_reads_words_and_listed_values(tmp_path):
  root = tmp_path / "words"
  arrays = export(root, names=("digit", "colour", "bar"), colour_words=True,
                  split_column=False)
  config = train.load_config("examples/folder_config.py:tiny",
                             [f"data.source={root}"])
  entry = fit.dataset_of(config)
  assert entry.value_names["colour"] == COLOURS  # the listed order
  assert entry.kinds == {"digit": 10, "colour": 2, "bar": 2}
  # No split column: the split is a function of the file name.
  files = [f for f in entry.files if folder.split_of(f) == "test"]
  test = entry.load("test", cache=False)
  assert len(test["image"]) == len(files)
  by_file = {f"{s}/{i:05d}.png": (s, i) for s, n in SIZES.items()
             for i in range(n)}
  s, i = by_file[files[0]]
  np.testing.assert_array_equal(test["image"][0], arrays[s]["image"][i])
  assert test["colour"][0] == arrays[s]["C"][i]


def test_centre_crop_and_resize(tmp_path):
  img = np.zeros((40, 60, 3), np.uint8)
  img[:, 10:50] = 200  # the centred 40 x 40 square
  out = folder.to_square(Image.fromarray(img), 20)
  assert out.shape == (20, 20, 3) and np.all(out == 200)
  same = folder.to_square(Image.fromarray(img[:, 10:50]), 40)
  np.testing.assert_array_equal(same, img[:, 10:50])  # no resampling


@pytest.mark.slow
def test_training_from_the_folder_equals_training_from_the_built_in_loader(
    exported, tmp_path):
  root, _ = exported
  base = train.load_config("configs/quickstart.py:tiny",
                           {"data.size": SIZES["train"], "train.steps": 3,
                            "eval.num_examples": SIZES["test"]})
  mine = base.copy_and_resolve_references()
  mine.data.name = "folder"
  for key, value in settings(root).items():
    mine.data[key] = value
  _, a = fit.train_and_evaluate(base, tmp_path / "built_in")
  _, b = fit.train_and_evaluate(mine, tmp_path / "folder")
  pa, pb = (jax.device_get(train.model_params(r.state)) for r in (a, b))
  assert jax.tree.structure(pa) == jax.tree.structure(pb)
  for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_array_equal(x, y)
  assert a.eval_metrics == b.eval_metrics


def _write(root, rows, header=None):
  root.mkdir(parents=True, exist_ok=True)
  with open(root / folder.TABLE, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header or list(rows[0]))
    w.writerows([list(r.values()) for r in rows])


def _images(root, n, mode="RGB", size=(8, 8)):
  for i in range(n):
    Image.new(mode, size, i * 20).save(root / f"{i}.png")


def _rows(n, **columns):
  return [{"file": f"{i}.png", **{k: v(i) for k, v in columns.items()},
           "split": "test" if i % 4 == 0 else "train"} for i in range(n)]


BAD = {
    "no table": (lambda r: r.mkdir(), {}, "has no attributes.csv"),
    "no file column": (
        lambda r: _write(r, [{"name": "a.png", "A": 1}]), {},
        "has no 'file' column; its columns: name, A"),
    "absent image": (
        lambda r: (_write(r, _rows(8, A=lambda i: i % 2)), _images(r, 7)), {},
        "image 7.png listed in attributes.csv is missing"),
    "unreadable image": (
        lambda r: (_write(r, _rows(8, A=lambda i: i % 2)), _images(r, 8),
                   (r / "3.png").write_text("not an image")), {},
        "image 3.png cannot be read as an image"),
    "unknown column in the diagram": (
        lambda r: (_write(r, _rows(8, A=lambda i: i % 2)), _images(r, 8)),
        {"graph": "A -> Z"}, "data.graph names 'Z'"),
    "undeclared column": (
        lambda r: (_write(r, _rows(8, A=lambda i: i % 2)), _images(r, 8)),
        {"attributes": {"A": "categorical", "Q": "continuous"},
         "graph": "A -> Q"}, "attribute 'Q' is not a column"),
    "single value": (
        lambda r: (_write(r, _rows(8, A=lambda i: 1)), _images(r, 8)), {},
        "attribute 'A' has a single value '1'"),
    "non-number": (
        lambda r: (_write(r, _rows(8, A=lambda i: "x" if i == 5 else i)),
                   _images(r, 8)),
        {"attributes": {"A": "continuous"}},
        "continuous column 'A' has 'x' (row 7, file 5.png)"),
    "value not listed": (
        lambda r: (_write(r, _rows(8, A=lambda i: i % 3)), _images(r, 8)),
        {"attributes": {"A": ["0", "1"]}},
        "value '2' of column 'A' (row 4, file 2.png) is not one of"),
    "mixed modes": (
        lambda r: (_write(r, _rows(8, A=lambda i: i % 2)), _images(r, 4),
                   [Image.new("L", (8, 8)).save(r / f"{i}.png")
                    for i in range(4, 8)]), {},
        "mixed image modes: 4.png is L, 0.png is RGB"),
    "empty split": (
        lambda r: (_write(r, [{**x, "split": "train"} for x in
                              _rows(8, A=lambda i: i % 2)]), _images(r, 8)),
        {}, "the test split of"),
    "unknown split": (
        lambda r: (_write(r, [{**x, "split": "dev"} for x in
                              _rows(8, A=lambda i: i % 2)]), _images(r, 8)),
        {}, "split 'dev' (row 2, file 0.png) is not one of"),
    "bad kind": (
        lambda r: (_write(r, _rows(8, A=lambda i: i % 2)), _images(r, 8)),
        {"attributes": {"A": "ordinal"}}, "data.attributes.A must be"),
    "bad image size": (
        lambda r: (_write(r, _rows(8, A=lambda i: i % 2)), _images(r, 8)),
        {"image_size": 3}, "data.image_size must be an integer in 8..1024"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_folders_are_one_line_errors(tmp_path, case):
  make, changes, pattern = BAD[case]
  root = tmp_path / "f"
  make(root)
  args = {"source": str(root), "graph": "A",
          "attributes": {"A": "categorical"}, "image_size": 8, **changes}
  with pytest.raises(data.DataError) as info:
    data.dataset("folder", **args)
  message = str(info.value)
  assert pattern in message and "\n" not in message, message


def test_a_good_small_folder_and_a_continuous_attribute(tmp_path):
  root = tmp_path / "f"
  _write(root, _rows(8, A=lambda i: i % 2, age=lambda i: 20 + i))
  _images(root, 8, mode="L", size=(12, 8))
  entry = data.dataset("folder", source=str(root), graph="age -> A",
                       attributes={"A": "categorical", "age": "continuous"},
                       image_size=8)
  assert list(entry.kinds) == ["age", "A"]
  train_ages = np.array([20 + i for i in range(8) if i % 4])
  assert entry.kinds["age"] == {"kind": "continuous",
                                "loc": pytest.approx(train_ages.mean()),
                                "scale": pytest.approx(train_ages.std())}
  ds = entry.load("train", cache=False)
  assert ds["image"].shape == (6, 8, 8, 1)
  np.testing.assert_array_equal(ds["age"], train_ages.astype(np.float32))
  # The ANCM's feature model reads the kinds.
  graph, kinds = fit.features(entry)
  assert graph.parents("A") == ("age",)
  assert kinds["A"] == 2 and kinds["age"].loc == pytest.approx(
      train_ages.mean())
