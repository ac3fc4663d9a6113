"""The DEAR image mechanism: a generator whose factor codes follow an SCM.

The SCM layer's density, abduction and interventions against hand
computations and the linear-Gaussian closed form; an intervention changes
the intervened factor's and its descendants' codes and leaves every other
code bit-identical; the super-graph comes from the dataset's true diagram
by default, or from a text over the features' names; the family trains a
step through the ANCM on 2 fake devices as the `dear` variant of the
comparison config.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.scipy.stats import multivariate_normal

from ctfjax.ancm import fit
from ctfjax.causal.graph import Graph
from ctfjax.mechanisms import Features, MechanismError, dear
from test_cgn import features, variant_config

# Colored MNIST's blocks D (10), C (2), B (2) and the backdoor super-graph
# D -> B, C -> B.
BLOCKS, EDGES = (10, 2, 2), ((0, 2), (1, 2))
SLICES = (slice(0, 10), slice(10, 12), slice(12, 14))
# The backdoor model as the comparison runs it: the edgeless diagram over
# the true diagram D <-> C, D -> B, C -> B.
LAYOUT = Features(("D", "C", "B"), BLOCKS, Graph.parse("D; C; B"),
                  Graph.parse("D <-> C; D -> B; C -> B"))


def random_scm(blocks=BLOCKS, edges=EDGES, seed=0):
  scm = dear.SCMLayer(blocks, edges)
  k = jax.random.split(jax.random.key(seed), 3)
  d = sum(blocks)
  scm.adjacency[...] = jax.random.normal(k[0], (d, d))
  scm.log_scale[...] = 0.3 * jax.random.normal(k[1], (d,))
  scm.shift[...] = jax.random.normal(k[2], (d,))
  return scm


@pytest.mark.slow
def test_chain_propagation_is_the_hand_computation():
  # Scalar codes, chain 0 -> 1 -> 2: pre_1 = 2 pre_0 + eps_1,
  # pre_2 = -0.5 pre_1 + eps_2, z = exp(log_scale) pre + shift.
  scm = dear.SCMLayer((1, 1, 1), ((0, 1), (1, 2)))
  scm.adjacency[...] = jnp.array([[9.0, 2.0, 7.0], [0.0, 0.0, -0.5],
                                  [5.0, 0.0, 0.0]])  # off-graph: unused
  scm.log_scale[...] = jnp.log(jnp.array([2.0, 1.0, 4.0]))
  scm.shift[...] = jnp.array([1.0, 0.0, -1.0])
  z = jnp.array([[3.0, 4.0, 2.0]])
  # pre = (z - shift) / scale = (1, 4, 0.75); eps = pre - pre A.
  eps = np.array([1.0, 4.0 - 2.0 * 1.0, 0.75 + 0.5 * 4.0])
  np.testing.assert_allclose(scm.abduct(z)[0], eps, rtol=1e-6)
  np.testing.assert_allclose(scm.forward(jnp.asarray(eps)[None])[0], z[0],
                             rtol=1e-6)
  # do(z_0 = 5): pre_0 = 2, pre_1 = 2 * 2 + 2 = 6, pre_2 = -3 + 2.75.
  out = scm.intervene(z, jnp.array([[True, False, False]]),
                      jnp.array([[5.0, 0.0, 0.0]]))
  want = [5.0, 6.0, 4.0 * (-0.5 * 6.0 + 2.75) - 1.0]
  np.testing.assert_allclose(out[0], want, rtol=1e-6)
  # do(z_1 = 1): pre_1 = 1, pre_2 = -0.5 + 2.75; z_0 untouched.
  out = scm.intervene(z, jnp.array([[False, True, False]]),
                      jnp.array([[0.0, 1.0, 0.0]]))
  np.testing.assert_allclose(out[0], [3.0, 1.0, 4.0 * 2.25 - 1.0],
                             rtol=1e-6)


@pytest.mark.slow
def test_log_prob_is_the_linear_gaussian_density():
  scm = random_scm()
  z = jax.random.normal(jax.random.key(5), (4, 14))
  # z = s * eps M + shift, M = (I - A)^-1: Gaussian, cov diag(s) M'M diag(s).
  m = np.linalg.inv(np.eye(14) - np.asarray(scm.weights(), np.float64))
  s = np.exp(np.asarray(scm.log_scale[...], np.float64))
  cov = (m * s).T @ (m * s)
  want = multivariate_normal.logpdf(np.asarray(z, np.float64),
                                    np.asarray(scm.shift[...], np.float64),
                                    cov)
  np.testing.assert_allclose(scm.log_prob(z), want, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("target, descendants", [
    (0, {0, 2}), (1, {1, 2}), (2, {2})])
def test_an_intervention_changes_exactly_the_descendants_codes(
    target, descendants):
  scm = random_scm()
  z = jax.random.normal(jax.random.key(1), (5, 14))
  do = jnp.zeros((5, 3), bool).at[:, target].set(True)
  value = features([1, 2, 3, 4, 5], [1, 0, 1, 0, 1], [0, 0, 1, 1, 0])
  out = np.asarray(scm.intervene(z, do, value))
  for k, sl in enumerate(SLICES):
    if k == target:
      np.testing.assert_allclose(out[:, sl], value[:, sl], atol=1e-6)
    elif k in descendants:
      assert np.all(np.abs(out[:, sl] - np.asarray(z[:, sl])) > 1e-4)
    else:
      np.testing.assert_array_equal(out[:, sl], z[:, sl])
  # No intervention: every code bit-identical.
  np.testing.assert_array_equal(
      scm.intervene(z, jnp.zeros((5, 3), bool), value), z)


def small_dear():
  config = dear.DEAR.default_config()
  config.update({"rest_dim": 3, "decoder_convs": ((4, 3), (4, 3), (4, 3))})
  return dear.DEAR.create((32, 32, 3), LAYOUT, config, rngs=nnx.Rngs(0))


@pytest.mark.slow
def test_prediction_intervenes_on_the_changed_factors_only():
  model = small_dear()
  model.scm.adjacency[...] = random_scm().adjacency[...]
  cond = features([3, 7], [0, 1], [1, 0])
  # Codes near the encodings, as the supervision makes them.
  u = {"codes": cond + 0.1, "rest": jnp.ones((2, 3)), "cond": cond}
  new = features([3, 7], [1, 0], [1, 0])  # do(C = 1 - C)
  np.testing.assert_array_equal(model.intervened(new, cond),
                                [[False, True, False]] * 2)
  got = model.predict(new, u)
  codes = model.scm.intervene(u["codes"], model.intervened(new, cond), new)
  np.testing.assert_array_equal(codes[:, :10], u["codes"][:, :10])
  np.testing.assert_array_equal(got, model._generate(codes, u["rest"]))
  # A prior draw has no factual features: every factor is set.
  prior = model.prior(jax.random.key(0), 2)
  assert np.all(np.asarray(model.intervened(new, prior["cond"])))


def test_an_edge_against_the_feature_order_is_one_line():
  with pytest.raises(MechanismError, match=r"edge \(2, 0\)"):
    dear.SCMLayer(BLOCKS, ((2, 0),))


def test_the_default_super_graph_is_the_true_diagrams_directed_edges():
  # Not the edgeless diagram the model assumes: D <-> C has no counterpart.
  assert dear.super_graph_edges(LAYOUT) == EDGES
  frontdoor = Features(("D", "C", "B"), BLOCKS, Graph.parse("D; C; B"),
                       Graph.parse("D -> C; C -> B; D <-> B"))
  assert dear.super_graph_edges(frontdoor) == ((0, 1), (1, 2))
  # No true diagram: the model's own; neither: no edge.
  assert dear.super_graph_edges(Features(
      ("D", "C", "B"), BLOCKS, Graph.parse("D -> C; C -> B"))) == (
          (0, 1), (1, 2))
  assert dear.super_graph_edges(Features(("D", "C", "B"), BLOCKS)) == ()
  # A user's super-graph over the features' names.
  assert dear.super_graph_edges(LAYOUT, "C -> B") == ((1, 2),)
  assert dear.super_graph_edges(LAYOUT, "D -> C; D -> B") == ((0, 1),
                                                             (0, 2))
  assert small_dear().scm.edges == EDGES


@pytest.mark.parametrize("text, match", [
    ("D -> X", r"'model.image.dear.super_graph': unknown feature 'X'"),
    ("B -> D", r"'model.image.dear.super_graph': edge B -> D goes against "
     "the model's feature order D, C, B"),
    ("D <-> C", "bidirected"),
    ("D => C", r"'model.image.dear.super_graph': cannot parse"),
], ids=["unknown", "order", "bidirected", "syntax"])
def test_a_bad_super_graph_is_one_line(text, match):
  config = dear.DEAR.default_config()
  config.super_graph = text
  with pytest.raises(MechanismError, match=match):
    dear.DEAR.create((32, 32, 3), LAYOUT, config, rngs=nnx.Rngs(0))


@pytest.mark.slow
def test_one_step_on_two_devices_under_the_edgeless_diagram(tmp_path):
  config = variant_config("dear")
  config.model.image.dear.update(
      {"rest_dim": 3, "decoder_convs": ((4, 3), (4, 3), (4, 3))})
  assert config.model.graph == "D; C; B" and len(jax.devices()) == 2
  model, result = fit.train_and_evaluate(config, tmp_path / "run")
  assert model.image_kind == "dear" and result.steps == 1
  _, start = fit.build(config, config.train.seed)
  _, _, params = fit.load(tmp_path / "run")
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                       start["image"], params["image"])
  assert all(jax.tree.leaves(moved))  # the SCM's parameters too
  ds = fit.load_split(config, "test", 4)
  v = {k: ds[k] for k in model.order}
  out = model.edit(params, ds["image"], {"B": 1 - v["B"]}, jax.random.key(1),
                   num_samples=2, labels=v)
  assert out["image"].shape == (4, 2, 32, 32, 3)
  # do(B): B has no descendants, so D's and C's codes stay as abducted.
  u = model.abduct_image(params, ds["image"], v, jax.random.key(0))
  image = model.image_module(params)
  new = model.encode({**v, "B": 1 - v["B"]})
  codes = image.scm.intervene(u["codes"], image.intervened(new, u["cond"]),
                              new)
  np.testing.assert_array_equal(codes[:, :12], u["codes"][:, :12])
