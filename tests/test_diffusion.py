"""The diffusion image mechanism: schedule, DDIM update, inversion, ANCM.

The DDIM maths is checked against closed forms for Gaussian data, where
the exact noise prediction is known: x_0 ~ N(mu, s^2 I) gives
x_t ~ N(sqrt(a) mu, v(a) I) with v(a) = a s^2 + 1 - a and
E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) mu) / v(a). Deterministic DDIM is
then the Euler discretisation of the probability-flow ODE, whose exact flow
maps x at level a to sqrt(a') mu + sqrt(v(a') / v(a)) (x - sqrt(a) mu).
"""

import json
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ctfjax import mechanisms
from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.ancm.model import to_uint8
from ctfjax.causal import kinds
from ctfjax.mechanisms import MechanismError
from ctfjax.mechanisms import diffusion
from ctfjax.nn import unet
from ctfjax.train import metrics_log
import comparisons
from test_ancm import ENV, tiny_config

MU, S = 0.3, 0.5  # The Gaussian data distribution of the closed forms.
TINY_UNET = {"channels": (8, 16), "layers_per_block": 1,
             "attention": (False, True), "head_dim": 8, "groups": 4}


def gaussian_eps(abar):
  def eps(x, t):
    a = abar[t]
    return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * MU) / (a * S * S + 1 - a)
  return eps


def tiny_mechanism(shape=(8, 8, 3), cond_dim=4, timesteps=100, seed=0):
  return diffusion.Diffusion(shape, cond_dim, rngs=nnx.Rngs(seed),
                             timesteps=timesteps, unet_kwargs=TINY_UNET)


def test_schedules_against_their_definitions():
  t = 1000
  betas = np.linspace(1e-4, 0.02, t)
  want = np.array([np.prod(1 - betas[:i + 1]) for i in range(t)])
  np.testing.assert_allclose(diffusion.alpha_bars("linear", t), want,
                             rtol=1e-10)
  # Cosine: abar(t) = f(t + 1) / f(0) (index t is after step t), wherever
  # no beta was capped.
  f = lambda x: np.cos((x / t + 0.008) / 1.008 * np.pi / 2) ** 2
  got = diffusion.alpha_bars("cosine", t)
  np.testing.assert_allclose(got[:-1], f(np.arange(1, t)) / f(0), rtol=1e-9)
  assert 0 < got[-1] < 1e-4
  with pytest.raises(MechanismError, match="unknown diffusion schedule"):
    diffusion.alpha_bars("quadratic", t)
  np.testing.assert_array_equal(diffusion.ddim_levels(1000, 4),
                                [249, 499, 749, 999])
  np.testing.assert_array_equal(diffusion.ddim_levels(5, 5), range(5))
  with pytest.raises(MechanismError, match="DDIM steps must be in 1..100"):
    diffusion.ddim_levels(100, 101)


def test_ddim_step_is_the_posterior_mean_update():
  # With the exact eps of Gaussian data, the predicted x_0 is the posterior
  # mean E[x_0 | x] = (s^2 sqrt(a) x + (1 - a) mu) / v(a).
  x = jax.random.normal(jax.random.key(0), (5, 3))
  z = jax.random.normal(jax.random.key(1), (5, 3))
  a, a2, sigma = 0.3, 0.8, 0.1
  eps = np.sqrt(1 - a) * (x - np.sqrt(a) * MU) / (a * S * S + 1 - a)
  x0 = (S * S * np.sqrt(a) * x + (1 - a) * MU) / (a * S * S + 1 - a)
  np.testing.assert_allclose(
      diffusion.ddim_step(x, eps, a, a2), np.sqrt(a2) * x0
      + np.sqrt(1 - a2) * eps, rtol=1e-5)
  np.testing.assert_allclose(
      diffusion.ddim_step(x, eps, a, a2, sigma, z), np.sqrt(a2) * x0
      + np.sqrt(1 - a2 - sigma ** 2) * eps + sigma * z, rtol=1e-5)
  # eta = 1 between adjacent timesteps is DDPM's posterior variance
  # beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t) (Ho et al. eq. 7).
  abar = diffusion.alpha_bars("linear", 1000)
  beta = 1 - abar[1:] / abar[:-1]
  want = beta * (1 - abar[:-1]) / (1 - abar[1:])
  got = diffusion.ddim_sigma(1.0, abar[1:], abar[:-1]) ** 2
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_clipped_step_projects_x0_and_rederives_eps():
  # x = sqrt(a) x0 + sqrt(1 - a) eps with x0 in range: clip changes nothing.
  a, a2 = 0.04, 0.5
  x0 = np.array([[-0.9, 0.2, 0.7]])
  eps = np.array([[0.3, -1.2, 0.5]])
  x = np.sqrt(a) * x0 + np.sqrt(1 - a) * eps
  np.testing.assert_allclose(diffusion.ddim_step(x, eps, a, a2, clip=True),
                             diffusion.ddim_step(x, eps, a, a2), rtol=1e-5)
  # A wrong eps whose x0 leaves [-1, 1]: by hand, x0 = (x - sqrt(1 - a)
  # eps') / sqrt(a), clipped; eps'' = (x - sqrt(a) x0c) / sqrt(1 - a).
  bad = eps + np.array([[0.5, -0.5, 0.0]])
  x0_bad = (x - np.sqrt(1 - a) * bad) / np.sqrt(a)
  assert np.abs(x0_bad[0, :2]).min() > 1  # the first two leave the range
  x0c = np.clip(x0_bad, -1, 1)
  eps2 = (x - np.sqrt(a) * x0c) / np.sqrt(1 - a)
  want = np.sqrt(a2) * x0c + np.sqrt(1 - a2) * eps2
  got = diffusion.ddim_step(x, bad, a, a2, clip=True)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert np.abs(got - diffusion.ddim_step(x, bad, a, a2)).max() > 0.1
  # From the clean level (abar = 1, the inversion's first update) x0 = x.
  img = np.array([[0.5, -1.0, 1.0]])
  np.testing.assert_allclose(
      diffusion.ddim_step(img, eps, 1.0, a2, clip=True),
      np.sqrt(a2) * img + np.sqrt(1 - a2) * eps, rtol=1e-5)
  # Inversion and generation stay each other's inverse with clip on
  # (Gaussian data well inside [-1, 1]: the clip hardly binds).
  abar = jnp.asarray(diffusion.alpha_bars("linear", 1000), jnp.float32)
  data = MU + 0.2 * jax.random.normal(jax.random.key(0), (16, 4))
  exact = gaussian_eps(abar)
  x_t = diffusion.ddim_invert(exact, data, abar, 200, clip=True)
  back = diffusion.ddim_sample(exact, x_t, abar, 200, clip=True)
  assert np.abs(back - data).max() < 0.05


