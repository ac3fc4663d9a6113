"""The world engine: do(), worlds, abduction on feature-kind mechanisms.

Checked against closed forms (linear additive noise, a mixed categorical /
continuous model), the exact discrete engine (`DiscreteSCM`,
inference.distribution) and rejection sampling.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctfjax.causal import inference
from ctfjax.causal import kinds
from ctfjax.causal import scm as scm_lib
from ctfjax.causal.discrete import DiscreteSCM, SCMError
from ctfjax.causal.graph import Graph
from ctfjax.causal.scm import SCM, Exogenous, Intervention, Mechanism

A, B, C = 1.5, -0.7, 2.0


def _gaussian_prior(names):
  def prior(rng, shape):
    return {n: jax.random.normal(jax.random.fold_in(rng, i), shape + (1,))
            for i, n in enumerate(names)}
  return prior


def linear_scm() -> SCM:
  """X = U_x; Y = A X + U_y; Z = B Y + C X + U_z (parents as [..., 1])."""
  return SCM(
      {"X": scm_lib.additive((), lambda pa: 0.0),
       "Y": scm_lib.additive(("X",), lambda pa: A * pa["X"][..., 0]),
       "Z": scm_lib.additive(("Y", "X"), lambda pa: B * pa["Y"][..., 0]
                             + C * pa["X"][..., 0])})


def _observe(scm, n=64, seed=0):
  u = scm_lib.sample_exogenous(scm, jax.random.key(seed), (n,))
  return u, scm_lib.evaluate(scm, u)


def _assert_values_equal(a, b):
  assert set(a) == set(b)
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), k)


# Linear-Gaussian closed forms -------------------------------------------------


def test_linear_counterfactual_closed_form():
  scm = linear_scm()
  _, obs = _observe(scm)
  x, y, z = obs["X"], obs["Y"], obs["Z"]
  rng = jax.random.key(1)

  cf = scm_lib.counterfactual(scm, obs, {"X": 2.0}, rng)
  y1 = y + A * (2.0 - x)
  np.testing.assert_allclose(cf["X"], 2.0)
  np.testing.assert_allclose(cf["Y"], y1, atol=1e-5)
  np.testing.assert_allclose(cf["Z"], z + B * (y1 - y) + C * (2.0 - x),
                             atol=1e-5)

  cf = scm_lib.counterfactual(scm, obs, {"Y": -1.0}, rng)
  np.testing.assert_allclose(cf["X"], x, atol=1e-6)
  np.testing.assert_allclose(cf["Z"], z + B * (-1.0 - y), atol=1e-5)

  # A per-unit value broadcasts over the batch.
  target = jnp.linspace(-2, 2, x.shape[0])
  cf = scm_lib.counterfactual(scm, obs, {"X": target}, rng)
  np.testing.assert_allclose(cf["Y"], y + A * (target - x), atol=1e-5)


def test_abduct_inverts_additive_noise():
  scm = linear_scm()
  u, obs = _observe(scm)
  u_hat = scm_lib.abduct(scm, obs, jax.random.key(3)).exogenous
  for k in u.noise:
    np.testing.assert_allclose(u_hat.noise[k], u.noise[k], atol=1e-5)


def test_partial_observation_keeps_prior_for_unobserved_leaves():
  scm = linear_scm()
  _, obs = _observe(scm)
  u = scm_lib.abduct(scm, {"X": obs["X"], "Y": obs["Y"]},
                     jax.random.key(4)).exogenous
  np.testing.assert_allclose(u.noise["Y"][:, 0], obs["Y"] - A * obs["X"],
                             atol=1e-6)
  assert u.noise["Z"].shape == obs["X"].shape + (1,)


# do() and the graph -----------------------------------------------------------


def test_graph_and_do_mutilation():
  scm = linear_scm()
  assert scm.graph == Graph.from_edges(
      [("X", "Y"), ("Y", "Z"), ("X", "Z")], nodes=("X", "Y", "Z"))
  assert scm.order == ("X", "Y", "Z")
  assert scm.context == ()
  cut = scm_lib.do(scm, {"Y": 0.0})
  assert cut.graph.directed == {("X", "Z"), ("Y", "Z")}
  assert scm.graph.parents("Y") == ("X",)  # the original is unchanged
  assert scm.actions == {}
  assert scm_lib.act is scm_lib.do


def test_shared_context_is_a_bidirected_edge_that_do_removes():
  cont = kinds.Continuous()
  head = lambda mean: lambda pa, ctx: jnp.stack(
      [mean(pa, ctx), jnp.zeros_like(mean(pa, ctx))], -1)
  scm = SCM(
      {"X": Mechanism((), cont, head(lambda pa, ctx: ctx["u_c"][..., 0]),
                      ("u_c",)),
       "Y": Mechanism(("X",), cont, head(
           lambda pa, ctx: pa["X"][..., 0] - ctx["u_c"][..., 0]), ("u_c",))},
      _gaussian_prior(("u_c",)))
  assert scm.graph.bidirected == {frozenset(("X", "Y"))}
  assert scm_lib.do(scm, {"X": 1.0}).graph == Graph.from_edges([("X", "Y")])
  _, obs = _observe(scm)
  with pytest.raises(SCMError, match="'u_c' \\(read by X and Y\\) needs "
                     "weighted particles"):
    scm_lib.counterfactual(scm, obs, {}, jax.random.key(0))


def test_do_value_overrides_and_broadcasts():
  scm = linear_scm()
  u, _ = _observe(scm, n=8)
  vals = scm_lib.evaluate(scm_lib.do(scm_lib.do(scm, {"X": 1.0}), {"X": 3}),
                          u)
  np.testing.assert_array_equal(vals["X"], np.full(8, 3.0))
  assert vals["X"].dtype == jnp.float32  # cast to the mechanism's dtype
  np.testing.assert_allclose(vals["Y"], A * 3.0 + u.noise["Y"][:, 0],
                             atol=1e-6)


def test_masked_intervention_applies_per_unit():
  scm = linear_scm()
  u, obs = _observe(scm, n=6)
  mask = jnp.array([True, False, True, False, False, True])
  vals = scm_lib.evaluate(scm, u, Intervention.of({"X": 5.0}, {"X": mask}))
  np.testing.assert_allclose(vals["X"], jnp.where(mask, 5.0, obs["X"]))
  np.testing.assert_allclose(vals["Y"], A * vals["X"] + u.noise["Y"][:, 0],
                             atol=1e-6)


# n-world evaluation -----------------------------------------------------------


def test_twin_worlds_share_noise():
  scm = linear_scm()
  u, obs = _observe(scm)
  out = scm_lib.worlds(scm, u, [{}, {"X": 2.0}])
  assert out["Y"].shape == (2, 64)
  _assert_values_equal({k: v[0] for k, v in out.items()}, obs)
  _assert_values_equal({k: v[1] for k, v in out.items()},
                       scm_lib.evaluate(scm_lib.do(scm, {"X": 2.0}), u))


def test_worlds_vmap_equals_python_loop():
  scm = linear_scm()
  u, _ = _observe(scm, n=5)
  items = [
      {},
      {"X": 2.0},
      {"Y": -1.0},
      {"X": 0.5, "Z": 7.0},
      Intervention.of({"X": jnp.arange(5.0)},
                      {"X": jnp.array([1, 0, 1, 0, 1], bool)}),
  ]
  stacked = scm_lib.stack(items)
  assert stacked.mask["X"].shape == (5, 5)
  out = jax.jit(scm_lib.worlds)(scm, u, stacked)
  for w, item in enumerate(items):
    loop = scm_lib.evaluate(scm, u, item)
    for k in loop:
      np.testing.assert_allclose(out[k][w], loop[k], atol=1e-6, err_msg=k)


def test_null_world_reproduces_factual_for_gumbel_categoricals():
  scm, _ = categorical_scm()
  u, obs = _observe(scm, n=20_000)
  cf = jax.jit(scm_lib.counterfactual)(scm, obs, {}, jax.random.key(5))
  _assert_values_equal(cf, obs)


# jit: each stage compiles once ------------------------------------------------


def test_each_stage_jits_once():
  chex.clear_trace_counter()
  scm = linear_scm()
  abduct = jax.jit(chex.assert_max_traces(scm_lib.abduct, n=1))
  act = jax.jit(chex.assert_max_traces(scm_lib.act, n=1))
  predict = jax.jit(chex.assert_max_traces(scm_lib.predict, n=1))
  ctf = jax.jit(chex.assert_max_traces(scm_lib.counterfactual, n=1))
  worlds = jax.jit(chex.assert_max_traces(scm_lib.worlds, n=1))
  for seed, x1 in enumerate((2.0, -3.0)):
    _, obs = _observe(scm, seed=seed)
    rng = jax.random.key(seed)
    u = abduct(scm, obs, rng).exogenous
    acted = act(scm, {"X": jnp.float32(x1)})
    assert isinstance(acted, SCM) and acted.graph.parents("X") == ()
    vals = predict(acted, u)
    np.testing.assert_allclose(
        vals["Y"], obs["Y"] + A * (x1 - obs["X"]), atol=1e-5)
    # Two compiled programs: equal up to float rounding of recomputed values.
    cf = ctf(scm, obs, {"X": jnp.float32(x1)}, rng)
    for k in vals:
      np.testing.assert_allclose(cf[k], vals[k], rtol=1e-6, atol=1e-6)
    out = worlds(scm, u, scm_lib.stack([{}, {"X": x1}]))
    np.testing.assert_allclose(out["Y"][1], vals["Y"], atol=1e-6)
  # Lowering gives one XLA computation for the composed pipeline.
  lowered = jax.jit(scm_lib.counterfactual).lower(scm, obs, {"X": 1.0}, rng)
  assert "stablehlo" in lowered.as_text()


# Agreement with the exact discrete engine -------------------------------------

PIXEL_PRIOR = {"u_x": [0.4, 0.6], "u_y": [0.6, 0.4], "u_xy": [0.5, 0.5],
               "u_I": [0.5, 0.5]}


def _pixels(x, y, u_x, u_i):
  """The 4-pixel image of Sardesai's ASCM, read as a 4-bit number."""
  return 8 * (u_x & x) + 4 * y + 2 * (x ^ u_i) + (x ^ y ^ u_i)


