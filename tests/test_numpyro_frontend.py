"""`DiscreteSCM.from_numpyro`: structural equations recovered from a program."""

import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import distributions as dist
import pytest

from ctfjax import causal as cc
from ctfjax.causal import examples as ex


def assert_same_scm(got, want):
  """Same exogenous laws, graph, and tables (inputs matched by name)."""
  assert set(got.exogenous) == set(want.exogenous)
  for u, p in want.exogenous.items():
    np.testing.assert_array_equal(got.exogenous[u], p)
  assert got.graph == want.graph
  assert set(got.endogenous) == set(want.endogenous)
  for v, m in want.endogenous.items():
    g = got.endogenous[v]
    assert g.domain == m.domain and set(g.inputs) == set(m.inputs), v
    perm = [g.inputs.index(i) for i in m.inputs]
    np.testing.assert_array_equal(np.transpose(g.table, perm), m.table)


@pytest.mark.parametrize("variant", [1, 2])
def test_witness_b_matches_the_spec(variant):
  want = ex.witness_b()[variant - 1]
  got = cc.DiscreteSCM.from_numpyro(ex.witness_b_model(variant))
  assert_same_scm(got, want)
  # Inputs listed in another order: the same sums, rounded differently.
  np.testing.assert_allclose(got.observational().probs,
                             want.observational().probs, atol=1e-15)
  q = "P(Y_{X=1}=1 | X=0, Y=0)"
  assert cc.query(got, q) == pytest.approx(cc.query(want, q), abs=1e-15)
  assert cc.query(got, q) == pytest.approx([0.5, 0.75][variant - 1],
                                           abs=1e-12)
  assert cc.bounds(got.graph, got.observational(), q) == pytest.approx(
      (0.5, 0.75), abs=1e-9)


def test_four_pixel_matches_the_spec():
  want = ex.four_pixel_ascm()
  got = cc.DiscreteSCM.from_numpyro(ex.four_pixel_model, domains={"I": 16})
  assert_same_scm(got, want)
  assert cc.distribution(got, "I_{X=1}", given="I=5") == pytest.approx(
      {5: 6 / 19, 6: 4 / 19, 14: 9 / 19}, abs=1e-12)
  assert cc.distribution(got, "I") == pytest.approx(
      cc.distribution(want, "I"), abs=1e-15)
  # Without domains= the image's domain is its largest value + 1: 1111 is
  # never drawn.
  assert cc.DiscreteSCM.from_numpyro(ex.four_pixel_model).domains["I"] == 15


def test_structural_not_reduced_form():
  # Y reads X, not u_x: do(X=1) must reach Y even though X = u_x.
  def model():
    u_x = numpyro.sample("u_x", dist.Bernoulli(probs=0.3))
    u_y = numpyro.sample("u_y", dist.Bernoulli(probs=0.2))
    x = numpyro.deterministic("X", u_x)
    numpyro.sample("Y", dist.Delta(x ^ u_y))

  scm = cc.DiscreteSCM.from_numpyro(model)
  assert scm.endogenous["Y"].inputs == ("u_y", "X")
  assert str(scm.graph) == "X -> Y"
  assert cc.query(scm, "P(Y_{X=1}=1 | X=0, Y=0)") == pytest.approx(1.0)


def test_dependence_seen_only_jointly_and_python_branches():
  # Z = X and Y: at X = Y = 0 neither input alone changes Z; the full grid
  # still finds both. The Python `if` forces the one-run-per-cell path.
  def model():
    x = numpyro.deterministic(
        "X", numpyro.sample("u", dist.Categorical(probs=jnp.array(
            [0.2, 0.3, 0.5]))) % 2)
    y = numpyro.deterministic("Y", numpyro.sample(
        "v", dist.Bernoulli(probs=0.4)))
    numpyro.deterministic("Z", 1 if (x == 1 and y == 1) else 0)

  scm = cc.DiscreteSCM.from_numpyro(model)
  assert scm.endogenous["Z"].inputs == ("X", "Y")
  np.testing.assert_array_equal(scm.endogenous["Z"].table, [[0, 0], [0, 1]])
  assert cc.query(scm, "P(Z=1)") == pytest.approx(0.3 * 0.4, abs=1e-15)


def _model(x_site, y_site=None):
  def model():
    u = numpyro.sample("u", dist.Bernoulli(probs=0.5))
    x = x_site(u)
    if y_site is not None:
      y_site(x)
  return model


@pytest.mark.parametrize("model, message", [
    (_model(lambda u: numpyro.sample("x", dist.Normal(u, 1.0))),
     "'x' has the continuous distribution Normal"),
    (_model(lambda u: numpyro.deterministic("X", u * 0.5)),
     "'X' takes the value 0.5"),
    (_model(lambda u: numpyro.deterministic("X", u - 1)),
     "'X' takes the value -1"),
    (_model(lambda u: numpyro.deterministic("X", u),
            lambda x: numpyro.sample("Y", dist.Bernoulli(
                probs=0.2 + 0.6 * x))),
     "'Y' draws from a distribution that depends on other sites"),
    (_model(lambda u: numpyro.sample("x", dist.Poisson(2.0))),
     "'x' has the distribution Poisson"),
    (_model(lambda u: numpyro.sample("x", dist.Bernoulli(0.5), obs=1)),
     "'x' is observed"),
    (_model(lambda u: numpyro.sample(
        "x", dist.Bernoulli(probs=jnp.array([0.5, 0.2])))),
     "'x' has batch shape"),
])
def test_bad_models(model, message):
  with pytest.raises(cc.SCMError, match=message):
    cc.DiscreteSCM.from_numpyro(model)


def test_bad_domains():
  model = ex.witness_b_model(1)
  with pytest.raises(cc.SCMError, match="'u_x', not an endogenous site"):
    cc.DiscreteSCM.from_numpyro(model, domains={"u_x": 2})
  with pytest.raises(cc.SCMError, match="outside its domain"):
    cc.DiscreteSCM.from_numpyro(ex.four_pixel_model, domains={"I": 4})
