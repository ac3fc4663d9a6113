"""The two-stage VAE + DDPM image mechanism (Pan & Bareinboim; DiffuseVAE).

f_I(v, u_I) = refine(vae(v, z), v, x_T): the conditional VAE of
`ctfjax.mechanisms.vae` draws a coarse image y = mu(z, v); a diffusion
refiner (`ctfjax.mechanisms.diffusion` with y channel-concatenated to its
input, Pandey et al.'s DiffuseVAE "formulation 1") adds the detail, from
noise x_T by DDIM under (y, v). U_I = (z, x_T).

Training, two stages: "vae" (the VAE's negative ELBO; the NCM, the reader
and the label-faithfulness term through the VAE's cheap decode train with
it), then "refiner" (the epsilon loss of the refiner on real images given
the frozen VAE's reconstructions y = mu(E[z | i, v], v)). A refiner that
only has to add detail to y learns far faster than a model that generates
from noise.

Abduction of a real image: z = the VAE's posterior mean, then x_T = DDIM
inversion of the refiner from the image given its factual coarse image y
and features v. An edit decodes y' = mu(z, v') and runs the refiner from
the same x_T under (y', v'): factual and counterfactual share both noises.
`relabel` is the VAE's (its one-pass decode).
"""

from __future__ import annotations

from typing import Sequence

import jax
import ml_collections
from flax import nnx

from ctfjax.mechanisms import diffusion
from ctfjax.mechanisms import vae
from ctfjax.mechanisms.base import Features, Group, Stage


class VAEDDPM(nnx.Module):
  """A conditional VAE refined by a conditional DDPM (DDIM-inverted)."""

  SAMPLER = dict(diffusion.Diffusion.SAMPLER)
  COMPILER_OPTIONS = diffusion.Diffusion.COMPILER_OPTIONS  # the refiner's U-Net

  def __init__(self, image_shape: Sequence[int], features: Features | int,
               config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    self.image_shape = tuple(image_shape)
    self.vae = vae.VAE.create(image_shape, features, config.vae, rngs=rngs)
    self.refiner = diffusion.Diffusion(
        image_shape, Features.of(features).cond_dim, rngs=rngs,
        extra_channels=self.image_shape[-1],
        **diffusion.mechanism_kwargs(config.refiner))

  # Family -------------------------------------------------------------------

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.vae = vae.VAE.default_config()  # Stage 1: the VAE (vae.py's fields).
    # Stage 2: the refiner (diffusion.py's fields; its `sampler` is unused:
    # the settings below serve both).
    c.refiner = diffusion.Diffusion.default_config()
    # Refiner steps as a fraction of train.steps (the VAE takes train.steps).
    c.refiner_fraction = 1.0
    c.sampler = dict(cls.SAMPLER)  # DDIM levels, eta, guidance (refiner).
    return c

  @classmethod
  def accelerator_config(cls, image_shape: Sequence[int] | None = None
                         ) -> ml_collections.ConfigDict:
    """The `accel` size preset for images of `image_shape`: each stage's."""
    c = cls.default_config()
    c.vae = vae.VAE.accelerator_config(image_shape)
    c.refiner = diffusion.Diffusion.accelerator_config(image_shape)
    c.sampler["steps"] = 50
    return c

  @classmethod
  def create(cls, image_shape: Sequence[int], features: Features | int,
             config: ml_collections.ConfigDict, *,
             rngs: nnx.Rngs) -> VAEDDPM:
    return cls(image_shape, features, config, rngs=rngs)

  @classmethod
  def stages(cls, config: ml_collections.ConfigDict,
             steps: int) -> tuple[Stage, ...]:
    refiner_steps = max(1, round(steps * config.refiner_fraction))
    return (Stage("vae", steps, (Group("loss", lambda p: p[0] == "vae"),)),
            Stage("refiner", refiner_steps,
                  (Group("loss", lambda p: p[0] == "refiner"),)))

  # Mechanism ----------------------------------------------------------------

  def _coarse(self, images, cond):
    """The frozen VAE's reconstruction y of images under cond, [0, 1]."""
    z = self.vae.abduct(images, cond)["z"]
    return jax.lax.stop_gradient(self.vae.predict(cond, {"z": z})), z

  def loss(self, images, cond, rng, stage="vae", context=None):
    if stage == "vae":
      return self.vae.loss(images, cond, rng, stage, context)
    y, _ = self._coarse(images, cond)
    return self.refiner.loss(images, cond, rng, extra=y)

  def abduct(self, images, cond, rng=None, **sampler):
    """u_I = {"z": VAE posterior mean, "x_T": refiner inversion given y}."""
    y, z = self._coarse(images, cond)
    u = self.refiner.abduct(images, cond, rng, extra=y, **sampler)
    return {"z": z, "x_T": u["x_T"]}

  def predict(self, cond, u, rng=None, **sampler):
    y = self.vae.predict(cond, {"z": u["z"]})
    return self.refiner.predict(cond, {"x_T": u["x_T"]}, rng, extra=y,
                                **sampler)

  def prior(self, rng, batch: int):
    k_z, k_x = jax.random.split(rng)
    return {"z": self.vae.prior(k_z, batch)["z"],
            **self.refiner.prior(k_x, batch)}

  def relabel(self, images, cond, new_cond, rng):
    """The VAE's one-pass decode (the refiner only adds detail)."""
    return self.vae.relabel(images, cond, new_cond, rng)