def pixel_models():
  """The 4-pixel ASCM as a DiscreteSCM and as JAX mechanisms."""
  discrete = DiscreteSCM.from_functions(
      PIXEL_PRIOR,
      {"X": (2, ["u_x", "u_xy"], lambda a, b: a ^ b),
       "Y": (2, ["u_y", "u_xy"], lambda a, b: a ^ b),
       "I": (16, ["X", "Y", "u_x", "u_I"], _pixels)})

  def prior(rng, shape):
    return {n: jax.random.categorical(
        jax.random.fold_in(rng, i), jnp.log(jnp.asarray(p)),
        shape=shape + (1,)) for i, (n, p) in enumerate(PIXEL_PRIOR.items())}

  def deterministic(size, parents, context, fn):
    """A function of its inputs: Gumbel-max over logits 0 / -inf."""
    def head(pa, ctx):
      pa = {k: jnp.argmax(x, -1) for k, x in pa.items()}
      ctx = {k: x[..., 0] for k, x in ctx.items()}
      return jnp.where(jnp.arange(size) == fn(pa, ctx)[..., None], 0.0,
                       -jnp.inf)
    return Mechanism(parents, kinds.Categorical(size), head, context)

  model = SCM(
      {"X": deterministic(2, (), ("u_x", "u_xy"),
                          lambda pa, u: u["u_x"] ^ u["u_xy"]),
       "Y": deterministic(2, (), ("u_y", "u_xy"),
                          lambda pa, u: u["u_y"] ^ u["u_xy"]),
       "I": deterministic(16, ("X", "Y"), ("u_x", "u_I"),
                          lambda pa, u: _pixels(pa["X"], pa["Y"], u["u_x"],
                                                u["u_I"]))},
      prior)
  return discrete, model


