"""The augmented neural causal model (ANCM): NCM over V plus an image mechanism.

An ANCM (science.md §4) is a G-constrained NCM over the generative factors V
(`ctfjax.ncm`) and a neural image mechanism I := f_I(V, U_I) whose exogenous
U_I is independent of the feature latents. Editing image i under do(X = x'):

1. labels v: given, or read from the image by the label reader h(i);
2. feature-level abduction: the NCM's exogenous posterior given V = v;
3. image-level abduction: u_I from the image mechanism's inference network;
4. action do(X = x') and prediction: v' = V_{x'}(u_V), i' = f_I(v', u_I).

Steps 2 and 4 on the features are the NCM's `counterfactual_sample`; steps 3
and 4 on the image are `abduct_image` and `predict_image`, separate jitted pure
functions. Repeating the feature-level abduction n times gives n edits: a
distribution, because descendants of X are not identified.

Training objective (per batch, a sum of means):

* -log P^(v): the NCM's Monte-Carlo marginal likelihood of the labels;
* the image mechanism's negative ELBO of i given v, in nats per pixel value;
* label reader: cross-entropy of h(i) against v on real images;
* **[ours]** label faithfulness, weighted by `faithful_weight`: images are
  decoded from the abducted u_I with labels v~ drawn from the NCM (a fresh
  sample of P^(V), not the image's own labels), and the frozen label reader
  must read v~ back (cross-entropy, gradients into the image mechanism only).
  This makes f_I invertible w.r.t. V in the sense of the ASCM definition: an
  edit shows the labels it was asked for, rather than ones the decoder could
  smuggle through U_I.

Everything a training step or a user calls is a pure function of
(params, inputs, rng): `params` is {"ncm", "image", "reader"} of nnx states,
merged with the static graph definitions at the boundary.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ctfjax.ancm.image_vae import VAEImageMechanism
from ctfjax.causal.graph import Graph
from ctfjax.errors import UserError
from ctfjax.ncm.model import NCM
from ctfjax.nn.conv import ConvClassifier

Array = jax.Array


class ANCMError(UserError):
  """Bad input to an ANCM: unknown factor, value outside its domain, ..."""


@dataclasses.dataclass(frozen=True, eq=False)
class ANCM:
  """Static structure of an ANCM; parameters live in a separate pytree.

  Attributes:
    ncm: the feature-level NCM (static part).
    image_def: nnx graph definition of the image mechanism.
    reader_def: nnx graph definition of the label reader h(i).
    image_shape: (H, W, C).
    num_particles: prior particles for feature-level abduction.
    faithful_weight: weight of the label-faithfulness term.
  """

  ncm: NCM
  image_def: Any
  reader_def: Any
  image_shape: tuple[int, int, int]
  num_particles: int = 256
  faithful_weight: float = 1.0
  likelihood_particles: int = 64

  @property
  def order(self) -> tuple[str, ...]:
    return self.ncm.order

  @property
  def domains(self) -> dict[str, int]:
    return self.ncm.domains

  @property
  def graph(self) -> Graph:
    return self.ncm.graph

  def __hash__(self):
    return id(self)

  # Building -----------------------------------------------------------------

  @classmethod
  def create(cls, graph: Graph | str, domains: Mapping[str, int],
             image_shape: Sequence[int], rng: Array | int, *,
             ncm_kwargs: Mapping | None = None,
             image_kwargs: Mapping | None = None,
             num_particles: int = 256, faithful_weight: float = 1.0,
             likelihood_particles: int = 64) -> tuple[ANCM, dict]:
    """Builds the model and its initial parameters.

    Args:
      graph: the diagram over the features V (the image is a child of all).
      domains: feature -> number of values.
      image_shape: (H, W, C) of the images.
      rng: PRNG key or int seed.
      ncm_kwargs: `latent_dim`, `hidden`, `latent_prior` of the NCM.
      image_kwargs: keyword arguments of `VAEImageMechanism`.
      num_particles: prior particles for feature-level abduction.
      faithful_weight: weight of the label-faithfulness term (0 disables).
      likelihood_particles: Monte-Carlo latents for -log P^(v) in training.

    Returns:
      (model, params).
    """
    key = jax.random.key(rng) if isinstance(rng, int) else rng
    k_ncm, k_img, k_reader = jax.random.split(key, 3)
    ncm, ncm_params = NCM.create(graph, domains, k_ncm, **(ncm_kwargs or {}))
    cond_dim = sum(ncm.domains.values())
    image_def, image_params = nnx.split(VAEImageMechanism(
        image_shape, cond_dim, rngs=nnx.Rngs(k_img), **(image_kwargs or {})))
    reader_def, reader_params = nnx.split(ConvClassifier(
        image_shape, list(ncm.domains.values()), rngs=nnx.Rngs(k_reader)))
    model = cls(ncm, image_def, reader_def, tuple(image_shape),
                int(num_particles), float(faithful_weight),
                int(likelihood_particles))
    return model, {"ncm": ncm_params, "image": image_params,
                   "reader": reader_params}

  # Encodings ----------------------------------------------------------------

  def encode(self, v: Mapping[str, Array]) -> Array:
    """Features as the image mechanism's condition: one-hots, [B, sum K]."""
    return jnp.concatenate(
        [jax.nn.one_hot(v[k], self.domains[k]) for k in self.order], axis=-1)

  def _split_logits(self, logits: Array) -> dict[str, Array]:
    out, start = {}, 0
    for k in self.order:
      out[k] = logits[..., start:start + self.domains[k]]
      start += self.domains[k]
    return out

  def image_module(self, params) -> VAEImageMechanism:
    return nnx.merge(self.image_def, params["image"])

  def reader_module(self, params) -> ConvClassifier:
    return nnx.merge(self.reader_def, params["reader"])

  # Training -----------------------------------------------------------------

  def loss(self, params, batch: Mapping[str, Array], rng: Array):
    """The training objective (see the module docstring) and its parts.

    Args:
      params: {"ncm", "image", "reader"}.
      batch: {"image": [B, H, W, C] uint8 or float in [0, 1], one [B] int
        array per feature}.
      rng: PRNG key.

    Returns:
      (scalar loss, {name: scalar}).
    """
    k_v, k_img, k_prior = jax.random.split(rng, 3)
    images = to_unit(batch["image"])
    v = {k: batch[k] for k in self.order}
    nll_v = -self.ncm.log_likelihood(params["ncm"], v, k_v,
                                     self.likelihood_particles).mean()
    image = self.image_module(params)
    cond = self.encode(v)
    neg_elbo, parts = image.loss(images, cond, k_img)
    dims = float(np.prod(self.image_shape))
    reader = self.reader_module(params)
    read = self._split_logits(reader(images))
    ce_real = sum(optax.softmax_cross_entropy_with_integer_labels(
        read[k], v[k]).mean() for k in self.order)
    loss = nll_v + neg_elbo.mean() / dims + ce_real
    metrics = {"nll_v": nll_v, "neg_elbo_per_dim": neg_elbo.mean() / dims,
               "kl": parts["kl"].mean(), "recon_l1": parts["recon_l1"].mean(),
               "reader_ce": ce_real}
    if self.faithful_weight > 0:
      # Labels drawn from the model's own P^(V), decoded with each image's
      # abducted u_I: the frozen reader must see the requested labels.
      v_new = self.ncm.sample(jax.lax.stop_gradient(params["ncm"]), k_prior,
                              images.shape[0])
      u = image.abduct(images, cond, k_prior)
      fake = image.predict(self.encode(v_new), u)
      frozen = nnx.merge(self.reader_def,
                         jax.lax.stop_gradient(params["reader"]))
      read_fake = self._split_logits(frozen(fake))
      ce_fake = sum(optax.softmax_cross_entropy_with_integer_labels(
          read_fake[k], v_new[k]).mean() for k in self.order)
      loss = loss + self.faithful_weight * ce_fake
      metrics["faithful_ce"] = ce_fake
    return loss, metrics

  # Stages -------------------------------------------------------------------

  def read_labels(self, params, images: Array) -> dict[str, Array]:
    """h(i): the label reader's most likely value of each feature, [B]."""
    return _read_labels(self, params, to_unit(images))

  def abduct_image(self, params, images: Array, v: Mapping[str, Array],
                   rng: Array):
    """Image-level abduction: u_I ~ q(u_I | i, v)."""
    return _abduct_image(self, params, to_unit(images), dict(v), rng)

  def predict_image(self, params, v: Mapping[str, Array], u) -> Array:
    """Prediction f_I(v, u_I): float images in [0, 1], [B, H, W, C]."""
    return _predict_image(self, params, dict(v), u)

  def abduct_features(self, params, v: Mapping[str, Array],
                      do: Mapping[str, int], rng: Array, n: int
                      ) -> dict[str, Array]:
    """Feature-level abduction, action and prediction: v' [B, n] per node."""
    return self.ncm.counterfactual_sample(
        params["ncm"], v, do, rng, n=n, num_particles=self.num_particles)

  def check_do(self, do: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for k, x in do.items():
      if k not in self.domains:
        raise ANCMError(f"unknown factor {k!r}; the model has "
                        f"{', '.join(self.order)}")
      x = np.asarray(x)
      if x.size and (x.min() < 0 or x.max() >= self.domains[k]):
        raise ANCMError(f"do({k}={x.ravel()[0] if x.size == 1 else x}) is "
                        f"outside its domain 0..{self.domains[k] - 1}")
      out[k] = x.astype(np.int32)
    return out

  def edit(self, params, images: Array, do: Mapping[str, Any], rng: Array,
           num_samples: int = 1, labels: Mapping[str, Array] | None = None
           ) -> dict[str, Array]:
    """Counterfactual edits of `images` under do(), one per abduction draw.

    Args:
      params: model parameters.
      images: [B, H, W, C] uint8 (or float in [0, 1]).
      do: {factor: value} with a scalar or one value per image.
      rng: PRNG key.
      num_samples: n feature-level abductions per image.
      labels: the images' features {factor: [B]}; read by h(i) if None.

    Returns:
      {"image": [B, n, H, W, C] uint8, factor: [B, n] int} - the edited
      images and the counterfactual features each was drawn with.
    """
    do = self.check_do(do)
    b = images.shape[0]
    v = labels if labels is not None else self.read_labels(params, images)
    v = {k: jnp.asarray(v[k], jnp.int32) for k in self.order}
    k_feat, k_img = jax.random.split(rng)
    u = self.abduct_image(params, images, v, k_img)
    # The NCM takes a static do(); per-image values are grouped by value.
    per_image = np.stack([np.broadcast_to(do[k], (b,)) for k in do], -1) \
        if do else np.zeros((b, 0), np.int32)
    new_v = {k: np.zeros((b, num_samples), np.int32) for k in self.order}
    for g, combo in enumerate(np.unique(per_image, axis=0)):
      rows = np.nonzero((per_image == combo).all(-1))[0]
      sub = {k: v[k][rows] for k in self.order}
      drawn = self.abduct_features(params, sub, dict(zip(do, combo.tolist())),
                                   jax.random.fold_in(k_feat, g), num_samples)
      for k in self.order:
        new_v[k][rows] = np.asarray(drawn[k])
    flat_v = {k: jnp.asarray(new_v[k].reshape(-1)) for k in self.order}
    flat_u = jax.tree.map(lambda a: jnp.repeat(a, num_samples, axis=0), u)
    out = self.predict_image(params, flat_v, flat_u)
    out = to_uint8(out).reshape((b, num_samples) + self.image_shape)
    return {"image": out, **{k: jnp.asarray(new_v[k]) for k in self.order}}


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
  logits = model._split_logits(model.reader_module(params)(images))
  return {k: jnp.argmax(x, -1).astype(jnp.int32) for k, x in logits.items()}


@functools.partial(jax.jit, static_argnums=0)
def _abduct_image(model: ANCM, params, images, v, rng):
  return model.image_module(params).abduct(images, model.encode(v), rng)


@functools.partial(jax.jit, static_argnums=0)
def _predict_image(model: ANCM, params, v, u):
  return model.image_module(params).predict(model.encode(v), u)
