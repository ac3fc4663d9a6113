"""The world engine on mixed graphs: kinds, closed forms, a fitted mixed NCM.

X ~ Bern(0.3) (categorical), Y = 2 + 3 X + 0.5 eps (continuous): the
counterfactual Y_{X=1} given (X=0, Y=y) is y + 3 exactly, and the NCM fitted
to samples of it must answer E[Y_{X=1} | X=0] = E[Y | X=1] = 5 (Markovian,
so identified).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from ctfjax import causal as cc
from ctfjax import ncm
from ctfjax.causal import kinds
from ctfjax.causal import scm as engine
from ctfjax.causal import worlds
from ctfjax.causal.spline import Spline

P_X, MU0, SLOPE, SIGMA = 0.3, 2.0, 3.0, 0.5


def mixed_scm(y_kind=kinds.Continuous()) -> engine.SCM:
  """X -> Y with X categorical and Y continuous (in `y_kind`'s units)."""
  def y_head(pa, ctx):
    del ctx
    mean = MU0 + SLOPE * pa["X"][..., 1]  # one-hot of X
    return jnp.stack([(mean - y_kind.loc) / y_kind.scale,
                      jnp.full_like(mean, math.log(SIGMA / y_kind.scale))],
                     -1)
  return engine.SCM({
      "X": engine.categorical((), 2, lambda pa: jnp.log(
          jnp.array([1 - P_X, P_X]))),
      "Y": engine.Mechanism(("X",), y_kind, y_head)})


def _observe(scm, n=256, seed=0):
  return engine.sample(scm, jax.random.key(seed), n)[1]


# Kinds -----------------------------------------------------------------------


def test_kinds_registry_and_specs():
  assert set(kinds.KINDS) == {"categorical", "continuous", "spline"}
  assert kinds.resolve(3) == kinds.Categorical(3)
  assert kinds.resolve("continuous") == kinds.Continuous()
  k = kinds.Continuous(loc=1.0, scale=2.0)
  assert kinds.resolve(k) is k
  assert (k.width, k.head_size, k.noise_size) == (1, 2, 1)
  c = kinds.Categorical(4)
  assert (c.width, c.head_size, c.noise_size) == (4, 4, 4)
  enc = kinds.encode({"A": c, "B": k}, {"A": jnp.array([1, 3]),
                                        "B": jnp.array([1.0, 5.0])})
  np.testing.assert_array_equal(enc, [[0, 1, 0, 0, 0], [0, 0, 0, 1, 2]])
  with pytest.raises(kinds.KindError, match="unknown feature kind 'flow'"):
    kinds.resolve("flow")


def test_continuous_kind_inverse_and_density():
  k = kinds.Continuous(loc=3.0, scale=2.0)
  head = jnp.array([[0.5, -0.3], [-1.0, 0.7], [0.0, -20.0]])
  noise = jnp.array([[0.3], [-1.2], [2.0]])
  v = k.apply(head, noise)
  mu = 3.0 + 2.0 * head[:, 0]
  sd = 2.0 * jnp.exp(jnp.maximum(head[:, 1], kinds.MIN_LOG_SCALE))
  np.testing.assert_allclose(v, mu + sd * noise[:, 0], rtol=1e-6)
  np.testing.assert_allclose(k.abduct(None, head, v), noise, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(k.log_prob(head, v),
                             scipy.stats.norm.logpdf(v, mu, sd), rtol=1e-5)


@pytest.mark.parametrize("kind, value, match", [
    (kinds.Categorical(3), np.array([0, 3]), "'V' is outside its domain"),
    (kinds.Categorical(3), np.array([0.5]), "'V' must be integers"),
    (kinds.Continuous(), np.array([0.0, np.nan]), "'V' is not finite"),
    (kinds.Continuous(), np.array(["a"]), "'V' must be real numbers"),
])
def test_kind_check_names_the_variable(kind, value, match):
  with pytest.raises(kinds.KindError, match=match):
    kind.check("V", value)


def test_reaching_is_the_one_merge_rule():
  g = cc.Graph.parse("Z -> X; X -> Y; W")
  world = (("W", 1), ("X", 0), ("Z", 1))
  assert g.reaching("Y", world) == (("X", 0),)  # Z is cut off by do(X)
  assert g.reaching("X", world) == (("X", 0),)
  assert g.reaching("Z", world) == (("Z", 1),)
  assert g.reaching("W", {"X": 0}) == ()


# Engine against closed forms ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("y_kind", [kinds.Continuous(),
                                    kinds.Continuous(loc=5.0, scale=2.0)])