def _exogenous(model, u):
  """The exogenous state with context `u` {name: [N]} and prior noise."""
  n = len(next(iter(u.values())))
  noise = scm_lib.sample_exogenous(model, jax.random.key(0), (n,)).noise
  return Exogenous({k: jnp.asarray(v)[:, None] for k, v in u.items()}, noise)


def _all_exogenous():
  """Every exogenous assignment [16] and its prior probability."""
  grid = np.array(list(itertools.product(
      *[range(len(p)) for p in PIXEL_PRIOR.values()])))
  u = {n: grid[:, i] for i, n in enumerate(PIXEL_PRIOR)}
  prob = np.prod([np.asarray(p)[u[n]] for n, p in PIXEL_PRIOR.items()], 0)
  return u, prob


def test_agrees_with_discrete_scm():
  discrete, model = pixel_models()
  assert model.graph == discrete.graph
  u, _ = _all_exogenous()
  for do in (None, {"X": 0}, {"X": 1}, {"Y": 1}, {"X": 1, "Y": 0}):
    ours = scm_lib.evaluate(model, _exogenous(model, u), do)
    _assert_values_equal(ours, discrete.evaluate(u, do))
    assert discrete.graph.do(do or {}) == (
        scm_lib.do(model, do).graph if do else model.graph)