def test_each_ddim_update_calls_the_noise_model_at_its_own_timestep():
  # T = 10, S = 5: levels tau = 1, 3, 5, 7, 9 ("trailing"), level 0 clean.
  # The noise model records every t it is called with and returns
  # x (t + 1) / 10, so an update that reads another level's t also gives
  # another x_T, off by far more than float32 rounding.
  abar = jnp.asarray(diffusion.alpha_bars("linear", 10, 0.05, 0.3),
                     jnp.float32)
  seen = []

  def eps_fn(x, t):
    jax.debug.callback(lambda t: seen.append(int(t)), t, ordered=True)
    return x * (t + 1) / 10.0

  x0 = np.random.default_rng(0).normal(size=(4, 3))
  got = diffusion.ddim_invert(eps_fn, jnp.asarray(x0, jnp.float32), abar, 5)
  jax.effects_barrier()
  assert seen == [1, 3, 5, 7, 9]
  # By hand in float64: x_i = ddim_step(x_{i-1}, eps(x_{i-1}, tau_i)) from
  # abar(tau_{i-1}) (1 at the clean level) to abar(tau_i).
  a = np.concatenate([[1.0], np.float64(abar)[[1, 3, 5, 7, 9]]])

  def invert(ts):
    x = x0
    for i, t in enumerate(ts):
      e = x * (t + 1) / 10.0
      x = (np.sqrt(a[i + 1]) * (x - np.sqrt(1 - a[i]) * e) / np.sqrt(a[i])
           + np.sqrt(1 - a[i + 1]) * e)
    return x

  np.testing.assert_allclose(got, invert([1, 3, 5, 7, 9]), rtol=1e-5)
  # Each t one level too early (the clean level's 0 first) is far off.
  assert np.abs(invert([0, 1, 3, 5, 7]) - invert([1, 3, 5, 7, 9])).max() > 0.1
  # Generation walks the same levels downwards.
  seen.clear()
  diffusion.ddim_sample(eps_fn, got, abar, 5)
  jax.effects_barrier()
  assert seen == [9, 7, 5, 3, 1]


@pytest.mark.slow
def test_inversion_and_generation_follow_the_probability_flow():
  abar = jnp.asarray(diffusion.alpha_bars("linear", 1000), jnp.float32)
  eps = gaussian_eps(abar)
  x0 = MU + S * jax.random.normal(jax.random.key(0), (64, 4))
  a_t = float(abar[-1])
  exact_xt = (np.sqrt(a_t) * MU + np.sqrt((a_t * S * S + 1 - a_t) / S ** 2)
              * (np.asarray(x0) - MU))
  errors = []
  for steps in (50, 1000):
    run = jax.jit(lambda x, s=steps: diffusion.ddim_invert(eps, x, abar, s))
    x_t = run(x0)
    back = diffusion.ddim_sample(eps, x_t, abar, steps)
    errors.append((np.abs(x_t - exact_xt).max(),
                   np.abs(back - x0).max()))
  (inv50, trip50), (inv1000, trip1000) = errors
  assert inv1000 < 4e-3 and trip1000 < 6e-3  # the exact flow, to O(1/S)
  assert inv1000 < inv50 / 10 and trip1000 < trip50 / 10


def jitted(mech, method, **static):
  """mech.<method>(*args) jitted with the parameters as an argument."""
  graphdef, state = nnx.split(mech)
  fn = jax.jit(lambda state, *args: getattr(nnx.merge(graphdef, state),
                                            method)(*args, **static))
  return lambda *args: fn(state, *args)


