"""The spline feature kind: exact inverse, density, engine, a fitted NCM.

The kind is checked against what it must be by construction: abduction
inverts the forward map to float32 precision, the log-density is the
N(0, 1) density of the abducted noise over a finite-difference derivative
of the forward map (float64), and an engine SCM t -> i of two spline
mechanisms moves i under do(t) through the very noise that produced it.
A tiny NCM fit to MorphoMNIST's skewed thickness law 0.5 + Gamma(10, rate
5) shows the spline reaching a held-out log-likelihood nearer the exact
one than the affine `Continuous` kind.
"""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from ctfjax import ncm
from ctfjax.causal import kinds
from ctfjax.causal import scm as engine
from ctfjax.causal.spline import Spline

KIND = Spline(loc=2.5, scale=0.6, bins=6, bound=3.0)


def _heads(n, seed=0, kind=KIND):
  """Random heads [n, head_size]: visibly bent splines, but none so flat
  that float32 values cannot pin the noise down (d eps = d value / slope)."""
  return 0.5 * jax.random.normal(jax.random.key(seed), (n, kind.head_size))


# The kind on its own ------------------------------------------------------


def test_spline_spec_and_registry():
  assert kinds.resolve("spline") == Spline()
  assert kinds.resolve(KIND) is KIND
  assert (KIND.width, KIND.head_size, KIND.noise_size) == (1, 19, 1)
  assert Spline() != kinds.Continuous() and hash(KIND) == hash(
      Spline(loc=2.5, scale=0.6, bins=6, bound=3.0))
  assert KIND.dtype == jnp.float32
  np.testing.assert_allclose(KIND.encode(jnp.array([2.5, 3.1])),
                             [[0.0], [1.0]], atol=1e-6)


@pytest.mark.parametrize("args, match", [
    ({"bins": 1}, "integer bins >= 2"),
    ({"bins": 2.5}, "integer bins >= 2"),
    ({"bound": 0.0}, "finite positive bound"),
    ({"bound": float("inf")}, "finite positive bound"),
    ({"scale": -1.0}, "positive scale"),
])
def test_spline_rejects_bad_parameters(args, match):
  with pytest.raises(kinds.KindError, match=match):
    Spline(**args)


@pytest.mark.parametrize("value, match", [
    (np.array([0.0, np.nan]), "'V' is not finite"),
    (np.array(["a"]), "'V' must be real numbers"),
])
def test_spline_check_names_the_variable(value, match):
  with pytest.raises(kinds.KindError, match=match):
    KIND.check("V", value)


@pytest.mark.slow
def test_spline_round_trip_is_exact():
  head = _heads(512)
  # Noise inside the spline's range and in both identity tails.
  eps = jnp.linspace(-4.5, 4.5, 512)[:, None]
  v = KIND.apply(head, eps)
  np.testing.assert_allclose(KIND.abduct(None, head, v), eps, atol=1e-5,
                             rtol=1e-5)
  # And from values: any real value has exactly one noise.
  v = jnp.linspace(-3.0, 8.0, 512)
  np.testing.assert_allclose(KIND.apply(head, KIND.abduct(None, head, v)), v,
                             atol=1e-5, rtol=1e-5)
  # The map is increasing in the noise, for every head.
  grid = jnp.linspace(-4.5, 4.5, 200)[:, None, None]
  assert np.all(np.diff(np.asarray(KIND.apply(head[:16], grid)), axis=0) > 0)


@pytest.mark.slow
def test_spline_log_prob_is_the_change_of_variables():
  head = _heads(64, seed=1)
  eps = jnp.linspace(-4.0, 4.0, 64)
  v = KIND.apply(head, eps[:, None])
  # d value / d eps by central differences, in float64 so that the
  # difference quotient is accurate to far below the tolerance.
  with jax.enable_x64(True):
    h64, e64 = jnp.asarray(head, jnp.float64), jnp.asarray(eps, jnp.float64)
    step = 1e-5
    slope = (KIND.apply(h64, (e64 + step)[:, None])
             - KIND.apply(h64, (e64 - step)[:, None])) / (2 * step)
  expected = scipy.stats.norm.logpdf(eps) - np.log(np.asarray(slope))
  # 1e-4 relative in the density is 1e-4 absolute in its log.
  np.testing.assert_allclose(KIND.log_prob(head, v), expected, atol=1e-4)
  # The density integrates to one over the value's axis.
  grid = jnp.linspace(-8.0, 14.0, 40001)
  mass = jnp.exp(KIND.log_prob(head[:4, None, :], grid)).sum(-1) * (
      grid[1] - grid[0])
  np.testing.assert_allclose(mass, 1.0, atol=1e-3)


