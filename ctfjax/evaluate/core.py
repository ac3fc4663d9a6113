"""Evaluation of a trained model on a synthetic dataset: one report entry.

For each intervention family of the protocol (do(X = x'), x' = (x + |X|/2)
mod |X| per test image: 1 - c, 1 - b, d + 5 mod 10), every test image is
edited once and the edit's factors are read back (`readers`). From the
(factual, edit) pairs:

* effectiveness: per factor, the accuracy of the value read from the edit
  against the value the model drew for it (intervened, propagated to a
  descendant, or preserved), seed 004 eq. 8;
* ctf-consistency: the protocol's feature counterfactual probabilities with
  95% Wilson intervals, against exact bounds and truth (`reference`); each
  row also carries "estimate_features", the same probability from the
  features the model drew (its NCM alone, before the image mechanism);
* ground-truth error: L1 (0-255) to the true counterfactual image that the
  generator renders from the test sample's stored exogenous values, and the
  fraction of edits whose read factors match the true ones;
* realism: Frechet distances between the edits and real training images
  on two feature networks: the digit CNN's embedding (FD[digit_cnn], strokes
  only) and the posterior means of CLD's unconditional VAE (FD[latent_vae],
  which sees colour and bar too);
* minimality: CLD (`metrics.cld`) per family, from the latent Gaussians of
  an unconditional VAE trained on the run's training images
  (`latent_vae`), against real training images as reference;
* composition: the null intervention repeated `cycles` times on a subset,
  L1 in pixels and in the digit CNN's embedding;
* reversibility: per family, do(X = x') then do(X = x) back, `cycles` round
  trips on the same subset, measured like composition.

Reading the digit. The CNN misreads a few percent of real digits, which
alone would make every "digit preserved" row fall short of its bound of 1.
An edit's digit therefore counts as the factual one when the CNN reads the
same digit in the edit as in the factual image (its error on that image
cancels), and as the CNN's reading otherwise (`relative_reading`). C and B
are read exactly from real images, so for them the rule changes nothing.
The same pipeline applied to the generator's true counterfactual images
(`score_edits` on the truth: the "oracle" of a report) shows what the
readers alone cost.

Edits use the test images' true labels as the factual features (no label
reader), so the scores measure the counterfactual machinery, not labelling.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

import jax
import ml_collections
import numpy as np

from ctfjax import data
from ctfjax import metrics
from ctfjax.errors import UserError
from ctfjax.evaluate.unconditional_vae import LatentVAE
from ctfjax.evaluate.readers import FeatureReader
from ctfjax.evaluate.reference import Reference, reference

# Bumped whenever the evaluation adds a report section or changes how one is
# computed; the benchmark re-evaluates reports written by another version
# instead of reusing them.
EVALUATION_VERSION = 2

# The eval fields this package reads, their defaults and meaning. Configs
# set them in their `eval` section; `with_eval_defaults` fills in the rest
# (e.g. for a run trained before these fields existed).
EVAL_DEFAULTS = {
    "test_size": 500,  # Test images edited per intervention family.
    "composition_size": 200,  # Test images in the composition cycles.
    "cycles": 10,  # Null interventions in a row (>= 10: l1_10 is reported).
    "real_size": 1000,  # Training images for realism and CLD references.
    "edit_chunk": 64,  # Images per edit call (one shape: compiled once).
    "figure_rows": 8,  # Test images in edits.png (2 per (C, B) value).
    "reader_steps": 600,  # Training steps of the digit CNN (batch 128).
    "latent_steps": 600,  # Training steps of CLD's VAE (batch 64).
    "seed": 0,  # Seed of the edits' abduction draws.
}


# Smallest allowed value of each field (a covariance needs two samples;
# composition reports 10 cycles).
_EVAL_MINIMUM = {"test_size": 1, "composition_size": 1, "cycles": 10,
                 "real_size": 2, "edit_chunk": 1, "figure_rows": 1,
                 "reader_steps": 1, "latent_steps": 1, "seed": 0}


def with_eval_defaults(config: ml_collections.ConfigDict
                       ) -> ml_collections.ConfigDict:
  """A copy of `config` whose `eval` section has every `EVAL_DEFAULTS` key.

  Raises:
    UserError: a field is not an integer or below its minimum.
  """
  config = config.copy_and_resolve_references()
  with config.unlocked():
    if "eval" not in config:
      config.eval = ml_collections.ConfigDict()
    for key, default in EVAL_DEFAULTS.items():
      if key not in config.eval:
        config.eval[key] = default
      value, low = config.eval[key], _EVAL_MINIMUM[key]
      if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"config key 'eval.{key}' must be an integer >= "
                        f"{low}, got {value!r}")
  return config


@dataclasses.dataclass(frozen=True)
class Realism:
  """A Frechet distance to real training images on one feature network.

  Attributes:
    real_stats: (mean, covariance) of the training images' features.
    floor: `metrics.fid` of the real test images (the distance's floor at
      this sample size; it names the metric).
  """

  real_stats: tuple[np.ndarray, np.ndarray]
  floor: dict[str, Any]

  @classmethod
  def of(cls, real: np.ndarray, test: np.ndarray, name: str) -> Realism:
    """From the network's features [N, D] of real training and test images
    (each computed once by the caller)."""
    return cls(metrics.gaussian_stats(real),
               metrics.fid(real, test, lambda f: f, feature_network=name))

  def section(self, features: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The report section of {"do(X)": the edits' features [N, D]}."""
    fd = {fam: metrics.frechet_distance(*self.real_stats,
                                        *metrics.gaussian_stats(f))
          for fam, f in features.items()}
    return {"metric": self.floor["metric"], "note": self.floor["note"],
            "per_intervention": fd, "real_test": self.floor["value"]}


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """Everything about a dataset that every model's evaluation shares.

  Attributes:
    dataset: dataset name.
    reference: exact queries, bounds and truth.
    test: the test samples (images, labels, exogenous values).
    labels: {factor: [N]} true factual labels.
    factual_read: {factor: [N]} the readers' reading of the test images.
    interventions: {"do(X)": {X: [N] x'}}.
    truth: {"do(X)": the generator's true counterfactual samples}.
    realism: {report section: `Realism`}, one per feature network.
    latent: CLD's encoder.
    latent_factual: (mean, log-variance) of the test images.
    latent_reference: (mean, log-variance, {factor: [M]}) of the real
      training images CLD compares with.
    composition_size: images in the composition cycles.
    cycles: null interventions in a row.
    chunk: images per edit call.
    figure_index: test indices shown in edits.png.
  """

  dataset: str
  reference: Reference
  test: dict[str, Any]
  labels: dict[str, np.ndarray]
  factual_read: dict[str, np.ndarray]
  interventions: dict[str, dict[str, np.ndarray]]
  truth: dict[str, dict[str, Any]]
  realism: dict[str, Realism]
  latent: LatentVAE
  latent_factual: tuple[np.ndarray, np.ndarray]
  latent_reference: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]
  composition_size: int
  cycles: int
  chunk: int
  figure_index: np.ndarray


