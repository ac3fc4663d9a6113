"""XLA CPU compiler options a model's computations can ask for.

XLA's CPU compiler in jax 0.10.2 hands convolutions, matrix products and
element-wise work to YNNPACK (HLO fusions named ``__ynn_fusion``). Its
convolution kernel is fast with 128 output channels (about 310 GFLOP/s on
this project's 2-core machine at batch 16) but reaches only 160-180 GFLOP/s
with 64, half what PyTorch's oneDNN does on the same shapes; XLA's own
(Eigen) convolution does those shapes about twice as fast (a lone 3x3
convolution's backward pass at 32x32, 64 -> 64 channels: 20.6-25.2 ms with
YNNPACK, 10.4-10.8 ms without).

:data:`CONVOLUTIONS_IN_XLA` keeps YNNPACK for single matrix products,
element-wise work and reductions, and leaves to XLA the convolutions that
are not fused with element-wise work (in the diffusers-size U-Net's
training step, 46 of its 119 convolutions against 3 by default; the 40
of its forward pass stay in YNNPACK fusions with their bias and activation,
but its program changes too). It is a per-model choice, not a
process-wide one: a forward and backward pass of the U-Net (its 32x32
level has 64 channels) ran 1.2-1.4x faster with it and a forward pass
1.15-1.2x (each setting compiled in one process, called in alternation;
the whole DDIM sampler gained 1.07-1.14x in two of three such runs, and
the sliced training step of `launch.benchmark_speed` nothing: README,
"Speed"), but the
seed-004 HVAE, whose convolutions are narrow, ran its training step at
106 img/s with it against 158 without, and the cVAE at 1,724 against 2,023
(`launch.benchmark_speed`, alternating processes). So an image mechanism
names the options its computations want (``XLA_CPU_OPTIONS``,
`ctfjax.mechanisms.base`), and the training and evaluation steps of its
stages and the ANCM's abduction and prediction are compiled with them
(`compiler_options`).

``CTFJAX_XLA_CPU_OPTIONS=0`` compiles everything with XLA's defaults. The
options are XLA CPU options: on any other backend nothing is passed.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax

from ctfjax import env

VARIABLE = "CTFJAX_XLA_CPU_OPTIONS"

# Which operations XLA may give to YNNPACK (its default: convolutions too).
CONVOLUTIONS_IN_XLA = {
    "xla_cpu_experimental_ynn_fusion_type": ",".join(
        f"LIBRARY_FUSION_TYPE_{kind}"
        for kind in ("INDIVIDUAL_DOT", "REDUCE")),
}

Options = Mapping[str, str]


def enabled() -> bool:
  """Whether ``CTFJAX_XLA_CPU_OPTIONS`` (``1`` or unset: yes; ``0``: no)
  lets models choose XLA CPU options.

  Raises UserError naming the variable for any other value.
  """
  return env.switch(VARIABLE, "the models' XLA CPU options",
                    "XLA's defaults")


def compiler_options(options: Options | None) -> dict[str, str] | None:
  """`jax.jit`'s `compiler_options` for a model that asks for `options`:
  them on the CPU backend if `enabled()`, else None (XLA's defaults)."""
  if not options or not enabled() or jax.default_backend() != "cpu":
    return None
  return dict(options)
