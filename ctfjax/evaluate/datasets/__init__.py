"""One evaluator per dataset, registered by dataset name.

    from ctfjax.evaluate import datasets
    ev = datasets.evaluator("colored_mnist_bars/backdoor")
    ev.graph, ev.features, ev.interventions(labels, seed=0)

`base.DatasetEvaluator` lists what an evaluator supplies;
`usability(entry, ev.usable_bars)` judges a model's report entry against
its bars. Each dataset entry names its evaluator (`data.Dataset.EVALUATOR`,
a class here built on the entry), so a new dataset with a new evaluator is
one module here plus the entry's line; a real dataset with attribute labels
uses `attributes.Attributes`.
"""

from __future__ import annotations

from typing import Any, Mapping

from ctfjax import data
from ctfjax.evaluate.datasets.base import Bar, DatasetEvaluator, Reader
from ctfjax.evaluate.datasets.base import usability


def evaluator(dataset: str | Mapping[str, Any] | data.Dataset
              ) -> DatasetEvaluator:
  """The evaluator of a dataset: an entry, a config's `data` section, or
  the name of a dataset that needs no settings.

  Raises:
    UserError: the dataset cannot be resolved or has no evaluator.
  """
  if isinstance(dataset, str):
    dataset = data.dataset(dataset)
  elif not isinstance(dataset, data.Dataset):
    dataset = data.from_config(dataset)
  return dataset.evaluator()


__all__ = ["Bar", "DatasetEvaluator", "Reader", "evaluator", "usability"]
