"""The conditional diffusion image mechanism: DDPM training, DDIM inversion.

The image mechanism of the diffusion NCM (Sardesai, "Ctf-editing using a
diffusion NCM"): a U-Net eps_theta(x_t, t, v) (`ctfjax.nn.unet`) trained
with the epsilon-prediction loss of DDPM (Ho et al. 2020),

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   loss = |eps - eps_theta|^2,

with a linear or cosine beta schedule over T steps. Images are in [0, 1];
the network works in [-1, 1]. With `prediction="v"` the network predicts
v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 instead (Salimans & Ho 2022),
regressed the same way, and the sampler turns it into
eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t.

U_I is the DDIM latent x_T (Song et al. 2021). The sampler walks a grid of
`steps` levels tau_1 < ... < tau_S = T - 1 (evenly spaced, "trailing"), plus
level 0 = the clean image (abar = 1). One DDIM update (`ddim_step`) takes
x at abar_from to abar_to through the predicted x_0:

    x0 = (x - sqrt(1 - abar_from) eps) / sqrt(abar_from)
    x' = sqrt(abar_to) x0 + sqrt(1 - abar_to - sigma^2) eps + sigma z,

with sigma = eta sqrt((1 - abar_to) / (1 - abar_from))
sqrt(1 - abar_from / abar_to) when generating (eta = 0: deterministic, the
Euler discretisation of the probability-flow ODE; eta = 1: DDPM-like).

* abduction of a real image (its noise is unknown): deterministic DDIM
  inversion under its factual features - the same update run upwards,
  x_{i-1} -> x_i with eps_theta(x_{i-1}, tau_i, v), so that forward
  generation from the resulting x_T under the same features returns the
  image up to the discretisation error (which shrinks with `steps`);
* prediction: DDIM from x_T down to level 0 under the counterfactual
  features. Abduction and prediction must use the same `steps` (the ANCM
  passes the prediction's sampler settings to `abduct`);
* prior: x_T ~ N(0, I).

The sampler setting `clip` (diffusers' `clip_sample`) clips each predicted
x0 to [-1, 1] and re-derives eps from it, in both directions alike.

Both directions are one `lax.scan` over the levels and share `ddim_step`.
Optional classifier-free training (`cond_dropout`: the condition zeroed
with that probability) enables `guidance` w in the sampler:
eps = eps(x, t, 0) + w (eps(x, t, v) - eps(x, t, 0)); w = 1 is the plain
conditional model (one network pass per level). `relabel` is None: a
50-step sampler is no cheap decode, so the ANCM trains without its
label-faithfulness term.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from ctfjax import compiler
from ctfjax.mechanisms.base import Features, MechanismError, Stage
from ctfjax.nn.unet import UNet

Array = jax.Array
SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v")
BASES = ("rgb", "luma_chroma")
# An orthonormal luma / chroma basis of RGB (rows): (R + G + B) / sqrt 3,
# (R - G) / sqrt 2, (R + G - 2 B) / sqrt 6.
LUMA_CHROMA = np.array([[1, 1, 1], [1, -1, 0], [1, 1, -2]], np.float64) / (
    np.sqrt([3.0, 2.0, 6.0])[:, None])
# Nichol & Dhariwal's offset of the cosine schedule, and its beta cap.
COSINE_OFFSET = 0.008
MAX_BETA = 0.999


def alpha_bars(schedule: str, timesteps: int, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> np.ndarray:
  """abar_t = prod_{s <= t} (1 - beta_s) for t = 0..T-1, float64 [T].

  Args:
    schedule: "linear" (betas evenly spaced from beta_start to beta_end,
      Ho et al.) or "cosine" (abar(t) = f(t) / f(0), f(t) =
      cos^2(((t / T) + s) / (1 + s) pi / 2), betas capped at 0.999;
      Nichol & Dhariwal 2021).
    timesteps: T.
    beta_start, beta_end: the linear schedule's ends.
  """
  if schedule == "linear":
    betas = np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)
  elif schedule == "cosine":
    f = lambda t: np.cos((t / timesteps + COSINE_OFFSET)
                         / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
    t = np.arange(timesteps + 1, dtype=np.float64)
    betas = np.minimum(1 - f(t[1:]) / f(t[:-1]), MAX_BETA)
  else:
    raise MechanismError(f"unknown diffusion schedule {schedule!r} (config "
                         f"'schedule'); known: {', '.join(SCHEDULES)}")
  return np.cumprod(1.0 - betas)


def ddim_levels(timesteps: int, steps: int) -> np.ndarray:
  """The sampler's timesteps tau_1 < ... < tau_S = T - 1, int [S]."""
  if not 1 <= steps <= timesteps:
    raise MechanismError(f"DDIM steps must be in 1..{timesteps} (the "
                         f"training timesteps), got {steps}")
  return np.round(np.arange(1, steps + 1) * timesteps / steps).astype(
      np.int32) - 1


