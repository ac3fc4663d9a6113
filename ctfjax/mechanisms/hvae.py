"""The conditional hierarchical VAE image mechanism, with counterfactual
fine-tuning.

The best Deep-SCM image mechanism of Melistas et al., "Benchmarking
Counterfactual Image Generation" (2024; section 3.2, Appendix A.3), the
conditional HVAE of De Sousa Ribeiro et al. (ICML 2023): a bottom-up
encoder and a top-down decoder with latents z_1..z_L at several resolutions
(`ctfjax.nn.hierarchical`). The prior p(z_{1:L}) never sees the parents, so
U_I is independent of the features; the parents enter every top-down block
through a learned projection of (z_i, pa).

U_I = ({"z": (z_1, ..., z_L)}, and "eps" when `pixel_noise` is on):

* abduction runs the posterior top-down pass under the factual features
  and draws each level's latent from its posterior, given the draws above
  it, at temperature `abduct_temperature`: z_i = loc + t * scale * eps
  (the paper's code abducts z ~ q(z | x, pa) at t = 1). Temperature 0
  keeps the posterior means, a deterministic edit, but the top-down network
  never sees them in training: levels whose posterior stays at the prior
  carry unit-variance noise there, and zeroing it takes the decoder off its
  training distribution (the Colored MNIST HVAE-ANCM's null edits are far
  worse with the means than with draws);
* eps = (i - mu) / sigma is the standardised pixel residual of that
  reconstruction (kept with `pixel_noise`: exact null edits, but the old
  features' residual detail is copied into every edit; temperature 1);
* prediction re-runs the top-down pass with the abducted latents under the
  new features: one decoder pass, no sampler settings, rng unused.

`relabel` (the ANCM's label-faithfulness decode) is abduct + predict: one
encoder and two top-down passes, about twice the ELBO's forward pass (the
top-down blocks dominate: three residual blocks each); it is
on by default and `relabel = False` switches the term off.

Stages: "hvae" (the negative ELBO; with `kl_warmup_steps` its KL weight
ramps linearly up to beta over the first steps, as NVAE's KL warm-up: in
short runs the KL otherwise prunes the latents before the decoder uses
them, and a short MorphoMNIST run reconstructs worse without it) and, when
`cf_steps > 0`, "cf": the counterfactual fine-tuning of the paper's A.3
(De Sousa Ribeiro et al., Lagrangian form):

    min_theta max_{lambda >= 0}  E[-log h(v' | i')]
                                 + lambda (nelbo(i | v) / dims - bound),

where v' are random single-feature counterfactuals of the batch's features
(`Context.counterfactual`), i' the images predicted from the batch's
abducted latents under v' (gradients reach encoder and decoder through both
abduction and prediction), h the ANCM's frozen label reader, and
nelbo / dims the batch's negative ELBO per pixel value. lambda =
softplus(rho) >= 0 is a parameter of the mechanism trained by its own group
(loss: the negated Lagrangian, Adam at `cf_multiplier_lr`), so it rises
while the constraint is violated and decays while it holds.

The bound is `elbo_ref + cf_margin`. `elbo_ref` is the pre-trained ELBO
measured honestly, on training batches, during the first stage: a scalar
parameter with its own group whose loss is 0.5 (elbo_ref - stop_grad(
nelbo / dims))^2 under plain SGD at rate `elbo_ref_rate`, which makes each
step elbo_ref <- (1 - rate) elbo_ref + rate * batch nelbo / dims: an
exponential moving average of the training objective over roughly the last
1 / rate steps of pre-training. It is frozen in the "cf" stage. (When there
is no "cf" stage it is in no group and costs nothing.)
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from ctfjax.mechanisms.base import Features, Group, MechanismError, Stage
from ctfjax.mechanisms.base import celeba_sized
from ctfjax.mechanisms.vae import FIXED_LOG_STD, MIN_LOG_STD
from ctfjax.nn import conv, gaussian
from ctfjax.nn.hierarchical import Encoder, TopDown, check_arch, fit_to_image
from ctfjax.train.state import make_optimizer

# Parameters outside the image network, each trained by a group of its own.
MULTIPLIER = "multiplier"
ELBO_REF = "elbo_ref"


def kl_normal(q_loc, q_logscale, p_loc, p_logscale):
  """KL(N(q_loc, e^{2 q_logscale}) || N(p_loc, e^{2 p_logscale})), per
  element (nats)."""
  return (p_logscale - q_logscale - 0.5
          + 0.5 * (jnp.exp(2 * q_logscale) + (q_loc - p_loc) ** 2)
          * jnp.exp(-2 * p_logscale))


def lagrangian(cf_nll, nelbo, dims, bound, multiplier):
  """Per-example losses of the "cf" stage's two groups.

  Args:
    cf_nll: [B] the frozen reader's -log h(v' | i') (nats per image).
    nelbo: [B] negative ELBO of the factual images (nats per image).
    dims: pixel values per image (the ANCM divides every loss by it).
    bound: the per-pixel-value bound on nelbo / dims.
    multiplier: the raw parameter rho (lambda = softplus(rho)).

  Returns:
    ({"loss": [B], "multiplier": [B]}, lambda, constraint [B]) where the
    constraint is nelbo / dims - bound (violated when > 0). After the
    ANCM's division by dims, "loss" is cf_nll + lambda * constraint with
    lambda held fixed, and "multiplier" is -lambda * constraint with the
    constraint held fixed (descending it ascends the Lagrangian in lambda).
  """
  lam = jax.nn.softplus(multiplier)
  g = nelbo / dims - bound
  loss = dims * cf_nll + dims * jax.lax.stop_gradient(lam) * g
  ascent = -dims * lam * jax.lax.stop_gradient(g)
  return {"loss": loss, MULTIPLIER: ascent}, lam, g


class HVAE(nnx.Module):
  """Conditional hierarchical VAE image mechanism (Melistas et al. 2024,
  A.3)."""

  SAMPLER = {}

  def __init__(self, image_shape, cond_dim: int, *, rngs: nnx.Rngs,
               resolutions: Sequence[int] = (32, 16, 8, 4, 1),
               widths: Sequence[int] = (16, 32, 64, 128, 256),
               enc_blocks: Sequence[int] = (3, 3, 3, 3, 4),
               dec_blocks: Sequence[int] = (4, 4, 4, 4, 4),
               z_dim: int = 16, bottleneck: int = 4,
               learned_sigma: bool = True, pixel_noise: bool = False,
               beta: float = 1.0, relabel: bool = True,
               cf_margin: float = 0.0, multiplier_init: float = 0.01,
               mean: str = "sigmoid", abduct_temperature: float = 1.0,
               kl_warmup_steps: int = 0):
    h, w, c = image_shape
    if mean not in ("sigmoid", "linear"):
      raise MechanismError(f"unknown HVAE mean {mean!r}; known: sigmoid, "
                           "linear")
    self.mean = mean
    if abduct_temperature < 0:
      raise MechanismError("model.image.hvae.abduct_temperature must be >= 0, "
                           f"got {abduct_temperature}")
    self.abduct_temperature = float(abduct_temperature)
    if kl_warmup_steps < 0:
      raise MechanismError("model.image.hvae.kl_warmup_steps must be >= 0, "
                           f"got {kl_warmup_steps}")
    self.kl_warmup_steps = int(kl_warmup_steps)
    if h != w:
      raise MechanismError(f"the HVAE needs square images, got {h}x{w}")
    # Resolutions that start below the image size gain levels on top
    # (`fit_to_image`): the 32x32 configs serve 64x64 images.
    resolutions, widths, enc_blocks, dec_blocks = fit_to_image(
        h, resolutions, widths, enc_blocks, dec_blocks)
    try:
      check_arch(h, resolutions, widths, enc_blocks, dec_blocks)
    except ValueError as e:
      raise MechanismError(f"model.image.hvae: {e}") from None
    self.image_shape = tuple(image_shape)
    self.learned_sigma = learned_sigma
    self.pixel_noise = pixel_noise
    self.beta = beta
    self.use_relabel = relabel
    self.cf_margin = cf_margin
    self.encoder = Encoder(c, resolutions, widths, enc_blocks, bottleneck,
                           rngs=rngs)
    self.decoder = TopDown(resolutions, widths, dec_blocks, z_dim, cond_dim,
                           bottleneck, rngs=rngs)
    # Gaussian likelihood head: per-pixel mean and log standard deviation.
    self.head = nnx.Conv(widths[0], 2 * c, (1, 1), rngs=rngs)
    # rho of the Lagrange multiplier lambda = softplus(rho) >= 0 ("cf").
    self.multiplier = nnx.Param(jnp.asarray(
        math.log(math.expm1(multiplier_init)), jnp.float32))
    # Running per-pixel-value nelbo of pre-training (module docstring).
    self.elbo_ref = nnx.Param(jnp.zeros((), jnp.float32))

  # Family -------------------------------------------------------------------

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    """CPU-sized defaults (about 0.13M parameters).

    Melistas et al.'s MorphoMNIST HVAE (Appendix A.3, causal-gen's "morphomnist"
    hyper-parameters; about 2.0M parameters, for an accelerator):
    resolutions (32, 16, 8, 4, 1), widths (16, 32, 64, 128, 256),
    enc_blocks (3, 3, 3, 3, 4), dec_blocks (4, 4, 4, 4, 4), z_dim 16,
    bottleneck 4 - see `accelerator_config`.
    """
    c = ml_collections.ConfigDict()
    # Spatial resolutions of the latents, image size first, each a divisor
    # of the one before it. Starting below the image size by a power of two,
    # they gain levels on top, each a copy of the first level's entries
    # below (at 64x64: (64, 32, 16, 8, 4, 1), widths (8, 8, 16, ...)).
    c.resolutions = (32, 16, 8, 4, 1)
    c.widths = (8, 16, 32, 64, 64)  # Channels at each resolution.
    # Encoder residual blocks at each resolution (before its downsampling).
    c.enc_blocks = (1, 1, 1, 1, 1)
    # Stochastic top-down blocks (one latent each) at each resolution.
    c.dec_blocks = (1, 1, 2, 2, 1)
    c.z_dim = 8  # Channels of every latent z_i.
    c.bottleneck = 4  # Inner width of each residual block = width / this.
    # True: a learned per-pixel likelihood scale (the paper's diagonal
    # Gaussian); False: the fixed sqrt(e^-5) of the Deep-SCM VAEs.
    c.learned_sigma = True
    # The pixel mean: "sigmoid" or "linear" (clipped to [0, 1] in
    # predictions), as the VAE's `mean` (a saturated sigmoid passes no
    # gradient).
    c.mean = "sigmoid"
    # Keep the standardised pixel residual in U_I (exact null edits).
    c.pixel_noise = False
    # Abduction draws z_i = loc + t * scale * eps from each posterior
    # (the paper's code: t = 1); 0 keeps the means, which the decoder never
    # sees in training (module docstring).
    c.abduct_temperature = 1.0
    c.beta = 1.0  # KL weight of the ELBO (the paper: 1 on MorphoMNIST).
    # KL warm-up (NVAE; Vahdat & Kautz, 2020): the "hvae" stage weighs the
    # KL by beta * min(1, (step + 1) / kl_warmup_steps), the ELBO itself
    # from then on; 0 = none. Short CPU runs need it: without it the KL
    # prunes the latents before the decoder has learnt to use them (module
    # docstring).
    c.kl_warmup_steps = 0
    # The label-faithfulness decode (abduct + predict, ~2x the ELBO's forward
    # pass); False switches the ANCM's faithfulness term off.
    c.relabel = True
    # Counterfactual fine-tuning (stage "cf"); 0 = no such stage.
    c.cf_steps = 0
    c.cf_learning_rate = 1e-4  # AdamW rate of the network in "cf" (paper).
    c.cf_multiplier_lr = 0.1  # Adam rate of the multiplier's rho (paper).
    c.cf_multiplier_init = 0.01  # lambda at the start of "cf"; > 0.
    # Allowed rise of the negative ELBO per pixel value over its
    # pre-trained value (nats); the constraint is nelbo/dims <= ref + margin.
    c.cf_margin = 0.05
    # Rate of the running pre-trained nelbo estimate (about the last
    # 1 / rate steps of the first stage); in (0, 1].
    c.elbo_ref_rate = 0.02
    return c

  @classmethod
  def accelerator_config(cls, image_shape: Sequence[int] | None = None
                         ) -> ml_collections.ConfigDict:
    """The `accel` size preset for images of `image_shape` (None: 32x32).

    32x32: Melistas et al.'s MorphoMNIST configuration (about 2.0M
    parameters). 64x64: their CelebA one (Appendix A.3; causal-gen's
    "64b3d2,32b3d2,16b3d2,8b3d2,4b3d4,1b4" encoder): resolutions
    (64, 32, 16, 8, 4, 1), widths (32, ..., 1024), 4 stochastic blocks per
    resolution (24 latents of 16 channels).
    """
    c = cls.default_config()
    c.z_dim = 16
    c.bottleneck = 4
    if celeba_sized(image_shape):
      c.resolutions = (64, 32, 16, 8, 4, 1)
      c.widths = (32, 64, 128, 256, 512, 1024)
      c.enc_blocks = (3, 3, 3, 3, 3, 4)
      c.dec_blocks = (4, 4, 4, 4, 4, 4)
      return c
    c.resolutions = (32, 16, 8, 4, 1)
    c.widths = (16, 32, 64, 128, 256)
    c.enc_blocks = (3, 3, 3, 3, 4)
    c.dec_blocks = (4, 4, 4, 4, 4)
    return c

  @classmethod
  def create(cls, image_shape: Sequence[int], features: Features | int,
             config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> HVAE:
    if config.cf_multiplier_init <= 0:
      raise MechanismError("model.image.hvae.cf_multiplier_init must be > 0 "
                           f"(lambda = softplus(rho)), got "
                           f"{config.cf_multiplier_init}")
    return cls(image_shape, Features.of(features).cond_dim, rngs=rngs,
               resolutions=tuple(config.resolutions),
               widths=tuple(config.widths),
               enc_blocks=tuple(config.enc_blocks),
               dec_blocks=tuple(config.dec_blocks), z_dim=config.z_dim,
               bottleneck=config.bottleneck,
               learned_sigma=config.learned_sigma,
               pixel_noise=config.pixel_noise, beta=config.beta,
               relabel=config.relabel, cf_margin=config.cf_margin,
               multiplier_init=config.cf_multiplier_init, mean=config.mean,
               abduct_temperature=config.abduct_temperature,
               kl_warmup_steps=config.kl_warmup_steps)

  @classmethod
  def stages(cls, config: ml_collections.ConfigDict,
             steps: int) -> tuple[Stage, ...]:
    network = lambda path: path[0] not in (MULTIPLIER, ELBO_REF)
    if not config.cf_steps:
      return (Stage("hvae", steps, (Group("loss", network),)),)
    if not 0 < config.elbo_ref_rate <= 1:
      raise MechanismError("model.image.hvae.elbo_ref_rate must be in "
                           f"(0, 1], got {config.elbo_ref_rate}")
    rate = config.elbo_ref_rate

    def network_opt(train):
      train = train.copy_and_resolve_references()
      with train.unlocked():
        train.learning_rate = config.cf_learning_rate
      return make_optimizer(train)

    lr = config.cf_multiplier_lr
    pretrain = Stage("hvae", steps, (
        Group("loss", network),
        Group(ELBO_REF, lambda p: p[0] == ELBO_REF,
              lambda train: optax.sgd(rate))))
    finetune = Stage("cf", config.cf_steps, (
        Group("loss", network, network_opt),
        Group(MULTIPLIER, lambda p: p[0] == MULTIPLIER,
              lambda train: optax.adam(lr))))
    return (pretrain, finetune)

  # Networks -----------------------------------------------------------------

  def _likelihood(self, h):
    """(mean in [0, 1], log std) of p(i | z, v), [B, H, W, C] each."""
    c = self.head.kernel.shape[-1] // 2
    loc, log_std = (conv.pointwise(self.head, h, columns=slice(0, c)),
                    conv.pointwise(self.head, h, columns=slice(c, 2 * c)))
    mean = jax.nn.sigmoid(loc) if self.mean == "sigmoid" else loc
    if self.learned_sigma:
      log_std = jnp.maximum(log_std, MIN_LOG_STD)
    else:
      log_std = jnp.full_like(mean, FIXED_LOG_STD)
    return mean, log_std

  def _posterior(self, images, cond, rng=None, temperature=1.0):
    """The posterior top-down pass: (h, zs, per-block stats)."""
    acts = self.encoder(2.0 * images - 1.0)  # the encoder sees [-1, 1]
    return self.decoder(cond, acts=acts, rng=rng, temperature=temperature)

  def kl_per_level(self, stats):
    """[B] KL(q(z_i | ...) || p(z_i | z_{>i})) of each level, a tuple."""
    return tuple(
        kl_normal(s["q_loc"], s["q_logscale"], s["p_loc"], s["p_logscale"])
        .reshape(s["q_loc"].shape[0], -1).sum(-1) for s in stats)

  def nelbo(self, images, cond, rng):
    """Negative ELBO [B] (nats per image) and its parts."""
    h, _, stats = self._posterior(images, cond, rng)
    mu, log_std = self._likelihood(h)
    nll = gaussian.gaussian_nll(images, mu, log_std)
    nll = nll.reshape(nll.shape[0], -1).sum(-1)
    kl = sum(self.kl_per_level(stats))
    l1 = jnp.abs(images - mu).reshape(mu.shape[0], -1).mean(-1) * 255.0
    return nll + self.beta * kl, {"nll": nll, "kl": kl, "recon_l1": l1}

  # Mechanism ----------------------------------------------------------------

  def loss(self, images, cond, rng, stage="hvae", context=None):
    """Per-example losses of a stage (module docstring) and metrics."""
    k_elbo, k_cf, k_abduct = jax.random.split(rng, 3)
    nelbo, parts = self.nelbo(images, cond, k_elbo)
    dims = float(math.prod(self.image_shape))
    if stage == "hvae":
      ref = self.elbo_ref[...]
      # SGD on this is a moving average of the batch nelbo / dims.
      track = 0.5 * dims * (ref - jax.lax.stop_gradient(nelbo) / dims) ** 2
      weight = self.kl_weight(None if context is None else context.step)
      b = images.shape[0]
      return ({"loss": parts["nll"] + weight * parts["kl"], ELBO_REF: track},
              {**parts, "kl_weight": jnp.broadcast_to(weight, (b,))})
    if stage != "cf":
      raise MechanismError(f"the HVAE has no training stage {stage!r}")
    if context is None:
      raise MechanismError("the HVAE's 'cf' stage needs the ANCM context")
    new_cond, score = context.counterfactual(k_cf)
    cf_images = self.predict(new_cond, self.abduct(images, cond, k_abduct))
    cf_nll = score(cf_images)
    bound = jax.lax.stop_gradient(self.elbo_ref[...]) + self.cf_margin
    losses, lam, g = lagrangian(cf_nll, nelbo, dims, bound,
                                self.multiplier[...])
    b = images.shape[0]
    return losses, {**parts, "cf_nll": cf_nll, "constraint": g,
                    "multiplier": jnp.broadcast_to(lam, (b,)),
                    "elbo_ref": jnp.broadcast_to(bound - self.cf_margin,
                                                 (b,))}

  def kl_weight(self, step):
    """The KL's weight in the "hvae" stage after `step` updates: beta,
    ramped linearly from beta / kl_warmup_steps over the warm-up; beta
    when step is None (evaluation) or there is no warm-up."""
    if step is None or not self.kl_warmup_steps:
      return jnp.asarray(self.beta, jnp.float32)
    ramp = (jnp.asarray(step, jnp.float32) + 1.0) / self.kl_warmup_steps
    return self.beta * jnp.minimum(ramp, 1.0)

  def abduct(self, images, cond, rng=None):
    """U_I: every level's latent drawn from the posterior at temperature
    `abduct_temperature` (and, optionally, the pixel residual)."""
    t = self.abduct_temperature
    if t and rng is None:
      raise MechanismError("the HVAE's abduction draws from the posterior "
                           "(abduct_temperature > 0): pass an rng key")
    h, zs, _ = self._posterior(images, cond, rng, temperature=t)
    if not self.pixel_noise:
      return {"z": zs}
    mu, log_std = self._likelihood(h)
    return {"z": zs, "eps": (images - mu) / jnp.exp(log_std)}

  def predict(self, cond, u, rng=None):
    """f_I(v, u_I): the top-down pass with latents u["z"] under `cond`."""
    del rng  # one deterministic top-down pass
    h, _, _ = self.decoder(cond, latents=u["z"])
    mu, log_std = self._likelihood(h)
    if "eps" in u:
      return jnp.clip(mu + jnp.exp(log_std) * u["eps"], 0.0, 1.0)
    return mu if self.mean == "sigmoid" else jnp.clip(mu, 0.0, 1.0)

  def prior(self, rng, batch: int):
    """u_I from p(z_{1:L}) (and N(0, I) residuals): no features involved."""
    zs = self.decoder.sample_prior(rng, batch)
    if not self.pixel_noise:
      return {"z": zs}
    eps = jax.random.normal(jax.random.fold_in(rng, -1),
                            (batch,) + self.image_shape)
    return {"z": zs, "eps": eps}

  def relabel(self, images, cond, new_cond, rng):
    """Abduct, then predict under `new_cond` (None when switched off)."""
    if not self.use_relabel:
      return None
    return self.predict(new_cond, self.abduct(images, cond, rng), rng)
