"""Minimality: the Counterfactual Latent Divergence (CLD).

From Sanchez & Tsaftaris, as modified by Melistas et al., "Benchmarking
Counterfactual Image Generation" (2024, eq. 9). For a factual x whose
intervened parent has value a, and its counterfactual x* with a*:

    div  = d(x, x*)
    S_x  = {d(x, x') : x' in the reference data with parent value a}
    S_x* = {d(x, x') : x' in the reference data with parent value a*}
    P1   = P(S_x* <= div)     (x* no further from x than real a*-images are)
    P2   = P(S_x  >= div)     (x* no closer to x than real a-images are)
    CLD  = log(w1 exp(P1) + w2 exp(P2)),  w = (0.8, 0.2)

Low is good: the edit moved x far enough to leave its class but not as far
as other real members of the new class are. d(x_i, x_j) is
KL(N(mu_i, diag s_i^2) || N(mu_j, diag s_j^2)) between the latent posteriors
of an unconditional VAE, using both means and variances (the paper's
benchmark code reads the mean twice, as mean and as log-scale), always with
the factual x as the first argument, as the paper's definition writes it.

Continuous parents must be discretised by the caller (the paper uses 10
bins). The reference data should not contain the factual images (the paper
uses the training set for reference and the test set for factuals).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ctfjax.metrics.errors import MetricError, check_lengths

WEIGHTS = (0.8, 0.2)


def gaussian_kl(mean_p, logvar_p, mean_q, logvar_q) -> jax.Array:
  """KL(N(mean_p, diag e^logvar_p) || N(mean_q, diag e^logvar_q)).

  Args:
    mean_p: [..., D] means of p.
    logvar_p: [..., D] log-variances of p.
    mean_q: [..., D] means of q (broadcasts against p).
    logvar_q: [..., D] log-variances of q.

  Returns:
    [...] the KL divergence, summed over the last axis.
  """
  return 0.5 * jnp.sum(
      logvar_q - logvar_p
      + (jnp.exp(logvar_p) + jnp.square(mean_p - mean_q)) * jnp.exp(-logvar_q)
      - 1.0, axis=-1)


def cld(factual_mean, factual_logvar, counterfactual_mean,
        counterfactual_logvar, factual_parent, counterfactual_parent,
        reference_mean, reference_logvar, reference_parent,
        weights: tuple[float, float] = WEIGHTS,
        batch_size: int = 64) -> dict:
  """Counterfactual Latent Divergence of a set of edits.

  Args:
    factual_mean: [N, D] VAE posterior means of the factual images.
    factual_logvar: [N, D] their log-variances.
    counterfactual_mean: [N, D] posterior means of the counterfactuals.
    counterfactual_logvar: [N, D] their log-variances.
    factual_parent: [N] the intervened parent's factual value (discrete).
    counterfactual_parent: [N] its value in the counterfactual.
    reference_mean: [M, D] posterior means of the reference data.
    reference_logvar: [M, D] their log-variances.
    reference_parent: [M] the reference data's value of that parent.
    weights: (w1, w2), both positive.
    batch_size: factual samples compared with the reference set at once
      (memory: batch_size * M * D floats).

  Returns:
    {"cld", "p1", "p2": float means over the samples (the paper's Table 5
    averages per-sample CLD, which by convexity is at least the CLD of the
    mean probabilities), "per_sample": {"cld", "p1", "p2": [N] arrays, NaN
    where a reference class is empty}, "n": samples averaged, "skipped":
    samples whose S_x or S_x* is empty}.
  """
  w1, w2 = (float(w) for w in weights)
  if not (w1 > 0 and w2 > 0):
    raise MetricError(f"CLD weights must be positive, got {weights}")
  n = check_lengths({"factual_mean": factual_mean,
                     "factual_logvar": factual_logvar,
                     "counterfactual_mean": counterfactual_mean,
                     "counterfactual_logvar": counterfactual_logvar,
                     "factual_parent": factual_parent,
                     "counterfactual_parent": counterfactual_parent})
  check_lengths({"reference_mean": reference_mean,
                 "reference_logvar": reference_logvar,
                 "reference_parent": reference_parent})
  d = np.shape(factual_mean)[-1]
  for name, a in [("factual_logvar", factual_logvar),
                  ("counterfactual_mean", counterfactual_mean),
                  ("counterfactual_logvar", counterfactual_logvar),
                  ("reference_mean", reference_mean),
                  ("reference_logvar", reference_logvar)]:
    if np.ndim(a) != 2 or np.shape(a)[-1] != d:
      raise MetricError(f"{name} must be [*, {d}] like factual_mean, got "
                        f"{np.shape(a)}")
  if n == 0:
    raise MetricError("no samples for CLD")
  p1, p2 = _probabilities(
      jnp.asarray(factual_mean, jnp.float32),
      jnp.asarray(factual_logvar, jnp.float32),
      jnp.asarray(counterfactual_mean, jnp.float32),
      jnp.asarray(counterfactual_logvar, jnp.float32),
      jnp.asarray(factual_parent), jnp.asarray(counterfactual_parent),
      jnp.asarray(reference_mean, jnp.float32),
      jnp.asarray(reference_logvar, jnp.float32),
      jnp.asarray(reference_parent), int(batch_size))
  p1, p2 = np.asarray(p1, np.float64), np.asarray(p2, np.float64)
  per = np.log(w1 * np.exp(p1) + w2 * np.exp(p2))
  ok = np.isfinite(per)
  if not ok.any():
    raise MetricError("no sample has reference data with both its factual "
                      "and its counterfactual parent value")
  return {"cld": float(per[ok].mean()), "p1": float(p1[ok].mean()),
          "p2": float(p2[ok].mean()),
          "per_sample": {"cld": per, "p1": p1, "p2": p2},
          "n": int(ok.sum()), "skipped": int(n - ok.sum())}


@functools.partial(jax.jit, static_argnums=(9,))
def _probabilities(fm, flv, cm, clv, fpa, cpa, rm, rlv, rpa, batch_size):
  """Per-sample P1, P2 [N]; NaN where a reference class is empty."""

  def one(args):
    m, lv, m_cf, lv_cf, pa, pa_cf = args
    div = gaussian_kl(m, lv, m_cf, lv_cf)
    dist = gaussian_kl(m[None], lv[None], rm, rlv)  # [M]
    same_cf, same_f = rpa == pa_cf, rpa == pa
    # 0/0 -> NaN marks an empty reference class.
    p1 = jnp.sum(same_cf & (dist <= div)) / jnp.sum(same_cf)
    p2 = jnp.sum(same_f & (dist >= div)) / jnp.sum(same_f)
    return p1, p2

  return jax.lax.map(one, (fm, flv, cm, clv, fpa, cpa), batch_size=batch_size)