def ddim_step(x: Array, eps: Array, a_from: Array, a_to: Array,
              sigma: Array | float = 0.0, noise: Array | None = None,
              clip: bool | Callable[[Array], Array] = False) -> Array:
  """One DDIM update from noise level abar_from to abar_to (either way).

  Args:
    x: [B, ...] at abar_from.
    eps: the noise prediction at x.
    a_from, a_to: abar of the two levels (abar = 1 is the clean image).
    sigma: the update's noise scale (0: deterministic).
    noise: standard normal like x, used when sigma > 0.
    clip: clip the predicted x0 to the data range [-1, 1] and re-derive
      eps from it (diffusers' `clip_sample`): a weakly trained network's
      x0 at the noisiest levels, eps's error amplified by
      sqrt((1 - abar) / abar), no longer drives the sample out of range.
      A callable is the projection onto the data range to use instead
      (the mechanism's, in its channel basis).

  Returns:
    x at abar_to.
  """
  x0 = (x - jnp.sqrt(1.0 - a_from) * eps) / jnp.sqrt(a_from)
  if clip:
    x0 = clip(x0) if callable(clip) else jnp.clip(x0, -1.0, 1.0)
    # At the clean level (abar = 1) x0 = x and eps is kept as given.
    eps = jnp.where(a_from < 1.0, (x - jnp.sqrt(a_from) * x0)
                    / jnp.sqrt(jnp.maximum(1.0 - a_from, 1e-12)), eps)
  out = (jnp.sqrt(a_to) * x0
         + jnp.sqrt(jnp.maximum(1.0 - a_to - sigma ** 2, 0.0)) * eps)
  return out if noise is None else out + sigma * noise


def ddim_sigma(eta: float, a_from: Array, a_to: Array) -> Array:
  """The generation update's noise scale (Song et al. eq. 16) for a step
  from abar_from down to the less noisy abar_to."""
  return eta * jnp.sqrt((1 - a_to) / (1 - a_from)) * jnp.sqrt(
      1 - a_from / a_to)


def _grid(abar: Array, steps: int) -> tuple[Array, Array]:
  """(tau [S], abar at levels 0..S [S + 1]) with level 0 clean."""
  tau = ddim_levels(abar.shape[0], steps)
  a = jnp.concatenate([jnp.ones((1,), jnp.float32),
                       jnp.asarray(abar, jnp.float32)[tau]])
  return jnp.asarray(tau), a


def ddim_sample(eps_fn: Callable[[Array, Array], Array], x: Array,
                abar: Array, steps: int, eta: float = 0.0,
                rng: Array | None = None,
                clip: bool | Callable[[Array], Array] = False) -> Array:
  """DDIM from x_T (level S) down to the clean level 0, one `lax.scan`.

  Args:
    eps_fn: (x [B, ...], t [] int) -> the noise prediction.
    x: x_T.
    abar: abar_t for t = 0..T-1 [T].
    steps: S, the number of levels (network evaluations).
    eta: 0 deterministic; > 0 adds fresh noise at each update.
    rng: the noise's key (used when eta > 0).
    clip: clip each predicted x0 to [-1, 1] (`ddim_step`).

  Returns:
    x_0.
  """
  tau, a = _grid(abar, steps)
  a_from, a_to = a[1:][::-1], a[:-1][::-1]
  sigma = ddim_sigma(eta, a_from, a_to)
  if eta > 0 and rng is None:
    raise MechanismError("a stochastic DDIM sampler (eta > 0) needs an rng")
  keys = jax.random.split(rng if rng is not None else jax.random.key(0),
                          steps)

  def body(x, level):
    t, a_from, a_to, sigma, key = level
    noise = jax.random.normal(key, x.shape) if eta > 0 else None
    return ddim_step(x, eps_fn(x, t), a_from, a_to, sigma, noise,
                     clip), None

  x, _ = jax.lax.scan(body, x, (tau[::-1], a_from, a_to, sigma, keys))
  return x