@pytest.fixture(scope="module")
def trained():
  """A tiny mechanism trained briefly on 4 shaded colour patches (8x8)."""
  mech = tiny_mechanism(timesteps=1000)
  colors = jax.random.uniform(jax.random.key(0), (4, 1, 1, 3))
  shade = jnp.linspace(0.5, 1.0, 8)[None, :, None, None]
  images = jnp.broadcast_to(colors, (4, 8, 8, 3)) * shade
  cond = jnp.eye(4)
  graphdef, state = nnx.split(mech)
  opt = optax.adam(1e-2)

  @jax.jit
  def step(state, opt_state, key):
    def loss(state):
      return nnx.merge(graphdef, state).loss(
          jnp.tile(images, (8, 1, 1, 1)), jnp.tile(cond, (8, 1)),
          key)[0]["loss"].mean()
    grads = jax.grad(loss)(state)
    updates, opt_state = opt.update(grads, opt_state, state)
    return optax.apply_updates(state, updates), opt_state

  opt_state = opt.init(state)
  for i in range(100):
    state, opt_state = step(state, opt_state, jax.random.key(i))
  return nnx.merge(graphdef, state), images, cond


@pytest.mark.slow
def test_eta_zero_is_deterministic_and_eta_positive_is_not(trained):
  mech, _, cond = trained
  u = mech.prior(jax.random.key(0), 4)
  k1, k2 = jax.random.key(1), jax.random.key(2)
  ddim = jitted(mech, "predict", steps=4, eta=0.0)
  a = ddim(cond, u, k1)
  np.testing.assert_array_equal(a, ddim(cond, u, k2))
  noisy = jitted(mech, "predict", steps=4, eta=1.0)
  b1 = noisy(cond, u, k1)
  np.testing.assert_array_equal(b1, noisy(cond, u, k1))
  b2 = noisy(cond, u, k2)
  assert np.abs(b1 - b2).mean() > 1e-3 and np.abs(b1 - a).mean() > 1e-3


@pytest.mark.slow
def test_round_trip_of_a_trained_network_improves_with_steps(trained):
  mech, images, cond = trained
  err = {}
  for steps in (10, 100):
    u = jitted(mech, "abduct", steps=steps)(images, cond)
    out = jitted(mech, "predict", steps=steps)(cond, u)
    err[steps] = np.abs(out - images).mean() * 255  # 0-255 scale
  assert err[100] < err[10] / 4 and err[100] < 10, err


def loss_by_hand(mech, basis=np.eye(3)):
  """(losses, metrics) of mech.loss on 3 random 8x8 images, and the same
  draws written out by hand: x0 in the channel basis, t, eps, abar_t, x_t
  and the U-Net's output at them."""
  images = jax.random.uniform(jax.random.key(1), (3, 8, 8, 3))
  cond, rng = jnp.eye(4)[:3], jax.random.key(2)
  losses, metrics = jitted(mech, "loss")(images, cond, rng)
  k_t, k_eps, _ = jax.random.split(rng, 3)
  t = np.asarray(jax.random.randint(k_t, (3,), 0, 50))
  eps = np.asarray(jax.random.normal(k_eps, images.shape))
  a = diffusion.alpha_bars("linear", 50)[t][:, None, None, None]
  x0 = (2 * np.asarray(images, np.float64) - 1) @ basis.T
  x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * eps
  out = np.asarray(jax.jit(mech.unet)(jnp.asarray(x_t, jnp.float32),
                                      jnp.asarray(t), cond))
  return losses, metrics, (x0, t, eps, a, x_t, out, cond)


@pytest.mark.slow
def test_q_sample_marginal_and_loss_against_direct_computation():
  mech = tiny_mechanism(timesteps=50)
  abar = diffusion.alpha_bars("linear", 50, 1e-4, 0.02)
  # q(x_t | x_0): mean sqrt(abar_t) x_0, variance 1 - abar_t.
  x0 = jnp.full((4000, 1), 0.7)
  t = jnp.full((4000,), 30)
  noise = jax.random.normal(jax.random.key(0), x0.shape)
  xt = np.asarray(diffusion.q_sample(x0, t, noise, mech.abar))
  assert abs(xt.mean() - np.sqrt(abar[30]) * 0.7) < 0.05
  assert abs(xt.var() - (1 - abar[30])) < 0.05
  # The loss: the same draws written out by hand.
  losses, metrics, (_, _, eps, _, _, pred, _) = loss_by_hand(mech)
  want = ((eps - pred) ** 2).sum((1, 2, 3))
  np.testing.assert_allclose(losses["loss"], want, rtol=1e-4)
  np.testing.assert_allclose(metrics["eps_mse"], want / 192, rtol=1e-4)


