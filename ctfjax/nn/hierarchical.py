"""Conditional hierarchical VAE networks: bottom-up encoder, top-down decoder.

The very deep VAE of Child (2021) with the conditioning of De Sousa Ribeiro
et al. (ICML 2023, biomedia-mira/causal-gen), as Melistas et al. (2024) use
it for MorphoMNIST (Appendix A.3): latents z_1..z_L of `z_dim` channels at
several spatial resolutions, the prior p(z_i | z_{>i}) computed on a path
that never sees the parents (the exogenous noise stays independent of the
features), and the parents entering every top-down block through a learned
projection of (z_i, pa) (Melistas et al. 2024, eq. 2):

    h_i = block_i(h_{i+1} + prior_features_i + f_i(z_i, pa)).

Images are [B, H, W, C] (NHWC). The parents `pa` [B, D] are the same at
every pixel, so every 1x1 convolution over a concatenation with the
broadcast parents is written as a convolution of the spatial part plus a
dense projection of the parents added at every pixel: the same function and
parameter count as the reference's concatenation, without materialising a
[B, H, W, D] map at each block.

No normalisation layers and no dropout: the mechanism's abduction and
prediction must be pure functions of its parameters.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ctfjax.nn.conv import pointwise

Array = jax.Array


def _gelu(x):
  return jax.nn.gelu(x, approximate=True)


def _apply(conv: nnx.Conv, x: Array) -> Array:
  """conv(x), its 1x1 convolutions as matrix products (`pointwise`)."""
  return pointwise(conv, x) if conv.kernel.shape[:2] == (1, 1) else conv(x)


def _scale(conv: nnx.Conv, factor: float):
  """Multiplies a convolution's kernel by `factor` (init-time only)."""
  conv.kernel[...] = conv.kernel[...] * factor


def _upsample(x: Array, res: int) -> Array:
  """Nearest-neighbour upsampling [B, r, r, C] -> [B, res, res, C]."""
  factor = res // x.shape[1]
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def _avg_pool(x: Array, factor: int) -> Array:
  """[B, H, W, C] -> [B, H / factor, W / factor, C] by averaging."""
  b, h, w, c = x.shape
  return x.reshape(b, h // factor, factor, w // factor, factor, c).mean(
      (2, 4))


class Block(nnx.Module):
  """Bottleneck residual block: GELU, 1x1, GELU, kxk, GELU, kxk, GELU, 1x1.

  [B, H, W, in] (and optionally parents [B, D] joining the first 1x1
  convolution) -> [B, H / down, W / down, out].
  """

  def __init__(self, in_width: int, bottleneck: int, out_width: int, *,
               rngs: nnx.Rngs, kernel: int = 3, residual: bool = True,
               down: int = 1, cond_dim: int = 0):
    conv = lambda i, o, k: nnx.Conv(i, o, (k, k), padding="SAME", rngs=rngs)
    self.c1 = conv(in_width, bottleneck, 1)
    # The parents' share of the first 1x1 convolution (see module doc).
    self.c1_pa = (nnx.Linear(cond_dim, bottleneck, use_bias=False, rngs=rngs)
                  if cond_dim else None)
    self.c2 = conv(bottleneck, bottleneck, kernel)
    self.c3 = conv(bottleneck, bottleneck, kernel)
    self.c4 = conv(bottleneck, out_width, 1)
    self.residual = residual
    self.down = down
    self.proj = (conv(in_width, out_width, 1)
                 if residual and in_width != out_width else None)

  def _hidden(self, *xs: Array, pa: Array | None = None) -> Array:
    """The activation the last 1x1 convolution reads."""
    y = pointwise(self.c1, *(_gelu(x) for x in xs))
    if self.c1_pa is not None:
      y = y + self.c1_pa(_gelu(pa))[:, None, None, :]
    return _gelu(_apply(self.c3, _gelu(_apply(self.c2, _gelu(y)))))

  def parts(self, *xs: Array, sizes: Sequence[int],
            pa: Array | None = None) -> tuple[Array, ...]:
    """A non-residual block's output split into channel groups of `sizes`,
    each its own product (no slices of the output, nor their gradients'
    pads)."""
    if self.residual or self.down > 1:
      raise ValueError("parts needs a non-residual block at full size")
    if sum(sizes) != self.c4.kernel.shape[-1]:
      raise ValueError(f"parts of {tuple(sizes)} channels for a block of "
                       f"{self.c4.kernel.shape[-1]} outputs")
    h, bounds = self._hidden(*xs, pa=pa), np.cumsum((0, *sizes))
    return tuple(pointwise(self.c4, h, columns=slice(a, b))
                 for a, b in zip(bounds[:-1], bounds[1:]))

  def __call__(self, *xs: Array, pa: Array | None = None) -> Array:
    """The block of the channel-wise concatenation of `xs` (never built:
    the first 1x1 convolution takes its parts, `pointwise`)."""
    y = pointwise(self.c4, self._hidden(*xs, pa=pa))
    if self.residual:
      y = y + (pointwise(self.proj, *xs) if self.proj is not None
               else jnp.concatenate(xs, -1))
    return _avg_pool(y, self.down) if self.down > 1 else y


