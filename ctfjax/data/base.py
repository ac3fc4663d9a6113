"""What a dataset is: one object owning everything dataset-specific.

A `Dataset` is resolved once from a name and its settings
(`ctfjax.data.dataset(name, ...)` or `ctfjax.data.from_config(config.data)`)
and the pipeline asks it, never the name again:

* `load(split, size)`: the images and the attribute labels of a split;
* `graph` and `kinds`: the causal diagram over the attributes and each
  attribute's kind (an int K: categorical with values 0..K-1; otherwise a
  kind spec {"kind": name of `ctfjax.causal.kinds.KINDS`, **fields}, or a
  kind object);
* `image_shape`: (H, W, C);
* `generator`, `counterfactual`, `feature_scm`: the ground truth, where the
  dataset has one (synthetic sets); real data raises a `DataError`;
* `display()`: how `data.show` groups and labels samples;
* `evaluator()`: its evaluator (`ctfjax.evaluate.datasets`), imported only
  when asked for, so the data package never imports neural code.

A new dataset is one module defining a subclass plus one line in
`ctfjax.data.REGISTRY`.
"""

from __future__ import annotations

import abc
import importlib
import zlib
from typing import Any, Mapping

import numpy as np

from ctfjax.data.errors import DataError


def stream_seed(name: str, split: str, seed: int) -> int:
  """Distinct random streams per dataset and split from one user seed."""
  entropy = [seed, zlib.crc32(name.encode()), zlib.crc32(split.encode())]
  return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def check_seed(seed: Any) -> int:
  """A generation seed: a non-negative integer."""
  if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise DataError(f"seed must be a non-negative integer, got {seed!r}")
  return seed


def check_size(size: Any) -> int | None:
  """A number of examples: None (all) or a positive integer."""
  if size is not None and (isinstance(size, bool) or
                           not isinstance(size, int) or size < 1):
    raise DataError(f"size must be a positive integer, got {size!r}")
  return size


def diagram(graph: Any, attributes: Mapping[str, Any]):
  """The parsed `graph`, whose nodes must be exactly the declared
  `attributes` (a `DataError` naming the first one that is not)."""
  from ctfjax.causal.graph import Graph, GraphError  # pylint: disable=g-import-not-at-top
  if not graph or not isinstance(graph, str):
    raise DataError("data.graph must be the diagram over "
                    f"{', '.join(attributes)} (e.g. 'A -> B; C')")
  try:
    parsed = Graph.parse(graph)
  except GraphError as e:
    raise DataError(f"data.graph: {e}") from None
  for n in parsed.nodes:
    if n not in attributes:
      raise DataError(f"data.graph names '{n}', which is not a declared "
                      f"attribute ({', '.join(attributes)})")
  for a in attributes:
    if a not in parsed.nodes:
      raise DataError(f"attribute '{a}' is not in data.graph {graph!r}")
  return parsed


def no_params(name: str, params: Any) -> None:
  """Real data takes no generator parameters."""
  if params:
    raise DataError(f"{name} takes no generator parameters")


class Dataset(abc.ABC):
  """The base of every dataset entry (see the module docstring).

  Subclasses set the class attributes and implement `load` and `identity`;
  the ground-truth methods default to a `DataError` saying the data is real.

  Attributes:
    name: the name it was resolved from (e.g. "colored_mnist_bars/backdoor",
      "folder", "tfds:celeb_a").
    graph: the diagram over the attributes (`ctfjax.causal.Graph.parse`
      syntax).
    kinds: {attribute: int K or kind spec}, parents before children.
    image_shape: (H, W, C).
    value_names: {attribute: names of its values 0..K-1} for captions and
      figures (categorical attributes only; may be empty).
    EVALUATOR: "module:Class" of its evaluator, or "" for none.
    SETTINGS: the `config.data` fields besides `name` that define it (read
      by `from_config`); a field it does not list is not passed.
  """

  name: str
  graph: str
  kinds: dict[str, Any]
  image_shape: tuple[int, int, int]
  value_names: Mapping[str, tuple[str, ...]] = {}
  EVALUATOR: str = ""
  SETTINGS: tuple[str, ...] = ("seed", "source", "params")

  @property
  def attributes(self) -> tuple[str, ...]:
    """The attribute names, parents before children."""
    return tuple(self.kinds)

  @abc.abstractmethod
  def load(self, split: str = "train", size: int | None = None, *,
           data_dir: str | None = None, cache: bool = True
           ) -> dict[str, Any]:
    """{"image": uint8 [N, H, W, C], one [N] array per attribute, and for
    synthetic sets "exogenous": {name: array}} of one split.

    Args:
      split: "train", "test" (and "valid" where the dataset has one).
      size: the first `size` examples; None for the whole split.
      data_dir: cache folder; default `ctfjax.data.data_dir()`.
      cache: False computes in memory without touching the cache.
    """

  @abc.abstractmethod
  def identity(self, split: str = "train") -> dict[str, Any]:
    """JSON-able fields that change whenever `load(split)` would: what a
    network trained on the split (an evaluator's reader) is cached by."""

  def generator(self, split: str = "train"):
    """The ground-truth generator (ASCM) of a split."""
    raise DataError(f"{self.name!r} has no ground-truth generator (real "
                    "data)")

  def counterfactual(self, batch: Mapping[str, Any], do: Mapping[str, Any],
                     split: str = "train") -> dict[str, Any]:
    """The TRUE counterfactual of loaded samples under do()."""
    raise DataError(f"{self.name!r} is real data: it has no true "
                    "counterfactuals")

  def feature_scm(self):
    """The exact feature-level `cc.DiscreteSCM`."""
    raise DataError(f"{self.name!r} has no exact discrete feature SCM")

  def display(self) -> dict[str, Any]:
    """{"group_by", "sort_by", "value_names", "graph"} for `data.show`."""
    return {"group_by": None, "sort_by": None,
            "value_names": dict(self.value_names), "graph": self.graph}

  def evaluator(self):
    """Its `ctfjax.evaluate.datasets.DatasetEvaluator`, built on `self`."""
    if not self.EVALUATOR:
      raise DataError(f"dataset {self.name!r} has no evaluator")
    module, _, cls = self.EVALUATOR.partition(":")
    return getattr(importlib.import_module(module), cls)(self)
