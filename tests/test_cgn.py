"""The CGN image mechanism: independent mechanisms composed into the image.

Each of the shape, texture and background mechanisms reads its own
attribute's slice of the features (and its own latent) and nothing else,
the attribute found by its name in the model's layout; the image is
m * f + (1 - m) * b; the family trains a step through the ANCM on 2 fake
devices as the `cgn` variant of the comparison config.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs import compare_cgn_dear_colored_mnist
from ctfjax import experiment
from ctfjax.ancm import fit
from ctfjax.mechanisms import Features, MechanismError, cgn

SMALL = {"latent_dim": 3, "decoder_convs": ((4, 3), (4, 3), (4, 3))}
# Colored MNIST's features in the model's order, and each mechanism's
# slice of cond by default (D, C, B in that order).
LAYOUT = Features(("D", "C", "B"), (10, 2, 2))
SLICES = {"shape": slice(0, 10), "texture": slice(10, 12),
          "background": slice(12, 14)}


def small_cgn(layout=LAYOUT, **fields):
  config = cgn.CGN.default_config()
  config.update({**SMALL, **fields})
  return cgn.CGN.create((32, 32, 3), layout, config, rngs=nnx.Rngs(0))


def features(d, c, b):
  return jnp.concatenate([jax.nn.one_hot(jnp.asarray(d), 10),
                          jax.nn.one_hot(jnp.asarray(c), 2),
                          jax.nn.one_hot(jnp.asarray(b), 2)], axis=-1)


@pytest.mark.slow
def test_each_mechanism_reads_only_its_own_attribute_and_latent():
  model = small_cgn()
  cond = features([3, 7], [0, 1], [1, 0])
  u = model.prior(jax.random.key(0), 2)
  layers = dict(zip(cgn.MECHANISMS, model.layers(cond, u)))
  assert layers["shape"].shape == (2, 32, 32, 1)
  assert layers["texture"].shape == layers["background"].shape == (
      2, 32, 32, 3)
  # Everything one mechanism does not read changed at once: the other
  # attributes' blocks and the other mechanisms' latents.
  noise = jax.random.normal(jax.random.key(1), cond.shape)
  for name in cgn.MECHANISMS:
    other_cond = cond + noise.at[:, SLICES[name]].set(0.0)
    other_u = {k: (x if k == name else x + 1.0) for k, x in u.items()}
    other = dict(zip(cgn.MECHANISMS, model.layers(other_cond, other_u)))
    np.testing.assert_array_equal(other[name], layers[name])
    for rest in cgn.MECHANISMS:  # and the others do see their changes
      if rest != name:
        assert not np.array_equal(other[rest], layers[rest])
    # The gradient of the layer with respect to cond lives in its block.
    grad = jax.grad(lambda c, name=name: dict(zip(
        cgn.MECHANISMS, model.layers(c, u)))[name].sum())(cond)
    outside = np.ones(14, bool)
    outside[SLICES[name]] = False
    assert np.all(np.asarray(grad)[:, outside] == 0.0)
    assert np.abs(np.asarray(grad)[:, SLICES[name]]).sum() > 0


@pytest.mark.slow
def test_changing_the_colour_leaves_the_mask_and_background_bit_identical():
  model = small_cgn()
  u = model.prior(jax.random.key(2), 3)
  factual = model.layers(features([1, 2, 3], [0, 0, 1], [0, 1, 1]), u)
  edited = model.layers(features([1, 2, 3], [1, 1, 0], [0, 1, 1]), u)
  np.testing.assert_array_equal(edited[0], factual[0])  # the mask
  np.testing.assert_array_equal(edited[2], factual[2])  # the background
  assert not np.array_equal(edited[1], factual[1])      # the foreground


def test_composition_is_the_hand_computed_blend():
  mask = jnp.array([0.25, 1.0, 0.0]).reshape(1, 3, 1, 1)
  fg = jnp.array([[0.8, 0.2, 0.0], [0.5, 0.5, 0.5],
                  [1.0, 1.0, 1.0]]).reshape(1, 3, 1, 3)
  bg = jnp.array([[0.4, 0.0, 1.0], [0.1, 0.9, 0.3],
                  [0.6, 0.7, 0.2]]).reshape(1, 3, 1, 3)
  # 0.25 * f + 0.75 * b; pure foreground; pure background.
  want = np.array([[0.5, 0.05, 0.75], [0.5, 0.5, 0.5],
                   [0.6, 0.7, 0.2]]).reshape(1, 3, 1, 3)
  np.testing.assert_allclose(cgn.compose(mask, fg, bg), want, atol=1e-7)


@pytest.mark.slow
def test_coarsening_is_the_block_mean_spread_over_the_block():
  x = jnp.arange(32.0).reshape(1, 4, 4, 2)  # x[0, i, j, k] = 8i + 2j + k
  out = np.asarray(cgn.coarsen(x, 2))
  # The top-left 2x2 block of channel 0 holds 0, 2, 8, 10: mean 5; of
  # channel 1, 1, 3, 9, 11: mean 6. Blocks to the right add 4, below 16.
  for i in range(4):
    for j in range(4):
      base = 5.0 + 4.0 * (j // 2) + 16.0 * (i // 2)
      np.testing.assert_allclose(out[0, i, j], [base, base + 1.0])
  np.testing.assert_allclose(cgn.coarsen(x, 1),
                             np.broadcast_to(x.mean((1, 2), keepdims=True),
                                             x.shape))
  np.testing.assert_array_equal(cgn.coarsen(x, 0), x)


@pytest.mark.slow
def test_the_foreground_is_one_colour_and_the_background_carries_no_stroke():
  # Colored MNIST's defaults: the foreground one colour per image, the
  # background constant on 4x4 blocks - fine enough for the bar (rows
  # 0-3), too coarse for a stroke, so only the mask can draw the digit.
  model = small_cgn()
  assert (model.cells[1], model.cells[2]) == (1, 8)
  u = model.prior(jax.random.key(5), 2)
  _, fg, bg = (np.asarray(x) for x in model.layers(
      features([3, 7], [0, 1], [1, 0]), u))
  np.testing.assert_array_equal(fg, np.broadcast_to(fg[:, :1, :1], fg.shape))
  blocks = bg.reshape(2, 8, 4, 8, 4, 3)
  np.testing.assert_array_equal(blocks,
                                np.broadcast_to(blocks[:, :, :1, :, :1],
                                                blocks.shape))
  assert np.ptp(bg) > 0  # not one flat colour either
  assert not np.array_equal(fg[0, 0, 0], fg[1, 0, 0])
  # 0 cells: full resolution, as the CelebA rows set it.
  full = small_cgn(texture_size=0, background_size=0)
  _, fg, bg = full.layers(features([3, 7], [0, 1], [1, 0]), u)
  assert np.ptp(np.asarray(fg)[0, :, :, 0]) > 0
  assert np.ptp(np.asarray(bg)[0, :4, :4, 0]) > 0


@pytest.mark.slow
def test_prediction_is_the_blend_of_the_three_layers():
  model = small_cgn()
  cond = features([4], [1], [1])
  u = model.prior(jax.random.key(3), 1)
  m, f, b = (np.asarray(x, np.float64) for x in model.layers(cond, u))
  np.testing.assert_allclose(model.predict(cond, u), m * f + (1 - m) * b,
                             atol=1e-6)


def test_abduction_is_a_posterior_draw_and_the_mean_without_a_key():
  model = small_cgn()
  images = jax.random.uniform(jax.random.key(0), (3, 32, 32, 3))
  cond = features([1, 2, 3], [0, 1, 0], [1, 1, 0])
  mean, logvar = model.encoder(images, cond)
  key = jax.random.key(4)
  # The draw by hand: mean + sd * eps, eps the key's standard normals.
  by_hand = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
  drawn = model.abduct(images, cond, key)
  np.testing.assert_allclose(
      jnp.concatenate([drawn[m] for m in cgn.MECHANISMS], -1), by_hand,
      rtol=1e-6)
  other = model.abduct(images, cond, jax.random.key(5))
  assert not np.allclose(other["shape"], drawn["shape"])
  at_mean = model.abduct(images, cond)
  np.testing.assert_array_equal(
      jnp.concatenate([at_mean[m] for m in cgn.MECHANISMS], -1), mean)


@pytest.mark.slow
def test_each_mechanism_reads_the_feature_its_config_names():
  # Shape and texture swapped: the mask follows the colour C, the
  # foreground the digit D.
  model = small_cgn(shape_feature="C", texture_feature="D")
  assert model.roles == ("C", "D", "B")
  assert model.reads == ((10, 12), (0, 10), (12, 14))
  u = model.prior(jax.random.key(4), 2)
  base = model.layers(features([3, 7], [0, 1], [1, 0]), u)
  new_colour = model.layers(features([3, 7], [1, 0], [1, 0]), u)
  new_digit = model.layers(features([4, 8], [0, 1], [1, 0]), u)
  assert not np.array_equal(new_colour[0], base[0])  # the mask moves
  np.testing.assert_array_equal(new_digit[0], base[0])  # and not with D
  np.testing.assert_array_equal(new_colour[1], base[1])
  assert not np.array_equal(new_digit[1], base[1])


def test_empty_roles_take_the_features_no_role_names_in_order():
  two = Features(("Smiling", "Eyeglasses"), (2, 2))
  assert cgn.assign_roles(LAYOUT, {}) == ("D", "C", "B")
  assert cgn.assign_roles(LAYOUT, {"texture": "D"}) == ("C", "D", "B")
  assert cgn.assign_roles(two, {}) == ("Smiling", "Eyeglasses", None)
  assert cgn.assign_roles(two, {"shape": "Eyeglasses",
                                "background": "Smiling"}) == (
                                    "Eyeglasses", None, "Smiling")


@pytest.mark.parametrize("layout, fields, match", [
    (LAYOUT, {"shape_feature": "X"},
     r"'model.image.cgn.shape_feature': unknown feature 'X'"),
    (LAYOUT, {"shape_feature": "C", "background_feature": "C"},
     r"'model.image.cgn.background_feature': feature 'C' is already read "
     r"by the shape mechanism \('model.image.cgn.shape_feature'\)"),
    (Features(("D", "C", "B", "T"), (10, 2, 2, 1)), {},
     "no mechanism reads feature.s. T"),
    (LAYOUT, {"background_size": 5},
     r"'model.image.cgn.background_size': 5 cells per side do not divide "
     r"the 32x32 image"),
    (LAYOUT, {"texture_size": -1}, r"'model.image.cgn.texture_size': -1"),
], ids=["unknown", "twice", "four_features", "cells", "negative"])
def test_a_role_that_does_not_fit_the_features_is_one_line(layout, fields,
                                                          match):
  with pytest.raises(MechanismError, match=match):
    small_cgn(layout, **fields)


def variant_config(name: str) -> ml_collections.ConfigDict:
  """A comparison variant's training config at the `tiny` size, 1 step."""
  config = experiment.model_config(
      compare_cgn_dear_colored_mnist.get_config("tiny"), name)
  config.model.image[name].update(SMALL if name == "cgn" else {})
  config.train.steps = 1
  config.train.eval_every = 0
  config.train.progress = False
  return config


