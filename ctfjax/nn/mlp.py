"""A plain multi-layer perceptron, the mechanism network of discrete NCMs.

Dense layers with a non-linearity between them and none after the last, so
the output is free (logits, means, log-scales). No normalisation or dropout:
mechanisms must stay pure functions of their parameters.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
from flax import nnx


class MLP(nnx.Module):
  """x [..., in_features] -> [..., out_features] through `hidden` widths."""

  def __init__(self, in_features: int, hidden: Sequence[int],
               out_features: int, *, rngs: nnx.Rngs,
               activation: Callable[[jax.Array], jax.Array] = nnx.relu):
    """Builds the layers.

    Args:
      in_features: input width, at least 1.
      hidden: widths of the hidden layers, input side first.
      out_features: output width.
      rngs: initialisation randomness.
      activation: applied after every layer but the last.
    """
    widths = [in_features, *hidden, out_features]
    self.layers = nnx.List([
        nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])
    ])
    self.activation = activation

  def __call__(self, x: jax.Array) -> jax.Array:
    for layer in self.layers[:-1]:
      x = self.activation(layer(x))
    return self.layers[-1](x)