@pytest.mark.slow
def test_twin_world_counterfactual_matches_exact_inference():
  discrete, model = pixel_models()
  u, prob = _all_exogenous()
  out = scm_lib.worlds(model, _exogenous(model, u), [{}, {"X": 1}])
  fact, cf = np.asarray(out["I"][0]), np.asarray(out["I"][1])
  keep = fact == 5
  assert keep.sum() == 3  # image 5 arises from three exogenous states
  ours = {int(i): prob[keep & (cf == i)].sum() / prob[keep].sum()
          for i in np.unique(cf[keep])}
  exact = inference.distribution(discrete, "I_{X=1}", given="I=5")
  assert len(exact) > 1
  assert ours.keys() == exact.keys()
  for i, p in exact.items():
    assert ours[i] == pytest.approx(p, abs=1e-9)


# Gumbel-max categorical SCM against rejection sampling ------------------------

Y_LOGITS = jnp.array([[1.0, -0.5, -2.0], [-1.0, 0.8, 0.2], [-3.0, -1.0, 0.5]])


def categorical_scm():
  """X ~ Cat(softmax(x_logits)); Y ~ Cat(softmax(Y_LOGITS[X])), Gumbel-max."""
  x_logits = jnp.array([0.3, -0.8, 0.1])
  scm = SCM(
      {"X": scm_lib.categorical((), 3, lambda pa: x_logits),
       "Y": scm_lib.categorical(("X",), 3, lambda pa: pa["X"] @ Y_LOGITS)})
  return scm, x_logits


def test_categorical_counterfactual_matches_rejection():
  scm, _ = categorical_scm()
  x, y, x1 = 0, 1, 2  # P(Y_{X=2} | X=0, Y=1): Y=1 has a negative logit
  n = 1_000_000
  both = jax.jit(lambda rng: scm_lib.worlds(
      scm, scm_lib.sample_exogenous(scm, rng, (n,)), [{}, {"X": x1}]))(
          jax.random.key(20))
  keep = np.asarray((both["X"][0] == x) & (both["Y"][0] == y))
  rej = np.bincount(np.asarray(both["Y"][1])[keep], minlength=3) / keep.sum()

  m = 200_000
  obs = {"X": jnp.full((m,), x), "Y": jnp.full((m,), y)}
  cf = jax.jit(scm_lib.counterfactual)(scm, obs, {"X": x1},
                                       jax.random.key(21))
  np.testing.assert_array_equal(cf["X"], x1)
  ex = np.bincount(np.asarray(cf["Y"]), minlength=3) / m
  se = np.sqrt(ex * (1 - ex) * (1 / keep.sum() + 1 / m))
  assert keep.sum() > 20_000
  assert 0.05 < ex[y] < 0.95  # a non-trivial counterfactual
  np.testing.assert_array_less(np.abs(rej - ex), 6 * se + 1e-4)


# Clear errors -----------------------------------------------------------------


@pytest.mark.parametrize("make, match", [
    (lambda: SCM({"Y": scm_lib.additive(("X",), lambda pa: 0.0)}),
     "unknown parent 'X'"),
    (lambda: SCM({"X": scm_lib.additive(("Y",), lambda pa: 0.0),
                  "Y": scm_lib.additive(("X",), lambda pa: 0.0)}),
     "not acyclic"),
    (lambda: SCM({"X": Mechanism((), kinds.Continuous(), None, ("X",))},
                 _gaussian_prior(("X",))),
     "context latent 'X'"),
    (lambda: SCM({"X": Mechanism((), kinds.Continuous(), None, ("u",))}),
     "no prior"),
    (lambda: scm_lib.do(linear_scm(), {"W": 1.0}), "unknown variable 'W'"),
    (lambda: scm_lib.evaluate(linear_scm(), Exogenous(
        {}, {"X": jnp.zeros((2, 1))})), "missing noise of 'Y'"),
    (lambda: scm_lib.evaluate(linear_scm(), _observe(linear_scm())[0],
                              Intervention.of({"W": 0.0})),
     "unknown variable 'W'"),
    (lambda: scm_lib.counterfactual(linear_scm(), {"Y": jnp.zeros(2)}, {},
                                    jax.random.key(0)),
     "'X' is not observed but its descendant 'Y' is"),
    (lambda: scm_lib.abduct(scm_lib.do(linear_scm(), {"X": 0.0}),
                            {"X": jnp.zeros(2)}, jax.random.key(0)),
     "needs the factual model"),
])
def test_bad_input_errors(make, match):
  with pytest.raises(SCMError, match=match):
    make()
