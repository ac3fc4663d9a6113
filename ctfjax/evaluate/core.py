"""Evaluation of a trained model on a synthetic dataset: one report entry.

The generic pipeline: for each intervention family of the dataset's
protocol, every test image is edited once (`edit_images`); from the
(factual, edit) pairs the dataset's evaluator (`datasets`) scores the
features it reads back (effectiveness, ctf-consistency, ground-truth error:
see its module), and this module adds what needs no feature:

* realism: Frechet distances between the edits and real training images on
  two feature networks: the readers' embedding (FD[<reader>]) and the
  posterior means of CLD's unconditional VAE (FD[latent_vae]);
* minimality: CLD (`metrics.cld`) per family, from the latent Gaussians of
  an unconditional VAE trained on the run's training images
  (`unconditional_vae`), against real training images as reference;
* composition: the null intervention repeated `cycles` times on a subset,
  L1 in pixels and in the readers' embedding;
* reversibility: per family, do(X = x') then do(X = x) back, `cycles` round
  trips on the same subset, measured like composition.

The same scores of the generator's true counterfactual images
(`evaluate_truth`: the "oracle" of a report) show what the readers alone
cost. Edits use the test images' true labels as the factual features (no
label reader), so the scores measure the counterfactual machinery, not
labelling. A model enters only through `model.edit` and `model.graph`.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from typing import Any, Callable, Mapping

import jax
import ml_collections
import numpy as np

from ctfjax import data
from ctfjax import metrics
from ctfjax.errors import UserError
from ctfjax.evaluate import datasets
from ctfjax.evaluate.unconditional_vae import LatentVAE
from ctfjax.metrics import consistency
from ctfjax.metrics import perceptual
from ctfjax.train import config as train_config

# Bumped whenever the evaluation adds a report section or changes how one is
# computed; the benchmark re-evaluates reports written by another version
# instead of reusing them.
EVALUATION_VERSION = 4
# `eval.care`, the care set W the edits preserve (docs/evaluation.md, "Care
# sets"): "" every feature (the default), "none" the empty set, or names
# joined by commas, "D,B". Not in `train.base_eval_config` (its fields are
# integers and files): `with_eval_defaults` adds it.
CARE_KEY = "care"


def with_eval_defaults(config: ml_collections.ConfigDict
                       ) -> ml_collections.ConfigDict:
  """A copy of `config` whose `eval` section has every evaluation field.

  Fields missing from the config take their `train.base_eval_config`
  default.

  Raises:
    UserError: a field is not an integer or below its minimum.
  """
  config = config.copy_and_resolve_references()
  defaults = train_config.base_eval_config()
  with config.unlocked():
    if "eval" not in config:
      config.eval = ml_collections.ConfigDict()
    if CARE_KEY not in config.eval:
      config.eval[CARE_KEY] = ""
    if not isinstance(config.eval[CARE_KEY], str):
      raise UserError(f"config key 'eval.{CARE_KEY}' must be a string such "
                      f"as 'D,B' or {consistency.NO_CARE!r}, got "
                      f"{config.eval[CARE_KEY]!r}")
    for key, default in defaults.items():
      if key not in config.eval:
        config.eval[key] = default
      value = config.eval[key]
      if key in train_config.EVAL_FILES:
        if not isinstance(value, str) or (
            value and not pathlib.Path(value).expanduser().is_file()):
          raise UserError(f"config key 'eval.{key}': no such file {value!r}")
        continue
      low = train_config.EVAL_MINIMUM[key]
      if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"config key 'eval.{key}' must be an integer >= "
                        f"{low}, got {value!r}")
  if config.eval.lpips_weights and not config.eval.vgg16_weights:
    raise UserError("config key 'eval.lpips_weights' needs "
                    "'eval.vgg16_weights' too (LPIPS reads VGG-16 features)")
  return config


def eval_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The integer evaluation fields of a config (after `with_eval_defaults`),
  as the report records them (the weight files go with composition), and
  `eval.care` when it is not the default (so a report of another care set
  is never reused for this one, and older reports still are)."""
  out = {k: config.eval[k] for k in train_config.EVAL_MINIMUM}
  care = config.eval.get(CARE_KEY) or ""
  if care.strip():
    out[CARE_KEY] = care
  return out


def care_set(config: ml_collections.ConfigDict,
             evaluator: datasets.DatasetEvaluator) -> tuple[str, ...] | None:
  """`eval.care` of a config (after `with_eval_defaults`), checked against
  the dataset's features: the care set W, or None for every feature.

  Raises:
    UserError: bad syntax, an unknown feature, or a dataset whose
      evaluator has no W-specific reference (`care_sets` false).
  """
  key = f"config key 'eval.{CARE_KEY}'"
  care = consistency.parse_care(config.eval[CARE_KEY], key)
  if care is None:
    return None
  for name in care:
    if name not in evaluator.features:
      raise UserError(f"{key} names unknown feature {name!r}; the dataset "
                      f"has {', '.join(evaluator.features)}")
  if not getattr(evaluator, "care_sets", False):
    raise UserError(f"{key}: the {evaluator.dataset} evaluator has no "
                    "W-specific reference; care sets are evaluated on "
                    "Colored MNIST")
  return care


