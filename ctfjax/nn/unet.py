"""A conditional U-Net (NHWC) for diffusion image mechanisms.

The architecture of diffusers' `UNet2DModel` (Ho et al.'s DDPM U-Net):

* a sinusoidal embedding of the timestep (cos first, as diffusers'
  `flip_sin_to_cos=True`) through a two-layer SiLU MLP to `temb_dim`
  (4 x the first level's channels by default);
* conditioning added to that embedding: a linear projection of `cond`
  ([B, cond_dim], the features' one-hots / standardised values) and, as an
  option, a class-embedding table (`num_class_embeds`, diffusers'
  `class_embedding`) indexed by integer `labels`;
* levels of `layers_per_block` residual blocks (GroupNorm, SiLU, 3x3 conv,
  the embedding projected and added, GroupNorm, SiLU, 3x3 conv, a 1x1
  shortcut when the width changes), optional self-attention after each
  block of a level, a stride-2 3x3 conv between levels; a middle of
  resnet - attention - resnet at the lowest resolution; the mirrored up
  path with `layers_per_block + 1` blocks per level, each fed the matching
  skip activation, nearest-neighbour 2x upsampling and a 3x3 conv between
  levels; GroupNorm, SiLU and a 3x3 conv out.

With `channels=(64, 128, 128), layers_per_block=2, attention=(False, True,
False), num_class_embeds=40` and no `cond` it is diffusers'
`UNet2DModel(block_out_channels=(64, 128, 128), down_block_types=(
"DownBlock2D", "AttnDownBlock2D", "DownBlock2D"), num_class_embeds=40)`
layer for layer (`DIFFUSERS_BENCHMARK`; 6.48M parameters).
No dropout: the mechanism's functions stay pure in (params, inputs, rng).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ctfjax.errors import UserError
from ctfjax.nn.attention import attention
from ctfjax.nn.conv import pointwise
from ctfjax.nn.conv import upsample_conv

# diffusers' UNet2DModel at the size of the speed benchmark of Sardesai's
# diffusion NCM (32x32x3).
DIFFUSERS_BENCHMARK = {"channels": (64, 128, 128), "layers_per_block": 2,
                       "attention": (False, True, False), "head_dim": 8,
                       "groups": 32, "num_class_embeds": 40}


class UNetError(UserError):
  """A U-Net configuration that cannot be built (group or head sizes)."""


def timestep_embedding(t: jax.Array, dim: int,
                       max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal embedding of (possibly fractional) timesteps.

  Args:
    t: [B] timesteps.
    dim: embedding width (even).
    max_period: the slowest frequency's period.

  Returns:
    [B, dim]: cos(t w_k) then sin(t w_k), w_k = max_period^(-k / (dim/2)).
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half) / half)
  angles = t.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def _group_norm(channels: int, groups: int, rngs: nnx.Rngs) -> nnx.GroupNorm:
  if channels % groups:
    raise UNetError(f"U-Net width {channels} is not divisible by its "
                    f"GroupNorm groups {groups} (config 'groups')")
  return nnx.GroupNorm(channels, num_groups=groups, epsilon=1e-5, rngs=rngs)


def group_norm(norm: nnx.GroupNorm, x: jax.Array) -> jax.Array:
  """`norm(x)` for NHWC x, computed as XLA's CPU backend runs fastest.

  The same statistics as flax's GroupNorm (fast variance E[x^2] - E[x]^2
  over each example's positions and its group's channels, floored at 0),
  but the per-channel sums come from one reduction over the positions and
  a product of x with itself (a batched dot), and the normalisation is one
  multiply-add with a per-(example, channel) scale and shift: a faster
  U-Net forward pass on the CPU (docs/speed.md, "Where the CPU time goes").
  Equal to `norm(x)` up to rounding (tests/test_unet.py).
  """
  b, h, w, c = x.shape
  g = norm.num_groups
  flat = x.reshape(b, h * w, c)
  count = h * w * (c // g)
  per_group = lambda s: s.reshape(b, g, c // g).sum(-1) / count
  mean = per_group(flat.sum(1))
  var = jnp.maximum(per_group(jnp.einsum("bnc,bnc->bc", flat, flat))
                    - jnp.square(mean), 0.0)
  inv = jnp.repeat(jax.lax.rsqrt(var + norm.epsilon), c // g, axis=1)
  scale = inv * norm.scale[...]
  shift = norm.bias[...] - jnp.repeat(mean, c // g, axis=1) * scale
  return x * scale[:, None, None, :] + shift[:, None, None, :]


def _conv3(c_in: int, c_out: int, rngs: nnx.Rngs,
           stride: int = 1) -> nnx.Conv:
  return nnx.Conv(c_in, c_out, (3, 3), strides=(stride, stride),
                  padding=((1, 1), (1, 1)), rngs=rngs)


class ResBlock(nnx.Module):
  """GroupNorm-SiLU-conv twice, the time(+condition) embedding added."""

  def __init__(self, c_in: int, c_out: int, temb_dim: int, groups: int, *,
               rngs: nnx.Rngs):
    self.norm1 = _group_norm(c_in, groups, rngs)
    self.conv1 = _conv3(c_in, c_out, rngs)
    self.temb = nnx.Linear(temb_dim, c_out, rngs=rngs)
    self.norm2 = _group_norm(c_out, groups, rngs)
    self.conv2 = _conv3(c_out, c_out, rngs)
    self.shortcut = (nnx.Conv(c_in, c_out, (1, 1), rngs=rngs)
                     if c_in != c_out else None)

  def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
    h = self.conv1(jax.nn.silu(group_norm(self.norm1, x)))
    h = h + self.temb(jax.nn.silu(emb))[:, None, None, :]
    h = self.conv2(jax.nn.silu(group_norm(self.norm2, h)))
    return h + (x if self.shortcut is None else pointwise(self.shortcut, x))


class SelfAttention(nnx.Module):
  """Multi-head self-attention over the H x W positions, residual."""

  def __init__(self, channels: int, head_dim: int, groups: int, *,
               rngs: nnx.Rngs):
    if channels % head_dim:
      raise UNetError(f"U-Net width {channels} is not divisible by the "
                      f"attention head size {head_dim} (config 'head_dim')")
    self.heads = channels // head_dim
    self.norm = _group_norm(channels, groups, rngs)
    self.q = nnx.Linear(channels, channels, rngs=rngs)
    self.k = nnx.Linear(channels, channels, rngs=rngs)
    self.v = nnx.Linear(channels, channels, rngs=rngs)
    self.out = nnx.Linear(channels, channels, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    y = group_norm(self.norm, x).reshape(b, h * w, c)
    split = lambda a: a.reshape(b, h * w, self.heads, c // self.heads)
    y = attention(split(self.q(y)), split(self.k(y)), split(self.v(y)))
    return x + self.out(y.reshape(b, h * w, c)).reshape(b, h, w, c)


class UNet(nnx.Module):
  """eps_theta(x_t, t, cond): [B, H, W, C_in] -> [B, H, W, C_out]."""

  def __init__(self, in_channels: int, out_channels: int, cond_dim: int = 0,
               *, rngs: nnx.Rngs, channels: Sequence[int] = (32, 64),
               layers_per_block: int = 1,
               attention: Sequence[bool] | None = None,
               mid_attention: bool = True, head_dim: int = 8,
               groups: int = 8, temb_dim: int | None = None,
               num_class_embeds: int = 0):
    """Builds the network.

    Args:
      in_channels: channels of x_t (plus any channel-concatenated input).
      out_channels: channels of the prediction.
      cond_dim: width of the feature condition; 0 = none.
      rngs: parameter initialisation.
      channels: output width of each level (diffusers' block_out_channels);
        each level but the last halves the resolution.
      layers_per_block: residual blocks per down level (up levels get one
        more, for the skip of the downsampling).
      attention: per level, self-attention after its blocks; None = none.
      mid_attention: self-attention in the middle block.
      head_dim: attention head width.
      groups: GroupNorm groups (must divide every width).
      temb_dim: time-embedding width; None = 4 * channels[0].
      num_class_embeds: rows of an optional class-embedding table; 0 = none.
    """
    channels = tuple(int(c) for c in channels)
    attention = tuple(attention or (False,) * len(channels))
    if len(attention) != len(channels):
      raise UNetError(f"U-Net 'attention' has {len(attention)} entries for "
                      f"{len(channels)} levels of 'channels'")
    self.temb_in = channels[0]
    temb_dim = temb_dim or 4 * channels[0]
    self.time1 = nnx.Linear(channels[0], temb_dim, rngs=rngs)
    self.time2 = nnx.Linear(temb_dim, temb_dim, rngs=rngs)
    self.cond_proj = (nnx.Linear(cond_dim, temb_dim, rngs=rngs)
                      if cond_dim else None)
    self.class_embed = (nnx.Embed(num_class_embeds, temb_dim, rngs=rngs)
                        if num_class_embeds else None)
    self.conv_in = _conv3(in_channels, channels[0], rngs)

    block = lambda a, b: ResBlock(a, b, temb_dim, groups, rngs=rngs)
    attend = lambda c: SelfAttention(c, head_dim, groups, rngs=rngs)
    last = len(channels) - 1
    # Down path: the widths of the skip activations, in order.
    skips, down = [channels[0]], []
    c = channels[0]
    for level, width in enumerate(channels):
      blocks = []
      for _ in range(layers_per_block):
        blocks.append((block(c, width),
                       attend(width) if attention[level] else None))
        c = width
        skips.append(c)
      sample = _conv3(c, c, rngs, stride=2) if level < last else None
      if sample is not None:
        skips.append(c)
      down.append((nnx.List([nnx.List(b) for b in blocks]), sample))
    self.down = nnx.List([nnx.List(d) for d in down])
    self.mid1 = block(c, c)
    self.mid_attn = attend(c) if mid_attention else None
    self.mid2 = block(c, c)
    # Up path: each block takes the latest remaining skip.
    up = []
    for level in reversed(range(len(channels))):
      width, blocks = channels[level], []
      for _ in range(layers_per_block + 1):
        blocks.append((block(c + skips.pop(), width),
                       attend(width) if attention[level] else None))
        c = width
      sample = _conv3(c, c, rngs) if level > 0 else None
      up.append((nnx.List([nnx.List(b) for b in blocks]), sample))
    self.up = nnx.List([nnx.List(u) for u in up])
    self.norm_out = _group_norm(c, groups, rngs)
    self.conv_out = _conv3(c, out_channels, rngs)

  def embed(self, t: jax.Array, cond: jax.Array | None = None,
            labels: jax.Array | None = None) -> jax.Array:
    """The time embedding plus the condition's, [B, temb_dim]."""
    emb = self.time2(jax.nn.silu(self.time1(
        timestep_embedding(t, self.temb_in))))
    if self.cond_proj is not None:
      emb = emb + self.cond_proj(cond)
    if self.class_embed is not None:
      emb = emb + self.class_embed(labels)
    return emb

  def __call__(self, x: jax.Array, t: jax.Array,
               cond: jax.Array | None = None,
               labels: jax.Array | None = None) -> jax.Array:
    """The prediction for x [B, H, W, C_in] at timesteps t [B] (or a
    scalar), features cond [B, cond_dim] and class labels [B] (int)."""
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
    emb = self.embed(t, cond, labels)
    h = self.conv_in(x)
    skips = [h]
    for blocks, sample in self.down:
      for res, attn in blocks:
        h = res(h, emb)
        if attn is not None:
          h = attn(h)
        skips.append(h)
      if sample is not None:
        h = sample(h)
        skips.append(h)
    h = self.mid1(h, emb)
    if self.mid_attn is not None:
      h = self.mid_attn(h)
    h = self.mid2(h, emb)
    for blocks, sample in self.up:
      for res, attn in blocks:
        h = res(jnp.concatenate([h, skips.pop()], axis=-1), emb)
        if attn is not None:
          h = attn(h)
      if sample is not None:
        h = upsample_conv(sample, h)  # conv(2x nearest upsample of h)
    return self.conv_out(jax.nn.silu(group_norm(self.norm_out, h)))


def count_params(make) -> int:
  """Parameters of the module `make()` builds, counted without computing
  any (jax.eval_shape)."""
  state = jax.eval_shape(lambda: nnx.state(make(), nnx.Param))
  return sum(math.prod(x.shape) for x in jax.tree.leaves(state))