def _figure_index(labels: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
  """Test indices for edits.png: spread over the (C, B) combinations."""
  combos = [(c, b) for c in (0, 1) for b in (0, 1)]
  pools = [list(np.flatnonzero((labels["C"] == c) & (labels["B"] == b)))
           for c, b in combos]
  out = []
  while len(out) < rows and any(pools):
    for pool in pools:
      if pool and len(out) < rows:
        out.append(pool.pop(0))
  return np.asarray(sorted(out), np.int64)


def prepare(config: ml_collections.ConfigDict, reader: FeatureReader,
            latent: LatentVAE) -> EvalSet:
  """Loads and precomputes the shared evaluation data of a config.

  Args:
    config: a model config (`data` and `eval` sections; see
      `with_eval_defaults`).
    reader: the feature reader.
    latent: CLD's encoder (`unconditional_vae.latent_vae`).
  """
  config = with_eval_defaults(config)
  name, ev = config.data.name, config.eval
  ref = reference(name)
  source = config.data.source or None
  test = data.load(name, split="test", size=ev.test_size,
                   seed=config.data.seed, source=source)
  labels = {k: np.asarray(test[k]) for k in ref.domains}
  families = metrics.protocol_interventions(labels, ref.domains)
  gen = data.generator(name, "test", source=source)
  truth = {fam: gen.counterfactual(test, do) for fam, do in families.items()}
  train_ds = data.load(name, split="train", size=config.data.size or None,
                       seed=config.data.seed, source=source)
  real = np.asarray(train_ds["image"][:ev.real_size])
  real_labels = {k: np.asarray(train_ds[k][:ev.real_size])
                 for k in ref.domains}
  real_latent, test_latent = latent.encode(real), latent.encode(test["image"])
  return EvalSet(
      dataset=name, reference=ref, test=test, labels=labels,
      factual_read=reader.read(test["image"]), interventions=families,
      truth=truth,
      realism={
          "realism": Realism.of(reader.embed(real),
                                reader.embed(test["image"]), reader.name),
          "realism_latent": Realism.of(real_latent[0], test_latent[0],
                                       latent.name)},
      latent=latent, latent_factual=test_latent,
      latent_reference=(*real_latent, real_labels),
      composition_size=min(ev.composition_size, len(labels["D"])),
      cycles=ev.cycles, chunk=ev.edit_chunk,
      figure_index=_figure_index(labels, ev.figure_rows))


# Editing ----------------------------------------------------------------------


def edit_images(model, params, images: np.ndarray,
                labels: Mapping[str, np.ndarray],
                do: Mapping[str, Any], rng: jax.Array,
                chunk: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """One edit per image, in fixed-size calls so each stage compiles once.

  Images are grouped by their intervention value (the NCM takes one do()
  per call) and each group is cut into chunks of `chunk` images, the last
  padded by repeating its final image.

  Args:
    model: an `ANCM` (anything with its `edit` signature).
    params: its parameters.
    images: uint8 [N, H, W, C].
    labels: {factor: [N]} factual features.
    do: {factor: scalar or [N]}; {} is the null intervention.
    rng: PRNG key.
    chunk: images per call.

  Returns:
    (edited uint8 [N, H, W, C], {factor: [N]} features the model drew).
  """
  images = np.asarray(images)
  n = len(images)
  keys = sorted(do)
  values = (np.stack([np.broadcast_to(np.asarray(do[k]), (n,)) for k in keys],
                     axis=1) if keys else np.zeros((n, 0), np.int64))
  out_images = np.zeros_like(images)
  out_v = {k: np.zeros(n, np.int32) for k in labels}
  calls = 0
  for combo in np.unique(values, axis=0):
    rows = np.flatnonzero((values == combo).all(axis=1))
    for start in range(0, len(rows), chunk):
      part = rows[start:start + chunk]
      idx = np.concatenate([part, np.full(chunk - len(part), part[-1])])
      res = model.edit(params, images[idx],
                       {k: int(v) for k, v in zip(keys, combo)},
                       jax.random.fold_in(rng, calls), num_samples=1,
                       labels={k: np.asarray(v)[idx] for k, v in
                               labels.items()})
      calls += 1
      out_images[part] = np.asarray(res["image"])[:len(part), 0]
      for k in out_v:
        out_v[k][part] = np.asarray(res[k])[:len(part), 0]
  return out_images, out_v


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


# Scoring ----------------------------------------------------------------------


def _accuracy(pred, target) -> float:
  return float(np.mean(np.asarray(pred) == np.asarray(target)))


def score_edits(evalset: EvalSet, reader: FeatureReader,
                edits: Mapping[str, tuple[np.ndarray, Mapping[str, Any]]]
                ) -> dict[str, Any]:
  """Scores one edit per test image per family (model or truth alike).

  Args:
    evalset: the shared evaluation data.
    reader: the feature reader.
    edits: {"do(X)": (uint8 images [N, ...], {factor: [N] drawn values})}.

  Returns:
    The entry's "effectiveness", "ctf_consistency", "ground_truth_error",
    "ground_truth_features", "realism", "realism_latent", "minimality"
    sections, and "read"
    ({"do(X)": read factors}) for the figure.
  """
  ref = evalset.reference
  eff, rows, gt, gt_feat, reads, cld = {}, [], {}, {}, {}, {}
  features = {"realism": {}, "realism_latent": {}}
  for fam, (images, drawn) in edits.items():
    do = evalset.interventions[fam]
    read = relative_reading(reader.read(images), evalset.factual_read,
                            evalset.labels)
    reads[fam] = read
    eff[fam] = {k: _accuracy(read[k], drawn[k]) for k in ref.domains}
    fam_rows = metrics.ctf_consistency(
        evalset.labels, read, do, ref.queries[fam], bounds=ref.bounds,
        truth=ref.truth)
    drawn_rows = metrics.ctf_consistency(
        evalset.labels, drawn, do, ref.queries[fam], bounds=ref.bounds)
    for row, d in zip(fam_rows, drawn_rows):
      row["estimate_features"] = d["estimate"]
      if row["query"] in ref.notes:
        row["bounds_note"] = ref.notes[row["query"]]
    rows += fam_rows
    true = evalset.truth[fam]
    err = metrics.ground_truth_error(
        images, true["image"], generated_features=read,
        true_features={k: true[k] for k in ref.domains})
    gt[fam] = err["l1"]
    gt_feat[fam] = {"all": err["feature_match"],
                    **err["feature_match_per_var"]}
    encoded = evalset.latent.encode(images)
    cld[fam] = minimality(evalset, encoded, do)
    features["realism"][fam] = reader.embed(images)
    features["realism_latent"][fam] = encoded[0]
  return {
      "effectiveness": eff,
      "ctf_consistency": rows,
      "ground_truth_error": gt,
      "ground_truth_features": gt_feat,
      **{key: evalset.realism[key].section(f)
         for key, f in features.items()},
      "minimality": {"metric": f"CLD[{evalset.latent.name}]",
                     "per_intervention": cld},
      "read": reads,
  }


def minimality(evalset: EvalSet, encoded: tuple[np.ndarray, np.ndarray],
               do: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """CLD of one family's edits of the test images.

  Args:
    evalset: the shared evaluation data.
    encoded: `evalset.latent.encode` of the edits, one per test image:
      (mean, log-variance), each [N, D].
    do: {X: [N] the intervened values} of a single-variable family.

  Returns:
    {"cld", "p1", "p2": means over the edits, "n": edits averaged}.
  """
  (x, values), = do.items()
  ref_mean, ref_logvar, ref_labels = evalset.latent_reference
  res = metrics.cld(*evalset.latent_factual, *encoded,
                    evalset.labels[x], values, ref_mean, ref_logvar,
                    ref_labels[x])
  return {k: res[k] for k in ("cld", "p1", "p2", "n")}


def evaluate_model(evalset: EvalSet, reader: FeatureReader, model, params, *,
                   name: str, train_info: Mapping[str, Any],
                   graph: str | None = None, seed: int = 0,
                   progress: Callable[[str], None] | None = None
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """The report entry of one trained model, and its edits for the figure.

  Args:
    evalset: from `prepare`.
    reader: the feature reader.
    model: the trained `ANCM`.
    params: its parameters.
    name: the model's report name, e.g. "ancm_vae".
    train_info: {"steps": int, "seconds": float}.
    graph: the diagram the model assumes, as written in its config; None
      for `str(model.graph)`.
    seed: seed of the abduction draws.
    progress: called with a stage name after each stage (progress bars).

  Returns:
    (entry, {"images": {"do(X)": uint8 [R, H, W, C]}, "read": {"do(X)":
    {factor: [R]}}}): the report entry, and the edits of the figure's rows
    with the factors read from them.
  """
  t0 = time.perf_counter()
  tick = progress or (lambda _: None)
  rng = jax.random.key(seed)
  images = np.asarray(evalset.test["image"])
  edits = {}
  for i, (fam, do) in enumerate(evalset.interventions.items()):
    edits[fam] = edit_images(model, params, images, evalset.labels, do,
                             jax.random.fold_in(rng, i), evalset.chunk)
    tick(f"{name} {fam}")
  entry = {
      "dataset": evalset.dataset,
      "model": name,
      "graph": graph or str(model.graph),
      "train": {"steps": int(train_info["steps"]),
                "seconds": float(train_info["seconds"])},
  }
  scored = score_edits(evalset, reader, edits)
  entry.update({k: v for k, v in scored.items() if k != "read"})

  m = evalset.composition_size
  sub = {k: v[:m] for k, v in evalset.labels.items()}
  calls = [0]

  def edit_fn(x, lab, do):
    calls[0] += 1
    return edit_images(model, params, np.asarray(x), lab, do,
                       jax.random.fold_in(rng, 1000 + calls[0]),
                       evalset.chunk)

  dist = metrics.composition(edit_fn, images[:m], sub, evalset.cycles,
                             embed_fn=reader.embed)
  comp = metrics.cycle_summary(dist, (1, 10))
  entry["composition"] = {**comp, "embedding_network": reader.name,
                          "n": int(m)}
  tick(f"{name} composition")
  rev = {}
  for fam, do in evalset.interventions.items():
    dist = metrics.reversibility(
        edit_fn, images[:m], sub, {k: v[:m] for k, v in do.items()},
        evalset.cycles, embed_fn=reader.embed)
    rev[fam] = metrics.cycle_summary(dist, (1, 10))
  entry["reversibility"] = {"per_intervention": rev,
                            "embedding_network": reader.name, "n": int(m)}
  tick(f"{name} reversibility")
  entry["eval"] = {"test_images": int(len(images)),
                   "seconds": time.perf_counter() - t0}
  figure = {fam: edits[fam][0][evalset.figure_index] for fam in edits}
  figure_read = {fam: {k: v[evalset.figure_index]
                       for k, v in scored["read"][fam].items()}
                 for fam in edits}
  return entry, {"images": figure, "read": figure_read}


def evaluate_truth(evalset: EvalSet, reader: FeatureReader) -> dict[str, Any]:
  """The same scores for the generator's true counterfactual images.

  A reader check: where the truth itself misses a [1, 1] bound, the readers
  (not the models) are the limit. Returned as a report entry without
  "train" and "composition", named "true counterfactuals".
  """
  edits = {fam: (np.asarray(t["image"]),
                 {k: np.asarray(t[k]) for k in evalset.reference.domains})
           for fam, t in evalset.truth.items()}
  scored = score_edits(evalset, reader, edits)
  del scored["read"]
  return {"dataset": evalset.dataset, "model": "true counterfactuals",
          "graph": evalset.reference.graph, **scored}