@pytest.mark.slow
def test_v_prediction_loss_and_its_noise_for_the_sampler():
  mech = diffusion.Diffusion((8, 8, 3), 4, rngs=nnx.Rngs(0), timesteps=50,
                             prediction="v", unet_kwargs=TINY_UNET)
  abar = diffusion.alpha_bars("linear", 50)
  losses, metrics, (x0, t, eps, a, x_t, out, cond) = loss_by_hand(mech)
  # Salimans & Ho's target: v = sqrt(abar) eps - sqrt(1 - abar) x0.
  v = np.sqrt(a) * eps - np.sqrt(1 - a) * x0
  want = ((v - out) ** 2).sum((1, 2, 3))
  np.testing.assert_allclose(losses["loss"], want, rtol=1e-4)
  np.testing.assert_allclose(metrics["v_mse"], want / 192, rtol=1e-4)
  # The sampler's noise: the eps whose DDIM x0 is sqrt(abar) x - sqrt(1 -
  # abar) v (the x0 that v implies), per row's timestep and for a scalar
  # timestep as the scan passes it.
  x = jnp.asarray(x_t, jnp.float32)
  got = np.asarray(jitted(mech, "eps")(x, jnp.asarray(t), cond))
  x0_of_v = np.sqrt(a) * x_t - np.sqrt(1 - a) * out
  np.testing.assert_allclose((x_t - np.sqrt(1 - a) * got) / np.sqrt(a),
                             x0_of_v, rtol=1e-3, atol=1e-3)
  one = np.asarray(jitted(mech, "eps")(x, jnp.asarray(t[0]), cond))
  out0 = np.asarray(jax.jit(mech.unet)(x, jnp.full((3,), t[0]), cond))
  a0 = abar[t[0]]
  np.testing.assert_allclose(one, np.sqrt(a0) * out0 + np.sqrt(1 - a0) * x_t,
                             rtol=1e-4, atol=1e-5)
  with pytest.raises(MechanismError, match="unknown diffusion prediction"):
    diffusion.Diffusion((8, 8, 3), 4, rngs=nnx.Rngs(0), prediction="x0",
                        unet_kwargs=TINY_UNET)


@pytest.mark.slow
def test_luma_chroma_basis_keeps_strokes_in_one_channel_whatever_the_colour():
  m = diffusion.LUMA_CHROMA
  np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)  # orthonormal
  mech = diffusion.Diffusion((8, 8, 3), 4, rngs=nnx.Rngs(0), timesteps=50,
                             prediction="v", basis="luma_chroma",
                             unet_kwargs=TINY_UNET)
  shape = (jax.random.uniform(jax.random.key(0), (1, 8, 8, 1)) > 0.5) * 1.0
  red = shape * jnp.array([1.0, 0, 0])
  green = shape * jnp.array([0, 1.0, 0])
  to = lambda x: np.asarray(mech._to_basis(2 * x - 1))
  # The same strokes in red and in green: one luminance channel.
  np.testing.assert_allclose(to(red)[..., 0], to(green)[..., 0], atol=1e-6)
  assert np.abs(to(red)[..., 1] - to(green)[..., 1]).max() > 1
  # Back and forth is the identity; the projection is RGB clipping.
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  np.testing.assert_allclose(mech._from_basis(mech._to_basis(x)), x,
                             atol=1e-5)
  np.testing.assert_allclose(
      mech._from_basis(mech._project(mech._to_basis(x))), np.clip(x, -1, 1),
      atol=1e-5)
  # The loss regresses the v of the images in the basis, by hand.
  losses, _, (x0, _, eps, a, _, out, cond) = loss_by_hand(mech, m)
  images = jax.random.uniform(jax.random.key(1), (3, 8, 8, 3))
  want = ((np.sqrt(a) * eps - np.sqrt(1 - a) * x0 - out) ** 2).sum((1, 2, 3))
  np.testing.assert_allclose(losses["loss"], want, rtol=1e-4)
  # Abduction inverts in the basis and prediction returns RGB in [0, 1].
  u = jitted(mech, "abduct", steps=5)(images, cond)
  back = jitted(mech, "predict", steps=5, clip=True)(cond, u)
  chex.assert_shape(back, images.shape)
  assert 0 <= float(back.min()) and float(back.max()) <= 1
  for bad, match in (({"basis": "hsv"}, "unknown diffusion basis"),
                     ({"basis": "luma_chroma", "image_shape": (8, 8, 1)},
                      "needs 3-channel images")):
    kwargs = {"image_shape": (8, 8, 3), **bad}
    with pytest.raises(MechanismError, match=match):
      diffusion.Diffusion(kwargs.pop("image_shape"), 4, rngs=nnx.Rngs(0),
                          unet_kwargs=TINY_UNET, **kwargs)


def test_chroma_scale_shrinks_the_colour_channels_only():
  s = 0.25
  mech = diffusion.Diffusion((8, 8, 3), 4, rngs=nnx.Rngs(0), timesteps=50,
                             basis="luma_chroma", chroma_scale=s,
                             unet_kwargs=TINY_UNET)
  to = lambda rgb: np.asarray(mech._to_basis(jnp.array([rgb])))[0]
  # By hand, signed RGB: a red stroke (1, -1, -1), a green one, black.
  red, green = to([1.0, -1, -1]), to([-1.0, 1, -1])
  np.testing.assert_allclose(
      red, [-1 / np.sqrt(3), s * 2 / np.sqrt(2), s * 2 / np.sqrt(6)],
      rtol=1e-6)
  np.testing.assert_allclose(green, red * np.array([1, -1, 1]), rtol=1e-6)
  np.testing.assert_allclose(to([-1.0, -1, -1]), [-np.sqrt(3), 0, 0],
                             atol=1e-6)
  # Back and forth is the identity; the projection is RGB clipping.
  x = 2 * jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  np.testing.assert_allclose(mech._from_basis(mech._to_basis(x)), x,
                             atol=1e-5)
  np.testing.assert_allclose(
      mech._from_basis(mech._project(mech._to_basis(x))), np.clip(x, -1, 1),
      atol=1e-5)
  for bad, match in (({"chroma_scale": 0.0, "basis": "luma_chroma"},
                      "chroma_scale must be positive"),
                     ({"chroma_scale": 0.5}, "needs basis 'luma_chroma'")):
    with pytest.raises(MechanismError, match=match):
      diffusion.Diffusion((8, 8, 3), 4, rngs=nnx.Rngs(0),
                          unet_kwargs=TINY_UNET, **bad)


