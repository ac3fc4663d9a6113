"""Pixel likelihoods of the VAE mechanisms against scipy's normal law."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from ctfjax import mechanisms
from ctfjax.mechanisms import vae
from ctfjax.ancm import fit
from ctfjax.nn import gaussian
from test_ancm import tiny_config


@pytest.mark.parametrize("mean,log_std", [(0.3, -2.0), (0.0, -6.0),
                                          (1.0, -4.0), (0.5, 0.5)])
@pytest.mark.slow
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
  model, params = fit.build(config, 0)
  assert model.image_module(params).likelihood == "discretized"
  config.model.image.vae.likelihood = "poisson"
  with pytest.raises(mechanisms.MechanismError,
                     match="unknown VAE likelihood 'poisson'; known: "
                           "gaussian, discretized"):
    fit.build(config, 0)


@pytest.mark.slow
def test_linear_pixel_means_keep_a_gradient_where_a_sigmoid_saturates():
  # A decoder pushed to all-black (head bias -20): with sigmoid means the
  # loss no longer moves the bias; with linear means it does, and the
  # prediction is still an image in [0, 1].
  images = jnp.zeros((4, 32, 32, 1)).at[:, 8:24, 14:18].set(1.0)
  cond = jnp.zeros((4, 3))
  grads = {}
  for mean in ("sigmoid", "linear"):
    config = vae.VAE.default_config()
    config.mean = mean
    module = vae.VAE.create((32, 32, 1), 3, config, rngs=nnx.Rngs(0))
    module.decoder.head.bias.value = jnp.full_like(
        module.decoder.head.bias.value, -20.0)
    graphdef, state = nnx.split(module)

    def loss(state, graphdef=graphdef):
      m = nnx.merge(graphdef, state)
      return m.loss(images, cond, jax.random.key(0))[0]["loss"].mean()

    g = jax.grad(loss)(state)
    grads[mean] = float(jnp.abs(g["decoder"]["head"]["bias"].value).max())
    u = module.abduct(images, cond)
    out = module.predict(cond, u)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert grads["sigmoid"] < 1e-3 * grads["linear"]
