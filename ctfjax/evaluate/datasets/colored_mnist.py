"""The evaluator of Colored MNIST with bars (docs/evaluation.md).

Features D (digit), C (colour), B (bar), all categorical.

* Readers: C and B by the exact pixel rules of the data generator
  (`colored_mnist_bars.read_labels`, tolerant of blurry outputs); D by the
  digit CNN (`digit_cnn`), trained on real MNIST digits, whose embedding is
  the realism and composition feature network.
* Protocol: do(X = x'), x' = (x + |X|/2) mod |X| per test image: 1 - c,
  1 - b, d + 5 mod 10 (`metrics.protocol_interventions`).
* Ground truth: the generator renders the true counterfactual image of
  every family from the test sample's stored exogenous values.
* Scores per family: effectiveness (per factor, the accuracy of the value
  read from the edit against the value the model drew for it: intervened,
  propagated to a descendant, or preserved; Melistas et al. 2024, eq. 8);
  ctf-consistency (the protocol's feature counterfactual probabilities,
  against the exact bounds and truth of `reference`, decided by
  `metrics.decide`: the features the model drew, i.e. its NCM alone,
  against the bounds, and the readers' agreement with them on the edits
  against their agreement with the true features on the generator's true
  counterfactual images of the same test units, `EvalSet.truth_read`);
  ground-truth error (L1, 0-255, to the true counterfactual image, and the
  fraction of edits whose read factors match the true ones).
* Usable (`USABLE_BARS`): a model is flagged as far from converged when
  its null edit is no closer to the image than a black one, or when the
  readers read its kept and propagated factors back less than 90% of the
  time.

Reading the digit. The CNN misreads a few percent of real digits, which
alone would make every "digit preserved" row fall short of its bound of 1.
An edit's digit therefore counts as the factual one when the CNN reads the
same digit in the edit as in the factual image (its error on that image
cancels), and as the CNN's reading otherwise (`relative_reading`). C and B
are read exactly from real images, so for them the rule changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any, Mapping

import ml_collections
import numpy as np

from ctfjax import causal as cc
from ctfjax import data
from ctfjax import metrics
from ctfjax.data import colored_mnist_bars
from ctfjax.errors import UserError
from ctfjax.evaluate import digit_cnn
from ctfjax.evaluate.datasets import base
from ctfjax.metrics import consistency

# report.md's table notes in Colored MNIST's words (`table_notes`).
TABLE_NOTES = {
    "effectiveness": (
        "Accuracy of each factor read from the edited images (C and B by "
        "pixel rules, D by the digit classifier) against the value the "
        "model drew for the edit: intervened, propagated or preserved."),
    "realism": (
        "Frechet distance of the edits to real training images on the "
        "named feature networks (not Inception: not comparable with "
        "published FIDs): the digit CNN's embedding sees strokes only, the "
        "CLD VAE's posterior means also see colour and bar; the real test "
        "images give each floor. The edits of do(X) need not follow the "
        "observed distribution (do(B) flips every bar), so part of each "
        "distance is the intervention's own shift, not a lack of realism."),
}

# What a model's scores must pass before its report is read
# (`base.usability`); the committed quick-start models pass both with a
# wide margin (4.6 and 0.99), a model trained for 10 steps fails both (89.5
# and 0.41).
USABLE_BARS = (
    base.Bar("composition L1", base.composition_l1, 15.0, at_least=False,
             why="an all-black image is 14.5 from the test images: a null "
                 "edit further away gives nothing of the image back"),
    base.Bar("reader agreement", base.reader_agreement, 0.9, at_least=True,
             why="pixel rules and the relative digit reading read trained "
                 "models' kept features back 98% of the time; chance ~0.4"),
)

# The pixel rules' entry in the report's "evaluators" section.
PIXEL_RULES = {"C, B": "pixel rules of the data generator "
                       "(colored_mnist_bars.read_labels)"}
DIGIT_NOTE = (
    "D reader for effectiveness, ctf-consistency and ground-truth features; "
    "its penultimate layer embeds images for the composition embedding L1 "
    f"and the Frechet distance FD[{digit_cnn.NAME}]. Input: the stroke "
    "channel max(R, G), so colour and bar cannot leak into the digit "
    "reading.")


# The exact side of the ctf-consistency table ---------------------------------


@dataclasses.dataclass(frozen=True)
class Reference:
  """Protocol queries of one dataset with exact bounds and truth.

  For a synthetic dataset the feature-level SCM of its generator is known
  exactly (`data.feature_scm`), so every protocol query gets its optimal
  bounds from the TRUE diagram and the TRUE P(V) (`cc.bounds`), i.e. the
  range over every model a learner could have fitted to infinite data
  (None where the LP does not cover the query, e.g. front-door do(D) with
  C unobserved, with the reason kept), and its ground truth `cc.query`.
  Rows where every outcome is the intervened factor taking its value or a
  non-descendant keeping its value have bounds [1, 1] and truth 1 in every
  compatible model (`metrics.structural_bounds`); no LP is needed. The
  queries come from the dataset's diagram, not from the one a model
  assumes, so they are the same for every model of a run.

  Attributes:
    dataset: dataset name.
    graph: the true diagram, e.g. "D <-> C; D -> B; C -> B".
    domains: {factor: number of values}.
    queries: {"do(X)": [query, ...]} in the protocol's order.
    bounds: {query: (lo, hi) or None}.
    truth: {query: float}.
    notes: {query: why there are no bounds}.
  """

  dataset: str
  graph: str
  domains: dict[str, int]
  queries: dict[str, list[str]]
  bounds: dict[str, tuple[float, float] | None]
  truth: dict[str, float]
  notes: dict[str, str]


def reference(dataset: data.Dataset | str,
              care: tuple[str, ...] | None = None) -> Reference:
  """The protocol's exact reference of a Colored MNIST entry or name
  (cached per process by its name, generator parameters and care set).

  With a care set W (`metrics.protocol_queries`) the queries are the
  W-specific ones, each with its own exact bounds: a query that pools a
  parent outside W is a different query from the split ones, and its
  bounds are computed, not taken from them (`consistency.care_bounds`).
  """
  if isinstance(dataset, str):
    dataset = data.dataset(dataset)
  return _reference(dataset.name, json.dumps(dataset.params, sort_keys=True),
                    None if care is None else tuple(sorted(care)))


@functools.cache
def _reference(name: str, params: str,
               care: tuple[str, ...] | None) -> Reference:
  dataset = data.dataset(name, params=json.loads(params))
  scm = dataset.feature_scm()
  graph = scm.graph
  table = scm.observational()
  queries = metrics.protocol_queries(graph, scm.domains, care=care)
  bounds, truth, notes = {}, {}, {}
  for rows in queries.values():
    for q in rows:
      try:
        bounds[q] = consistency.care_bounds(graph, table, q, care)
      except cc.BoundsError as e:
        bounds[q], notes[q] = None, str(e)
      truth[q] = (1.0 if metrics.structural_bounds(graph, q) is not None
                  else float(cc.query(scm, q)))
  return Reference(name, dataset.graph, dict(scm.domains), queries, bounds,
                   truth, notes)


# Readers ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatureReader:
  """Reads (D, C, B) from Colored MNIST images and embeds them.

  Attributes:
    digits: the digit CNN (D, and the embedding).
  """

  digits: digit_cnn.DigitReader

  @property
  def name(self) -> str:
    return self.digits.name

  @property
  def info(self) -> Mapping[str, Any]:
    return self.digits.info

  @property
  def evaluators(self) -> dict[str, Any]:
    return {self.digits.name: dict(self.digits.info), **PIXEL_RULES}

  def read(self, images) -> dict[str, np.ndarray]:
    """{"D", "C", "B"}: [N] int32 each, from uint8 images [N, 32, 32, 3]."""
    return {"D": self.digits.read(images),
            **colored_mnist_bars.read_labels(images)}

  def embed(self, images) -> np.ndarray:
    """[N, 128] penultimate activations of the digit CNN."""
    return self.digits.embed(images)


def feature_reader(workdir: str | pathlib.Path, *, source: str | None = None,
                   steps: int = 600, seed: int = 0) -> FeatureReader:
  """The run's feature reader; the digit CNN is trained once, then cached.

  Args:
    workdir: the run's folder (see `digit_cnn.digit_reader`).
    source: MNIST source (None = the bundled digits).
    steps: the CNN's training steps when it has to be trained.
    seed: its training seed.
  """
  return FeatureReader(digit_cnn.digit_reader(
      workdir, note=DIGIT_NOTE, source=source, steps=steps, seed=seed))


def relative_reading(read: Mapping[str, np.ndarray],
                     factual_read: Mapping[str, np.ndarray],
                     factual: Mapping[str, np.ndarray]) -> dict[str,
                                                                np.ndarray]:
  """Read factors of edits, judged against the reading of the factual image.

  Where the reader sees the same value in the edit as in the factual image,
  the edit keeps the factual value (the reader's error on that image
  cancels); elsewhere the reading stands. See the module docstring.
  """
  return {k: np.where(np.asarray(read[k]) == np.asarray(factual_read[k]),
                      np.asarray(factual[k]), np.asarray(read[k]))
          .astype(np.int32) for k in read}


def _accuracy(pred, target) -> float:
  return float(np.mean(np.asarray(pred) == np.asarray(target)))


# The evaluator ----------------------------------------------------------------


class ColoredMNIST:
  """`datasets.DatasetEvaluator` of a Colored MNIST with bars set.

  `care_sets`: its reference has the W-specific queries of any care set
  (`reference`), so `eval.care` applies.
  """

  care_sets = True

  def __init__(self, dataset: data.Dataset):
    if not isinstance(dataset, colored_mnist_bars.ColoredMNISTBars):
      raise UserError(f"dataset {dataset.name!r} is not Colored MNIST")
    scm = dataset.feature_scm()
    self.data = dataset
    self.dataset = dataset.name
    self.graph = dataset.graph
    self.domains = dict(scm.domains)
    self.features = tuple(self.domains)
    self.usable_bars = USABLE_BARS

  def reader(self, workdir, config: ml_collections.ConfigDict
             ) -> FeatureReader:
    """Pixel rules and the run's digit CNN (`eval.reader_steps`)."""
    return feature_reader(workdir, source=config.data.source or None,
                          steps=config.eval.reader_steps)

  def interventions(self, labels, seed):
    """do(X = (x + |X|/2) mod |X|) per test image, for X = D, C, B."""
    del seed  # The protocol is deterministic.
    return metrics.protocol_interventions(labels, self.domains)

  def truth(self, config, test, interventions):
    """The generator's counterfactual of every family (stored exogenous
    values, the same style slot)."""
    del config  # The entry holds the source and parameters.
    gen = self.data.generator("test")
    return {fam: gen.counterfactual(test, do)
            for fam, do in interventions.items()}

  def read(self, reader, images, evalset):
    """`relative_reading` against the factual test images."""
    return relative_reading(reader.read(images), evalset.factual_read,
                            evalset.labels)

  def score(self, family, images, read, drawn, evalset):
    """Effectiveness, ctf-consistency rows, ground-truth error and
    feature match (see the module docstring)."""
    ref = reference(self.data, evalset.care)
    do = evalset.interventions[family]
    true = evalset.truth[family]
    true_read = (evalset.truth_read or {}).get(family)
    floor = (None if true is None or true_read is None else
             ({k: true[k] for k in self.features}, true_read))
    rows = metrics.ctf_consistency(
        evalset.labels, read, do, ref.queries[family], bounds=ref.bounds,
        truth=ref.truth, drawn=drawn, reference=floor)
    for row in rows:
      if row["query"] in ref.notes:
        row["bounds_note"] = ref.notes[row["query"]]
    err = metrics.ground_truth_error(
        images, true["image"], generated_features=read,
        true_features={k: true[k] for k in self.features})
    return {
        "effectiveness": {k: _accuracy(read[k], drawn[k])
                          for k in self.features},
        "ctf_consistency": rows,
        "ground_truth_error": err["l1"],
        "ground_truth_features": {"all": err["feature_match"],
                                  **err["feature_match_per_var"]},
    }

  def classes(self, feature, values):
    """The values themselves."""
    del feature  # Every factor is categorical.
    return np.asarray(values)

  def figure_rows(self, labels, rows):
    """Spread over the (C, B) combinations."""
    pools = [list(np.flatnonzero((labels["C"] == c) & (labels["B"] == b)))
             for c in (0, 1) for b in (0, 1)]
    out = []
    while len(out) < rows and any(pools):
      for pool in pools:
        if pool and len(out) < rows:
          out.append(pool.pop(0))
    return np.asarray(sorted(out), np.int64)

  def caption(self, values, i):
    """E.g. "4 green bar"."""
    d, c, b = (int(values[k][i]) for k in ("D", "C", "B"))
    return f"{d} {'red' if c else 'green'}{' bar' if b else ''}"

  def column_title(self, family):
    """E.g. "do(C=1-c)", "do(D=d+5 mod 10)"."""
    x = family[3:-1]
    k = self.domains[x]
    v = x.lower()
    change = f"1-{v}" if k == 2 else f"{v}+{k // 2} mod {k}"
    return f"do({x}={change})"

  def notes(self, evalset, reader):
    """How many test images, and how each factor was read."""
    acc = reader.info.get("test_accuracy", float("nan"))
    return [f"Test images: {len(evalset.labels['D'])} per intervention "
            f"family, one edit each; digit reader {reader.name} (test "
            f"accuracy {acc:.3f} on real MNIST digits); colour and bar by "
            "pixel rules."]

  def table_notes(self):
    """Colored MNIST wording of the effectiveness and realism notes."""
    return dict(TABLE_NOTES)