@pytest.mark.slow
def test_classifier_free_dropout_and_guidance():
  mech = diffusion.Diffusion((8, 8, 3), 4, rngs=nnx.Rngs(0), timesteps=50,
                             cond_dropout=0.5, unet_kwargs=TINY_UNET)
  images = jnp.full((64, 8, 8, 3), 0.5)
  cond = jnp.ones((64, 4))
  got = jitted(mech, "loss")(images, cond, jax.random.key(0))[0]["loss"]
  # Half the rows see a zeroed condition: same t and noise, other loss.
  mech.cond_dropout = 0.0
  full = jitted(mech, "loss")(images, cond, jax.random.key(0))[0]["loss"]
  changed = float(np.mean(np.abs(np.asarray(got - full)) > 1e-6))
  assert 0.3 < changed < 0.7
  # Guidance w: eps(0) + w (eps(v) - eps(0)), in one batched pass.
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  c = cond[:2]
  unet_fn = jitted(mech.unet, "__call__")
  free, conditional = unet_fn(x, 10, 0 * c), unet_fn(x, 10, c)
  np.testing.assert_allclose(jitted(mech, "eps", guidance=3.0)(x, 10, c),
                             free + 3.0 * (conditional - free),
                             rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sampler_microbatch_slices_the_passes_and_keeps_the_result(trained):
  mech, images, cond = trained
  sizes = []
  out = diffusion.in_slices(
      lambda x, c, none: sizes.append((x.shape[0], c.shape[0], none)) or x,
      3, images, cond, None)
  assert sizes == [(3, 3, None), (1, 1, None)]
  np.testing.assert_array_equal(out, images)
  # Slices of 3 and 1 examples (guidance doubles each pass): the same
  # inversion and edit as one pass over the batch.
  run = {m: (jitted(mech, "abduct", steps=5, guidance=2.0, microbatch=m),
             jitted(mech, "predict", steps=5, guidance=2.0, microbatch=m))
         for m in (0, 3)}
  u = {m: run[m][0](images, cond) for m in run}
  np.testing.assert_allclose(u[3]["x_T"], u[0]["x_T"], rtol=1e-4, atol=1e-4)
  new = jnp.roll(cond, 1, axis=0)
  np.testing.assert_allclose(run[3][1](new, u[0]), run[0][1](new, u[0]),
                             rtol=1e-4, atol=1e-4)
  with pytest.raises(MechanismError, match="sampler 'microbatch'.*-1"):
    diffusion.in_slices(lambda x: x, -1, images)


def test_the_sampler_is_one_scan_compiled_once():
  mech = tiny_mechanism()
  graphdef, state = nnx.split(mech)
  traces = []

  @jax.jit
  def predict(state, cond, u):
    traces.append(1)
    return nnx.merge(graphdef, state).predict(cond, u, None, steps=7)

  cond = jnp.eye(4)[:2]
  for seed in range(3):  # new images and features: no new trace
    predict(state, jnp.roll(cond, seed, 0),
            mech.prior(jax.random.key(seed), 2))
  assert len(traces) == 1
  jaxpr = jax.make_jaxpr(predict)(state, cond, mech.prior(
      jax.random.key(0), 2)).jaxpr
  inner = jaxpr.eqns[0].params["jaxpr"].jaxpr  # inside the jit
  names = [e.primitive.name for e in inner.eqns]
  # One scan, and every network pass inside it (none unrolled outside).
  assert names.count("scan") == 1 and "conv_general_dilated" not in names
  (scan,) = [e for e in inner.eqns if e.primitive.name == "scan"]
  assert scan.params["length"] == 7


def test_diffusers_benchmark_configuration_has_its_size():
  n = unet.count_params(lambda: unet.UNet(
      3, 3, rngs=nnx.Rngs(0), **unet.DIFFUSERS_BENCHMARK))
  # diffusers' UNet2DModel of that configuration: 6.48M parameters.
  assert abs(n - 6.48e6) / 6.48e6 < 0.05
  assert n == 6_482_435  # layer for layer (pinned)
  with pytest.raises(unet.UNetError, match="not divisible by its GroupNorm"):
    unet.UNet(3, 3, rngs=nnx.Rngs(0), channels=(12,), groups=8)


def diffusion_config():
  config = tiny_config()
  config.model.image = mechanisms.image_config("ddpm")
  c = config.model.image.ddpm
  c.timesteps = 100
  c.channels = TINY_UNET["channels"]
  c.attention = (False, False)  # attention is tested above; compile less
  c.mid_attention = False
  c.groups = 4
  c.sampler.steps = 5
  return config


@pytest.mark.slow
def test_trains_through_the_ancm_and_edits(tmp_path):
  config = diffusion_config()
  model, result = fit.train_and_evaluate(config, tmp_path / "run")
  assert result.steps == config.train.steps
  assert [s.name for s in model.stages] == ["ddpm"]
  assert dict(model.sampler)["steps"] == 5
  _, model, params = fit.load(tmp_path / "run")
  # relabel is None: the ANCM trains without the faithfulness term.
  logged = set().union(*metrics_log.read_metrics(
      tmp_path / "run" / metrics_log.METRICS_FILE))
  assert "train/eps_mse" in logged and "train/faithful_nll" not in logged
  ds = fit.load_split(config, "train", 16)
  labels = {k: ds[k][:4] for k in model.order}
  out = model.edit(params, ds["image"][:4], {"C": 1}, jax.random.key(1),
                   num_samples=2, labels=labels, sampler={"steps": 5})
  chex.assert_shape(out["image"], (4, 2, 32, 32, 3))
  assert out["image"].dtype == np.uint8
  np.testing.assert_array_equal(out["C"], 1)
  u = model.abduct_image(params, ds["image"][:4], labels, jax.random.key(2),
                         sampler={"steps": 5})
  chex.assert_shape(u["x_T"], (4, 32, 32, 3))
  with pytest.raises(MechanismError, match="unknown sampler setting"):
    model.predict_image(params, labels, u, jax.random.key(3),
                        sampler={"temperature": 1.0})


@pytest.mark.slow
def test_two_stage_vae_ddpm_trains_in_turn_and_shares_both_noises(tmp_path):
  config = tiny_config()
  config.model.image = mechanisms.image_config("vae_ddpm")
  v = config.model.image.vae_ddpm
  v.vae.latent_dim = 4
  v.vae.decoder_convs = ((8, 3), (8, 3), (8, 3))
  v.refiner.timesteps = 100
  v.refiner.channels = TINY_UNET["channels"]
  v.refiner.attention = (False, False)
  v.refiner.mid_attention = False
  v.refiner.groups = 4
  v.refiner_fraction = 0.5
  v.sampler.steps = 3
  workdir = tmp_path / "run"
  model, result = fit.train_and_evaluate(config, workdir)
  assert [s.name for s in model.stages] == ["vae", "refiner"]
  assert result.steps == config.train.steps + 2
  first = train.load_state(
      fit.stage_config(config, model, 0), workdir,
      fit.make_task(config, model, None, stage=0)).params
  _, model, last = fit.load(workdir)
  flat = lambda tree: {mechanisms.path_names(p): np.asarray(x) for p, x in
                       jax.tree_util.tree_flatten_with_path(tree)[0]}
  a, b = flat(first), flat(last)
  changed = {k[:2] for k in a if not np.array_equal(a[k], b[k])}
  assert changed == {("image", "refiner")}  # stage 2: the refiner only
  # Abduction = the VAE's posterior mean + the refiner's inversion given
  # the factual coarse image, computed here by hand.
  ds = fit.load_split(config, "train", 4)
  labels = {k: ds[k] for k in model.order}
  u = model.abduct_image(last, ds["image"], labels, jax.random.key(0))
  mech = model.image_module(last)
  images = ds["image"] / 255.0
  cond = model.encode(labels)
  z = mech.vae.abduct(images, cond)["z"]
  y = mech.vae.predict(cond, {"z": z})
  x_t = jitted(mech.refiner, "abduct", steps=3, extra=y)(images, cond)
  np.testing.assert_allclose(u["z"], z, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(u["x_T"], x_t["x_T"], rtol=1e-3, atol=1e-3)
  out = model.edit(last, ds["image"], {"C": 1}, jax.random.key(1),
                   labels=labels)
  chex.assert_shape(out["image"], (4, 1, 32, 32, 3))
  # The VAE's decode serves the label-faithfulness term of stage 1.
  logged = set().union(*metrics_log.read_metrics(
      workdir / metrics_log.METRICS_FILE))
  assert "train/faithful_nll" in logged
  # benchmarks.diffusion's null edit of this run: its L1 per step
  # count is the invert-then-regenerate computed here, and --grid draws.
  out, grid = tmp_path / "null.json", tmp_path / "grid.png"
  res = subprocess.run(
      [sys.executable, "-m", "benchmarks.diffusion",
       f"--workdir={workdir}", f"--out={out}", "--null_steps=2,3",
       "--null_images=4", f"--grid={grid}", "--grid_rows=2",
       "--effect_images=4", "--guidance=1,2"],
      capture_output=True, text=True, env=ENV, timeout=600)
  assert res.returncode == 0, res.stderr
  rows = json.loads(out.read_text())["null_edit"]
  assert [r["steps"] for r in rows] == [2, 3]
  test = fit.load_split(config, "test", 4)
  test_labels = {k: test[k][:4] for k in model.order}
  for row in rows:
    sampler = {"steps": row["steps"], "eta": 0.0}
    u = model.abduct_image(last, test["image"][:4], test_labels,
                           jax.random.key(0), sampler)
    again = np.asarray(model.predict_image(last, test_labels, u,
                                           jax.random.key(1), sampler))
    want = np.abs(np.asarray(to_uint8(again), np.float64)
                  - test["image"][:4]).mean()
    np.testing.assert_allclose(row["l1_255"], want, rtol=1e-3)
  assert grid.stat().st_size > 0
  # The effect sweep: one row per guidance weight; at w = 1 its null edit
  # is the run's own sampler's (3 steps, the sweep's row above), and its
  # do(C) agreement is the reader's on model.edit's images, by hand.
  effect = json.loads(out.read_text())["effect"]
  assert [r["guidance"] for r in effect] == [1.0, 2.0]
  np.testing.assert_allclose(effect[0]["null_l1_255"], rows[1]["l1_255"],
                             rtol=1e-3)
  new_c = (np.asarray(test_labels["C"]) + 1) % model.features["C"].size
  edit = model.edit(last, test["image"][:4], {"C": new_c}, jax.random.key(2),
                    labels=test_labels, sampler={"guidance": 1.0})
  read = model.read_labels(last, edit["image"][:, 0])
  for j in model.order:
    np.testing.assert_allclose(
        effect[0]["do"]["C"]["agree"][j],
        np.mean(np.asarray(read[j]) == np.asarray(edit[j][:, 0])))
    np.testing.assert_allclose(
        effect[0]["do"]["C"]["kept"][j],
        np.mean(np.asarray(read[j]) == np.asarray(test_labels[j])))
  np.testing.assert_array_equal(edit["C"][:, 0], new_c)


def test_two_stage_comparison_adds_only_the_refiner_to_the_quickstart_vae():
  """configs/compare_vae_ddpm_colored_mnist_backdoor.py compares like with
  like: its VAE-ANCM is the quickstart's model, and the two-stage row's first
  stage trains the
  same VAE for as many steps before its refiner's REFINER_STEPS."""
  from configs import (  # pylint: disable=import-outside-toplevel
      compare_vae_ddpm_colored_mnist_backdoor as compare_two_stage)
  from ctfjax.experiment import job

  config = compare_two_stage.get_config()
  plain = comparisons.quickstart_vae_of(config)
  two = job.model_config(config, "vae_ddpm")
  assert two.model.image.kind == "vae_ddpm"
  assert (two.model.image.vae_ddpm.vae.to_dict()
          == plain.model.image.vae.to_dict())
  assert two.model.graph == plain.model.graph
  assert two.train.to_dict() == plain.train.to_dict()
  model = fit.model_of(two)
  assert [(s.name, s.steps) for s in model.stages] == [
      ("vae", plain.train.steps), ("refiner", compare_two_stage.REFINER_STEPS)]


def test_frontdoor_comparison_gives_the_diffusion_ncm_the_vae_ancms_ncm():
  """configs/compare_ddpm_colored_mnist_frontdoor.py: both rows are the same
  feature NCM on front-door Colored MNIST under the true diagram; the
  diffusion row changes the image mechanism and its training steps, nothing
  else the NCM sees."""
  from configs import compare_ddpm_colored_mnist_frontdoor as compare
  from configs import quickstart
  from ctfjax.experiment import job

  config = compare.get_config()
  plain = job.model_config(config, "ancm_vae")
  want = job.model_config(quickstart.get_config(), "ancm_vae")
  assert plain.data.name == "colored_mnist_bars/frontdoor"
  # The quickstart's model; its diagram ("", the data's own) is now the
  # front door's.
  assert plain.model.to_dict() == want.model.to_dict()
  assert plain.train.steps == compare.VAE_STEPS
  diff = job.model_config(config, "diffusion_ncm")
  assert diff.model.image.kind == "ddpm"
  assert diff.model.graph == plain.model.graph
  keep = ("image", "faithful_weight")
  rest = lambda c: {k: v for k, v in c.model.to_dict().items()
                    if k not in keep}
  assert rest(diff) == rest(plain)
  assert diff.data.to_dict() == plain.data.to_dict()
  assert diff.train.steps == compare.DIFFUSION_STEPS
  assert diff.model.image.ddpm.sampler.steps == 20
  # The mechanism and its training are the standalone diffusion config's
  # (v-prediction, guidance, luma/chroma), not a second copy of them.
  from configs import ancm_ddpm_colored_mnist_frontdoor as standalone
  alone = standalone.get_config()
  assert diff.model.image.ddpm.to_dict() == alone.model.image.ddpm.to_dict()
  assert diff.model.image.ddpm.prediction == "v"
  assert diff.model.image.ddpm.sampler.guidance == 3.0
  for key in ("batch_size", "microbatch", "learning_rate", "grad_clip"):
    assert diff.train[key] == alone.train[key], key
  # `launch.evaluate` of a standalone run edits as many images as the
  # comparison (at the base sizes it took over half an hour on 2 cores).
  from configs import ancm
  from configs import ancm_vae_ddpm_colored_mnist_frontdoor as two_stage
  for key, value in ancm.SAMPLER_EVAL.items():
    assert config.eval[key] == alone.eval[key] == value, key
    assert two_stage.get_config().eval[key] == value, key
  # The ctf-consistency rows keep the base 500 test images per family.
  from ctfjax import train
  for each in (config, alone, two_stage.get_config()):
    assert each.eval.get("test_size",
                         train.base_eval_config().test_size) >= 500
  model = fit.model_of(diff)
  assert [(s.name, s.steps) for s in model.stages] == [
      ("ddpm", compare.DIFFUSION_STEPS)]


@pytest.mark.slow
def test_benchmark_diffusion_edits_continuous_features(tmp_path):
  """benchmarks.diffusion on MorphoMNIST (spline and categorical
  features): a continuous feature is edited one data spread up and its
  effect is an error in the feature's units, both computed here by hand;
  do(thickness) keeps the digit, a non-descendant."""
  import test_ancm_morpho
  config = test_ancm_morpho.tiny_config()
  config.model.image = diffusion_config().model.image
  config.model.image.ddpm.sampler.steps = 2
  workdir, out = tmp_path / "run", tmp_path / "bench.json"
  fit.train_and_evaluate(config, workdir)
  res = subprocess.run(
      [sys.executable, "-m", "benchmarks.diffusion",
       f"--workdir={workdir}", f"--out={out}", "--null_steps=2",
       "--null_images=4", f"--grid={tmp_path / 'grid.png'}",
       "--grid_rows=2", "--effect_images=4", "--guidance=1"],
      capture_output=True, text=True, env=ENV, timeout=600)
  assert res.returncode == 0, res.stderr
  assert (tmp_path / "grid.png").stat().st_size > 0
  effect = json.loads(out.read_text())["effect"][0]
  _, model, params = fit.load(workdir)
  test = fit.load_split(config, "test", 4)
  labels = {k: np.asarray(test[k][:4]) for k in model.order}
  kind = model.features["thickness"]
  new = labels["thickness"] + np.float32(kind.scale)
  edit = model.edit(params, test["image"][:4], {"thickness": new},
                    jax.random.key(2), labels=labels,
                    sampler={"guidance": 1.0})
  np.testing.assert_allclose(edit["thickness"][:, 0], new, rtol=1e-6)
  np.testing.assert_array_equal(edit["digit"][:, 0], labels["digit"])
  read = model.read_labels(params, edit["image"][:, 0])
  row = effect["do"]["thickness"]
  for j in ("thickness", "intensity"):
    np.testing.assert_allclose(row["agree_mae"][j], np.mean(np.abs(
        np.asarray(read[j], np.float64) - edit[j][:, 0])), rtol=1e-4)
    np.testing.assert_allclose(row["kept_mae"][j], np.mean(np.abs(
        np.asarray(read[j], np.float64) - labels[j])), rtol=1e-4)
  np.testing.assert_allclose(row["agree"]["digit"], np.mean(
      np.asarray(read["digit"]) == labels["digit"]))
  assert set(effect["reader_mae_real"]) == {"thickness", "intensity"}
  assert set(effect["reader_acc_real"]) == {"digit"}
  # do(thickness) redraws intensity, its descendant, in every edit.
  assert row["others_unchanged"] == {"n": 0}
  assert row["others_changed"]["n"] == 4
  np.testing.assert_allclose(row["others_changed"]["kept"]["digit"],
                             row["kept"]["digit"])


@pytest.mark.parametrize("k, n", [(29, 64), (49, 64), (0, 64), (64, 64),
                                  (1, 2)])
def test_wilson_interval_is_where_the_score_test_accepts(k, n):
  """edit_effect.wilson against its definition, solved numerically: the
  ends are the p0 in [0, 1] where |k/n - p0| = z sqrt(p0 (1 - p0) / n)."""
  from scipy import optimize

  from benchmarks import edit_effect as bd

  p = k / n
  score = lambda p0: abs(p - p0) - bd.Z95 * np.sqrt(p0 * (1 - p0) / n)
  # The test accepts p0 = p itself; the brackets start just beside it.
  eps = 1e-15
  lo = 0.0 if k == 0 else optimize.brentq(score, 0.0, p - eps, xtol=1e-14)
  hi = 1.0 if k == n else optimize.brentq(score, p + eps, 1.0, xtol=1e-14)
  np.testing.assert_allclose(bd.wilson(k, n), [lo, hi], atol=1e-12)
  assert bd.wilson(k, n)[0] <= p <= bd.wilson(k, n)[1]


def test_benchmark_diffusion_splits_kept_by_whether_descendants_changed():
  """edit_effect.by_others (benchmarks.diffusion's effect sweep):
  do(C)'s edits split by whether the NCM also redrew B; the fractions are
  counted here by hand."""
  from benchmarks import edit_effect as bd

  class Model:
    order = ("D", "C", "B")
    features = {"D": kinds.Categorical(10), "C": kinds.Categorical(2),
                "B": kinds.Categorical(2)}

  labels = {"D": np.array([3, 4, 5, 6]), "C": np.array([0, 0, 1, 1]),
            "B": np.array([1, 1, 0, 1])}
  drawn = {"D": labels["D"], "C": 1 - labels["C"],
           "B": np.array([0, 1, 0, 0])}  # edits 0 and 3 lose the bar
  read = {"D": np.array([3, 9, 5, 0]), "C": drawn["C"],
          "B": np.array([0, 1, 1, 0])}
  out = bd.by_others(Model, "C", read, drawn, labels)
  # Unchanged: edits 1 and 2 (D read 9 and 5 against 4 and 5; B read 1
  # and 1 against 1 and 0). Changed: 0 and 3 (D 3 and 0 against 3 and 6).
  assert out["others_unchanged"]["n"] == 2
  assert out["others_unchanged"]["kept"] == {"D": 0.5, "C": 0.0,
                                             "B": 0.5}
  assert out["others_changed"]["n"] == 2
  assert out["others_changed"]["kept"] == {"D": 0.5, "C": 0.0, "B": 0.0}
  assert out["others_changed"]["kept_ci95"]["D"] == bd.wilson(1, 2)
  nothing = bd.by_others(Model, "D", read, {**labels, "D": read["D"]},
                         labels)
  assert nothing["others_changed"] == {"n": 0}
