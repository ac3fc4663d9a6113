"""Pixel likelihoods of the VAE mechanisms against scipy's normal law."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ctfjax import mechanisms
from ctfjax.ancm import train as ancm_train
from ctfjax.nn import gaussian
from test_ancm import tiny_config


@pytest.mark.parametrize("mean,log_std", [(0.3, -2.0), (0.0, -6.0),
                                          (1.0, -4.0), (0.5, 0.5)])
def test_discretized_gaussian_is_the_bin_probability(mean, log_std):
  x = np.arange(256) / 255.0
  nll = np.asarray(gaussian.discretized_gaussian_nll(
      jnp.asarray(x, jnp.float32), mean, log_std), np.float64)
  s, h = np.exp(log_std), 0.5 / 255
  want = stats.norm.cdf((x + h - mean) / s) - stats.norm.cdf(
      (x - h - mean) / s)
  want[0] = stats.norm.cdf((h - mean) / s)  # edge bins reach to +-inf
  want[-1] = stats.norm.sf((1 - h - mean) / s)
  seen = want > 1e-30
  np.testing.assert_allclose(-nll[seen], np.log(want[seen]), atol=2e-4)
  # A probability mass function over the 256 levels: it sums to one and
  # never exceeds one, however small the scale.
  assert abs(np.exp(-nll).sum() - 1.0) < 1e-4
  assert nll.min() >= -1e-6


def test_vae_likelihood_is_a_config_choice_with_a_clear_error():
  config = tiny_config()
  config.model.image.vae.likelihood = "discretized"
  model, params = ancm_train.build(config, 0)
  assert model.image_module(params).likelihood == "discretized"
  config.model.image.vae.likelihood = "poisson"
  with pytest.raises(mechanisms.MechanismError,
                     match="unknown VAE likelihood 'poisson'; known: "
                           "gaussian, discretized"):
    ancm_train.build(config, 0)
