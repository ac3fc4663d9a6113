"""Exact Gumbel-max abduction: every draw reproduces the observed class, and
the posterior matches rejection sampling from the prior."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctfjax.causal import gumbel

EULER_GAMMA = 0.5772156649015329

# Jitted once per shape: much cheaper than op-by-op dispatch at these sizes.
posterior_noise = jax.jit(gumbel.posterior_noise)
counterfactual_class = jax.jit(gumbel.counterfactual_class)

# Logit vectors that break naive inverses: negative, all negative, far apart,
# huge, tied, and an impossible class (-inf).
HARD_LOGITS = [
    [0.5, -1.0, 1.2],
    [-3.0, -2.0, -7.0],
    [-50.0, 3.0, 40.0],
    [-1e4, 0.0, 1e4],
    [1e6, -1e6, 1e6 + 1.0],
    [0.0, 0.0, 0.0],
    [-80.0, -79.0, -81.0, -200.0],
    [-np.inf, 0.0, 1.0],
]


@pytest.mark.slow
@pytest.mark.parametrize("logits", HARD_LOGITS)
def test_posterior_always_reproduces_observed_class(logits):
  logits = jnp.asarray(logits, jnp.float32)
  k = logits.shape[0]
  n = 100_000
  for v in range(k):
    if not np.isfinite(logits[v]):
      continue
    g = posterior_noise(jax.random.key(v), logits,
                               jnp.full((n,), v))  # [n, K]
    assert g.shape == (n, k)
    assert bool(jnp.all(gumbel.gumbel_max(logits, g) == v)), (logits, v)
    assert bool(jnp.all(jnp.isfinite(g)))
    # A null intervention (same logits) never flips the label.
    cf = counterfactual_class(jax.random.key(v), logits,
                                     jnp.full((n,), v), logits)
    assert bool(jnp.all(cf == v))


def test_reproduces_over_random_batched_logits():
  rng = jax.random.key(0)
  n, k = 100_000, 5
  scale = jnp.exp(jax.random.uniform(jax.random.fold_in(rng, 0), (n, 1),
                                     minval=-3.0, maxval=5.0))  # 0.05 .. 150
  logits = scale * jax.random.normal(jax.random.fold_in(rng, 1), (n, k))
  logits = jnp.where(jnp.arange(n)[:, None] % 2 == 0, -jnp.abs(logits),
                     logits)  # half the rows all negative
  observed = jax.random.randint(jax.random.fold_in(rng, 2), (n,), 0, k)
  g = posterior_noise(jax.random.fold_in(rng, 3), logits,
                                      observed)
  assert bool(jnp.all(gumbel.gumbel_max(logits, g) == observed))


def test_shapes_broadcast():
  shape = lambda logits, obs: jax.eval_shape(
      gumbel.posterior_noise, jax.random.key(0), jnp.zeros(logits),
      jnp.zeros(obs, int)).shape
  assert shape((4,), (2, 3)) == (2, 3, 4)
  assert shape((2, 1, 4), (3,)) == (2, 3, 4)


def test_truncated_gumbel_cdf():
  upper = 0.3
  z = np.asarray(gumbel.truncated_gumbel(jax.random.key(1),
                                         jnp.float32(upper), (400_000,)))
  assert z.max() <= upper
  for x in (-1.5, -0.5, 0.0, 0.2):
    cdf = np.exp(np.exp(-upper) - np.exp(-x))
    assert abs((z <= x).mean() - cdf) < 5e-3
  # upper = inf is the untruncated Gumbel(0, 1).
  z = gumbel.truncated_gumbel(jax.random.key(2), jnp.inf, (400_000,))
  assert abs(float(z.mean()) - EULER_GAMMA) < 1e-2


def _rejection(rng, logits, observed, n):
  """Prior draws of g whose argmax is `observed`."""
  g = jax.random.gumbel(rng, (n, logits.shape[0]))
  return np.asarray(g[gumbel.gumbel_max(logits, g) == observed])


def _ctf_probs(logits, g):
  k = logits.shape[0]
  return np.bincount(np.asarray(gumbel.gumbel_max(logits, g)), minlength=k)


@pytest.mark.slow
@pytest.mark.parametrize("observed", [0, 1])
def test_posterior_matches_rejection(observed):
  logits = jnp.array([0.5, -1.0, 1.2])  # P(V=1) ~ 0.07: a negative logit
  new_logits = jnp.array([0.0, -1.5, 1.5])
  rej = _rejection(jax.random.key(10), logits, observed, 2_000_000)
  exact = np.asarray(posterior_noise(
      jax.random.key(11), logits, jnp.full((100_000,), observed)))
  n_rej, n_ex = len(rej), len(exact)
  assert n_rej > 100_000

  # Counterfactual class distribution under new logits.
  p_rej = _ctf_probs(new_logits, rej) / n_rej
  p_ex = _ctf_probs(new_logits, exact) / n_ex
  se = np.sqrt(p_ex * (1 - p_ex) * (1 / n_rej + 1 / n_ex))
  np.testing.assert_array_less(np.abs(p_rej - p_ex), 6 * se + 1e-4)
  assert p_ex[observed] < 0.99  # the query is not trivial

  # Marginal posterior means and standard deviations of each g_k.
  se = np.sqrt(exact.var(0) / n_ex + rej.var(0) / n_rej)
  np.testing.assert_array_less(np.abs(exact.mean(0) - rej.mean(0)), 6 * se)
  np.testing.assert_allclose(exact.std(0), rej.std(0), rtol=2e-2)

  # Closed form: g_v = M - logits_v with M ~ Gumbel(logsumexp(logits)).
  mean_v = float(jax.nn.logsumexp(logits) - logits[observed]) + EULER_GAMMA
  sd = np.pi / np.sqrt(6)
  assert abs(exact[:, observed].mean() - mean_v) < 6 * sd / np.sqrt(n_ex)
