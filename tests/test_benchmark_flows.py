"""The exact MorphoMNIST feature density the flows benchmark compares with."""

import numpy as np
from scipy import special
from scipy import stats

from ctfjax.data import morpho_mnist as mm
from benchmarks import flows as benchmark_flows


def test_exact_density_is_the_derivative_of_the_generators_cdf():
  # P(T <= t, I <= i) = int_0^t p(t') P(I <= i | t') dt'; check the density
  # as a numerical mixed derivative of the CDF of each factor instead.
  v = benchmark_flows.draw(50, seed=3)
  t = v["thickness"].astype(np.float64)
  i = v["intensity"].astype(np.float64)
  h = 1e-4
  cdf_t = lambda t: stats.gamma.cdf(t - 0.5, mm.GAMMA_CONCENTRATION,
                                    scale=1 / mm.GAMMA_RATE)

  def cdf_i(i, t):
    u = special.logit((i - 64.0) / 191.0) - 2.0 * (t - 2.5)
    return stats.norm.cdf(u, 0.0, mm.INTENSITY_NOISE_STD)

  numeric = ((cdf_t(t + h) - cdf_t(t - h)) / (2 * h)
             * (cdf_i(i + h, t) - cdf_i(i - h, t)) / (2 * h))
  np.testing.assert_allclose(benchmark_flows.exact_log_density(v),
                             np.log(numeric), atol=1e-5)


def test_draws_follow_the_generator():
  v = benchmark_flows.draw(20_000, seed=0)
  # thickness = 0.5 + Gamma(10, rate 5): mean 2.5, sd sqrt(10) / 5.
  assert abs(v["thickness"].mean() - 2.5) < 0.02
  assert abs(v["thickness"].std() - np.sqrt(10) / 5) < 0.02
  assert 64 <= v["intensity"].min() and v["intensity"].max() <= 255