def perceptual_distances(config: ml_collections.ConfigDict
                         ) -> dict[str, Callable]:
  """{"vgg16_l1": fn, "lpips": fn} of the weight files `config.eval` names
  (`ctfjax.metrics.perceptual`); empty when none is given."""
  ev, out = config.eval, {}
  if ev.vgg16_weights:
    vgg = perceptual.load_vgg16(ev.vgg16_weights)
    out["vgg16_l1"] = functools.partial(perceptual.vgg_l1, vgg)
    if ev.lpips_weights:
      lin = perceptual.load_lpips_weights(ev.lpips_weights)
      out["lpips"] = functools.partial(perceptual.lpips, vgg, lin)
  return out


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
    evaluator: the dataset's evaluator (`datasets.evaluator`).
    test: the test samples (images, labels, exogenous values).
    labels: {feature: [N]} true factual features.
    factual_read: {feature: [N]} the readers' reading of the test images.
    interventions: {"do(X)": {X: [N] x'}}.
    truth: {"do(X)": the generator's true counterfactual samples, or None}.
    truth_read: {"do(X)": the evaluator's reading of the true counterfactual
      images (`DatasetEvaluator.read`), or None}: the readers' own floor,
      against which a model's edits are read (ctf-consistency's image
      test).
    realism: {report section: `Realism`}, one per feature network.
    latent: CLD's encoder.
    latent_factual: (mean, log-variance) of the test images.
    latent_reference: (mean, log-variance, {feature: [M]}) of the real
      training images CLD compares with.
    composition_size: images in the composition cycles.
    cycles: null interventions in a row.
    chunk: images per edit call.
    figure_index: test indices shown in edits.png.
    truth_read: see above.
    perceptual: {name: fn(a, b) -> [N]} distances composition adds
      (`perceptual_distances`: VGG-16 and LPIPS from the user's weights).
    perceptual_files: {"vgg16": path, "lpips": path} of those weights.
    care: the care set W of `eval.care` (None: every feature). The edits of
      do(X) preserve W less X (`ANCM.edit`'s care), and the ctf-consistency
      rows are the W-specific queries (`metrics.protocol_queries`).
  """

  dataset: str
  evaluator: datasets.DatasetEvaluator
  test: dict[str, Any]
  labels: dict[str, np.ndarray]
  factual_read: dict[str, np.ndarray]
  interventions: dict[str, dict[str, np.ndarray]]
  truth: dict[str, dict[str, Any] | None]
  realism: dict[str, Realism]
  latent: LatentVAE
  latent_factual: tuple[np.ndarray, np.ndarray]
  latent_reference: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]
  composition_size: int
  cycles: int
  chunk: int
  figure_index: np.ndarray
  truth_read: dict[str, dict[str, np.ndarray] | None] | None = None
  perceptual: dict[str, Callable] = dataclasses.field(default_factory=dict)
  perceptual_files: dict[str, str] = dataclasses.field(default_factory=dict)
  care: tuple[str, ...] | None = None

  def care_of(self, family: str) -> tuple[str, ...] | None:
    """The care set of one family's edits: W less its intervened
    features (an edit cannot both set and preserve one)."""
    if self.care is None:
      return None
    return tuple(k for k in self.care
                 if k not in self.interventions[family])


def prepare(config: ml_collections.ConfigDict, reader: datasets.Reader,
            latent: LatentVAE) -> EvalSet:
  """Loads and precomputes the shared evaluation data of a config.

  Args:
    config: a model config (`data` and `eval` sections; see
      `with_eval_defaults`).
    reader: the dataset's feature readers (`evaluator.reader`).
    latent: CLD's encoder (`unconditional_vae.latent_vae`).

  Returns:
    The evaluation data of `config.data.name`, scored by its evaluator.
  """
  config = with_eval_defaults(config)
  ev = config.eval
  entry = data.from_config(config.data)
  name, dataset = entry.name, entry.evaluator()
  test = entry.load("test", ev.test_size)
  labels = {k: np.asarray(test[k]) for k in dataset.features}
  families = dataset.interventions(labels, ev.seed)
  train_ds = entry.load("train", config.data.size or None)
  real = np.asarray(train_ds["image"][:ev.real_size])
  real_labels = {k: np.asarray(train_ds[k][:ev.real_size])
                 for k in dataset.features}
  real_latent, test_latent = latent.encode(real), latent.encode(test["image"])
  evalset = EvalSet(
      dataset=name, evaluator=dataset, test=test, labels=labels,
      factual_read=reader.read(test["image"]), interventions=families,
      truth=dataset.truth(config, test, families),
      realism={
          "realism": Realism.of(reader.embed(real),
                                reader.embed(test["image"]), reader.name),
          "realism_latent": Realism.of(real_latent[0], test_latent[0],
                                       latent.name)},
      latent=latent, latent_factual=test_latent,
      latent_reference=(*real_latent, real_labels),
      composition_size=min(ev.composition_size, len(test["image"])),
      cycles=ev.cycles, chunk=ev.edit_chunk,
      figure_index=dataset.figure_rows(labels, ev.figure_rows),
      perceptual=perceptual_distances(config),
      perceptual_files={"vgg16": ev.vgg16_weights,
                        "lpips": ev.lpips_weights},
      care=care_set(config, dataset))
  # Read once here, before any model is scored: every model's image test
  # compares with the readers' agreement on these.
  return dataclasses.replace(evalset, truth_read={
      fam: None if t is None else
      dataset.read(reader, np.asarray(t["image"]), evalset)
      for fam, t in evalset.truth.items()})


# Editing ----------------------------------------------------------------------


def edit_images(model, params, images: np.ndarray,
                labels: Mapping[str, np.ndarray],
                do: Mapping[str, Any], rng: jax.Array,
                chunk: int = 64, care: tuple[str, ...] | None = None
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """One edit per image, in fixed-size calls so each stage compiles once.

  The images are cut into chunks of `chunk`, the last padded by repeating
  the final image; each call gets its chunk's own do() values, one per
  image.

  Args:
    model: anything with the `ANCM.edit` signature.
    params: its parameters.
    images: uint8 [N, H, W, C].
    labels: {feature: [N]} factual features.
    do: {feature: scalar or [N]}; {} is the null intervention.
    rng: PRNG key.
    chunk: images per call.
    care: the care set passed to `model.edit` (None: not passed, every
      feature).

  Returns:
    (edited uint8 [N, H, W, C], {feature: [N]} features the model drew).
  """
  images = np.asarray(images)
  n = len(images)
  do = {k: np.broadcast_to(np.asarray(v), (n,)) for k, v in do.items()}
  labels = {k: np.asarray(v) for k, v in labels.items()}
  extra = {} if care is None else {"care": care}
  parts = []
  for call, start in enumerate(range(0, n, chunk)):
    idx = np.minimum(np.arange(start, start + chunk), n - 1)
    res = model.edit(params, images[idx], {k: v[idx] for k, v in do.items()},
                     jax.random.fold_in(rng, call), num_samples=1,
                     labels={k: v[idx] for k, v in labels.items()}, **extra)
    parts.append({k: np.asarray(res[k])[:n - start, 0]
                  for k in ("image", *labels)})
  edited = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return edited.pop("image"), edited


# Scoring ----------------------------------------------------------------------


def _add_sections(out: dict[str, Any], family: str,
                  sections: Mapping[str, Any]):
  """Files one family's scores into the entry (see `DatasetEvaluator.score`):
  lists are joined, other values go under the family."""
  for key, value in sections.items():
    if isinstance(value, list):
      out.setdefault(key, []).extend(value)
    else:
      out.setdefault(key, {})[family] = value


def score_edits(evalset: EvalSet, reader: datasets.Reader,
                edits: Mapping[str, tuple[np.ndarray, Mapping[str, Any]]]
                ) -> dict[str, Any]:
  """Scores one edit per test image per family (model or truth alike).

  Args:
    evalset: the shared evaluation data.
    reader: the dataset's feature readers.
    edits: {"do(X)": (uint8 images [N, ...], {feature: [N] drawn values})}.

  Returns:
    The evaluator's sections (for Colored MNIST "effectiveness",
    "ctf_consistency", "ground_truth_error", "ground_truth_features"; the
    ctf-consistency rows of all families decided as one table by
    `metrics.decide`), then
    "realism", "realism_latent", "minimality", and "read"
    ({"do(X)": the evaluator's reading of the edits}) for the figure.
  """
  dataset = evalset.evaluator
  out, reads, cld = {}, {}, {}
  features = {"realism": {}, "realism_latent": {}}
  for fam, (images, drawn) in edits.items():
    read = dataset.read(reader, images, evalset)
    reads[fam] = read
    _add_sections(out, fam, dataset.score(fam, images, read, drawn, evalset))
    encoded = evalset.latent.encode(images)
    cld[fam] = minimality(evalset, encoded, evalset.interventions[fam])
    features["realism"][fam] = reader.embed(images)
    features["realism_latent"][fam] = encoded[0]
  if out.get("ctf_consistency"):
    # The families' rows form one table, whose error rate is controlled
    # as a whole.
    out["ctf_consistency"] = metrics.decide(out["ctf_consistency"])
  return {
      **out,
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
  classes = functools.partial(evalset.evaluator.classes, x)
  res = metrics.cld(*evalset.latent_factual, *encoded,
                    classes(evalset.labels[x]), classes(values), ref_mean,
                    ref_logvar, classes(ref_labels[x]))
  return {k: res[k] for k in ("cld", "p1", "p2", "n")}


def evaluate_model(evalset: EvalSet, reader: datasets.Reader, model, params,
                   *, name: str, train_info: Mapping[str, Any],
                   graph: str | None = None, seed: int = 0,
                   progress: Callable[[str], None] | None = None
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """The report entry of one trained model, and its edits for the figure.

  Args:
    evalset: from `prepare`.
    reader: the dataset's feature readers.
    model: the trained model; only `model.edit` (the `ANCM.edit`
      signature) and `model.graph` are used.
    params: its parameters.
    name: the model's report name, e.g. "ancm_vae".
    train_info: {"steps": int, "seconds": float}.
    graph: the diagram the model assumes, as written in its config; None
      for `str(model.graph)`.
    seed: seed of the abduction draws.
    progress: called with a stage name after each stage (progress bars).
    The families' edits use the care set of `evalset.care` (the entry's
    "care"); composition and reversibility keep every feature: they measure
    the image mechanism's null and round-trip edits, whatever W is.

  Returns:
    (entry, {"images": {"do(X)": uint8 [R, H, W, C]}, "read": {"do(X)":
    {feature: [R]}}}): the report entry, and the edits of the figure's rows
    with the features read from them.
  """
  t0 = time.perf_counter()
  tick = progress or (lambda _: None)
  rng = jax.random.key(seed)
  images = np.asarray(evalset.test["image"])
  edits = {}
  for i, (fam, do) in enumerate(evalset.interventions.items()):
    edits[fam] = edit_images(model, params, images, evalset.labels, do,
                             jax.random.fold_in(rng, i), evalset.chunk,
                             evalset.care_of(fam))
    tick(f"{name} {fam}")
  entry = {
      "dataset": evalset.dataset,
      "model": name,
      "graph": graph or str(model.graph),
      "train": {"steps": int(train_info["steps"]),
                "seconds": float(train_info["seconds"])},
      "care": _care_list(evalset),
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
                             embed_fn=reader.embed,
                             pair_fns=evalset.perceptual)
  comp = metrics.cycle_summary(dist, (1, 10))
  entry["composition"] = {**comp, "embedding_network": reader.name,
                          "n": int(m)}
  if evalset.perceptual:
    entry["composition"]["perceptual_weights"] = {
        k: v for k, v in evalset.perceptual_files.items() if v}
  tick(f"{name} composition")
  rev = {}
  for fam, do in evalset.interventions.items():
    dist = metrics.reversibility(
        edit_fn, images[:m], sub, {k: v[:m] for k, v in do.items()},
        evalset.cycles, embed_fn=reader.embed)
    rev[fam] = metrics.cycle_summary(dist, (1, 10))
    tick(f"{name} reversibility {fam}")
  entry["reversibility"] = {"per_intervention": rev,
                            "embedding_network": reader.name, "n": int(m)}
  entry["eval"] = {"test_images": int(len(images)),
                   "seconds": time.perf_counter() - t0}
  figure = {fam: edits[fam][0][evalset.figure_index] for fam in edits}
  figure_read = {fam: {k: v[evalset.figure_index]
                       for k, v in scored["read"][fam].items()}
                 for fam in edits}
  return entry, {"images": figure, "read": figure_read}


def _care_list(evalset: EvalSet) -> list[str]:
  """The report's "care": the care set's features (all for the default)."""
  care = evalset.evaluator.features if evalset.care is None else evalset.care
  return list(care)


def evaluate_truth(evalset: EvalSet, reader: datasets.Reader
                   ) -> dict[str, Any]:
  """The same scores for the generator's true counterfactual images.

  A reader check: where what the readers see in the true images misses a
  [1, 1] bound, the readers (not the models) are the limit; the
  ctf-consistency rule judges every model's edits against these readings
  (`EvalSet.truth_read`), so the truth passes its own image test. Families
  without ground truth are left out. Returned as a report entry without
  "train" and "composition", named "true counterfactuals"; None for real
  data (no family has ground truth).
  """
  edits = {fam: (np.asarray(t["image"]),
                 {k: np.asarray(t[k]) for k in evalset.evaluator.features})
           for fam, t in evalset.truth.items() if t is not None}
  if not edits:
    return None
  scored = score_edits(evalset, reader, edits)
  del scored["read"]
  return {"dataset": evalset.dataset, "model": "true counterfactuals",
          "graph": evalset.evaluator.graph, "care": _care_list(evalset),
          **scored}