def fit_to_image(image_res: int, resolutions: Sequence[int],
                 *per_level: Sequence[int]) -> tuple[tuple[int, ...], ...]:
  """The architecture for images of side `image_res`: (resolutions,
  *per_level) as given when the resolutions start at `image_res`; when they
  start below it by a power of two, levels are added on top, each doubling
  the resolution and each a copy of the top level's entries (its width and
  block counts). So (32, 16, 8, 4, 1) serves 64x64 images as (64, 32, 16,
  8, 4, 1), the levels Melistas et al. use on CelebA. Anything else is
  returned as given (`check_arch` explains what is wrong with it).
  """
  resolutions = tuple(resolutions)
  per_level = tuple(tuple(seq) for seq in per_level)
  top = resolutions[0] if resolutions else 0
  ratio = image_res // top if 0 < top < image_res else 0
  if (ratio * top != image_res or ratio & (ratio - 1)
      or not all(per_level)):
    return (resolutions, *per_level)
  while resolutions[0] < image_res:
    resolutions = (2 * resolutions[0],) + resolutions
    per_level = tuple(seq[:1] + seq for seq in per_level)
  return (resolutions, *per_level)


def check_arch(image_res: int, resolutions: Sequence[int],
                widths: Sequence[int], *blocks: Sequence[int]):
  """Raises ValueError unless the resolutions, widths and block counts
  describe a valid architecture for images of side `image_res`."""
  if resolutions[0] != image_res:
    raise ValueError(f"resolutions {tuple(resolutions)} must start at the "
                     f"image size {image_res}")
  for r, s in zip(resolutions, resolutions[1:]):
    if s >= r or r % s:
      raise ValueError(f"resolutions {tuple(resolutions)} must decrease by "
                       "integer factors")
  for seq in (widths, *blocks):
    if len(seq) != len(resolutions):
      raise ValueError(f"{tuple(seq)} needs one entry per resolution "
                       f"{tuple(resolutions)}")
  for seq in blocks:
    if min(seq) < 1:
      raise ValueError(f"block counts {tuple(seq)} need at least one block "
                       "per resolution")


