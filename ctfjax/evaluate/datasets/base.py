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
  (also the wording of the tables' notes);
* the bars a model's scores must pass before its report can be read
  (`usable_bars`: `Bar`s, judged by `usability`): a model whose training is
  far from converged is flagged in report.json and in every table.

A new dataset is one module defining a class with these members, plus one
line in `datasets.EVALUATORS`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Protocol, Sequence

import ml_collections
import numpy as np

# `evalset` arguments are the generic pipeline's `ctfjax.evaluate.core.EvalSet`
# (core imports this package, so the name is not imported back here).
EvalSet = Any


@dataclasses.dataclass(frozen=True)
class Bar:
  """A threshold a model's report entry must pass for its scores to be read.

  Attributes:
    name: what is measured, as the report's reasons print it.
    value: entry -> the measured number, or None where the entry lacks it.
    limit: the bar.
    at_least: True when the value must be >= `limit`, False for <=.
    why: one line: why the bar sits there (docs/evaluation.md quotes it).
  """

  name: str
  value: Callable[[Mapping[str, Any]], float | None]
  limit: float
  at_least: bool
  why: str

  def fails(self, entry: Mapping[str, Any]) -> str | None:
    """Why `entry` misses this bar (e.g. "composition L1 89.5 > 15 (the
    dataset's bar)"), or None when it passes."""
    value = self.value(entry)
    if value is None or not math.isfinite(value):
      return f"{self.name} not measured"
    if (value >= self.limit) if self.at_least else (value <= self.limit):
      return None
    op = "<" if self.at_least else ">"
    return (f"{self.name} {_shown(value, self.limit)} {op} {self.limit:g} "
            "(the dataset's bar)")


def _shown(value: float, limit: float) -> str:
  """`value` to 3 significant digits, more where it would print as `limit`
  (0.8996 < 0.9, not 0.9 < 0.9)."""
  for digits in range(3, 10):
    text = f"{value:.{digits}g}"
    if text != f"{limit:g}":
      return text
  return repr(value)


def usability(entry: Mapping[str, Any], bars: Sequence[Bar]
              ) -> dict[str, Any]:
  """A report entry's "usable" section: {"ok": bool, "reasons": [str]}.

  Args:
    entry: a model's report entry.
    bars: its dataset's `DatasetEvaluator.usable_bars`.

  Returns:
    "ok" true exactly when the entry passes every bar; "reasons" names each
    bar it misses, with the value and the bar.
  """
  reasons = [r for r in (bar.fails(entry) for bar in bars) if r is not None]
  return {"ok": not reasons, "reasons": reasons}


def composition_l1(entry: Mapping[str, Any]) -> float | None:
  """Mean L1 (0-255) of one null edit to the image: reconstruction error."""
  return (entry.get("composition") or {}).get("l1_1")


def reader_agreement(entry: Mapping[str, Any]) -> float | None:
  """The share of the edits' non-intervened categorical features (kept or
  propagated) that the readers read back as the model drew them: the mean
  of the entry's "effectiveness" cells other than each family's own
  intervened feature (None when there are none)."""
  cells = [acc for family, scores in (entry.get("effectiveness") or {})
           .items() if scores for var, acc in scores.items()
           if var != family[3:-1] and acc is not None]
  return sum(cells) / len(cells) if cells else None


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
    usable_bars: what a model's scores must pass to be read (`usability`);
      trained models pass them, a model trained for a few steps fails.
  """

  dataset: str
  graph: str
  features: tuple[str, ...]
  usable_bars: tuple[Bar, ...]

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
