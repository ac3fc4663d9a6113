"""Compiler options a model's computations ask for, keyed by backend.

A mechanism may name XLA options its programs run fastest with, per backend
(``COMPILER_OPTIONS = {"cpu": {...}}``; `ctfjax.mechanisms.compiler_options`).
Its training and evaluation steps and the ANCM's abduction and prediction
are compiled with the options of the backend JAX computes on
(:func:`for_backend`); a backend the mechanism names nothing for gets XLA's
defaults. It is a per-model choice passed to `jax.jit`, never a
process-wide setting.

:data:`CPU_CONVOLUTIONS_IN_XLA`: XLA's CPU compiler in jax 0.10.2 hands
convolutions, matrix products, element-wise work and reductions to YNNPACK,
whose convolution kernel is slow at the U-Net's 64 channels. These options
let YNNPACK take single matrix products and reductions only, so every
convolution and the element-wise work around it is XLA's own (Eigen). The
diffusion mechanisms ask for them; the VAE, HVAE and GAN, whose
convolutions are narrow, train faster with XLA's defaults
(`python -m benchmarks.xla_options`; docs/speed.md).

``CTFJAX_XLA_CPU_OPTIONS=0`` compiles everything with XLA's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax

from ctfjax import env

VARIABLE = "CTFJAX_XLA_CPU_OPTIONS"

# Which operations XLA may give to YNNPACK (its default: convolutions too).
CPU_CONVOLUTIONS_IN_XLA = {
    "xla_cpu_experimental_ynn_fusion_type": ",".join(
        f"LIBRARY_FUSION_TYPE_{kind}"
        for kind in ("INDIVIDUAL_DOT", "REDUCE")),
}

# {backend: {XLA option: value}}, e.g. {"cpu": CPU_CONVOLUTIONS_IN_XLA}.
Options = Mapping[str, Mapping[str, str]]


def enabled() -> bool:
  """Whether ``CTFJAX_XLA_CPU_OPTIONS`` (``1`` or unset: yes; ``0``: no)
  lets models choose compiler options.

  Raises UserError naming the variable for any other value.
  """
  return env.switch(VARIABLE, "the models' compiler options",
                    "XLA's defaults")


def for_backend(options: Options | None,
                backend: str | None = None) -> dict[str, str] | None:
  """`jax.jit`'s `compiler_options` for a model that asks for `options`.

  Args:
    options: {backend: {option: value}}; None or {} for XLA's defaults.
    backend: the backend to compile for; default `jax.default_backend()`.

  Returns:
    The options named for that backend if `enabled()`, else None.
  """
  if not options or not enabled():
    return None
  chosen = options.get(backend or jax.default_backend())
  return dict(chosen) if chosen else None
