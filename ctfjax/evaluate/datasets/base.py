"""What a dataset supplies to the generic evaluation: the two protocols.

The generic pipeline (`core`, `job`, `grid`) edits test images, measures
composition, reversibility, realism and minimality on pixels and
embeddings, assembles the report and draws the figures. Everything that
depends on what the images show comes from the dataset's evaluator:

* its feature readers (`Reader`), trained once per run and cached;
* the intervention protocol: which do() each test image gets;
* the ground truth: the generator's true counterfactual of each family,
  or None where there is none;
* the feature scores of a family's edits (effectiveness, ctf-consistency,
  ground-truth error, ...), as report sections;
* the classes CLD compares parent values by (continuous values binned);
* the figure's rows, captions and column titles, and the report's notes
  (also the wording of the tables' notes).

A new dataset is one module defining a class with these members, plus one
line in `datasets.EVALUATORS`.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

import ml_collections
import numpy as np

# `evalset` arguments are the generic pipeline's `ctfjax.evaluate.core.EvalSet`
# (core imports this package, so the name is not imported back here).
EvalSet = Any


class Reader(Protocol):
  """A dataset's feature readers, which know nothing about the models.

  Attributes:
    name: the embedding network's name (composition embedding L1, the
      realism section's FD[name]).
    evaluators: {name: info} of every reader, for the report's
      "evaluators" section.
  """

  name: str
  evaluators: Mapping[str, Any]

  def read(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """{feature: [N]} read from uint8 images [N, H, W, C]."""

  def embed(self, images: np.ndarray) -> np.ndarray:
    """[N, D] embeddings of uint8 images [N, H, W, C]."""


class DatasetEvaluator(Protocol):
  """The dataset-specific half of the evaluation (see the module docstring).

  Attributes:
    dataset: the dataset name (`data.NAMES`).
    graph: the true diagram as the report writes it; the baselines'
      diagrams derive from it (`job.MODELS`).
    features: the features the report scores, in its order; the test
      samples hold one [N] array per feature.
  """

  dataset: str
  graph: str
  features: tuple[str, ...]

  def reader(self, workdir: Any, config: ml_collections.ConfigDict
             ) -> Reader:
    """The run's readers: trained in `<workdir>/evaluators/` or restored.

    Args:
      workdir: the run's folder.
      config: the run's config (`data` and `eval` sections).
    """

  def interventions(self, labels: Mapping[str, np.ndarray], seed: int
                    ) -> dict[str, dict[str, np.ndarray]]:
    """The protocol: {"do(X)": {X: [N] values}}, one family per entry.

    Args:
      labels: {feature: [N]} the test images' factual features.
      seed: for protocols that draw their values at random.
    """

  def truth(self, config: ml_collections.ConfigDict, test: Mapping[str, Any],
            interventions: Mapping[str, Mapping[str, np.ndarray]]
            ) -> dict[str, dict[str, Any] | None]:
    """{"do(X)": the generator's true counterfactual samples ("image" and
    one [N] array per feature), or None where there is no ground truth}."""

  def read(self, reader: Reader, images: np.ndarray, evalset: EvalSet
           ) -> dict[str, np.ndarray]:
    """{feature: [N]} of one edit per test image, as the scores judge them
    (e.g. against the readers' reading of the factual image)."""

  def score(self, family: str, images: np.ndarray,
            read: Mapping[str, np.ndarray], drawn: Mapping[str, np.ndarray],
            evalset: EvalSet) -> dict[str, Any]:
    """The feature scores of one family's edits, as report sections.

    Args:
      family: "do(X)", a key of `evalset.interventions`.
      images: uint8 [N, H, W, C], one edit per test image.
      read: this evaluator's `read` of the edits.
      drawn: {feature: [N]} the values the model drew for the edits.
      evalset: the shared evaluation data.

    Returns:
      {section: value}: a list value (e.g. "ctf_consistency" rows) joins
      the entry's list; any other goes to `entry[section][family]`.
    """

  def classes(self, feature: str, values: np.ndarray) -> np.ndarray:
    """[N] int classes CLD compares values of parent `feature` by."""

  def figure_rows(self, labels: Mapping[str, np.ndarray], rows: int
                  ) -> np.ndarray:
    """Sorted test indices [rows] shown in edits.png."""

  def caption(self, values: Mapping[str, np.ndarray], i: int) -> str:
    """The caption of image `i` of {feature: [R]} values in edits.png."""

  def column_title(self, family: str) -> str:
    """The title of family `family`'s column in edits.png."""

  def notes(self, evalset: EvalSet, reader: Reader) -> list[str]:
    """Lines for the report's "notes" (how the features were read)."""

  def table_notes(self) -> dict[str, str]:
    """{table name of `report.tables.TABLES`: the note report.md and the
    benchmark print under it}, in this dataset's words; a table left out
    keeps its generic note."""
