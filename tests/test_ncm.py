"""G-constrained NCMs: structure, do(), abduction, queries, fitting.

Sizes are tiny so the file runs in well under a minute on 2 CPU cores; the
quality targets on Colored-MNIST-bars live in benchmarks/ncm.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from ctfjax import causal as cc
from ctfjax.causal import examples
from ctfjax import ncm

QUERY = "P(B_{C=1}=1 | C=0, B=0)"
SMALL = dict(hidden=(16, 16), latent_dim=2)
# One size per jitted entry point, so each compiles once for the file.
N = 4000  # samples
ROWS, DRAWS, PARTICLES = 64, 8, 64  # counterfactual_sample
TABLE_M = 20_000  # latent draws of model_table / total_variation


def tiny_backdoor() -> cc.DiscreteSCM:
  """D <-> C, D -> B, C -> B with D in {0, 1, 2}: 12 cells."""
  exo = {"u_dc": [0.5, 0.5], "u_d": [0.5, 0.5], "u_c": [0.8, 0.2],
         "u_b": [0.1] * 10}
  return cc.DiscreteSCM.from_functions(exo, {
      "D": (3, ["u_d", "u_dc"], lambda a, b: a + b),
      "C": (2, ["u_dc", "u_c"], lambda a, b: a ^ b),
      "B": (2, ["D", "C", "u_b"],
            lambda d, c, u: ((u + 0.5) / 10 < 0.8 - 0.2 * d - 0.3 * c)
            .astype(int))})


@pytest.fixture(scope="module")
def backdoor():
  scm = tiny_backdoor()
  table = scm.observational()
  model, params = ncm.NCM.create(scm.graph, table.domains, 0, **SMALL)
  return scm, table, model, params


@pytest.fixture(scope="module")
def fitted(backdoor):
  _, table, model, params = backdoor
  params, history = ncm.fit(model, params, table, jax.random.key(1),
                            steps=300, learning_rate=1e-2,
                            num_latent_samples=128)
  return params, history


def _rows(scm, n, seed=0):
  s = scm.sample(jax.random.key(seed), n)
  return {k: jnp.asarray(s[k]) for k in scm.endogenous}


# Structure -------------------------------------------------------------------


def test_latents_shared_exactly_per_c2_component():
  g = cc.Graph.parse("A <-> B; B <-> C; A -> C; D")
  model = ncm.NCM(g, {"A": 2, "B": 3, "C": 2, "D": 2})
  assert model.latent_names == ("U(A,B)", "U(B,C)", "U(A)", "U(B)", "U(C)",
                                "U(D)")
  assert model.latents_of("A") == ("U(A,B)", "U(A)")
  assert model.latents_of("B") == ("U(A,B)", "U(B,C)", "U(B)")
  assert model.latents_of("C") == ("U(B,C)", "U(C)")
  assert model.latents_of("D") == ("U(D)",)
  # A triangle is one clique: one shared latent, not three pairwise ones.
  tri = ncm.NCM("A <-> B; B <-> C; A <-> C", {"A": 2, "B": 2, "C": 2})
  assert tri.latents_of("B") == ("U(A,B,C)", "U(B)")


@pytest.mark.slow
def test_mechanism_reads_only_its_latents(backdoor):
  # With its parents fixed by do(), B must ignore the confounder U(D,C) and
  # the other nodes' noise: resampling them cannot change B.
  _, _, model, params = backdoor
  n = 512
  exo = model.sample_exogenous(jax.random.key(0), (n,))
  other = model.sample_exogenous(jax.random.key(1), (n,))
  mixed = ncm.Exogenous(
      {k: (exo.context[k] if k == "U(B)" else other.context[k])
       for k in exo.context},
      {k: (exo.noise[k] if k == "B" else other.noise[k]) for k in exo.noise})
  predict = jax.jit(model.predict)
  for do in ({"D": 0, "C": 1}, {"D": 2, "C": 0}):
    a = predict(params, exo, do)["B"]
    b = predict(params, mixed, do)["B"]
    np.testing.assert_array_equal(a, b)


def test_markovian_non_descendants_independent_given_parents():
  # No bidirected edge: C is independent of A given B, and D of everything.
  model, params = ncm.NCM.create("A -> B; B -> C; D",
                                 {"A": 2, "B": 2, "C": 3, "D": 2}, 3,
                                 **SMALL)
  s = {k: np.asarray(x) for k, x in
       model.sample(params, jax.random.key(0), 20_000).items()}
  for b in (0, 1):
    rows = s["B"] == b
    counts = np.array([[np.sum(rows & (s["A"] == a) & (s["C"] == c))
                        for c in range(3)] for a in range(2)])
    counts = counts[counts.sum(1) > 0][:, counts.sum(0) > 0]
    if counts.shape[0] > 1 and counts.shape[1] > 1:
      assert scipy.stats.chi2_contingency(counts)[1] > 1e-3
  joint = np.histogram2d(s["D"], 2 * s["A"] + s["B"], bins=(2, 4))[0]
  joint = joint[joint.sum(1) > 0][:, joint.sum(0) > 0]
  assert scipy.stats.chi2_contingency(joint)[1] > 1e-3


# Sampling and do() -----------------------------------------------------------


@pytest.mark.slow
def test_shapes_and_dtypes(backdoor):
  scm, table, model, params = backdoor
  key = jax.random.key(0)
  s = model.sample(params, key, 7)
  assert set(s) == {"D", "C", "B"}
  assert all(x.shape == (7,) and x.dtype == jnp.int32 for x in s.values())
  v = _rows(scm, ROWS)
  loglik = jax.jit(model.log_likelihood, static_argnums=3)
  assert loglik(params, v, key, 16).shape == (ROWS,)
  parts = model.abduct(params, {"C": v["C"]}, key, 8)
  assert parts.log_weights.shape == (ROWS, 8)
  assert parts.exogenous.context["U(D,C)"].shape == (ROWS, 8, 2)
  assert parts.exogenous.noise["D"].shape == (ROWS, 8, 3)
  assert parts.values["D"].shape == (ROWS, 8)
  cf = model.counterfactual_sample(params, v, {"C": 1}, key, n=DRAWS,
                                   num_particles=PARTICLES)
  assert all(x.shape == (ROWS, DRAWS) for x in cf.values())
  est = model.model_table(params, key, TABLE_M)
  assert est.variables == ("D", "C", "B") and est.probs.shape == (3, 2, 2)
  assert abs(est.probs.sum() - 1) < 1e-6


def test_do_cuts_parents_and_keeps_non_descendants(backdoor):
  _, _, model, params = backdoor
  key = jax.random.key(5)
  obs = model.sample(params, key, N)
  for x in (0, 1):
    s = model.sample(params, key, N, do={"C": x})
    assert bool(jnp.all(s["C"] == x))
    # Same key, same exogenous state: D does not descend from C.
    np.testing.assert_array_equal(s["D"], obs["D"])
  s = model.sample(params, key, N, do={"D": 1})
  np.testing.assert_array_equal(s["C"], obs["C"])  # confounded, not caused


def test_null_intervention_reproduces_observation(backdoor):
  scm, _, model, params = backdoor
  # Every cell, the least likely included: exact abduction holds for any
  # logits.
  cells = np.stack(np.unravel_index(np.arange(ROWS) % 12, (3, 2, 2)))
  v = {k: jnp.asarray(cells[i]) for i, k in enumerate(("D", "C", "B"))}
  cf = model.counterfactual_sample(params, v, {}, jax.random.key(2),
                                   n=DRAWS, num_particles=PARTICLES)
  for k in v:
    np.testing.assert_array_equal(cf[k], np.repeat(v[k][:, None], DRAWS, 1))
  # Intervening on the sink B keeps its non-descendants D and C exactly.
  cf = model.counterfactual_sample(params, v, {"B": 1}, jax.random.key(3),
                                   n=DRAWS, num_particles=PARTICLES)
  for k in ("D", "C"):
    np.testing.assert_array_equal(cf[k], np.repeat(v[k][:, None], DRAWS, 1))
  assert bool(jnp.all(cf["B"] == 1))


def test_determinism_under_seed(backdoor):
  scm, _, model, params = backdoor
  a = model.sample(params, jax.random.key(9), N)
  b = model.sample(params, jax.random.key(9), N)
  c = model.sample(params, jax.random.key(10), N)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert any(not np.array_equal(a[k], c[k]) for k in a)
  q1 = model.estimate_query(params, QUERY, jax.random.key(4), N)
  q2 = model.estimate_query(params, QUERY, jax.random.key(4), N)
  assert q1 == q2
  _, p2 = ncm.NCM.create(scm.graph, {"D": 3, "C": 2, "B": 2}, 0, **SMALL)
  chex.assert_trees_all_equal(params, p2)


# Queries ---------------------------------------------------------------------


@pytest.mark.slow
def test_query_estimates_agree_with_sampling(fitted, backdoor):
  _, _, model, _ = backdoor
  params, _ = fitted
  key = jax.random.key(11)
  # Layer 1: the weighted estimate against the model's own table.
  table = model.model_table(params, key, TABLE_M)
  exact = table.prob({"B": 1, "C": 0}) / table.prob({"C": 0})
  est = model.estimate_query(params, "P(B=1 | C=0)", key, N)
  assert abs(est - exact) < 0.03
  # Layer 2: against the frequency under do().
  s = model.sample(params, key, N, do={"C": 1})
  est = model.estimate_query(params, "P(B_{C=1}=1)", key, N)
  assert abs(est - float(jnp.mean(s["B"]))) < 0.03
  # Layer 3: against abduction-action-prediction of one observed cell.
  v = {k: jnp.full((ROWS,), x) for k, x in (("D", 1), ("C", 0), ("B", 0))}
  cf = model.counterfactual_sample(params, v, {"C": 1}, key, n=DRAWS,
                                   num_particles=PARTICLES)
  est = model.estimate_query(params, "P(B_{C=1}=1 | D=1, C=0, B=0)", key, N)
  assert abs(est - float(jnp.mean(cf["B"]))) < 0.06


def test_query_edge_cases(backdoor):
  _, _, model, params = backdoor
  key = jax.random.key(0)
  assert model.estimate_query(params, "P(C_{C=1}=1)", key, 64) == 1.0
  assert model.estimate_query(params, "P(C_{C=1}=0 | D=1)", key, 64) == 0.0
  # A non-descendant is preserved across worlds: P(D_{C=1}=D) = 1.
  assert model.estimate_query(params, "P(D_{C=1}=2 | D=2)", key, 64) == 1.0
  with pytest.raises(cc.ZeroProbabilityError):
    model.estimate_query(params, "P(B=1 | C_{C=1}=0)", key, 64)
  with pytest.raises(cc.QueryError):
    model.estimate_query(params, "P(Z=1)", key, 64)
  with pytest.raises(ncm.NCMError, match="outside its domain"):
    model.sample(params, key, 3, do={"C": 2})
  with pytest.raises(ncm.NCMError, match="unknown variable"):
    model.counterfactual_sample(params, {"Q": jnp.zeros(2, int)}, {}, key)


# Fitting ---------------------------------------------------------------------


def test_fit_lowers_loss_and_tv(backdoor, fitted):
  _, table, model, params0 = backdoor
  params, history = fitted
  assert history["loss"].shape == (300,)
  assert history["kl"][-20:].mean() < 0.5 * history["kl"][:20].mean()
  key = jax.random.key(7)
  tv0 = ncm.total_variation(model, params0, table, key, TABLE_M)
  tv1 = ncm.total_variation(model, params, table, key, TABLE_M)
  assert tv1 < 0.06 and tv1 < 0.5 * tv0


def test_fit_from_samples(backdoor):
  scm, table, model, params = backdoor
  data = {k: np.asarray(x) for k, x in _rows(scm, 5000).items()}
  params, history = ncm.fit(model, params, data, jax.random.key(0),
                            steps=60, learning_rate=1e-2,
                            num_latent_samples=64)
  assert history["loss"][-10:].mean() < history["loss"][:10].mean()


def test_train_step_compiles_once(backdoor):
  _, table, model, params = backdoor
  v, w, _ = ncm.weighted_assignments(model, table)

  @chex.assert_max_traces(n=1)
  def loss_fn(p, batch, rng, t):
    del t
    return ncm.nll(model, p, *batch, rng, 32), {}

  opt = optax.adam(1e-3)
  step = ncm.make_step(loss_fn, opt)
  params, history = ncm.optimise(step, opt, params, (v, w),
                                 jax.random.key(0), 3)
  assert np.all(np.isfinite(history["loss"])) and len(history["loss"]) == 3


@pytest.mark.slow
def test_min_max_bounds_separate_on_witness_b():
  # X -> Y, P(Y=1|X=0)=0.2, P(Y=1|X=1)=0.6: the query's optimal bounds are
  # [1/2, 3/4] (witness B, `ctfjax.causal.examples`). A short run must move
  # the two models apart around that interval; the benchmark checks the
  # full agreement on Colored-MNIST-bars.
  scm, _ = examples.witness_b()
  table = scm.observational()
  q = "P(Y_{X=1}=1 | X=0, Y=0)"
  model, params = ncm.NCM.create(scm.graph, table.domains, 0, **SMALL)
  params, _ = ncm.fit(model, params, table, jax.random.key(0), steps=150,
                      learning_rate=1e-2, num_latent_samples=64)
  # A constant step size: the short run needs to keep moving to the end.
  r = ncm.fit_bounds(model, params, table, q, jax.random.key(1), steps=250,
                     optimizer=optax.adam(1e-2), lambda_end=0.05,
                     num_latent_samples=64, num_particles=256,
                     eval_particles=20_000, eval_latent_samples=20_000)
  assert 0.4 < r.lower < 0.56 and 0.62 < r.upper < 0.85
  assert max(r.tv_lower, r.tv_upper) < 0.05


@pytest.mark.slow
def test_marginal_log_likelihood_of_an_ancestral_set():
  # Front door D -> C -> B, D <-> B: P^(d, c) must equal the sum over b of
  # P^(d, c, b) with the same latent draws, exactly (B integrates out).
  model, params = ncm.NCM.create("D -> C; C -> B; D <-> B",
                                 {"D": 3, "C": 2, "B": 2}, 0)
  grid = np.stack(np.meshgrid(np.arange(3), np.arange(2), np.arange(2),
                              indexing="ij"), -1).reshape(-1, 3)
  v = {n: jnp.asarray(grid[:, i], jnp.int32) for i, n in enumerate("DCB")}
  key = jax.random.key(5)
  full = np.exp(np.asarray(model.log_likelihood(params, v, key, 64),
                           np.float64)).reshape(3, 2, 2)
  dc = {n: v[n][::2] for n in "DC"}
  marginal = np.exp(np.asarray(model.log_likelihood(
      params, dc, key, 64, nodes=("D", "C")), np.float64)).reshape(3, 2)
  np.testing.assert_allclose(marginal, full.sum(-1), rtol=1e-5)
  with pytest.raises(ncm.NCMError, match="ancestral set; add 'D'"):
    model.log_likelihood(params, dc, key, 64, nodes=("C",))
