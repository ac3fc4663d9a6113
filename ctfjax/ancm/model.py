"""The augmented neural causal model (ANCM): NCM over V plus an image mechanism.

An ANCM (docs/models.md) is a G-constrained NCM over the generative
factors V (`ctfjax.ncm`, categorical and continuous features alike) and a
neural image mechanism I := f_I(V, U_I) (`ctfjax.mechanisms`: any registered
family) whose exogenous U_I is independent of the feature latents. Editing
image i under do(X = x'):

1. labels v: given, or read from the image by the label reader h(i);
2. feature-level abduction: the NCM's exogenous posterior given V = v
   (given only a care set W and the intervened features' factual values
   when the user names W: `care_evidence`);
3. image-level abduction: u_I from the image mechanism (an inference
   network, an encoder, or DDIM inversion);
4. action do(X = x') and prediction: v' = V_{x'}(u_V), i' = f_I(v', u_I).

Steps 2 and 4 on the features are the NCM's `counterfactual_sample` (one
compiled call whatever the per-image values of x'); steps 3 and 4 on the
image are `abduct_image` and `predict_image`, separate jitted pure functions.
Repeating the feature-level abduction n times gives n edits: a
distribution, because descendants of X are not identified.

Training objective of the first stage (per batch, a sum of means):

* -log P^(v): the NCM's Monte-Carlo marginal likelihood of the features;
* the image mechanism's loss of the stage (a VAE's negative ELBO of i given
  v), per pixel value;
* label reader: -log h(v | i) on real images (cross-entropy for a
  categorical feature, a Gaussian log-density for a continuous one);
* **[ours]** label faithfulness, weighted by `faithful_weight`: images are
  re-decoded by the mechanism's `relabel` with features v~ drawn from the
  NCM (a fresh sample of P^(V), not the image's own features), and the
  frozen label reader must read v~ back (gradients into the image mechanism
  only). This makes f_I invertible w.r.t. V in the sense of the ASCM
  definition: an edit shows the features it was asked for, rather than ones
  the decoder could smuggle through U_I. A family without a cheap
  differentiable decode (`relabel` returns None) trains without the term.

Later stages of a mechanism (a refiner after its VAE, ...) train only the
image parameters their groups name, with the mechanism's loss of that
stage; the NCM and the reader are frozen then. A stage with several groups
(a GAN's generator and discriminator) takes each group's gradient from its
own loss, and each group has its own optimizer (`stage_optimizer`).

Everything a training step or a user calls is a pure function of
(params, inputs, rng): `params` is {"ncm", "image", "reader"} of nnx states,
merged with the static graph definitions at the boundary.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from ctfjax import mechanisms
from ctfjax import compiler
from ctfjax.causal import kinds
from ctfjax.causal.graph import Graph
from ctfjax.errors import UserError
from ctfjax.mechanisms import Stage
from ctfjax.ncm.codes import CodeNCM
from ctfjax.ncm.model import NCM
from ctfjax.nn.conv import ConvClassifier
from ctfjax.train.state import make_optimizer

Array = jax.Array
FROZEN = "frozen"
FEATURES = "features"  # The NCM and reader's own group (`_features_group`).


class ANCMError(UserError):
  """Bad input to an ANCM: unknown factor, value outside its domain, ..."""


@dataclasses.dataclass(frozen=True, eq=False)
class ANCM:
  """Static structure of an ANCM; parameters live in a separate pytree.

  Attributes:
    ncm: the feature-level NCM (static part).
    image_kind: the image mechanism's family (`mechanisms.REGISTRY` key).
    image_def: nnx graph definition of the image mechanism.
    reader_def: nnx graph definition of the label reader h(i).
    image_shape: (H, W, C).
    stages: the image mechanism's training stages.
    num_particles: prior particles for feature-level abduction.
    faithful_weight: weight of the label-faithfulness term.
    likelihood_particles: Monte-Carlo latents for -log P^(v) in training.
    sampler: default sampler settings of `predict_image`.
  """

  ncm: NCM
  image_kind: str
  image_def: Any
  reader_def: Any
  image_shape: tuple[int, int, int]
  stages: tuple[Stage, ...]
  num_particles: int = 256
  faithful_weight: float = 1.0
  likelihood_particles: int = 64
  sampler: tuple[tuple[str, Any], ...] = ()

  @property
  def order(self) -> tuple[str, ...]:
    return self.ncm.order

  @property
  def features(self) -> dict[str, Any]:
    """{factor: feature kind} (`ctfjax.causal.kinds`)."""
    return self.ncm.features

  @property
  def graph(self) -> Graph:
    return self.ncm.graph

  @property
  def compiler_options(self) -> Mapping[str, Mapping[str, str]]:
    """The image mechanism's compiler options by backend (`ctfjax.compiler`)."""
    return mechanisms.compiler_options(mechanisms.family(self.image_kind))

  def __hash__(self):
    return id(self)

  # Building -----------------------------------------------------------------

  @classmethod
  def create(cls, graph: Graph | str, features: Mapping[str, Any],
             image_shape: Sequence[int], rng: Array | int, *,
             image: ml_collections.ConfigDict | None = None,
             true_graph: Graph | str | None = None,
             train_steps: int = 1,
             ncm_kwargs: Mapping | None = None,
             num_particles: int = 256, faithful_weight: float = 1.0,
             likelihood_particles: int = 64) -> tuple[ANCM, dict]:
    """Builds the model and its initial parameters.

    Args:
      graph: the diagram over the features V (the image is a child of all).
      features: factor -> number of values (categorical) or a feature kind.
      image_shape: (H, W, C) of the images.
      rng: PRNG key or int seed.
      image: the `model.image` config section (`mechanisms.image_config`);
        None for the default VAE.
      true_graph: the dataset's true diagram over the same features, when
        known and `graph` is another (the image mechanism may use it as
        prior knowledge: DEAR's super-graph); None: unknown.
      train_steps: the run's `train.steps` (the stages' step counts).
      ncm_kwargs: `latent_dim`, `hidden`, `latent_prior` of the NCM, and
        `code_dim`: 0 (default) for the NCM whose image condition is the
        features' fixed encodings, k > 0 for the NCM of learned codes of
        width k (`ctfjax.ncm.codes.CodeNCM`, Sardesai's diffusion NCM).
      num_particles: prior particles for feature-level abduction.
      faithful_weight: weight of the label-faithfulness term (0 disables).
      likelihood_particles: Monte-Carlo latents for -log P^(v) in training.

    Returns:
      (model, params).
    """
    image = image if image is not None else mechanisms.image_config()
    key = jax.random.key(rng) if isinstance(rng, int) else rng
    k_ncm, k_img, k_reader = jax.random.split(key, 3)
    ncm_kwargs = dict(ncm_kwargs or {})
    code_dim = int(ncm_kwargs.pop("code_dim", 0) or 0)
    if code_dim:
      ncm, ncm_params = CodeNCM.create(graph, features, k_ncm,
                                       code_dim=code_dim, **ncm_kwargs)
    else:
      ncm, ncm_params = NCM.create(graph, features, k_ncm, **ncm_kwargs)
    if isinstance(true_graph, str):
      true_graph = Graph.parse(true_graph)
    # Each feature's slice of the image condition: its code or encoding.
    widths = tuple(code_dim or ncm.features[k].width for k in ncm.order)
    assert sum(widths) == ncm.condition_dim, (widths, ncm.condition_dim)
    layout = mechanisms.Features(ncm.order, widths, ncm.graph, true_graph)
    image_def, image_params = nnx.split(mechanisms.create(
        image, image_shape, layout, nnx.Rngs(k_img)))
    heads = [ncm.features[k].head_size for k in ncm.order]
    reader_def, reader_params = nnx.split(ConvClassifier(
        image_shape, heads, rngs=nnx.Rngs(k_reader)))
    # A family with sampler settings keeps their config values under
    # `model.image.<kind>.sampler`.
    settings = mechanisms.sampler_settings(
        mechanisms.family(image.kind),
        dict(mechanisms.settings(image).get("sampler", {})))
    model = cls(ncm, image.kind, image_def, reader_def, tuple(image_shape),
                mechanisms.stages(image, train_steps), int(num_particles),
                float(faithful_weight), int(likelihood_particles), settings)
    return model, {"ncm": ncm_params, "image": image_params,
                   "reader": reader_params}

  # Encodings ----------------------------------------------------------------

  def encode(self, v: Mapping[str, Array], params=None) -> Array:
    """Features as the image mechanism's condition [B, D]: one-hots for
    categorical features, standardised values for continuous ones, or the
    values' learned codes of a code NCM (which reads them from `params`,
    the model's parameters; `ctfjax.ncm.codes`)."""
    return self.ncm.condition(None if params is None else params["ncm"], v)

  def _split_heads(self, heads: Array) -> dict[str, Array]:
    out, start = {}, 0
    for k in self.order:
      size = self.features[k].head_size
      out[k] = heads[..., start:start + size]
      start += size
    return out

  def _reader_nll(self, reader_params, images, v) -> Array:
    """-log h(v | i) summed over factors, mean over the batch."""
    heads = self._split_heads(nnx.merge(self.reader_def, reader_params)(images))
    return -sum(self.features[k].log_prob(heads[k], v[k]).mean()
                for k in self.order)

  def image_module(self, params):
    return nnx.merge(self.image_def, params["image"])

  def reader_module(self, params) -> ConvClassifier:
    return nnx.merge(self.reader_def, params["reader"])

  # Training -----------------------------------------------------------------

  def stage_losses(self, params, batch: Mapping[str, Array], rng: Array,
                   stage: int = 0, step: Array | None = None
                   ) -> tuple[dict[str, Array], dict[str, Array]]:
    """Each parameter group's scalar loss in a stage, and metrics.

    Args:
      params: {"ncm", "image", "reader"}.
      batch: {"image": [B, H, W, C] uint8 or float in [0, 1], one [B]
        array per feature}.
      rng: PRNG key.
      stage: index into `self.stages`.
      step: updates made so far in the stage (`mechanisms.Context.step`);
        None outside training.

    Returns:
      ({group name: scalar}, {metric: scalar}).
    """
    k_v, k_img, k_sample, k_relabel = jax.random.split(rng, 4)
    images = to_unit(batch["image"])
    v = {k: batch[k] for k in self.order}
    image = self.image_module(params)
    cond = self.encode(v, params)
    groups = self.stages[stage].groups
    losses, parts = image.loss(images, cond, k_img, self.stages[stage].name,
                               self.context(params, v, step))
    dims = float(np.prod(self.image_shape))
    total = {g.name: losses[g.name].mean() / dims for g in groups}
    # The mechanism's own objective (its first group's); other groups (a
    # discriminator, a multiplier, a running estimate) log their own losses.
    metrics = {"image_loss_per_dim": total[groups[0].name],
               **{k: x.mean() for k, x in parts.items()}}
    if stage > 0:
      return total, metrics
    main = groups[0].name
    nll_v = -self.ncm.log_likelihood(params["ncm"], v, k_v,
                                     self.likelihood_particles).mean()
    reader_nll = self._reader_nll(params["reader"], images, v)
    features = self._features_group(stage)
    total[features] = total.get(features, 0.0) + nll_v + reader_nll
    metrics.update(nll_v=nll_v, reader_nll=reader_nll)
    if self.faithful_weight > 0:
      # Features drawn from the model's own P^(V), decoded with each image's
      # content: the frozen reader must see the requested features.
      v_new = self.ncm.sample(jax.lax.stop_gradient(params["ncm"]), k_sample,
                              images.shape[0])
      fake = image.relabel(images, cond, self.encode(v_new, params),
                           k_relabel)
      if fake is not None:
        faithful = self._reader_nll(
            jax.lax.stop_gradient(params["reader"]), fake, v_new)
        total[main] = total[main] + self.faithful_weight * faithful
        metrics["faithful_nll"] = faithful
    return total, metrics

  def context(self, params, v: Mapping[str, Array],
              step: Array | None = None) -> mechanisms.Context:
    """The frozen feature model and reader as a mechanism's loss sees them
    (`mechanisms.Context`), for the batch of features `v` ({k: [B]}) at
    training step `step` (None outside training)."""
    ncm_params = jax.lax.stop_gradient(params["ncm"])
    reader = nnx.merge(self.reader_def,
                       jax.lax.stop_gradient(params["reader"]))
    b = next(iter(v.values())).shape[0]
    # Row r intervenes on feature r mod |V|: batches come shuffled, so this
    # is a random single-feature intervention per image, and each feature's
    # rows take one abduction call of their own (static indices).
    rows = {k: np.arange(i, b, len(self.order))
            for i, k in enumerate(self.order)}

    def counterfactual(rng):
      k_value, k_cf = jax.random.split(rng)
      value = self.ncm.sample(ncm_params, k_value, b)
      new = {k: jnp.asarray(v[k]) for k in self.order}
      for i, (k, idx) in enumerate(rows.items()):
        if not idx.size:
          continue
        drawn = self.ncm.counterfactual_traced(
            ncm_params, {n: x[idx] for n, x in v.items()},
            {k: value[k][idx]}, jax.random.fold_in(k_cf, i),
            num_particles=self.num_particles)
        new = {n: new[n].at[idx].set(drawn[n][:, 0]) for n in self.order}
      new = jax.lax.stop_gradient(new)

      def score(images):
        heads = self._split_heads(reader(images))
        return -sum(self.features[k].log_prob(heads[k], new[k])
                    for k in self.order)

      return self.encode(new, {"ncm": ncm_params}), score

    return mechanisms.Context(counterfactual=counterfactual,
                              embed=reader.features, step=step)

  def _features_group(self, stage: int) -> str:
    """The group that trains the NCM and the reader in the first stage:
    the first group when it uses the run's optimizer, else their own."""
    first = self.stages[stage].groups[0]
    return first.name if first.optimizer is None else FEATURES

  def loss(self, params, batch: Mapping[str, Array], rng: Array,
           stage: int = 0, step: Array | None = None
           ) -> tuple[Array, dict[str, Array]]:
    """The stage's objective summed over its groups, and metrics.

    For a one-group stage this is the loss its training step descends.
    """
    total, metrics = self.stage_losses(params, batch, rng, stage, step)
    return sum(total.values()), metrics

  def param_labels(self, params, stage: int = 0) -> dict:
    """Each parameter's group name in a stage, or FROZEN (a params tree)."""
    groups = self.stages[stage].groups

    def image_label(path, _):
      names = mechanisms.path_names(path)
      for g in groups:
        if g.params(names):
          return g.name
      return FROZEN

    features = self._features_group(stage) if stage == 0 else FROZEN
    return {
        "ncm": jax.tree.map(lambda _: features, params["ncm"]),
        "reader": jax.tree.map(lambda _: features, params["reader"]),
        "image": jax.tree_util.tree_map_with_path(image_label,
                                                  params["image"]),
    }

  def trains_everything(self, params, stage: int = 0) -> bool:
    """True when one group trains every parameter (a plain step fits)."""
    labels = set(jax.tree.leaves(self.param_labels(params, stage)))
    return len(labels) == 1 and FROZEN not in labels

  def stage_optimizer(self, params, stage: int,
                      train: ml_collections.ConfigDict
                      ) -> optax.GradientTransformation:
    """The stage's optimizer: each group's own, frozen parameters fixed.

    Args:
      params: parameters (for their structure).
      stage: index into `self.stages`.
      train: the run's `config.train` section (its optimizer for groups
        that name none, with the stage's step count for schedules).
    """
    st = self.stages[stage]
    train = train.copy_and_resolve_references()
    with train.unlocked():
      train.steps = st.steps
    opts = {g.name: (g.optimizer or make_optimizer)(train) for g in st.groups}
    if stage == 0:
      opts.setdefault(self._features_group(stage), make_optimizer(train))
    if self.trains_everything(params, stage):
      return opts[st.groups[0].name]
    opts[FROZEN] = optax.set_to_zero()
    return optax.multi_transform(opts, self.param_labels(params, stage))

  def stage_gradients(self, params, stage: int = 0
                      ) -> Callable[..., tuple[Any, Array,
                                               dict[str, Array]]]:
    """`(params, batch, rng, step=None) -> (grads, loss, metrics)` for a
    stage (`step` as in `stage_losses`).

    Each group's gradient comes from its own loss; frozen parameters get
    zeros (their gradient is never computed: XLA drops the unused part).
    """
    labels = self.param_labels(params, stage)
    names = [g.name for g in self.stages[stage].groups]
    if stage == 0 and self._features_group(stage) not in names:
      names.append(self._features_group(stage))

    def group_loss(p, batch, rng, name, step):
      total, metrics = self.stage_losses(p, batch, rng, stage, step)
      return total[name], (total, metrics)

    def grads(p, batch, rng, step=None):
      out = None
      for name in names:
        (_, (total, metrics)), g = jax.value_and_grad(
            group_loss, has_aux=True)(p, batch, rng, name, step)
        g = jax.tree.map(lambda x, lab, name=name:
                         x if lab == name else jnp.zeros_like(x), g, labels)
        out = g if out is None else jax.tree.map(jnp.add, out, g)
      metrics = {**metrics, **{f"loss_{n}": total[n] for n in names}}
      return out, sum(total.values()), metrics

    return grads

  # Stages -------------------------------------------------------------------

  def read_labels(self, params, images: Array) -> dict[str, Array]:
    """h(i): the label reader's most likely value of each feature, [B]."""
    return _read_labels(self, params, to_unit(images))

  def abduct_image(self, params, images: Array, v: Mapping[str, Array],
                   rng: Array, sampler: Mapping[str, Any] | None = None):
    """Image-level abduction: u_I given the image and its features, with
    the sampler settings of the prediction that will use it."""
    abduct, _ = self._image_steps()
    return abduct(self, params, to_unit(images), dict(v), rng,
                  self._sampler(sampler))

  def _image_steps(self) -> tuple[Callable, Callable]:
    """The jitted abduction and prediction, compiled with the mechanism's
    compiler options for the backend (`ctfjax.compiler`)."""
    options = compiler.for_backend(self.compiler_options)
    return _image_steps(None if options is None
                        else tuple(sorted(options.items())))

  def _sampler(self, sampler: Mapping[str, Any] | None):
    if sampler is None:
      return self.sampler
    return mechanisms.sampler_settings(mechanisms.family(self.image_kind),
                                       {**dict(self.sampler), **sampler})

  def predict_image(self, params, v: Mapping[str, Array], u, rng: Array,
                    sampler: Mapping[str, Any] | None = None) -> Array:
    """Prediction f_I(v, u_I): float images in [0, 1], [B, H, W, C].

    Args:
      params: model parameters.
      v: {factor: [B]} features.
      u: u_I from `abduct_image` (or the mechanism's prior).
      rng: PRNG key of a stochastic sampler (ignored by deterministic ones).
      sampler: settings overriding the model's (e.g. {"steps": 50}).
    """
    _, predict = self._image_steps()
    return predict(self, params, dict(v), u, rng, self._sampler(sampler))

  def abduct_features(self, params, v: Mapping[str, Array],
                      do: Mapping[str, Any], rng: Array, n: int,
                      evidence: Sequence[str] | None = None
                      ) -> dict[str, Array]:
    """Feature-level abduction, action and prediction: v' [B, n] per node.

    `evidence`: the features whose factual values the abduction conditions
    on (None: all; see `care_evidence`).
    """
    return self.ncm.counterfactual_sample(
        params["ncm"], v, do, rng, n=n, num_particles=self.num_particles,
        evidence=evidence)

  def care_evidence(self, care: Sequence[str] | None,
                    do: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The features a care set's feature-level abduction conditions on.

    A care set W (docs/evaluation.md, "Care sets") names the features the
    user wants preserved. The abduction conditions on W and on the
    intervened features' own factual values: every W-specific query
    states the factual X = x (the factual side of the pair), and without
    it the other features would be drawn from P(V) instead of P(V | x, w)
    (e.g. a bar kept in W under do(C) would then follow the wrong
    digits). The rest are drawn afresh from the model's posterior.

    Args:
      care: feature names W, or None for every feature.
      do: the intervention ({name: value}).

    Returns:
      The evidence in the model's order, or None (every feature).

    Raises:
      ANCMError: `care` is a string, names an unknown feature, or names an
        intervened one.
    """
    if care is None:
      return None
    check_care(care, self.order, do)
    keep = set(care) | set(do)
    return tuple(k for k in self.order if k in keep)

  def check_do(self, do: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Names and values of an intervention, checked; arrays of the right
    dtype (a scalar or one value per image)."""
    out = {}
    for k, x in do.items():
      if k not in self.features:
        raise ANCMError(f"unknown factor {k!r}; the model has "
                        f"{', '.join(self.order)}")
      kind = self.features[k]
      x = np.asarray(x)
      if isinstance(kind, kinds.Categorical):
        if x.size and (x.min() < 0 or x.max() >= kind.size):
          shown = x.ravel()[0] if x.size == 1 else x
          raise ANCMError(f"do({k}={shown}) is outside its domain "
                          f"0..{kind.size - 1}")
      elif not np.all(np.isfinite(x)):
        raise ANCMError(f"do({k}) must be finite, got {x}")
      out[k] = x.astype(kind.dtype)
    return out

  def edit(self, params, images: Array, do: Mapping[str, Any], rng: Array,
           num_samples: int = 1, labels: Mapping[str, Array] | None = None,
           sampler: Mapping[str, Any] | None = None,
           care: Sequence[str] | None = None) -> dict[str, Array]:
    """Counterfactual edits of `images` under do(), one per abduction draw.

    Args:
      params: model parameters.
      images: [B, H, W, C] uint8 (or float in [0, 1]).
      do: {factor: value} with a scalar or one value per image.
      rng: PRNG key.
      num_samples: n feature-level abductions per image.
      labels: the images' features {factor: [B]}; read by h(i) if None.
      sampler: the image mechanism's sampler settings for this call.
      care: the care set W, features to preserve (not intervened ones);
        None for all features. W's non-descendants of do() keep their
        factual values exactly; the other non-descendants are drawn afresh
        from the model's posterior given W and the intervened features'
        factual values, and may change (`care_evidence`). The image-level
        abduction always uses every factual feature.

    Returns:
      {"image": [B, n, H, W, C] uint8, factor: [B, n]} - the edited
      images and the counterfactual features each was drawn with.
    """
    evidence = self.care_evidence(care, do)
    do = self.check_do(do)
    b = images.shape[0]
    v = labels if labels is not None else self.read_labels(params, images)
    v = {k: jnp.asarray(v[k], self.features[k].dtype) for k in self.order}
    k_feat, k_img, k_pred = jax.random.split(rng, 3)
    u = self.abduct_image(params, images, v, k_img, sampler)
    drawn = self.abduct_features(params, v, do, k_feat, num_samples,
                                 evidence)
    flat_v = {k: drawn[k].reshape(-1) for k in self.order}
    flat_u = jax.tree.map(lambda a: jnp.repeat(a, num_samples, axis=0), u)
    out = self.predict_image(params, flat_v, flat_u, k_pred, sampler)
    out = to_uint8(out).reshape((b, num_samples) + self.image_shape)
    return {"image": out, **{k: drawn[k] for k in self.order}}


def check_care(care: Sequence[str], features: Sequence[str],
               do: Mapping[str, Any]):
  """Checks a care set W against the features and the intervention.

  Args:
    care: feature names (a collection, not a string).
    features: the model's (or dataset's) feature names.
    do: the intervention; only its names are read.

  Raises:
    ANCMError: one line naming the problem: a string instead of names, an
      unknown feature, or an intervened one (it cannot be both preserved
      and set).
  """
  if isinstance(care, str):
    raise ANCMError(f"the care set must be a collection of feature names, "
                    f"e.g. ({care!r},), not the string {care!r}")
  for k in care:
    if k not in features:
      raise ANCMError(f"the care set names unknown feature {k!r}; the model "
                      f"has {', '.join(features)}")
    if k in do:
      raise ANCMError(f"the care set names {k!r}, which do() sets: a "
                      "feature cannot be both preserved and set; drop it "
                      "from the care set")


def to_unit(images: Array) -> Array:
  """uint8 [0, 255] -> float32 [0, 1]; float input is taken as [0, 1]."""
  images = jnp.asarray(images)
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def to_uint8(images: Array) -> Array:
  return jnp.clip(jnp.round(images * 255.0), 0, 255).astype(jnp.uint8)


@functools.partial(jax.jit, static_argnums=0)
def _read_labels(model: ANCM, params, images):
  heads = model._split_heads(model.reader_module(params)(images))
  return {k: model.features[k].mode(h) for k, h in heads.items()}


def _abduct_image(model: ANCM, params, images, v, rng, sampler):
  return model.image_module(params).abduct(images, model.encode(v, params),
                                           rng, **dict(sampler))


def _predict_image(model: ANCM, params, v, u, rng, sampler):
  return model.image_module(params).predict(model.encode(v, params), u, rng,
                                            **dict(sampler))


@functools.cache
def _image_steps(options: tuple[tuple[str, str], ...] | None
                 ) -> tuple[Callable, Callable]:
  """`_abduct_image` and `_predict_image` jitted (the model and sampler
  static) with the XLA compiler options (sorted pairs; None: defaults)."""
  jit = functools.partial(jax.jit, static_argnums=(0, 5),
                          compiler_options=options and dict(options))
  return jit(_abduct_image), jit(_predict_image)
