"""The NCM of high-dimensional variables (Sardesai's diffusion NCM).

Its defining properties (ctfjax/ncm/codes.py): every variable's
autoencoder round-trips every value; the mechanism's logits are the
read-out of the code its MLP computes from the parents' codes; do() sets
the intervened code to its value's and leaves the non-descendants' codes
bit-identical, while a descendant's code follows its recomputed value;
the diffusion image mechanism is conditioned on the codes, so DDIM
inversion then decoding under the same codes gives the image back, to the
accuracy of the sampler's levels. Then one training step on 2 fake
devices and the comparison run end to end.
"""

import json
import pathlib

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ctfjax import mechanisms
from ctfjax.ancm import fit
from ctfjax.ancm.model import ANCM
from ctfjax.experiment import job
from ctfjax.ncm import NCM, NCMError
from ctfjax.ncm.codes import CodeNCM
from configs import compare_hd_ncm_colored_mnist_frontdoor as compare

FRONT_DOOR = "D -> C; C -> B; D <-> B"
FEATURES = {"D": 10, "C": 2, "B": 2}


@pytest.fixture(scope="module")
def front_door():
  return CodeNCM.create(FRONT_DOOR, FEATURES, rng=0, code_dim=8,
                        hidden=(16,))


def check_round_trip(model, params):
  """R_i(A_i(v)) = v for every value of every variable, its logit exactly
  0 and every other one below it."""

  @jax.jit
  def trip(params):
    # Row u of each node: the code of its value u (other nodes at 0).
    values = {k: jnp.arange(size) for k, size in model.domains.items()}
    out = {}
    for node, size in model.domains.items():
      codes = model.codes(params, {k: values[k] if k == node else
                                   jnp.zeros(size, jnp.int32)
                                   for k in model.order})
      read = model.read(params, {node: codes[node]})[node]
      logits = model.module(params).autoencoders[node].decode(codes[node])
      out[node] = (read, logits)
    return out

  for node, (read, logits) in trip(params).items():
    size = model.domains[node]
    np.testing.assert_array_equal(read, np.arange(size))
    np.testing.assert_array_equal(np.diag(logits), 0.0)
    off = np.asarray(logits)[~np.eye(size, dtype=bool)]
    assert off.max() < 0, (node, off.max())


def test_autoencoders_round_trip_every_value_by_construction(front_door):
  model, params = front_door
  check_round_trip(model, params)
  # One-dimensional codes too: the values' codes are distinct numbers.
  check_round_trip(*CodeNCM.create("D -> C", {"D": 10, "C": 2}, rng=1,
                                   code_dim=1, hidden=(4,)))
  # A code is its value's row of the autoencoder's table.
  table = model.module(params).autoencoders["D"].table[...]
  np.testing.assert_array_equal(
      model.codes(params, {"D": jnp.array([3, 7]), "C": jnp.array([0, 1]),
                           "B": jnp.array([1, 0])})["D"],
      table[jnp.array([3, 7])])


def test_logits_are_the_read_out_of_the_mechanisms_code(front_door):
  """P(v_i | pa_i, u) = softmax(R_i(g_i(A(pa_i), u))): B's head by hand
  from C's code, its latents and its MLP."""
  model, params = front_door
  mech = model.module(params)
  latents = model.sample_latents(jax.random.key(0), (5,))
  c = jnp.array([0, 1, 1, 0, 1])
  head = model.head(mech, "B", {"C": jax.nn.one_hot(c, 2)}, latents)
  assert model.latents_of("B") == ("U(D,B)", "U(B)")
  x = jnp.concatenate([mech.autoencoders["C"].table[...][c],
                       latents["U(D,B)"], latents["U(B)"]], -1)
  h = mech.nets["B"](x)  # [5, k], the mechanism's code
  table = mech.autoencoders["B"].table[...]
  by_hand = -((h[:, None, :] - table[None]) ** 2).sum(-1)
  np.testing.assert_allclose(head, by_hand, rtol=1e-5, atol=1e-5)


def test_do_keeps_non_descendants_codes_and_recomputes_descendants(
    front_door):
  model, params = front_door
  v = model.sample(params, jax.random.key(1), 256)
  factual = model.codes(params, v)
  table = {k: model.module(params).autoencoders[k].table[...]
           for k in model.order}
  # do(B): D and C are non-descendants: their codes bit-identical.
  cf = model.counterfactual_sample(params, v, {"B": 1 - v["B"]},
                                   jax.random.key(2))
  codes = model.codes(params, {k: x[:, 0] for k, x in cf.items()})
  for k in ("D", "C"):
    np.testing.assert_array_equal(codes[k], factual[k])
  np.testing.assert_array_equal(codes["B"], table["B"][1 - v["B"]])
  # do(C): D keeps its code; B is a descendant, its code follows its
  # recomputed value, and changes with it in some rows.
  cf = model.counterfactual_sample(params, v, {"C": 1 - v["C"]},
                                   jax.random.key(3))
  new = {k: x[:, 0] for k, x in cf.items()}
  codes = model.codes(params, new)
  np.testing.assert_array_equal(codes["D"], factual["D"])
  np.testing.assert_array_equal(codes["C"], table["C"][1 - v["C"]])
  np.testing.assert_array_equal(model.read(params, codes)["B"], new["B"])
  moved = np.any(np.asarray(codes["B"]) != np.asarray(factual["B"]), -1)
  np.testing.assert_array_equal(moved, new["B"] != v["B"])
  assert 0 < moved.sum() < len(moved)