@pytest.mark.slow
def test_spline_mode_is_the_median():
  head = _heads(4, seed=2)
  mode = KIND.mode(head)
  np.testing.assert_array_equal(mode, KIND.apply(head, jnp.zeros((4, 1))))
  draws = KIND.apply(head, KIND.sample_noise(jax.random.key(3), (20000, 4)))
  # Half the draws fall below it (three standard errors of 20000 draws).
  np.testing.assert_allclose((draws < mode).mean(0), 0.5, atol=0.011)


def test_zero_spline_is_the_affine_kind():
  # With the spline at identity, the head's (shift, log_s) act as the affine
  # kind's (mu, log_s).
  affine = kinds.Continuous(loc=KIND.loc, scale=KIND.scale)
  head = jnp.zeros((3, KIND.head_size)).at[:, -2:].set(
      jnp.array([[0.5, -0.3], [-1.0, 0.7], [0.0, -20.0]]))
  noise = jnp.array([[0.3], [-1.2], [2.0]])
  v = KIND.apply(head, noise)
  np.testing.assert_allclose(v, affine.apply(head[:, -2:], noise), rtol=1e-6)
  np.testing.assert_allclose(KIND.log_prob(head, v),
                             affine.log_prob(head[:, -2:], v), rtol=1e-5)
  np.testing.assert_allclose(KIND.mode(head), affine.mode(head[:, -2:]),
                             rtol=1e-6)
  np.testing.assert_allclose(KIND.relaxed_encode(head, noise, 0.5),
                             affine.relaxed_encode(head[:, -2:], noise, 0.5),
                             rtol=1e-5, atol=1e-6)


# Stacks of splines (num_layers) ----------------------------------------------


STACK = Spline(loc=2.5, scale=0.6, bins=6, bound=3.0, num_layers=2)


def _one_spline(params, bins=6, bound=3.0):
  """A distrax spline from its head part [..., 3 * bins - 1], built here as
  the kind's layout documents it, not through the kind."""
  pad = jnp.zeros_like(params[..., :1])
  return distrax.RationalQuadraticSpline(
      jnp.concatenate([params[..., :2 * bins], pad,
                       params[..., 2 * bins:], pad], -1),
      -bound, bound, boundary_slopes="identity")


def _affine(head, kind):
  """The head's (shift, log_s) map with the standardisation folded in."""
  return distrax.ScalarAffine(
      kind.loc + kind.scale * head[..., -2],
      log_scale=jnp.maximum(head[..., -1], kinds.MIN_LOG_SCALE)
      + np.log(kind.scale))


def test_one_layer_is_the_single_spline_bit_for_bit():
  # The kind as it was before stacks: Chain([affine, spline]) of one head
  # [widths | heights | slopes | shift | log_s]. Each side is one jitted
  # program (op by op, distrax takes seconds).
  one = Spline(loc=2.5, scale=0.6, bins=6, bound=3.0, num_layers=1)
  assert one == KIND and hash(one) == hash(KIND) and one.head_size == 19
  head = _heads(32, seed=8)
  eps = jnp.linspace(-4.0, 4.0, 32)

  @jax.jit
  def before(head, eps):
    chain = distrax.Chain([_affine(head, KIND), _one_spline(head[:, :17])])
    v = chain.forward(eps)
    inv, log_det = chain.inverse_and_log_det(v)
    return (v, jax.scipy.stats.norm.logpdf(inv) + log_det, inv,
            chain.forward(jnp.zeros_like(eps)))

  @jax.jit
  def now(head, eps):
    v = one.apply(head, eps[:, None])
    return (v, one.log_prob(head, v), one.abduct(None, head, v)[:, 0],
            one.mode(head))

  for got, want in zip(now(head, eps), before(head, eps), strict=True):
    np.testing.assert_array_equal(got, want)


def test_two_layers_are_the_composition_of_their_splines():
  assert STACK.head_size == 2 * 17 + 2
  head = _heads(64, seed=9, kind=STACK)
  eps = jnp.linspace(-4.0, 4.0, 64)

  @jax.jit
  def by_hand(head, eps):
    # Spline 1 (head[:17]) acts on the noise, then spline 2 (head[17:34]),
    # then the affine map; the log-determinants add up.
    first, second = _one_spline(head[:, :17]), _one_spline(head[:, 17:34])
    affine = _affine(head, STACK)
    z1, ld1 = first.forward_and_log_det(eps)
    z2, ld2 = second.forward_and_log_det(z1)
    v, ld3 = affine.forward_and_log_det(z2)
    # Without the second spline, for the check that it bends the map.
    return v, jax.scipy.stats.norm.logpdf(eps) - (ld1 + ld2 + ld3), (
        affine.forward(z1))

  v, log_prob, one_less = by_hand(head, eps)
  kind = jax.jit(lambda head, eps, v: (STACK.apply(head, eps[:, None]),
                                       STACK.log_prob(head, v)))
  got_v, got_log_prob = kind(head, eps, v)
  np.testing.assert_allclose(got_v, v, rtol=1e-6)
  np.testing.assert_allclose(got_log_prob, log_prob, rtol=1e-5, atol=1e-5)
  assert not np.allclose(one_less, v, atol=1e-3)


