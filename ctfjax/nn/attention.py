"""Dot-product attention computed in chunks, with its own backward pass.

`jax.nn.dot_product_attention` (XLA's default implementation) builds the
whole [B, heads, N, N] score tensor, its softmax and, for the gradient, the
same again: at the diffusers-size U-Net's 16x16 attention (batch 64, 16
heads, N = 256) that is 268 MB per tensor, so the layer is a sequence of
passes over memory. `attention` takes the (batch, head) pairs a chunk at a
time in a `lax.map` (a chunk's scores stay in the CPU's caches) and keeps
only the output and the per-row log-sum-exp for the backward pass, which
recomputes the chunk's probabilities (the memory-efficient attention of
Rabe & Staats 2021 and FlashAttention, at the granularity of whole rows).

The backward pass builds the probabilities in both orientations, P and P^T,
so that every matrix product contracts the last axis of its left operand:
XLA's CPU dot is 4-5x slower when it contracts the rows of a [N, N] operand
(dV = P^T dO, dK = dS^T Q) than the columns (measured at [16, 256, 256] x
[16, 256, 8]), and recomputing Q K^T costs less than that.

Values and gradients equal the textbook formula's to 1e-10 in float64 and
`jax.nn.dot_product_attention`'s to float32 rounding (tests/test_attention.py).

All of this is for the CPU. On an accelerator a `lax.map` over chunks is a
sequence of small kernels, and `jax.nn.dot_product_attention` (XLA's fused
attention, or cuDNN's where it applies) is the right tool, so `attention`
uses it there (`implementation=None`): on an H200, one 16x16 layer of
the diffusers-size U-Net (batch 16, 16 heads of 8) took 0.4 ms forward and
backward against the chunked 1.7 ms (`benchmarks/unet_parts.py jax`;
docs/speed.md, "On an NVIDIA H200").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array

# (batch, head) pairs per chunk: 8 pairs of 256 x 256 scores are 2 MB, a
# core's L2, where the U-Net's attention ran fastest forward and backward
# on a 2-core CPU (docs/speed.md, "Where the CPU time goes").
CHUNK = 8
# `attention`'s implementations: this module's, and jax.nn's.
IMPLEMENTATIONS = ("chunked", "jax")


def _on_cpu() -> bool:
  """Whether JAX's default backend is the CPU."""
  return jax.default_backend() == "cpu"


def _divisor(n: int, at_most: int) -> int:
  """The largest divisor of n that is at most `at_most` (and >= 1)."""
  return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def _in_chunks(fn, arrays: tuple[Array, ...], chunk: int):
  """fn over consecutive chunks of axis 0 of `arrays` (a `lax.map`), the
  results' chunks joined back along axis 0."""
  n = arrays[0].shape[0]
  size = _divisor(n, chunk)
  split = tuple(a.reshape((n // size, size) + a.shape[1:]) for a in arrays)
  out = jax.lax.map(lambda xs: fn(*xs), split)
  return jax.tree.map(lambda r: r.reshape((n,) + r.shape[2:]), out)


def _forward(q: Array, k: Array, v: Array) -> tuple[Array, Array]:
  """One chunk: (softmax(Q K^T / sqrt(d)) V, the rows' log-sum-exp)."""
  s = jnp.einsum("bqd,bkd->bqk", q, k) * q.shape[-1] ** -0.5
  m = s.max(-1, keepdims=True)
  e = jnp.exp(s - m)
  total = e.sum(-1, keepdims=True)
  return jnp.einsum("bqk,bkd->bqd", e, v) / total, m + jnp.log(total)


def _backward(q: Array, k: Array, v: Array, o: Array, lse: Array,
              do: Array) -> tuple[Array, Array, Array]:
  """One chunk's (dQ, dK, dV) from the saved output and log-sum-exp.

  With P = softmax(S), S = Q K^T / sqrt(d): dV = P^T dO,
  dS = P * (dO V^T - rowsum(dO * O)), dQ = dS K / sqrt(d),
  dK = dS^T Q / sqrt(d). P^T and dS^T are recomputed from K Q^T rather
  than transposed, so each product contracts its left operand's last axis.
  """
  scale = q.shape[-1] ** -0.5
  delta = jnp.sum(do * o, -1, keepdims=True)  # rowsum(dO * O) = rowsum(P dP)
  lse_t, delta_t = jnp.swapaxes(lse, 1, 2), jnp.swapaxes(delta, 1, 2)
  p_t = jnp.exp(jnp.einsum("bkd,bqd->bkq", k, q) * scale - lse_t)
  dv = jnp.einsum("bkq,bqd->bkd", p_t, do)
  ds_t = p_t * (jnp.einsum("bkd,bqd->bkq", v, do) - delta_t) * scale
  dk = jnp.einsum("bkq,bqd->bkd", ds_t, q)
  p = jnp.exp(jnp.einsum("bqd,bkd->bqk", q, k) * scale - lse)
  ds = p * (jnp.einsum("bqd,bkd->bqk", do, v) - delta) * scale
  dq = jnp.einsum("bqk,bkd->bqd", ds, k)
  return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _pairs(q: Array, k: Array, v: Array, chunk: int) -> Array:
  return _in_chunks(_forward, (q, k, v), chunk)[0]


def _pairs_fwd(q, k, v, chunk):
  o, lse = _in_chunks(_forward, (q, k, v), chunk)
  return o, (q, k, v, o, lse)


def _pairs_bwd(chunk, residuals, do):
  return _in_chunks(_backward, residuals + (do,), chunk)


_pairs.defvjp(_pairs_fwd, _pairs_bwd)


def attention(q: Array, k: Array, v: Array, chunk: int = CHUNK,
              implementation: str | None = None) -> Array:
  """softmax(Q K^T / sqrt(d)) V per (batch, head).

  Args:
    q, k, v: [B, N, heads, d] (`jax.nn.dot_product_attention`'s layout).
    chunk: (batch, head) pairs per chunk; the largest divisor of
      B * heads not above it is used.
    implementation: "chunked" (this module's), "jax"
      (`jax.nn.dot_product_attention`), or None: "chunked" when JAX's
      default backend is the CPU, "jax" on an accelerator.

  Returns:
    [B, N, heads, d].
  """
  if implementation is None:
    implementation = "chunked" if _on_cpu() else "jax"
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"unknown attention implementation {implementation!r}; "
                     f"known: {', '.join(IMPLEMENTATIONS)}")
  if implementation == "jax":
    return jax.nn.dot_product_attention(q, k, v)
  b, n, h, d = q.shape
  pairs = lambda a: a.transpose(0, 2, 1, 3).reshape(b * h, n, d)
  o = _pairs(pairs(q), pairs(k), pairs(v), int(chunk))
  return o.reshape(b, h, n, d).transpose(0, 2, 1, 3)
