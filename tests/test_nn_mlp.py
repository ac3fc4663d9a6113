"""The MLP building block: shapes, parameter count, purity under split/merge."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ctfjax.nn import MLP


def test_shapes_and_parameter_count():
  mlp = MLP(5, (16, 8), 3, rngs=nnx.Rngs(0))
  assert mlp(jnp.ones((7, 5))).shape == (7, 3)
  assert mlp(jnp.ones((2, 4, 5))).shape == (2, 4, 3)
  _, params = nnx.split(mlp)
  count = sum(x.size for x in jax.tree.leaves(params))
  assert count == (5 * 16 + 16) + (16 * 8 + 8) + (8 * 3 + 3)


def test_no_activation_after_last_layer():
  # Logits must be free to go negative: a final ReLU would clip them.
  mlp = MLP(2, (32,), 4, rngs=nnx.Rngs(1))
  out = mlp(jax.random.normal(jax.random.key(0), (256, 2)))
  assert float(out.min()) < 0.0


def test_pure_through_split_merge():
  mlp = MLP(3, (8,), 2, rngs=nnx.Rngs(2))
  graphdef, params = nnx.split(mlp)
  x = jnp.arange(6.0).reshape(2, 3)

  @jax.jit
  def apply(p, x):
    return nnx.merge(graphdef, p)(x)

  np.testing.assert_array_equal(apply(params, x), mlp(x))
