"""One evaluator per dataset, registered by dataset name.

    from ctfjax.evaluate import datasets
    ev = datasets.evaluator("colored_mnist_bars/backdoor")
    ev.graph, ev.features, ev.interventions(labels, seed=0)

`base.DatasetEvaluator` lists what an evaluator supplies. A new dataset is
one module here defining it, plus one line in `EVALUATORS` mapping the
dataset names it covers to its constructor (called with the name).
"""

from __future__ import annotations

from typing import Callable

from ctfjax import data
from ctfjax.errors import UserError
from ctfjax.evaluate.datasets import colored_mnist
from ctfjax.evaluate.datasets import morpho_mnist
from ctfjax.evaluate.datasets.base import DatasetEvaluator, Reader

# Dataset name -> constructor of its evaluator.
EVALUATORS: dict[str, Callable[[str], DatasetEvaluator]] = {
    **dict.fromkeys(data.COLORED, colored_mnist.ColoredMNIST),
    data.MORPHO: morpho_mnist.MorphoMNIST,
}


def evaluator(dataset: str) -> DatasetEvaluator:
  """The evaluator of `dataset`.

  Raises:
    UserError: no evaluator is registered for `dataset`.
  """
  if dataset not in EVALUATORS:
    raise UserError(f"dataset {dataset!r} has no evaluator; known: "
                    f"{', '.join(EVALUATORS)}")
  return EVALUATORS[dataset](dataset)


__all__ = ["EVALUATORS", "DatasetEvaluator", "Reader", "evaluator"]