@pytest.mark.slow
def test_one_step_on_two_devices_under_the_edgeless_diagram(tmp_path):
  config = variant_config("cgn")
  assert config.model.graph == "D; C; B" and config.mesh.data == -1
  assert len(jax.devices()) == 2
  model, result = fit.train_and_evaluate(config, tmp_path / "run")
  assert model.image_kind == "cgn" and result.steps == 1
  _, start = fit.build(config, config.train.seed)
  _, _, params = fit.load(tmp_path / "run")
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                       start["image"], params["image"])
  assert all(jax.tree.leaves(moved))  # every image parameter trained
  # An edit of the colour keeps the mask and background of the abduction.
  ds = fit.load_split(config, "test", 4)
  v = {k: ds[k] for k in model.order}
  u = model.abduct_image(params, ds["image"], v, jax.random.key(0))
  image = model.image_module(params)
  new = {**v, "C": 1 - v["C"]}
  factual = image.layers(model.encode(v), u)
  edited = image.layers(model.encode(new), u)
  np.testing.assert_array_equal(edited[0], factual[0])
  np.testing.assert_array_equal(edited[2], factual[2])
  out = model.edit(params, ds["image"], {"C": 1 - v["C"]}, jax.random.key(1),
                   num_samples=2, labels=v)
  assert out["image"].shape == (4, 2, 32, 32, 3)
  # No edges: the descendant B keeps its factual value.
  np.testing.assert_array_equal(out["B"], np.repeat(v["B"][:, None], 2, 1))