class Encoder(nnx.Module):
  """Bottom-up pass: images -> {resolution: [B, r, r, width]} activations.

  A 7x7 stem, then at each resolution `blocks[j]` residual blocks of width
  `widths[j]` and (except at the last) one block that widens to
  `widths[j + 1]` and average-pools down to `resolutions[j + 1]`; the
  activation kept per resolution is that of its last block.
  """

  def __init__(self, channels: int, resolutions: Sequence[int],
               widths: Sequence[int], blocks: Sequence[int],
               bottleneck: int, *, rngs: nnx.Rngs):
    self.stem = nnx.Conv(channels, widths[0], (7, 7), padding="SAME",
                         rngs=rngs)
    layers, outs = [], []
    for j, (res, width) in enumerate(zip(resolutions, widths)):
      for _ in range(blocks[j]):
        layers.append(Block(width, width // bottleneck, width, rngs=rngs))
        outs.append(res)
      if j + 1 < len(resolutions):
        layers.append(Block(width, width // bottleneck, widths[j + 1],
                            down=res // resolutions[j + 1], rngs=rngs))
        outs.append(resolutions[j + 1])
    for layer in layers:  # residual branches start small (VDVAE)
      _scale(layer.c4, (1 / len(layers)) ** 0.5)
    self.layers = nnx.List(layers)
    # The resolution each block outputs at.
    self.outs = tuple(outs)

  def __call__(self, images: Array) -> dict[int, Array]:
    x = self.stem(images)
    acts = {}
    for layer, res in zip(self.layers, self.outs):
      x = layer(x)
      acts[res] = x
    return acts


class TopDownBlock(nnx.Module):
  """One stochastic top-down block at resolution `res`.

  Holds the prior p(z | s) on the parents-free prior state s, the posterior
  q(z | h, x, pa), the projection f(z, pa) into the deterministic state h,
  the update of the prior state s' = g(z, prior features), and the
  residual block on h.
  """

  def __init__(self, res: int, in_width: int, out_width: int, z_dim: int,
               cond_dim: int, bottleneck: int, num_blocks: int, *,
               rngs: nnx.Rngs):
    k = 3 if res > 2 else 1
    mid = in_width // bottleneck
    self.res = res
    self.z_dim = z_dim
    self.prior = Block(in_width, mid, 2 * z_dim + in_width, kernel=k,
                       residual=False, rngs=rngs)
    # Posterior input: [h, x] spatially, the parents through c1_pa.
    self.posterior = Block(2 * in_width, mid, 2 * z_dim, kernel=k,
                           residual=False, cond_dim=cond_dim, rngs=rngs)
    # f(z, pa) = z_proj(z) + pa_proj(pa): the learned projection of eq. 2.
    self.z_proj = nnx.Conv(z_dim, in_width, (1, 1), rngs=rngs)
    self.pa_proj = nnx.Linear(cond_dim, in_width, use_bias=False, rngs=rngs)
    self.z_feat_proj = nnx.Conv(z_dim + in_width, out_width, (1, 1),
                                rngs=rngs)
    self.conv = Block(in_width, mid, out_width, kernel=k, rngs=rngs)
    scale = (1 / num_blocks) ** 0.5
    _scale(self.z_proj, scale)
    self.pa_proj.kernel[...] = self.pa_proj.kernel[...] * scale
    _scale(self.conv.c4, scale)
    # The prior starts as N(0, I) with no features (VDVAE), and so does the
    # posterior: KL 0 at initialisation. (VDVAE and causal-gen leave the
    # posterior's head random; its KL then starts at thousands of nats and
    # the descent that removes it drags the posteriors onto the prior. On
    # Colored MNIST after 400 ANCM steps: reconstruction L1 8.1 against
    # 10.9, KL 187 nats against 56.)
    _scale(self.prior.c4, 0.0)
    _scale(self.posterior.c4, 0.0)

  def prior_stats(self, s: Array) -> tuple[Array, Array, Array]:
    """(loc, log-scale, features) of p(z | s); s never depends on pa."""
    z = self.z_dim
    return self.prior.parts(s, sizes=(z, z, s.shape[-1]))

  def posterior_stats(self, h: Array, x: Array,
                      pa: Array) -> tuple[Array, Array]:
    """(loc, log-scale) of q(z | h, x, pa)."""
    return self.posterior.parts(h, x, sizes=(self.z_dim, self.z_dim),
                                pa=pa)

  def merge(self, h: Array, z: Array, p_feat: Array, pa: Array) -> Array:
    """h' = block(h + prior features + f(z, pa))."""
    h = h + p_feat + pointwise(self.z_proj, z) + self.pa_proj(pa)[
        :, None, None, :]
    return self.conv(h)

  def next_state(self, z: Array, p_feat: Array) -> Array:
    """The next block's prior state: a function of z and s only."""
    return pointwise(self.z_feat_proj, z, p_feat)


class TopDown(nnx.Module):
  """Top-down decoder: latents (and parents) -> features [B, H, W, w_0].

  `blocks[j]` stochastic blocks at `resolutions[j]`, run from the lowest
  resolution to the image's; a learned bias map starts each resolution (the
  first one is the initial state of both paths).
  """

  def __init__(self, resolutions: Sequence[int], widths: Sequence[int],
               blocks: Sequence[int], z_dim: int, cond_dim: int,
               bottleneck: int, *, rngs: nnx.Rngs):
    plan = [(r, w) for r, w, n in reversed(list(zip(resolutions, widths,
                                                     blocks)))
            for _ in range(n)]
    layers = []
    for i, (res, width) in enumerate(plan):
      out_width = plan[min(i + 1, len(plan) - 1)][1]
      layers.append(TopDownBlock(res, width, out_width, z_dim, cond_dim,
                                 bottleneck, len(plan), rngs=rngs))
    self.layers = nnx.List(layers)
    used = sorted({r for r, _ in plan})
    self.bias = nnx.Dict({str(r): nnx.Param(jnp.zeros(
        (1, r, r, dict(zip(resolutions, widths))[r]))) for r in used})

  def _to_res(self, x: Array, res: int) -> Array:
    """x brought up to `res` (plus that resolution's bias) if below it."""
    if x.shape[1] < res:
      x = self.bias[str(res)][...] + _upsample(x, res)
    return x

  def _start(self, batch: int) -> Array:
    bias = self.bias[str(self.layers[0].res)][...]
    return jnp.broadcast_to(bias, (batch,) + bias.shape[1:])

  def __call__(self, pa: Array, acts: dict[int, Array] | None = None,
               latents: Sequence[Array] | None = None,
               rng: Array | None = None, temperature: float = 1.0):
    """One top-down pass.

    Exactly one of `acts` (posterior pass: z_i = loc + temperature * scale
    * eps of q(z_i | z_{>i}, x, pa), eps drawn with `rng`; temperature 0
    takes the mean and needs no rng) and `latents` (z_i given,
    [B, r_i, r_i, z_dim] each) is given.

    Returns:
      (h [B, H, W, w_0], zs, stats): the latents used, and per block a
      dict with the prior's "p_loc", "p_logscale" and, in a posterior pass,
      the posterior's "q_loc", "q_logscale".
    """
    h = s = self._start(pa.shape[0])
    zs, stats = [], []
    for i, layer in enumerate(self.layers):
      h, s = self._to_res(h, layer.res), self._to_res(s, layer.res)
      p_loc, p_logscale, p_feat = layer.prior_stats(s)
      stat = {"p_loc": p_loc, "p_logscale": p_logscale}
      if acts is not None:
        q_loc, q_logscale = layer.posterior_stats(h, acts[layer.res], pa)
        stat.update(q_loc=q_loc, q_logscale=q_logscale)
        z = q_loc if temperature == 0 else q_loc + (
            temperature * jnp.exp(q_logscale)
            * jax.random.normal(jax.random.fold_in(rng, i), q_loc.shape))
      else:
        z = latents[i]
      zs.append(z)
      stats.append(stat)
      h = layer.merge(h, z, p_feat, pa)
      s = layer.next_state(z, p_feat)
    return h, tuple(zs), stats

  def sample_prior(self, rng: Array, batch: int) -> tuple[Array, ...]:
    """z_1..z_L from p(z_{1:L}): the prior path alone (no parents)."""
    s = self._start(batch)
    zs = []
    for i, layer in enumerate(self.layers):
      s = self._to_res(s, layer.res)
      p_loc, p_logscale, p_feat = layer.prior_stats(s)
      z = p_loc + jnp.exp(p_logscale) * jax.random.normal(
          jax.random.fold_in(rng, i), p_loc.shape)
      zs.append(z)
      s = layer.next_state(z, p_feat)
    return tuple(zs)