def ddim_invert(eps_fn: Callable[[Array, Array], Array], x: Array,
                abar: Array, steps: int,
                clip: bool | Callable[[Array], Array] = False) -> Array:
  """Deterministic DDIM inversion from the clean x_0 up to x_T, one scan.

  The update from level i - 1 to i uses eps_fn(x_{i-1}, tau_i): the
  one-step approximation of the implicit inverse of `ddim_sample`'s
  deterministic update, exact as the levels get close. `clip` as in
  `ddim_sample` (the same update, so the two stay each other's inverse).
  """
  tau, a = _grid(abar, steps)

  def body(x, level):
    t, a_from, a_to = level
    return ddim_step(x, eps_fn(x, t), a_from, a_to, clip=clip), None

  x, _ = jax.lax.scan(body, x, (tau, a[:-1], a[1:]))
  return x


def in_slices(fn: Callable[..., Array], size: int,
              *arrays: Array | None) -> Array:
  """fn(*arrays) computed `size` examples at a time, the slices unrolled
  and their outputs concatenated; `size` 0 (or >= the batch) is one pass.

  Every array is sliced along axis 0 (None passes through), so fn must
  treat examples independently, as a network pass at inference does. On a
  CPU a pass over slices whose activations fit the caches is faster than
  one pass over the whole batch (docs/speed.md, "Where the CPU time goes").
  """
  if size < 0:
    raise MechanismError(f"examples per U-Net pass (sampler 'microbatch') "
                         f"must be >= 0, got {size}")
  b = arrays[0].shape[0]
  if size == 0 or size >= b:
    return fn(*arrays)
  return jnp.concatenate([
      fn(*(None if a is None else a[i:i + size] for a in arrays))
      for i in range(0, b, size)])


def _per_row(a: Array, x: Array) -> Array:
  """A scalar or [B] schedule value shaped to broadcast over x [B, ...]."""
  return jnp.reshape(a, (-1,) + (1,) * (x.ndim - 1))


def q_sample(x0: Array, t: Array, noise: Array, abar: Array) -> Array:
  """x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), per row."""
  a = _per_row(abar[t], x0)
  return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * noise


