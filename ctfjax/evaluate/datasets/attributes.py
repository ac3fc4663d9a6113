"""The evaluator of real attribute-labelled images (CelebA, `folder`).

Built on a `ctfjax.data.base.Dataset`: its diagram over the attributes, each
attribute's kind (categorical K, or continuous), its splits and value names.
Real data has no generator, so there is no ground truth anywhere; what can
be judged is whether the edits show the attributes the model drew
(effectiveness, Melistas et al. 2024) and, where every attribute is
categorical, whether the model's feature counterfactuals respect the bounds
that the diagram and the observed joint allow (ctf-consistency).

* Readers: anti-causal predictors trained on the dataset's own training
  split (`attribute_predictors`: one CNN per attribute, a class-balanced
  classifier for a categorical one, a regressor for a continuous one);
  their concatenated penultimate activations embed images for the
  composition embedding L1 and the Frechet distance. Their test accuracy
  or MAE is in the report's "evaluators" section.
* Protocol: per test image, for each attribute X, do(X = (x + K/2) mod K)
  for a categorical one (1 - x for a binary one;
  `metrics.protocol_interventions`), and for a continuous one a value
  drawn from its marginal on the training split (the empirical law, drawn
  with replacement, seeded by `eval.seed`; Melistas et al.'s random
  single-parent interventions).
* Ground truth: none (real data): every family's truth is None.
* Scores per family: "effectiveness" (per categorical attribute, the
  accuracy of the predictor's reading of the edit against the value the
  model drew for it: intervened, propagated or kept; Melistas et al. eq. 8),
  "effectiveness_mae" (the same for a continuous attribute, mean absolute
  error in its units). Where every attribute is categorical,
  "ctf_consistency" rows: the protocol's feature counterfactual queries
  (`metrics.protocol_queries`) with bounds [1, 1] where the diagram alone
  fixes them (`metrics.structural_bounds`) and otherwise `cc.bounds` of the
  diagram and the EMPIRICAL joint of the attributes on the training split
  (`reference`), truth None, decided on the features the model drew (no
  image test: there are no true counterfactual images to measure the
  readers' floor on). A row without bounds (e.g. its evidence never occurs
  in the training split) carries the reason as "bounds_note".
* CLD compares parent values by class: a categorical attribute's value; a
  continuous one in 10 bins cut at the deciles of its training marginal
  (Melistas et al. footnote 11).
* Usable (`usable_bars`): a model is flagged as far from converged when its
  null edit is further from the image than an all-black image is (measured
  on the dataset's test images, not assumed), or when the readers read its
  kept and propagated categorical attributes back less than 60% of the
  time.

Readings are the predictors' plain readings, as Melistas et al. score
them (no `colored_mnist.relative_reading`): an edit that keeps an
attribute scores about the reader's test accuracy on it, not 1. The
ctf-consistency decisions use the drawn features, so reader error moves
only the rows' read estimates.

The protocol's marginals, the bounds' table and the CLD bins come from the
whole training split (`load("train")`), not from the run's `data.size`
prefix the readers train on: they are the dataset's, the same for every
run on it. The split is read once per evaluator, lazily (and the test
images of the bar likewise): the evaluator is also built only to look up
its diagram or notes, which must not load data.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
from typing import Mapping

import ml_collections
import numpy as np

from ctfjax import causal as cc
from ctfjax import metrics
from ctfjax.errors import UserError
from ctfjax.evaluate import attribute_predictors
from ctfjax.evaluate.datasets import base

BINS = 10  # Continuous attributes' CLD classes (Melistas et al. fn. 11).
BAR_IMAGES = 1000  # Test images the black image's L1 is measured on.
AGREEMENT_BAR = 0.6  # Reader agreement a usable model reaches.

TABLE_NOTES = {
    "effectiveness": (
        "Accuracy (categorical attributes) or mean absolute error "
        "(continuous ones, in their units) of each attribute read from the "
        "edited images by anti-causal predictors trained on the dataset's "
        "training split (one class-balanced CNN per attribute), against "
        "the value the model drew for the edit: intervened, propagated or "
        "preserved. The predictors' own test accuracy / MAE, in the "
        "evaluators section, is the ceiling."),
    "ctf_consistency": (
        "Rows of the protocol judged consistent, out of the rows with data "
        "and bounds. Real data: the bounds come from the diagram and the "
        "empirical joint of the attributes on the training split, there is "
        "no truth, and a row is decided on the features the model drew for "
        "its edits (exact tests, 5% family-wise error over the whole table, "
        "weighted Holm); the read estimate is shown beside it. No bounds: "
        "the row's evidence never occurs in the training split."),
    "composition": (
        "The null intervention applied 1 and 10 times: mean L1 to the "
        "original on 0-255 pixels, and L1 of the embeddings (the attribute "
        "predictors' penultimate activations, concatenated; Melistas et "
        "al. 2024, Table 1)."),
    "realism": (
        "Frechet distance of the edits to real training images on the "
        "named feature networks (not Inception: not comparable with "
        "published FIDs): the attribute predictors' concatenated "
        "embedding, and the CLD VAE's posterior means; the real test "
        "images give each floor. The edits of do(X) need not follow the "
        "observed distribution, so part of each distance is the "
        "intervention's own shift, not a lack of realism."),
    "ground_truth": (
        "Real data: there is no generator, hence no true counterfactual "
        "image; every cell is empty."),
}


# The ctf-consistency reference ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reference:
  """The protocol's queries with their bounds on one diagram and P(V).

  Attributes:
    graph: the diagram.
    domains: {attribute: number of values}.
    queries: {"do(X)": [query, ...]} in the protocol's order.
    bounds: {query: (lo, hi) or None}.
    notes: {query: why it has no bounds}.
  """

  graph: str
  domains: dict[str, int]
  queries: dict[str, list[str]]
  bounds: dict[str, tuple[float, float] | None]
  notes: dict[str, str]


def empirical_table(labels: Mapping[str, np.ndarray],
                    domains: Mapping[str, int]) -> cc.Table:
  """The empirical joint of categorical attributes: counts / N.

  Cells no sample falls in stay 0: `cc.bounds` accepts zero cells (a
  c-factor row whose conditioning event has probability 0 is dropped, which
  can only widen the bounds) and refuses only evidence of probability 0,
  which `reference` turns into a row without bounds and a note. No
  smoothing, so the bounds are those of the observed distribution.

  Args:
    labels: {attribute: [N] ints}.
    domains: {attribute: K}, the table's axes in this order.
  """
  names = tuple(domains)
  counts = np.zeros([int(domains[k]) for k in names], np.float64)
  np.add.at(counts, tuple(np.asarray(labels[k]).astype(np.int64)
                          for k in names), 1.0)
  return cc.Table(names, counts / counts.sum())


def reference(graph: str, table: cc.Table) -> Reference:
  """The protocol's queries and bounds on `graph` and `table`, cached per
  process by (graph, table): the LPs take seconds.

  Args:
    graph: the diagram over the table's variables.
    table: the joint P(V) (`empirical_table`).
  """
  probs = np.ascontiguousarray(table.probs, np.float64)
  return _reference(graph, tuple(table.variables), probs.shape,
                    probs.tobytes())


@functools.cache
def _reference(graph: str, variables: tuple[str, ...],
               shape: tuple[int, ...], probs: bytes) -> Reference:
  table = cc.Table(variables,
                   np.frombuffer(probs, np.float64).reshape(shape))
  domains = table.domains
  queries = metrics.protocol_queries(graph, domains)
  bounds, notes = {}, {}
  for rows in queries.values():
    for q in rows:
      point = metrics.structural_bounds(graph, q)
      if point is not None:
        bounds[q] = point
        continue
      try:
        lo, hi = cc.bounds(graph, table, q)
        bounds[q] = (float(lo), float(hi))
      except cc.BoundsError as e:
        bounds[q], notes[q] = None, str(e)
  return Reference(graph, dict(domains), queries, bounds, notes)


def black_image_l1(images: np.ndarray) -> float:
  """Mean L1 (0-255) of an all-black image to `images` [N, H, W, C]: the
  composition L1 of an edit that gives nothing of the image back."""
  images = np.asarray(images)
  return float(np.mean(metrics.pixel_l1(images, np.zeros_like(images))))


def binary_f1(pred, target) -> float:
  """F1 of the positive class (value 1) pooled over the images:
  2TP / (2TP + FP + FN), 0 when there is no positive anywhere (as
  torchmetrics' BinaryF1Score)."""
  pred, target = np.asarray(pred) == 1, np.asarray(target) == 1
  tp = int(np.sum(pred & target))
  wrong = int(np.sum(pred != target))
  return 0.0 if tp + wrong == 0 else 2 * tp / (2 * tp + wrong)


def _accuracy(pred, target) -> float:
  return float(np.mean(np.asarray(pred) == np.asarray(target)))


def _mae(a, b) -> float:
  return float(np.mean(np.abs(np.asarray(a, np.float64) -
                              np.asarray(b, np.float64))))


# The evaluator ----------------------------------------------------------------


class Attributes:
  """`datasets.DatasetEvaluator` of a real attribute-labelled dataset (see
  the module docstring).

  Attributes:
    data: the `ctfjax.data.base.Dataset` it evaluates.
    dataset, graph, features: its name, diagram and attributes.
    targets: {attribute: `attribute_predictors.Target`}.
    domains: {categorical attribute: K}.
    continuous: the continuous attributes.
  """

  def __init__(self, dataset):
    self.data = dataset
    self.dataset = dataset.name
    self.graph = dataset.graph
    self.targets = attribute_predictors.targets(dataset.kinds)
    self.features = tuple(self.targets)
    nodes = set(cc.Graph.parse(self.graph).nodes)
    if nodes != set(self.features):
      raise UserError(
          f"dataset {self.dataset!r}: the diagram's nodes "
          f"({', '.join(sorted(nodes))}) must be exactly its attributes "
          f"({', '.join(self.features)})")
    self.domains = {k: t.classes for k, t in self.targets.items()
                    if t.categorical}
    self.continuous = tuple(k for k in self.features
                            if k not in self.domains)

  # Data read once, on first use ---------------------------------------------

  @functools.cached_property
  def train_labels(self) -> dict[str, np.ndarray]:
    """{attribute: [N]} of the whole training split."""
    ds = self.data.load("train")
    return {k: np.asarray(ds[k]) for k in self.features}

  @functools.cached_property
  def black_l1(self) -> float:
    """`black_image_l1` of the first `BAR_IMAGES` test images."""
    return black_image_l1(self.data.load("test", BAR_IMAGES)["image"])

  @functools.cached_property
  def usable_bars(self) -> tuple[base.Bar, ...]:
    """Composition L1 no further than a black image; reader agreement of
    at least `AGREEMENT_BAR` where some categorical attribute is kept."""
    # Rounded up to a tenth: a black edit itself sits on the bar.
    limit = math.ceil(self.black_l1 * 10) / 10
    bars = [base.Bar(
        "composition L1", base.composition_l1, limit, at_least=False,
        why=f"an all-black image is {self.black_l1:.1f} from this "
            "dataset's test images: a null edit further away gives "
            "nothing of the image back")]
    if self.domains and len(self.features) > 1:
      bars.append(base.Bar(
          "reader agreement", base.reader_agreement, AGREEMENT_BAR,
          at_least=True,
          why="class-balanced readers read an attribute an edit keeps at "
              "about their test accuracy (in the evaluators section) and "
              "one the edit lost at about chance (0.5 for a binary one)"))
    return tuple(bars)

  @functools.cached_property
  def reference(self) -> Reference | None:
    """The ctf-consistency reference on the empirical training joint, or
    None when some attribute is continuous (no rows)."""
    if self.continuous:
      return None
    return reference(self.graph,
                     empirical_table(self.train_labels, self.domains))

  @functools.cached_property
  def bin_edges(self) -> dict[str, np.ndarray]:
    """{continuous attribute: its `BINS - 1` inner CLD bin edges}: the
    deciles of its training marginal."""
    q = np.arange(1, BINS) / BINS
    return {k: np.quantile(self.train_labels[k].astype(np.float64), q)
            for k in self.continuous}

  # The protocol ---------------------------------------------------------------

  def reader(self, workdir: str | pathlib.Path,
             config: ml_collections.ConfigDict
             ) -> attribute_predictors.AttributePredictors:
    """The run's attribute predictors (`eval.reader_steps` steps each),
    trained on its training images."""
    return attribute_predictors.predictors(
        workdir, self.data, size=config.data.size or None,
        steps=config.eval.reader_steps)

  def interventions(self, labels, seed):
    """do(X = (x + K/2) mod K) for a categorical X; a draw from the
    training marginal for a continuous one (seeded per attribute)."""
    out = {}
    for i, x in enumerate(self.features):
      if x in self.domains:
        out.update(metrics.protocol_interventions(
            {x: labels[x]}, {x: self.domains[x]}))
        continue
      rng = np.random.default_rng([seed, i])
      pool = self.train_labels[x].astype(np.float32)
      out[f"do({x})"] = {x: rng.choice(pool, size=len(labels[x]))}
    return out

  def truth(self, config, test, interventions):
    """None for every family: real data has no true counterfactuals."""
    del config, test  # Nothing to generate from.
    return {fam: None for fam in interventions}

  def read(self, reader, images, evalset):
    """The predictors' readings of the edits."""
    del evalset  # Readings depend on the images alone.
    return reader.read(images)

  def score(self, family, images, read, drawn, evalset):
    """Effectiveness (accuracy / MAE) and, with every attribute
    categorical, ctf-consistency rows (see the module docstring)."""
    del images  # Scored through the readings.
    sections = {
        "effectiveness": {k: _accuracy(read[k], drawn[k])
                          for k in self.domains},
        # Melistas et al. score binary attributes by F1 (their Table 4).
        "effectiveness_f1": {k: binary_f1(read[k], drawn[k])
                             for k, K in self.domains.items() if K == 2},
        "ctf_consistency": [],
        "ground_truth_error": None,
    }
    if self.continuous:
      sections["effectiveness_mae"] = {k: _mae(read[k], drawn[k])
                                       for k in self.continuous}
      return sections
    ref = self.reference
    rows = metrics.ctf_consistency(
        evalset.labels, read, evalset.interventions[family],
        ref.queries[family], bounds=ref.bounds, truth=None, drawn=drawn)
    for row in rows:
      if row["query"] in ref.notes:
        row["bounds_note"] = ref.notes[row["query"]]
    sections["ctf_consistency"] = rows
    return sections

  def classes(self, feature, values):
    """A categorical value itself; a continuous one's decile bin."""
    values = np.asarray(values)
    if feature in self.domains:
      return values.astype(np.int64)
    return np.searchsorted(self.bin_edges[feature], values, side="right")

  # Figures and words ----------------------------------------------------------

  def figure_rows(self, labels, rows):
    """Spread over the combinations of the categorical attributes and of
    the continuous ones above / below their median (round robin)."""
    keys = [np.asarray(labels[k]) for k in self.domains]
    keys += [np.asarray(labels[k]) > np.median(labels[k])
             for k in self.continuous]
    combos = {}
    for i, key in enumerate(zip(*keys)):
      combos.setdefault(tuple(int(v) for v in key), []).append(i)
    pools = [combos[k] for k in sorted(combos)]
    out = []
    while len(out) < rows and any(pools):
      for pool in pools:
        if pool and len(out) < rows:
          out.append(pool.pop(0))
    return np.asarray(sorted(out), np.int64)

  def _value_text(self, feature: str, value) -> str:
    """E.g. "Smiling" (a value name), "D=4" (no name, or a name that is a
    number and would not say which attribute it is), "age=37.2"."""
    if feature not in self.domains:
      return f"{feature}={float(value):.3g}"
    names = self.data.value_names.get(feature, ())
    v = int(value)
    name = str(names[v]) if 0 <= v < len(names) else str(v)
    try:
      float(name)
    except ValueError:
      return name
    return f"{feature}={name}"

  def caption(self, values, i):
    """E.g. "Smiling, No Eyeglasses" (the dataset's value names) or
    "D=4, C=1, B=0"."""
    return ", ".join(self._value_text(k, values[k][i])
                     for k in self.features)

  def column_title(self, family):
    """E.g. "do(Smiling=1-s)", "do(D=d+5 mod 10)", "do(age=drawn)"."""
    x = family[3:-1]
    if x not in self.domains:
      return f"do({x}=drawn)"
    k, v = self.domains[x], x[0].lower()
    change = f"1-{v}" if k == 2 else f"{v}+{k // 2} mod {k}"
    return f"do({x}={change})"

  def notes(self, evalset, reader):
    """How many test images, the protocol, the readers' test scores and
    what the ctf-consistency rows are judged against."""
    scores = []
    for k in self.features:
      info = getattr(reader, "info", {}).get(k, {})
      if k in self.domains:
        scores.append(
            f"{k} accuracy {info.get('test_accuracy', float('nan')):.3f} "
            f"(class-balanced "
            f"{info.get('test_balanced_accuracy', float('nan')):.3f})")
      else:
        scores.append(f"{k} MAE {info.get('test_mae', float('nan')):.3g}")
    n = len(evalset.labels[self.features[0]])
    lines = [
        f"Test images: {n} per intervention family, one edit each. "
        "Protocol: do(X = (x + K/2) mod K) for a categorical attribute "
        "(1 - x for a binary one); a continuous one set to a value drawn "
        "from its training marginal. Real data: no ground truth.",
        f"Readers: anti-causal predictors {reader.name}, one CNN per "
        "attribute trained on the training split, on real test images: "
        + "; ".join(scores) + ".",
    ]
    if self.continuous:
      lines.append("No ctf-consistency rows: "
                   f"{', '.join(self.continuous)} continuous.")
    else:
      n_train = len(self.train_labels[self.features[0]])
      lines.append(
          "Ctf-consistency: bounds from the diagram and the empirical "
          f"joint of the attributes on {n_train} training images; rows "
          "decided on the features the model drew.")
    return lines

  def table_notes(self):
    """Real-data wording of report.md's table notes."""
    return dict(TABLE_NOTES)
