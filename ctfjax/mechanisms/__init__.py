"""Image mechanisms f_I(v, u_I) behind one interface, chosen by config.

    config.model.image.kind = "vae"          # a key of REGISTRY
    config.model.image.vae.latent_dim = 16   # that family's own settings

`base.ImageMechanism` is the interface the ANCM calls (loss per training
stage, abduct, predict with sampler settings, prior, relabel); a new family
is one module with a class implementing it plus one line in `REGISTRY`.
"""

from __future__ import annotations

from typing import Sequence

import ml_collections
from flax import nnx

from ctfjax.mechanisms import cgn
from ctfjax.mechanisms import dear
from ctfjax.mechanisms import diffusion
from ctfjax.mechanisms import gan
from ctfjax.mechanisms import hvae
from ctfjax.mechanisms import vae
from ctfjax.mechanisms import vae_ddpm
from ctfjax.mechanisms.base import Context, Features, Group, ImageMechanism
from ctfjax.mechanisms.base import MechanismError
from ctfjax.mechanisms.base import Stage, path_names, sampler_settings
from ctfjax.mechanisms.base import compiler_options

# kind (config `model.image.kind`) -> mechanism class.
REGISTRY: dict[str, type] = {
    "vae": vae.VAE,
    "gan": gan.GAN,
    "hvae": hvae.HVAE,
    "ddpm": diffusion.Diffusion,
    "vae_ddpm": vae_ddpm.VAEDDPM,
    "cgn": cgn.CGN,
    "dear": dear.DEAR,
}


def family(kind: str) -> type:
  """The mechanism class of `kind`; a one-line error names an unknown one."""
  if kind not in REGISTRY:
    raise MechanismError(f"unknown image mechanism kind {kind!r} (config "
                         f"key 'model.image.kind'); known: "
                         f"{', '.join(REGISTRY)}")
  return REGISTRY[kind]


def image_config(kind: str = "vae") -> ml_collections.ConfigDict:
  """The `model.image` config section: the kind and every family's settings.

  Every registered family's defaults are included, so that
  `--config.model.image.kind=K` and `--config.model.image.K.FIELD=...` work
  on any ANCM config.
  """
  family(kind)
  config = ml_collections.ConfigDict()
  config.kind = kind  # One of REGISTRY: the image mechanism's family.
  for name, cls in REGISTRY.items():
    config[name] = cls.default_config()
  return config


def settings(image: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The chosen family's settings: its defaults updated by the config's.

  The family's `RETIRED` settings (removed ones, still in the config.json
  of a run written before) are left out: they configure nothing, and such
  a run still loads and resumes.
  """
  cls = family(image.kind)
  out = cls.default_config()
  if image.kind in image:
    retired = getattr(cls, "RETIRED", ())
    out.update({k: v for k, v in image[image.kind].items()
                if k not in retired})
  return out


def create(image: ml_collections.ConfigDict, image_shape: Sequence[int],
           features: Features | int, rngs: nnx.Rngs) -> ImageMechanism:
  """A freshly initialised mechanism from the `model.image` config section,
  for the features `features` (`Features`; an int: `Features.of`)."""
  return family(image.kind).create(image_shape, features, settings(image),
                                   rngs=rngs)


def stages(image: ml_collections.ConfigDict,
           steps: int) -> tuple[Stage, ...]:
  """The chosen family's training stages (`steps` = `train.steps`)."""
  return family(image.kind).stages(settings(image), steps)


__all__ = ["Context", "Features", "Group", "ImageMechanism", "MechanismError",
           "REGISTRY", "Stage", "create", "family", "image_config",
           "path_names", "sampler_settings", "settings", "stages",
           "compiler_options"]