@pytest.mark.slow
def test_abduction_inverts_a_stack():
  kind = Spline(loc=2.5, scale=0.6, bins=6, bound=3.0, num_layers=3)
  head = _heads(512, seed=10, kind=kind)
  eps = jnp.linspace(-4.5, 4.5, 512)[:, None]
  np.testing.assert_allclose(
      kind.abduct(None, head, kind.apply(head, eps)), eps, atol=1e-4,
      rtol=1e-4)
  v = jnp.linspace(-3.0, 8.0, 512)
  np.testing.assert_allclose(kind.apply(head, kind.abduct(None, head, v)), v,
                             atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layers", [0, -1, 2.5, "3", True])
def test_a_bad_num_layers_is_a_one_line_error(layers):
  with pytest.raises(kinds.KindError, match="integer num_layers >= 1") as e:
    Spline(num_layers=layers)
  assert "\n" not in str(e.value)
  assert Spline(num_layers=3.0).num_layers == 3  # A whole float is fine.


# The kind in the engine -----------------------------------------------------


T_KIND = Spline(loc=2.5, scale=0.6)
I_KIND = Spline(loc=150.0, scale=40.0)
T_HEAD = 0.5 * jax.random.normal(jax.random.key(4), (T_KIND.head_size,))
I_BASE, I_SLOPE = 0.5 * jax.random.normal(jax.random.key(5),
                                          (2, I_KIND.head_size))


def _i_head(t_encoding):
  """Intensity's flow parameters, bent by the standardised thickness."""
  return I_BASE + t_encoding * I_SLOPE


def thickness_intensity_scm() -> engine.SCM:
  """t -> i with a spline mechanism each (MorphoMNIST's continuous pair)."""
  return engine.SCM({
      "t": engine.Mechanism((), T_KIND, lambda pa, ctx: T_HEAD),
      "i": engine.Mechanism(("t",), I_KIND,
                            lambda pa, ctx: _i_head(pa["t"]))})


@pytest.mark.slow
def test_engine_counterfactual_moves_the_child_through_its_noise():
  scm = thickness_intensity_scm()
  u, obs = engine.sample(scm, jax.random.key(6), 256)
  lp = engine.log_prob(scm, obs, {})
  np.testing.assert_allclose(lp["t"], T_KIND.log_prob(T_HEAD, obs["t"]),
                             rtol=1e-6)
  # A null intervention reproduces the observation exactly.
  cf = engine.counterfactual(scm, obs, {}, jax.random.key(7))
  for k in obs:
    np.testing.assert_array_equal(cf[k], obs[k])
  # do(t = t'): i' is the child's flow at t' applied to the noise that
  # produced i at t - the prior draw itself, not only its abduction.
  target = obs["t"] + jnp.linspace(-1.0, 1.0, 256)
  cf = engine.counterfactual(scm, obs, {"t": target}, jax.random.key(8))
  np.testing.assert_allclose(cf["t"], target, rtol=1e-6)
  expected = I_KIND.apply(_i_head(T_KIND.encode(target)), u.noise["i"])
  np.testing.assert_allclose(cf["i"], expected, rtol=1e-5)
  assert np.all(np.asarray(cf["i"] != obs["i"]))


# A fitted NCM ---------------------------------------------------------------


GAMMA = scipy.stats.gamma(a=10.0, loc=0.5, scale=1 / 5.0)


def _fit_and_score(kind, train, test):
  model, params = ncm.NCM.create("T", {"T": kind}, 0, hidden=(16, 16),
                                 latent_dim=1)
  params, _ = ncm.fit(model, params, {"T": train}, jax.random.key(1),
                      steps=200, learning_rate=1e-2, num_latent_samples=8)
  return float(model.log_likelihood(params, {"T": test}, jax.random.key(2),
                                    num_latent_samples=64).mean())


@pytest.mark.slow
def test_spline_ncm_fits_a_skewed_law_better_than_the_affine_kind():
  # The affine kind is a Gaussian mixture over the NCM's latent, so it gets
  # close too (0.009 nats short here; 0.006-0.023 over three seeds, against
  # 0.004-0.008 for the spline).
  rng = np.random.default_rng(0)
  train, test = GAMMA.rvs((2, 2000), random_state=rng).astype(np.float32)
  units = {"loc": float(train.mean()), "scale": float(train.std())}
  truth = float(GAMMA.logpdf(test).mean())
  affine = _fit_and_score(kinds.Continuous(**units), train, test)
  spline = _fit_and_score(Spline(**units), train, test)
  assert truth - spline < truth - affine
  assert abs(truth - spline) < 0.02