@pytest.mark.slow
def test_a_descendant_follows_its_parents_code(front_door):
  """B's logits depend on C's code: the same latents and noise give other
  values of B under do(C=0) and do(C=1), and do(C=c) for rows already at c
  is the null intervention."""
  model, params = front_door
  exo = model.sample_exogenous(jax.random.key(4), (512,))
  worlds = [model.predict(params, exo, {"C": jnp.int32(c)}) for c in (0, 1)]
  assert np.mean(worlds[0]["B"] != worlds[1]["B"]) > 0.02
  np.testing.assert_array_equal(worlds[0]["D"], worlds[1]["D"])
  factual = model.predict(params, exo)
  rows = np.asarray(factual["C"]) == 1
  np.testing.assert_array_equal(np.asarray(worlds[1]["B"])[rows],
                                np.asarray(factual["B"])[rows])


def test_code_ncm_is_another_model_and_needs_categorical_features():
  coded = CodeNCM("X -> Y", {"X": 2, "Y": 3}, code_dim=4)
  plain = NCM("X -> Y", {"X": 2, "Y": 3})
  assert coded != plain and plain != coded
  assert coded.condition_dim == 8 and plain.condition_dim == 5
  with pytest.raises(NCMError, match="needs categorical features; 'Y'"):
    CodeNCM("X -> Y", {"X": 2, "Y": "continuous"})
  with pytest.raises(NCMError, match="code_dim must be at least 1"):
    CodeNCM("X -> Y", {"X": 2, "Y": 3}, code_dim=0)
  with pytest.raises(NCMError, match="pass its params"):
    coded.condition(None, {"X": jnp.zeros(1, jnp.int32),
                           "Y": jnp.zeros(1, jnp.int32)})


def tiny_ddpm(timesteps=1000):
  image = mechanisms.image_config("ddpm")
  image.ddpm.update(compare.TINY_UNET)
  image.ddpm.timesteps = timesteps
  return image


@pytest.mark.slow
def test_ddim_inversion_then_decoding_under_the_same_codes():
  """The U-Net reads the codes (not the one-hots); inverting an image under
  its factual codes and decoding under the same codes returns it, closer
  with more levels (DDIM's O(1/S) error; test_diffusion's tolerance for a
  U-Net trained briefly on 4 shaded colour patches, here under their
  codes)."""
  model, params = ANCM.create(FRONT_DOOR, FEATURES, (8, 8, 3), 0,
                              image=tiny_ddpm(),
                              ncm_kwargs={"code_dim": 8, "hidden": (16,)})
  assert isinstance(model.ncm, CodeNCM)
  v = {"D": jnp.array([0, 3, 9, 5]), "C": jnp.array([0, 1, 1, 0]),
       "B": jnp.array([1, 0, 1, 0])}
  cond = model.encode(v, params)
  chex.assert_shape(cond, (4, 24))
  np.testing.assert_array_equal(
      cond[:, 8:16], model.ncm.codes(params["ncm"], v)["C"])
  colors = jax.random.uniform(jax.random.key(0), (4, 1, 1, 3))
  shade = jnp.linspace(0.5, 1.0, 8)[None, :, None, None]
  images = jnp.broadcast_to(colors, (4, 8, 8, 3)) * shade
  opt = optax.adam(1e-2)

  @jax.jit
  def step(image_params, opt_state, key):
    def loss(p):
      mech = model.image_module({**params, "image": p})
      return mech.loss(jnp.tile(images, (8, 1, 1, 1)), jnp.tile(cond, (8, 1)),
                       key)[0]["loss"].mean()
    grads = jax.grad(loss)(image_params)
    updates, opt_state = opt.update(grads, opt_state, image_params)
    return optax.apply_updates(image_params, updates), opt_state

  image_params, opt_state = params["image"], opt.init(params["image"])
  for i in range(100):
    image_params, opt_state = step(image_params, opt_state,
                                   jax.random.key(i))
  params = {**params, "image": image_params}
  mech = model.image_module(params)
  err = {}
  for steps in (10, 100):
    sampler = {"steps": steps}
    u = model.abduct_image(params, images, v, jax.random.key(1), sampler)
    out = model.predict_image(params, v, u, jax.random.key(2), sampler)
    # The ANCM's prediction is the mechanism's under the codes.
    direct = jax.jit(lambda c, x: mech.predict(c, {"x_T": x}, steps=steps))(  # noqa: B023
        cond, u["x_T"])
    np.testing.assert_allclose(out, direct, atol=1e-3)  # XLA options
    err[steps] = float(np.abs(out - images).mean()) * 255
  assert err[100] < err[10] / 4 and err[100] < 10, err
  # Other codes (each image's D moved on by one) decode to other images.
  other = model.predict_image(params, {**v, "D": (v["D"] + 1) % 10}, u,
                              jax.random.key(2), sampler)
  moved = float(np.abs(other - out).mean()) * 255
  assert moved > 2 * err[100], (moved, err)