def test_mixed_counterfactual_and_density_closed_form(y_kind):
  scm = mixed_scm(y_kind)
  obs = _observe(scm)
  x, y = obs["X"], obs["Y"]
  assert x.dtype == jnp.int32 and y.dtype == jnp.float32
  # Y_{X=1} given (X=0, Y=y) is y + 3; given X=1 it is y.
  cf = engine.counterfactual(scm, obs, {"X": 1}, jax.random.key(1))
  np.testing.assert_array_equal(cf["X"], 1)
  np.testing.assert_allclose(cf["Y"], y + SLOPE * (1 - x), atol=1e-5)
  # The log-density includes the Jacobian of the standardisation.
  lp = engine.log_prob(scm, obs, {})
  np.testing.assert_allclose(
      lp["Y"], scipy.stats.norm.logpdf(y, MU0 + SLOPE * x, SIGMA),
      rtol=1e-5)
  np.testing.assert_allclose(lp["X"], np.log(np.where(x == 1, P_X, 1 - P_X)),
                             rtol=1e-6)


def test_null_and_per_unit_interventions_copy_unchanged_values():
  scm = mixed_scm()
  obs = _observe(scm)
  cf = engine.counterfactual(scm, obs, {}, jax.random.key(2))
  for k in obs:
    np.testing.assert_array_equal(cf[k], obs[k])
  # One value per unit: units set to their factual X keep Y bit-for-bit,
  # the others move by exactly the effect.
  target = jnp.asarray(np.random.default_rng(0).integers(0, 2, len(obs["X"])))
  cf = engine.counterfactual(scm, obs, {"X": target}, jax.random.key(3))
  same = np.asarray(target == obs["X"])
  assert 0 < same.sum() < len(same)
  np.testing.assert_array_equal(cf["X"], target)
  np.testing.assert_array_equal(cf["Y"][same], obs["Y"][same])
  np.testing.assert_allclose(cf["Y"][~same], (obs["Y"] + SLOPE * (
      target - obs["X"]))[~same], atol=1e-5)
  assert np.all(cf["Y"][~same] != obs["Y"][~same])


def fork_scm(kind) -> engine.SCM:
  """Z -> X -> Y <- W <- Z, every node of `kind`: do(X) cannot reach Z or
  W."""
  base = 0.5 * jax.random.normal(jax.random.key(11), (4, kind.head_size))
  slope = 0.5 * jax.random.normal(jax.random.key(12), (4, kind.head_size))

  def head(i, *parents):
    return lambda pa, ctx: base[i] + sum(pa[p] for p in parents) * slope[i]

  return engine.SCM({
      "Z": engine.Mechanism((), kind, head(0)),
      "X": engine.Mechanism(("Z",), kind, head(1, "Z")),
      "W": engine.Mechanism(("Z",), kind, head(2, "Z")),
      "Y": engine.Mechanism(("X", "W"), kind, head(3, "X", "W"))})


# Non-dyadic units: value -> noise -> value does not round-trip exactly in
# float32, so only a copy keeps an unreachable value.
@pytest.mark.parametrize("kind", [
    kinds.Continuous(loc=0.1, scale=0.3),
    pytest.param(Spline(loc=0.1, scale=0.3, bins=4),
                 marks=pytest.mark.slow)], ids=["continuous", "spline"])
def test_values_no_intervention_reaches_are_copied_bit_for_bit(kind):
  scm = fork_scm(kind)
  # Any real values are in the support: observations in the kind's units.
  obs = dict(zip("ZXWY", kind.loc + kind.scale * np.random.default_rng(
      0).normal(size=(4, 256)).astype(np.float32)))
  # The premise: recomputed from their abducted noise, the values differ
  # from the observations in the last bits for some units.
  particles = engine.abduct(scm, obs, jax.random.key(1))
  again = engine.evaluate(scm, particles.exogenous)
  for v in ("Z", "W"):
    assert np.any(np.asarray(again[v]) != np.asarray(obs[v])), v
  # Abduction, action, prediction (`engine.counterfactual`'s steps) with a
  # per-unit do(X): half the units set to their factual X.
  target = jnp.where(jnp.arange(256) % 2 == 0, obs["X"], obs["X"] + 1.0)
  cf = engine.predict(scm, particles.exogenous, {"X": target},
                      particles.values)
  for v in ("Z", "W"):
    np.testing.assert_array_equal(cf[v], obs[v])
  kept = np.asarray(target == obs["X"])
  np.testing.assert_array_equal(cf["Y"][kept], obs["Y"][kept])
  assert np.all(cf["Y"][~kept] != obs["Y"][~kept])
  # The world engine (query estimation): the factual world and do(X = 1)
  # share Z's and W's copies, so world 1 holds the evidence itself.
  plan = worlds.WorldPlan.build(scm.base_graph, ((), (("X", 1.0),)))
  out = worlds.propagate(scm, {}, jax.random.key(3), plan,
                         {(v, 0): obs[v] for v in obs})
  for v in ("Z", "W"):
    src, slot = plan.ref(v, 1)
    assert src == "slot"
    np.testing.assert_array_equal(out.values[v, slot], obs[v])
  assert plan.ref("X", 1) == ("const", 1.0)


