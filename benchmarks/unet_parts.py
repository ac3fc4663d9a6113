r"""The diffusers-size U-Net's heavy parts, one at a time, in JAX or PyTorch.

    python benchmarks/unet_parts.py jax
    /tmp/peer/bin/python benchmarks/unet_parts.py torch

Times a forward and backward pass (the output fed back as its own
cotangent) of each 3x3 convolution shape of `ctfjax.nn.unet
.DIFFUSERS_BENCHMARK` and of its 16x16 self-attention (256 positions, 16
heads of 8) at batch 16 (the benchmark's slices), best of 3 x 5 calls, and
prints a Markdown table of ms (and GFLOP/s for the convolutions). JAX on
the CPU: with XLA's defaults and with the diffusion mechanisms' options
(`ctfjax.compiler.CPU_CONVOLUTIONS_IN_XLA`), attention by
`ctfjax.nn.attention.attention`; JAX on an accelerator: XLA's defaults,
and the attention's two implementations (chunked, and jax.nn's, which
`attention` uses there); PyTorch: 2 threads, as the peer
(`benchmarks/peer_diffusers_unet.py`) runs, attention by
`scaled_dot_product_attention`. This says where the U-Net's training step
loses time to its peer (docs/speed.md, "Where the CPU time goes").
"""

import sys
import time

BATCH = 16
# (height = width, input channels, output channels, stride): the U-Net's
# 3x3 convolutions at its three levels, the skip concatenations' widths
# and the stride-2 downsamplers.
SHAPES = [(32, 64, 64, 1), (32, 128, 64, 1), (32, 192, 64, 1),
          (32, 128, 128, 1), (32, 64, 64, 2), (16, 64, 128, 1),
          (16, 128, 128, 1), (16, 192, 128, 1), (16, 256, 128, 1),
          (16, 128, 128, 2), (8, 128, 128, 1), (8, 256, 128, 1)]
# The 16x16 level's self-attention: positions, heads, head width.
ATTENTION = (256, 16, 8)


def best_seconds(call) -> float:
  call()
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    for _ in range(5):
      call()
    best = min(best, (time.perf_counter() - start) / 5)
  return best


def gflop(h, c_in, c_out, stride) -> float:
  """A forward and backward pass: three convolutions' multiply-adds."""
  out = h // stride
  return 3 * 2 * BATCH * out * out * c_in * c_out * 9 / 1e9


def jax_forward_backward(fn, *args) -> list[float]:
  """Seconds of fn's forward and backward pass (its output fed back as the
  cotangent), compiled with XLA's defaults and, on the CPU, with the
  diffusion options too (on an accelerator they do not apply)."""
  import jax  # pylint: disable=import-outside-toplevel

  from ctfjax import compiler  # pylint: disable=import-outside-toplevel

  def both(*args):
    out, vjp = jax.vjp(fn, *args)
    return vjp(out)

  settings = [None]
  if jax.default_backend() == "cpu":
    settings.append(dict(compiler.CPU_CONVOLUTIONS_IN_XLA))
  times = []
  for options in settings:
    compiled = jax.jit(both).lower(*args).compile(compiler_options=options)
    times.append(best_seconds(
        lambda c=compiled: jax.block_until_ready(c(*args))))
  return times


def jax_times(h, c_in, c_out, stride) -> list[float]:
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (stride, stride), ((1, 1), (1, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jax_forward_backward(conv, jnp.ones((BATCH, h, h, c_in)),
                              jnp.full((3, 3, c_in, c_out), 0.01))


def jax_attention() -> list[float]:
  """The attention's times: on the CPU `attention` (chunked) under both
  settings; on an accelerator its two implementations, chunked and
  `jax.nn.dot_product_attention` (what `attention` picks there)."""
  import functools  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel

  from ctfjax.nn.attention import attention  # pylint: disable=import-outside-toplevel

  qkv = [jax.random.normal(jax.random.key(i), (BATCH,) + ATTENTION)
         for i in range(3)]
  if jax.default_backend() == "cpu":
    return jax_forward_backward(attention, *qkv)
  return [jax_forward_backward(
      functools.partial(attention, implementation=impl), *qkv)[0]
          for impl in ("chunked", "jax")]


def torch_attention() -> list[float]:
  import torch  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(2)
  n, heads, d = ATTENTION
  q, k, v = (torch.randn(BATCH, heads, n, d, requires_grad=True)
             for _ in range(3))

  def both():
    o = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    o.backward(o)
    q.grad = k.grad = v.grad = None

  return [best_seconds(both)]


def torch_times(h, c_in, c_out, stride) -> list[float]:
  import torch  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(2)
  conv = torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
  x = torch.ones(BATCH, c_in, h, h, requires_grad=True)

  def both():
    y = conv(x)
    y.backward(y)
    x.grad = conv.weight.grad = None

  return [best_seconds(both)]


def columns(framework: str) -> tuple[list[str], list[str]]:
  """The table's time columns: for the convolutions, for the attention."""
  if framework == "torch":
    return ["PyTorch, 2 threads"], ["PyTorch, 2 threads"]
  import jax  # pylint: disable=import-outside-toplevel

  if jax.default_backend() == "cpu":
    both = ["XLA defaults", "diffusion options"]
    return both, both
  device = jax.devices()[0].device_kind
  return [f"XLA defaults ({device})"], [f"chunked ({device})",
                                        f"jax.nn ({device})"]


def main(framework: str):
  times, attend = {"jax": (jax_times, jax_attention),
                   "torch": (torch_times, torch_attention)}[framework]
  conv_heads, attention_heads = columns(framework)
  print("| H | in | out | stride | " + " | ".join(conv_heads) + " |")
  print("| --- " * (4 + len(conv_heads)) + "|")
  for shape in SHAPES:
    cells = [f"{s * 1e3:.1f} ms ({gflop(*shape) / s:.0f} GFLOP/s)"
             for s in times(*shape)]
    print("| " + " | ".join(map(str, shape)) + " | " + " | ".join(cells)
          + " |")
  cells = [f"{s * 1e3:.1f} ms" for s in attend()]
  if attention_heads != conv_heads:
    print("\n| H | attention | " + " | ".join(attention_heads) + " |")
    print("| --- " * (2 + len(attention_heads)) + "|")
    print("| 16 | 16 heads of 8 | " + " | ".join(cells) + " |")
  else:
    print("| 16 | attention | 16 heads of 8 | - | " + " | ".join(cells)
          + " |")


if __name__ == "__main__":
  if len(sys.argv) != 2 or sys.argv[1] not in ("jax", "torch"):
    sys.exit("usage: unet_parts.py jax|torch")
  main(sys.argv[1])
