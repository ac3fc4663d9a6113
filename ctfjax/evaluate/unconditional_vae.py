"""The unconditional VAE whose latent posteriors measure minimality (CLD).

CLD (`metrics.cld`) compares images by the KL divergence between their
latent Gaussians q(z | x) under a VAE that knows nothing about the features
(Melistas et al. 2024, 3.3): how far an edit moved the image, against how far
real images of the old and of the new parent value lie. This module trains
that VAE on the run's training images, once, and caches it like the feature
readers under `<workdir>/evaluators/latent_vae/` (`networks`).

The encoder and decoder are the models' convolutional networks after Melistas
et al. (`ctfjax.nn.conv`) with no features to condition on. The likelihood is
Bernoulli on pixel intensities in [0, 1] (binary cross-entropy on logits), not
the image mechanism's fixed-scale Gaussian on a sigmoid mean: trained
unconditionally, that one settled on drawing the blue bar and no digit at all
(its sigmoid saturates, so the strokes' gradient vanishes), and a latent that
ignores the digit and its colour measures nothing useful.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from ctfjax import data
from ctfjax import train
from ctfjax.evaluate import networks
from ctfjax.nn import gaussian
from ctfjax.nn.conv import ConvDecoder, ConvEncoder

NAME = "latent_vae"
LATENT_DIM = 16
# Part of the cache's identity: a cache of another network is retrained.
NETWORK = f"conv VAE, Bernoulli likelihood, latent {LATENT_DIM}"


class UnconditionalVAE(nnx.Module):
  """q(z | x) and a Bernoulli p(x | z) over images in [0, 1]."""

  def __init__(self, image_shape, latent_dim: int, *, rngs: nnx.Rngs):
    self.encoder = ConvEncoder(image_shape, 0, latent_dim, rngs=rngs)
    # Three 2x upsamplings from an (H/8, W/8) base: 4x4 at 32x32 (the
    # decoder's default), 8x8 at 64x64.
    h, w = image_shape[:2]
    self.decoder = ConvDecoder(image_shape, 0, latent_dim, rngs=rngs,
                               base=(h >> 3, w >> 3, 32))

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean, log-variance) [B, Z] of q(z | x)."""
    return self.encoder(x, _no_cond(x))

  def decode(self, z: jax.Array) -> jax.Array:
    """Pixel means [B, H, W, C] in [0, 1]."""
    return jax.nn.sigmoid(self.decoder(z, _no_cond(z))[0])

  def loss(self, x: jax.Array, rng: jax.Array):
    """Negative ELBO per example, and its parts."""
    mean, logvar = self.encode(x)
    z = gaussian.reparameterize(rng, mean, logvar)
    logits = self.decoder(z, _no_cond(z))[0]
    nll = optax.sigmoid_binary_cross_entropy(logits, x)
    nll = nll.reshape(x.shape[0], -1).sum(-1)
    kl = gaussian.kl_to_standard_normal(mean, logvar)
    return nll + kl, {"nll": nll, "kl": kl}


def _no_cond(x: jax.Array) -> jax.Array:
  return jnp.zeros((x.shape[0], 0), x.dtype)


@functools.cache
def _module(image_shape: tuple[int, ...]) -> train.PureModule:
  return train.PureModule(lambda rngs: UnconditionalVAE(
      image_shape, LATENT_DIM, rngs=rngs))


def _floats(images) -> jax.Array:
  return jnp.asarray(images, jnp.float32) / 255.0


def _loss_fn(module: train.PureModule):
  def loss(params, batch, rng):
    per_example, parts = module.apply(params, _floats(batch["image"]), rng,
                                      method="loss")
    return per_example.mean(), {k: v.mean() for k, v in parts.items()}
  return loss


@functools.partial(jax.jit, static_argnames=("module", "method"))
def _apply(module, params, x, method):
  return module.apply(params, x, method=method)


def vae_config(steps: int, batch_size: int = 64,
               seed: int = 0) -> ml_collections.ConfigDict:
  """The VAE's training config (a `networks.network_config`)."""
  config = networks.network_config(steps, batch_size=batch_size, seed=seed)
  config.train.learning_rate = 1e-3
  return config


@dataclasses.dataclass(frozen=True)
class LatentVAE:
  """Encodes images to the VAE's latent Gaussians.

  Attributes:
    module: the network (`UnconditionalVAE`).
    params: its parameters.
    info: {"name", "steps", "dataset", ..., "note"}.
  """

  module: train.PureModule
  params: Any
  info: Mapping[str, Any]
  batch_size: int = 256

  name = NAME

  def encode(self, images) -> tuple[np.ndarray, np.ndarray]:
    """(mean, log-variance), each [N, LATENT_DIM], of uint8 images."""
    images = np.asarray(images)
    parts = [_apply(self.module, self.params,
                    _floats(images[i:i + self.batch_size]), "encode")
             for i in range(0, len(images), self.batch_size)]
    return (np.concatenate([np.asarray(m) for m, _ in parts]),
            np.concatenate([np.asarray(v) for _, v in parts]))


def latent_vae(workdir: str | pathlib.Path, *, dataset: data.Dataset,
               size: int | None = None, steps: int = 1000,
               seed: int = 0) -> LatentVAE:
  """The run's CLD encoder: trained once on its training images, then cached.

  Args:
    workdir: the run's folder; the VAE lives in
      `<workdir>/evaluators/latent_vae/`.
    dataset: the run's dataset entry.
    size: training images (None = the dataset's default).
    steps: training steps (batch 64) when it has to be trained.
    seed: training seed.

  Returns:
    The encoder, with its reconstruction L1 (0-255) on held-out test images.
  """
  path = networks.folder(workdir, NAME)
  config = vae_config(steps, seed=seed)
  identity = {"network": NETWORK, "steps": steps, "dataset": dataset.name,
              "size": size, **dataset.identity("train")}
  ds = dataset.load("train", size)
  images = {"image": np.asarray(ds["image"])}
  module = _module(tuple(images["image"].shape[1:]))
  task = train.Task(
      init=module.init, loss=_loss_fn(module),
      train_batches=lambda start: data.batches(
          images, config.train.batch_size, seed=seed, start_step=start))
  params, info = networks.train_cached(path, identity, config, task)
  if info is not None:
    return LatentVAE(module, params, info)
  test = np.asarray(dataset.load("test", 500)["image"])
  vae = LatentVAE(module, params, {})
  recon = _apply(module, params, jnp.asarray(vae.encode(test)[0]), "decode")
  info = {
      "name": NAME, **identity,
      "trained_on": (f"{len(images['image'])} training images of "
                     f"{dataset.name}"),
      "test_recon_l1": float(np.mean(np.abs(
          np.asarray(recon) * 255.0 - test.astype(np.float32)))),
      "note": ("Unconditional VAE (the models' conv encoder and decoder, "
               "no features, Bernoulli likelihood) for minimality: CLD "
               "compares images by the KL between their latent Gaussians "
               "q(z | x), mean and variance."),
  }
  networks.write_info(path, info)
  return LatentVAE(module, params, info)