@pytest.mark.slow
def test_continuous_parent_categorical_child_closed_form():
  # W = argmax([0, 2 Z] + g): W = 1 iff the logistic L = g1 - g0 > -2 Z.
  scm = engine.SCM({
      "Z": engine.additive((), lambda pa: 0.0),
      "W": engine.categorical(("Z",), 2, lambda pa: jnp.concatenate(
          [jnp.zeros_like(pa["Z"]), 2.0 * pa["Z"]], -1))})
  n = 200_000
  obs = {"Z": jnp.zeros(n), "W": jnp.zeros(n, jnp.int32)}
  lp = engine.log_prob(scm, {"Z": jnp.array([0.5]), "W": jnp.array([1])}, {})
  np.testing.assert_allclose(lp["W"], np.log(scipy.special.expit(1.0)),
                             rtol=1e-6)
  cf = jax.jit(engine.counterfactual)(scm, obs, {"Z": 1.0},
                                      jax.random.key(4))
  f = scipy.special.expit
  exact = (f(0.0) - f(-2.0)) / f(0.0)  # P(W_{Z=1}=1 | Z=0, W=0)
  assert abs(float(cf["W"].mean()) - exact) < 0.01
  np.testing.assert_array_equal(
      engine.counterfactual(scm, obs, {}, jax.random.key(5))["W"], 0)
  # Lowering the logit of class 1 can never turn an observed 0 into 1.
  cf = engine.counterfactual(scm, obs, {"Z": -1.0}, jax.random.key(6))
  np.testing.assert_array_equal(cf["W"], 0)


# A fitted mixed NCM ----------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_ncm():
  data = _observe(mixed_scm(), n=2000, seed=7)
  y = np.asarray(data["Y"])
  features = {"X": 2, "Y": kinds.Continuous(loc=y.mean(), scale=y.std())}
  model, params = ncm.NCM.create("X -> Y", features, 0, hidden=(16, 16),
                                 latent_dim=2)
  params, history = ncm.fit(model, params, data, jax.random.key(1),
                            steps=300, learning_rate=1e-2,
                            num_latent_samples=16)
  return model, params, data, history


@pytest.mark.slow
def test_mixed_ncm_structure(mixed_ncm):
  model, params, data, history = mixed_ncm
  assert model.domains == {"X": 2}
  assert isinstance(model.features["Y"], kinds.Continuous)
  assert model.encode(data).shape == (2000, 3)
  s = model.sample(params, jax.random.key(0), 5, do={"X": 1})
  assert s["X"].dtype == jnp.int32 and s["Y"].dtype == jnp.float32
  assert history["loss"][-20:].mean() < history["loss"][:20].mean()
  with pytest.raises(cc.QueryError, match="'Y' is a continuous feature"):
    model.estimate_query(params, "P(X=1 | Y=0)", jax.random.key(0), 16)
  with pytest.raises(ncm.NCMError, match="needs categorical features"):
    model.model_table(params, jax.random.key(0), 16)


def test_mixed_ncm_counterfactual_matches_identified_closed_form(mixed_ncm):
  model, params, data, _ = mixed_ncm
  rows = {k: x[:200] for k, x in data.items()}
  key = jax.random.key(8)
  cf = model.counterfactual_sample(params, rows, {"X": 1}, key, n=4,
                                   num_particles=32)
  x0 = np.asarray(rows["X"]) == 0
  # E[Y_{X=1} | X=0] = E[Y | X=1] = 5 in a Markovian model.
  assert abs(float(cf["Y"][x0].mean()) - (MU0 + SLOPE)) < 0.25
  # Rows already at X=1 are a null intervention: Y copied exactly.
  np.testing.assert_array_equal(
      cf["Y"][~x0], np.repeat(np.asarray(rows["Y"])[~x0, None], 4, 1))
  # Per-row values equal scalar do() on the rows that share the value.
  per_row = jnp.asarray(np.arange(200) % 2)
  both = model.counterfactual_sample(params, rows, {"X": per_row}, key, n=4,
                                     num_particles=32)
  zero = model.counterfactual_sample(params, rows, {"X": 0}, key, n=4,
                                     num_particles=32)
  odd = np.asarray(per_row) == 1
  for k in ("X", "Y"):
    np.testing.assert_array_equal(both[k][odd], cf[k][odd])
    np.testing.assert_array_equal(both[k][~odd], zero[k][~odd])
