"""A conditional rational-quadratic spline flow for continuous features.

`Spline` is the feature kind of a real value whose law given its parents is
a one-dimensional conditional normalizing flow, as Melistas et al. (2024,
Appendix A.1, Table 6) model MorphoMNIST thickness and intensity:

  value = loc + scale * (shift + exp(log_s) * s(eps)),   eps ~ N(0, 1),

with s a monotone rational-quadratic spline (Durkan et al. 2019) on
[-bound, bound], identity outside it, followed by an affine map. With
`num_layers` = L > 1, s is the composition s_L o ... o s_1 of L such
splines, as the paper stacks three: in one dimension there is nothing to
permute between layers, so a stack is a monotone map of more pieces than
one spline of the same bins, at L times the head. Every
parameter of the splines and of the affine map is read from the head, so
the mechanism network (the NCM's MLP given the parents and latents) is the
flow's conditioner. `loc` and `scale` fix standardised units, as in
`kinds.Continuous`, which this kind extends: at a zero head both kinds are
the same map (s is then the identity).

The map is increasing in eps, so abduction is its exact inverse and the
value's median is the image of eps = 0. The bijector maths (bins, knots,
the quadratic inverse, log-Jacobians) is distrax's
`RationalQuadraticSpline` and `ScalarAffine`, not formulas of our own.
"""

from __future__ import annotations

import dataclasses
import math

import distrax
import jax
import jax.numpy as jnp

from ctfjax.causal import kinds

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Spline(kinds.Continuous):
  """A real value from a conditional spline-then-affine flow of N(0, 1).

  The head [..., num_layers * (3 * bins - 1) + 2] is laid out as

    [spline 1 | ... | spline num_layers | shift | log_s],
    spline l = [widths (bins) | heights (bins) |
                interior knot slopes (bins - 1)],

  all unconstrained (distrax normalises widths and heights with a softmax
  and slopes with a softplus); spline 1 acts first on the noise. The two
  boundary slopes are fixed at 1 so that each spline joins its identity
  tails smoothly; distrax's parameter vector still holds a slot for each,
  which `_bijector` fills. log_s is clamped below at
  `kinds.MIN_LOG_SCALE`. One layer is the head [..., 3 * bins + 1].

  Attributes:
    loc: the value of a standardised 0 (the data's mean).
    scale: one standardised unit (the data's spread).
    bins: the number of spline bins K (at least 2).
    bound: the spline acts on [-bound, bound] of the noise; outside it the
      flow is affine, so the tails stay Gaussian. Each spline of a stack
      maps [-bound, bound] onto itself, so the stack does too.
    num_layers: splines composed (at least 1).
  """

  bins: int = 8
  bound: float = 3.0
  num_layers: int = 1

  def __post_init__(self):
    super().__post_init__()
    if int(self.bins) != self.bins or self.bins < 2:
      raise kinds.KindError(f"a spline kind needs an integer bins >= 2, got "
                            f"{self.bins}")
    if not (math.isfinite(self.bound) and self.bound > 0):
      raise kinds.KindError(f"a spline kind needs a finite positive bound, "
                            f"got {self.bound}")
    layers = self.num_layers
    if (isinstance(layers, bool) or not isinstance(layers, (int, float))
        or layers != int(layers) or layers < 1):
      raise kinds.KindError(f"a spline kind needs an integer num_layers >= "
                            f"1, got {layers!r}")
    object.__setattr__(self, "bins", int(self.bins))
    object.__setattr__(self, "bound", float(self.bound))
    object.__setattr__(self, "num_layers", int(layers))

  @property
  def _spline_size(self) -> int:
    """Head entries of one spline of the stack."""
    return 3 * self.bins - 1

  @property
  def head_size(self) -> int:
    return self.num_layers * self._spline_size + 2

  def _spline(self, head: Array) -> distrax.Bijector:
    """One spline from its part [..., 3 * bins - 1] of the head."""
    k = self.bins
    # distrax wants [widths, heights, K + 1 knot slopes]; the two boundary
    # slots are ignored under boundary_slopes="identity", so zeros fill them.
    pad = jnp.zeros_like(head[..., :1])
    params = jnp.concatenate(
        [head[..., :2 * k], pad, head[..., 2 * k:3 * k - 1], pad], -1)
    return distrax.RationalQuadraticSpline(
        params, -self.bound, self.bound, boundary_slopes="identity")

  def _bijector(self, head: Array) -> distrax.Bijector:
    """The map eps -> value for a head [..., head_size] (batch [...])."""
    size, n = self._spline_size, self.num_layers * self._spline_size
    splines = [self._spline(head[..., i:i + size])
               for i in range(0, n, size)]
    shift = head[..., n]
    log_s = jnp.maximum(head[..., n + 1], kinds.MIN_LOG_SCALE)
    # The head's affine map and the standardisation are one affine map.
    affine = distrax.ScalarAffine(self.loc + self.scale * shift,
                                  log_scale=log_s + math.log(self.scale))
    # distrax.Chain applies its last bijector first: spline 1, ..., affine.
    return distrax.Chain([affine, *reversed(splines)])

  def apply(self, head: Array, noise: Array) -> Array:
    return self._bijector(head).forward(noise[..., 0])

  def log_prob(self, head: Array, value) -> Array:
    eps, log_det = self._bijector(head).inverse_and_log_det(
        jnp.asarray(value, jnp.float32))
    return jax.scipy.stats.norm.logpdf(eps) + log_det

  def abduct(self, rng: Array, head: Array, value) -> Array:
    del rng  # the inverse is deterministic
    return self._bijector(head).inverse(
        jnp.asarray(value, jnp.float32))[..., None]

  def relaxed_encode(self, head: Array, noise: Array, temperature) -> Array:
    del temperature  # already differentiable
    return self.encode(self.apply(head, noise))

  def mode(self, head: Array) -> Array:
    """The median of the value given the head, the image of eps = 0.

    The density's mode has no closed form under a spline; the median is
    the flow's natural point prediction (the monotone image of the noise's
    median) and equals the affine kind's mode at a zero spline.
    """
    return self._bijector(head).forward(jnp.zeros(head.shape[:-1]))


kinds.KINDS["spline"] = Spline