class Diffusion(nnx.Module):
  """Conditional DDPM image mechanism with DDIM inversion as abduction."""

  SAMPLER = {"steps": 50, "eta": 0.0, "guidance": 1.0, "clip": False,
             "microbatch": 16}
  # On a CPU the U-Net's 64-channel convolutions run faster in XLA's own
  # kernel than in YNNPACK (`ctfjax.compiler`).
  COMPILER_OPTIONS = {"cpu": compiler.CPU_CONVOLUTIONS_IN_XLA}

  def __init__(self, image_shape: Sequence[int], cond_dim: int, *,
               rngs: nnx.Rngs, timesteps: int = 1000,
               schedule: str = "linear", beta_start: float = 1e-4,
               beta_end: float = 0.02, cond_dropout: float = 0.0,
               prediction: str = "eps", basis: str = "rgb",
               chroma_scale: float = 1.0, extra_channels: int = 0,
               unet_kwargs=None):
    """Builds the mechanism.

    Args:
      image_shape: (H, W, C).
      cond_dim: width of the feature condition.
      rngs: parameter initialisation.
      timesteps, schedule, beta_start, beta_end: the DDPM schedule.
      cond_dropout: classifier-free training's probability of dropping the
        condition.
      prediction: what the U-Net predicts and the loss regresses: "eps"
        (the noise, Ho et al.) or "v" = sqrt(abar) eps - sqrt(1 - abar) x0
        (Salimans & Ho 2022).
      basis: the channel basis the diffusion runs in: "rgb" or
        "luma_chroma" (`LUMA_CHROMA`, orthonormal, so the noise stays
        isotropic; 3-channel images only).
      chroma_scale: in the luma_chroma basis, the factor on the two
        colour-difference channels (1 = orthonormal). Below 1 the colour
        has a smaller amplitude against the noise than the strokes, so the
        sampler settles the strokes (from the luminance noise) before the
        colour, and the inverted noise of a digit encodes its strokes in
        the channel every colour shares.
      extra_channels: channels of an image the network also sees,
        concatenated to x_t (a refiner's coarse image; `extra` arguments).
      unet_kwargs: `ctfjax.nn.unet.UNet` settings.
    """
    self.image_shape = tuple(image_shape)
    self.cond_dim = cond_dim
    self.timesteps = int(timesteps)
    self.cond_dropout = float(cond_dropout)
    if prediction not in PREDICTIONS:
      raise MechanismError(f"unknown diffusion prediction {prediction!r} "
                           f"(config 'prediction'); known: "
                           f"{', '.join(PREDICTIONS)}")
    self.prediction = prediction
    if basis not in BASES:
      raise MechanismError(f"unknown diffusion basis {basis!r} (config "
                           f"'basis'); known: {', '.join(BASES)}")
    if basis == "luma_chroma" and self.image_shape[-1] != 3:
      raise MechanismError(f"diffusion basis 'luma_chroma' needs 3-channel "
                           f"images, not {self.image_shape[-1]}")
    self.basis = basis
    if not chroma_scale > 0:
      raise MechanismError(f"diffusion chroma_scale must be positive, got "
                           f"{chroma_scale}")
    if chroma_scale != 1.0 and basis != "luma_chroma":
      raise MechanismError(f"diffusion chroma_scale {chroma_scale} needs "
                           f"basis 'luma_chroma', not {basis!r}")
    self.chroma_scale = float(chroma_scale)
    # The schedule is static (Python values), not state: never trained.
    self.schedule = (schedule, self.timesteps, float(beta_start),
                     float(beta_end))
    alpha_bars(*self.schedule)  # a bad schedule fails at build time
    channels = self.image_shape[-1]
    self.unet = UNet(channels + extra_channels, channels, cond_dim, rngs=rngs,
                     **(unet_kwargs or {}))

  # Family -------------------------------------------------------------------

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.timesteps = 1000  # T: diffusion steps of training (DDPM: 1000).
    c.schedule = "linear"  # Beta schedule: "linear" | "cosine".
    c.beta_start = 1e-4  # First beta of the linear schedule.
    c.beta_end = 0.02  # Last beta of the linear schedule.
    # Classifier-free training: probability of zeroing the condition
    # (0 = off); then sampler guidance w != 1 is meaningful.
    c.cond_dropout = 0.0
    # What the U-Net predicts: "eps" (the noise; DDPM's loss) or "v" =
    # sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho). Under eps the
    # features reach the output at the noisiest levels only through
    # sqrt(abar) x0 (under 2% of it past t = 900 of the linear schedule),
    # so a briefly trained network learns to ignore them there; v is about
    # -x0 at those levels.
    c.prediction = "eps"
    # The channel basis of the diffusion: "rgb" or "luma_chroma" (an
    # orthonormal luminance / colour-difference basis). In RGB the inverted
    # noise of a green digit holds its strokes in the green channel only,
    # so do(colour) must draw them from noise that encodes black; in
    # luma_chroma the strokes sit in the luminance channel whatever the
    # colour.
    c.basis = "rgb"
    # In luma_chroma: the factor on the colour-difference channels (below
    # 1, the sampler settles the strokes before the colour; `__init__`).
    c.chroma_scale = 1.0
    # U-Net (ctfjax.nn.unet.UNet): output widths per level (each level but
    # the last halves the resolution), residual blocks per level,
    # self-attention per level, in the middle, head width, GroupNorm groups.
    c.channels = (32, 64)
    c.layers_per_block = 1
    c.attention = (False, True)
    c.mid_attention = True
    c.head_dim = 16
    c.groups = 8
    # Sampler defaults (`predict` and `abduct` settings): DDIM levels,
    # eta (0 = deterministic), classifier-free guidance weight, and whether
    # each predicted x0 is clipped to the data range (diffusers'
    # `clip_sample`; off by default), and examples per U-Net pass (a speed
    # setting: 16 is fastest on a 2-core CPU; 0 = the whole batch, for an
    # accelerator).
    c.sampler = dict(cls.SAMPLER)
    return c

  @classmethod
  def accelerator_config(cls, image_shape: Sequence[int] | None = None
                         ) -> ml_collections.ConfigDict:
    """The `accel` size preset: the DDPM U-Net of Sardesai's diffusion NCM
    (about 100M parameters) and 50 DDIM levels, at every image size (the
    papers give no CelebA U-Net): its four levels take 32x32 images down
    to 4x4 and 64x64 ones to 8x8, with attention at the middle two (16
    and 8, or 32 and 16)."""
    del image_shape  # one U-Net for every size
    c = cls.default_config()
    c.channels = (128, 256, 512, 512)
    c.attention = (False, True, True, False)
    c.layers_per_block = 2
    c.head_dim = 64
    c.groups = 32
    c.sampler["steps"] = 50
    return c

  @classmethod
  def create(cls, image_shape: Sequence[int], features: Features | int,
             config: ml_collections.ConfigDict, *,
             rngs: nnx.Rngs) -> Diffusion:
    if not 0.0 <= config.cond_dropout < 1.0:
      raise MechanismError(f"diffusion cond_dropout must be in [0, 1), got "
                           f"{config.cond_dropout}")
    return cls(image_shape, Features.of(features).cond_dim, rngs=rngs,
               **mechanism_kwargs(config))

  @classmethod
  def stages(cls, config: ml_collections.ConfigDict,
             steps: int) -> tuple[Stage, ...]:
    del config
    return (Stage("ddpm", steps),)

  # Mechanism ----------------------------------------------------------------

  @property
  def abar(self) -> Array:
    """abar_t for t = 0..T-1 [T], a constant of every trace."""
    return jnp.asarray(alpha_bars(*self.schedule), jnp.float32)

  def output(self, x: Array, t: Array, cond: Array, guidance: float = 1.0,
             extra: Array | None = None) -> Array:
    """The U-Net's prediction (eps or v, `prediction`) at (x, t, cond),
    with classifier-free guidance w != 1; `extra` [B, H, W,
    extra_channels] in [-1, 1] is concatenated to x."""
    if extra is not None:
      x = jnp.concatenate([x, extra], axis=-1)
    if guidance == 1.0:
      return self.unet(x, t, cond)
    t = jnp.broadcast_to(t, x.shape[:1])
    both = self.unet(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                     jnp.concatenate([jnp.zeros_like(cond), cond]))
    free, conditional = jnp.split(both, 2)
    return free + guidance * (conditional - free)

  def eps(self, x: Array, t: Array, cond: Array, guidance: float = 1.0,
          extra: Array | None = None, microbatch: int = 0) -> Array:
    """eps_theta(x, t, cond): the noise prediction the sampler uses (from
    v: eps = sqrt(abar_t) v + sqrt(1 - abar_t) x), computed `microbatch`
    examples at a time (`in_slices`; 0 = the whole batch)."""
    t = jnp.broadcast_to(t, x.shape[:1])
    out = in_slices(lambda x, t, cond, extra: self.output(
        x, t, cond, guidance, extra), microbatch, x, t, cond, extra)
    if self.prediction == "eps":
      return out
    a = _per_row(self.abar[t], x)
    return jnp.sqrt(a) * out + jnp.sqrt(1.0 - a) * x

  def loss(self, images, cond, rng, stage="ddpm", context=None,
           extra=None):
    """The DDPM loss of the `prediction` target (eps or v), summed over
    pixels, per example [B], and its per-pixel mean as "eps_mse" or
    "v_mse"; `extra` is the refiner's coarse image in [0, 1] (or None)."""
    del stage, context  # one stage, which needs nothing else
    k_t, k_eps, k_drop = jax.random.split(rng, 3)
    x0 = self._to_basis(_signed(images))
    t = jax.random.randint(k_t, images.shape[:1], 0, self.timesteps)
    noise = jax.random.normal(k_eps, x0.shape)
    if self.cond_dropout > 0:
      keep = jax.random.bernoulli(k_drop, 1.0 - self.cond_dropout,
                                  cond.shape[:1])
      cond = cond * keep[:, None]
    x_t = q_sample(x0, t, noise, self.abar)
    target = noise
    if self.prediction == "v":
      a = _per_row(self.abar[t], x0)
      target = jnp.sqrt(a) * noise - jnp.sqrt(1.0 - a) * x0
    err = jnp.square(target - self.output(x_t, t, cond,
                                          extra=_signed(extra)))
    err = err.reshape(err.shape[0], -1).sum(-1)
    return {"loss": err}, {f"{self.prediction}_mse":
                           err / np.prod(self.image_shape)}

  def abduct(self, images, cond, rng=None, steps=SAMPLER["steps"],
             eta=SAMPLER["eta"], guidance=SAMPLER["guidance"],
             clip=SAMPLER["clip"], microbatch=SAMPLER["microbatch"],
             extra=None):
    """u_I = {"x_T"}: deterministic DDIM inversion under the factual
    features, with the prediction's `steps` (and guidance); eta does not
    enter (inversion is the deterministic ODE). `microbatch`: examples per
    U-Net pass (`eps`), a speed setting only."""
    del rng, eta
    extra = _signed(extra)
    x_t = ddim_invert(lambda x, t: self.eps(x, t, cond, guidance, extra,
                                            microbatch),
                      self._to_basis(_signed(images)), self.abar, steps,
                      clip and self._project)
    return {"x_T": x_t}

  def predict(self, cond, u, rng=None, steps=SAMPLER["steps"],
              eta=SAMPLER["eta"], guidance=SAMPLER["guidance"],
              clip=SAMPLER["clip"], microbatch=SAMPLER["microbatch"],
              extra=None):
    """f_I(v, x_T): DDIM from x_T under `cond`, images in [0, 1]."""
    extra = _signed(extra)
    x0 = ddim_sample(lambda x, t: self.eps(x, t, cond, guidance, extra,
                                           microbatch),
                     u["x_T"], self.abar, steps, eta, rng,
                     clip and self._project)
    return jnp.clip((self._from_basis(x0) + 1.0) / 2.0, 0.0, 1.0)

  def prior(self, rng, batch: int):
    return {"x_T": jax.random.normal(rng, (batch,) + self.image_shape)}

  def relabel(self, images, cond, new_cond, rng):
    return None  # No cheap decode: a sampler of `steps` network passes.

  def _to_basis(self, x: Array) -> Array:
    """[-1, 1] RGB images in the diffusion's channel basis."""
    if self.basis == "rgb":
      return x
    return x @ jnp.asarray(self._scaled_basis(1.0).T, x.dtype)

  def _from_basis(self, y: Array) -> Array:
    if self.basis == "rgb":
      return y
    return y @ jnp.asarray(self._scaled_basis(-1.0), y.dtype)

  def _scaled_basis(self, power: float) -> np.ndarray:
    """`LUMA_CHROMA` with its chroma rows times chroma_scale ** power: the
    rows stay orthogonal, so power 1 maps RGB to the basis and power -1,
    used as y @ M, maps it back."""
    scale = np.array([1.0, self.chroma_scale, self.chroma_scale])
    return LUMA_CHROMA * scale[:, None] ** power

  def _project(self, x0: Array) -> Array:
    """A point of the data range [-1, 1]^C, in the basis: the RGB values
    clipped (the nearest point when the basis is orthonormal)."""
    return self._to_basis(jnp.clip(self._from_basis(x0), -1.0, 1.0))


def _signed(images: Array | None) -> Array | None:
  """[0, 1] images in the network's [-1, 1] (None stays None)."""
  return None if images is None else 2.0 * images - 1.0


def mechanism_kwargs(config: ml_collections.ConfigDict) -> dict:
  """`Diffusion`'s keyword arguments from a family config section (the
  mechanism's, or a refiner's); settings added later default to what runs
  saved before them did."""
  return {"timesteps": config.timesteps, "schedule": config.schedule,
          "beta_start": config.beta_start, "beta_end": config.beta_end,
          "cond_dropout": config.cond_dropout,
          "prediction": config.get("prediction", "eps"),
          "basis": config.get("basis", "rgb"),
          "chroma_scale": config.get("chroma_scale", 1.0),
          "unet_kwargs": unet_kwargs(config)}


def unet_kwargs(config: ml_collections.ConfigDict) -> dict:
  """The U-Net settings of a family config section."""
  return {"channels": tuple(config.channels),
          "layers_per_block": config.layers_per_block,
          "attention": tuple(bool(a) for a in config.attention),
          "mid_attention": config.mid_attention,
          "head_dim": config.head_dim, "groups": config.groups}
