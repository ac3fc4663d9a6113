"""XLA CPU compiler options a model's computations can ask for.

XLA's CPU compiler in jax 0.10.2 hands convolutions, matrix products,
element-wise work and reductions to YNNPACK (HLO fusions named
``__ynn_fusion``). Its convolution kernel is slow with the U-Net's 64
channels: a 3x3 convolution's forward and backward pass at 32x32, 64 -> 64
channels, batch 16, took 52.5 ms with it and 17.6 ms in XLA's own (Eigen)
kernel, as long as PyTorch's oneDNN on the same machine (17.6 ms); at
16x16 with 128 channels the three are closer (15.8, 14.8 and 11.5 ms;
`benchmarks/unet_parts.py`, README "Speed").

:data:`CONVOLUTIONS_IN_XLA` lets YNNPACK take single matrix products and
reductions only, so that every convolution, and the element-wise work
around it, is XLA's. (With YNNPACK's element-wise fusions left in, a
convolution fused with its bias and activation stays in YNNPACK: the
U-Net's forward pass kept all 40.) `launch.benchmark_xla_options`
compiles the diffusers-size U-Net's training step and DDIM sampler once
per option set and times them in alternation: 14.84 img/s training and
1.11 sampling with these options, 12.42 and 0.98 with XLA's defaults,
12.60 and 1.06 with element-wise fusions left in YNNPACK (README,
"Speed"). It is a per-model choice, not a process-wide one: the seed-004
HVAE, whose convolutions are narrow, ran its training step at 106 img/s
with convolutions out of YNNPACK against 158 without, and the cVAE at
1,724 against 2,023 (`launch.benchmark_speed`, alternating processes). So
an image mechanism names the options its computations want
(``XLA_CPU_OPTIONS``, `ctfjax.mechanisms.base`), and the training and
evaluation steps of its stages and the ANCM's abduction and prediction are
compiled with them (`compiler_options`).

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
