"""Chunked attention against the textbook formula, values and gradients.

The reference is softmax(Q K^T / sqrt(d)) V written out in float64 numpy
and its gradient by jax.grad of that formula (plain autodiff, no custom
rule); `jax.nn.dot_product_attention` is a second, independent check in
float32.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctfjax.nn import attention as attn


def textbook(q, k, v):
  s = jnp.einsum("bnhd,bmhd->bhnm", q, k) / jnp.sqrt(q.shape[-1])
  p = jax.nn.softmax(s, axis=-1)
  return jnp.einsum("bhnm,bmhd->bnhd", p, v)


def qkv(shape, seed=0, dtype=jnp.float32):
  keys = jax.random.split(jax.random.key(seed), 4)
  return [2.0 * jax.random.normal(k, shape, dtype) for k in keys]


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [1, 4, 16, 100])
def test_values_and_gradients_equal_the_formula_in_float64(chunk):
  # B * heads = 6 pairs: chunk 4 runs as 3 (the largest divisor), 100 as 6.
  with jax.enable_x64(True):
    q, k, v, cot = qkv((3, 10, 2, 4), dtype=jnp.float64)
    got = attn.attention(q, k, v, chunk)
    want = textbook(q, k, v)
    # Scores by hand, in numpy, for one (example, head).
    s = np.asarray(q[1, :, 0]) @ np.asarray(k[1, :, 0]).T / 2.0
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(got[1, :, 0], p @ np.asarray(v[1, :, 0]),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    grads = jax.vjp(lambda *a: attn.attention(*a, chunk), q, k, v)[1](cot)
    ref = jax.vjp(textbook, q, k, v)[1](cot)
    for name, g, r in zip("qkv", grads, ref):
      np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10, err_msg=name)


@pytest.mark.slow
def test_matches_jax_dot_product_attention_under_jit_and_grad():
  q, k, v, _ = qkv((4, 64, 4, 8), seed=1)
  f = jax.jit(lambda q, k, v: attn.attention(q, k, v))
  np.testing.assert_allclose(f(q, k, v),
                             jax.nn.dot_product_attention(q, k, v),
                             rtol=1e-4, atol=1e-5)
  loss = lambda fn: (lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v))))
  got = jax.jit(jax.grad(loss(attn.attention), argnums=(0, 1, 2)))(q, k, v)
  ref = jax.grad(loss(jax.nn.dot_product_attention), argnums=(0, 1, 2))(
      q, k, v)
  for g, r in zip(got, ref):
    np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-4)


def test_large_scores_do_not_overflow():
  # Scores near 1e3: exp would overflow without the row maximum.
  q, k, v, cot = qkv((2, 8, 1, 4), seed=2)
  q, k = 30.0 * q, 30.0 * k
  out = attn.attention(q, k, v, 1)
  grads = jax.vjp(lambda *a: attn.attention(*a, 1), q, k, v)[1](cot)
  assert np.isfinite(out).all()
  assert all(np.isfinite(g).all() for g in grads)
  np.testing.assert_allclose(out, textbook(q, k, v), rtol=1e-4, atol=1e-4)


def test_the_chunked_path_on_the_cpu_and_jax_nn_on_an_accelerator(
    monkeypatch):
  """implementation=None picks this module's chunks on the CPU (a loop and
  the custom backward in the program) and jax.nn.dot_product_attention on
  an accelerator (neither); both give the formula's values."""
  q, k, v, _ = qkv((2, 8, 2, 4), seed=3)
  # A new function each time: a traced program is cached per function.
  program = lambda: jax.make_jaxpr(lambda *a: attn.attention(*a))(q, k, v)
  top_level = lambda: {e.primitive.name for e in program().eqns}
  assert jax.default_backend() == "cpu"
  assert attn._on_cpu()
  assert "custom_vjp_call" in top_level()
  assert "scan" in str(program())  # inside the custom rule
  monkeypatch.setattr(attn, "_on_cpu", lambda: False)
  assert "custom_vjp_call" not in top_level()
  assert "scan" not in str(program())
  # jax.nn's softmax runs in float32 even for float64 inputs.
  np.testing.assert_allclose(attn.attention(q, k, v), textbook(q, k, v),
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="'flash'"):
    attn.attention(q, k, v, implementation="flash")