def one_step_config() -> ml_collections.ConfigDict:
  config = job.model_config(compare.get_config("tiny"), "hd_ncm")
  config.train.steps = 1
  config.train.eval_every = 0
  config.train.progress = False
  return config


@pytest.mark.slow
def test_one_step_on_two_devices_trains_codes_and_unet_together(tmp_path):
  config = one_step_config()
  assert config.model.ncm_code_dim == compare.CODE_DIM
  assert config.mesh.data == -1 and len(jax.devices()) == 2
  model, result = fit.train_and_evaluate(config, tmp_path / "run")
  assert isinstance(model.ncm, CodeNCM) and result.steps == 1
  _, start = fit.build(config, config.train.seed)
  _, loaded, params = fit.load(tmp_path / "run")
  assert isinstance(loaded.ncm, CodeNCM)
  for part in ("ncm", "image"):
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                         start[part], params[part])
    assert all(jax.tree.leaves(moved)), part  # the codes train end to end
  check_round_trip(loaded.ncm, params["ncm"])
  # The diffusion loss reaches every value's code, and no mechanism MLP:
  # the U-Net reads A_i(V_i), not the codes g_i computes.
  ds = fit.load_split(config, "train", 8)
  grads = jax.grad(lambda p: model.stage_losses(
      p, ds, jax.random.key(0))[1]["image_loss_per_dim"])(start)
  norms = {mechanisms.path_names(path): float(jnp.abs(g).max()) for path, g
           in jax.tree_util.tree_flatten_with_path(grads["ncm"])[0]}
  assert {k[0] for k in norms} == {"autoencoders", "nets"}
  for path, norm in norms.items():
    assert (norm > 0) == (path[0] == "autoencoders"), (path, norm)


@pytest.mark.slow
def test_the_comparison_runs_the_code_ncm_end_to_end(tmp_path):
  config = compare.get_config("tiny")
  config.train.progress = False
  names = ("diffusion_ncm", "hd_ncm")
  assert config.run.models == names
  # The two rows differ only in the NCM's codes.
  plain, coded = (job.model_config(config, n) for n in names)
  assert coded.model.ncm_code_dim == compare.CODE_DIM
  assert plain.model.ncm_code_dim == 0
  with coded.unlocked():
    coded.model.ncm_code_dim = 0
  assert coded.to_dict() == plain.to_dict()
  assert type(fit.model_of(plain).ncm) is NCM
  # The run of the new model alone (the one-hot row is today's).
  config.run.models = ("hd_ncm",)
  report = job.run(config, tmp_path / "run")
  assert [e["model"] for e in report["models"]] == ["hd_ncm"]
  saved = json.loads((tmp_path / "run" / "report.json").read_text())
  assert [e["model"] for e in saved["models"]] == ["hd_ncm"]
  assert saved["models"][0]["ctf_consistency"]
  for name in ("report.md", "edits.png"):
    assert (pathlib.Path(tmp_path) / "run" / name).is_file(), name
  _, trained = job.load_run(tmp_path / "run")
  (name, model, params, _), = trained
  assert name == "hd_ncm" and isinstance(model.ncm, CodeNCM)
  check_round_trip(model.ncm, params["ncm"])
  # An edit of B keeps D's and C's codes, and sets B's.
  ds = fit.load_split(config, "test", 4)
  v = {k: ds[k] for k in model.order}
  out = model.edit(params, ds["image"], {"B": 1 - v["B"]},
                   jax.random.key(0), labels=v)
  drawn = {k: out[k][:, 0] for k in model.order}
  before, after = (model.ncm.codes(params["ncm"], x) for x in (v, drawn))
  for k in ("D", "C"):
    np.testing.assert_array_equal(after[k], before[k])
  assert not np.any(np.all(np.asarray(after["B"]) == before["B"], -1))
