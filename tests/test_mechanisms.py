"""The image-mechanism seam: a second family, defined here, plugs in unchanged.

`Tiny` is a per-pixel logistic mechanism, I = sigmoid(W cond + b + u_I),
with an exact inverse as abduction, two training stages (everything, then
the bias alone), a sampler setting and no cheap faithfulness decode. It is
registered with one line and then trained, edited and evaluated by the
ANCM code that trains and edits the VAE.

Every registered family at CelebA's 64x64x3, through the same ANCM path:
its CPU network trains a step of each stage and edits; the papers' CelebA
networks (the `accel` preset at 64x64) build, abstractly.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from configs import ancm
from ctfjax import evaluate
from ctfjax import experiment
from ctfjax import mechanisms
from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.mechanisms import Group, MechanismError, Stage
from ctfjax.nn.hierarchical import fit_to_image
from test_ancm import tiny_config
from test_evaluate import tiny_eval

class Tiny(nnx.Module):
  """I = sigmoid(W cond + b + temperature * u), u abducted exactly."""

  SAMPLER = {"temperature": 1.0}

  def __init__(self, image_shape, cond_dim, *, rngs, adversarial=False):
    del rngs  # zeros: a deterministic start
    self.image_shape = tuple(image_shape)
    size = int(np.prod(image_shape))
    self.w = nnx.Param(jnp.zeros((cond_dim, size)))
    self.b = nnx.Param(jnp.zeros((size,)))
    self.adversarial = adversarial

  @classmethod
  def default_config(cls):
    c = ml_collections.ConfigDict()
    c.polish_steps = 2  # Steps of the second stage (the bias alone).
    c.adversarial = False  # Second stage: w and b descend opposite losses.
    c.own_optimizer = False  # First stage: SGD of its own for the image.
    return c

  @classmethod
  def create(cls, image_shape, features, config, *, rngs):
    return cls(image_shape, features.cond_dim, rngs=rngs,
               adversarial=config.adversarial)

  @classmethod
  def stages(cls, config, steps):
    first = (Group("loss", optimizer=lambda train: optax.sgd(0.5)),) \
         if config.own_optimizer else (Group("loss"),)
    if config.adversarial:
      polish = (Group("w_loss", lambda p: p[0] == "w"),
                Group("b_loss", lambda p: p[0] == "b"))
    else:
      polish = (Group("loss", lambda p: p[0] == "b"),)
    return (Stage("fit", steps, first),
            Stage("polish", config.polish_steps, polish))

  def _logit(self, cond):
    return (cond @ self.w + self.b).reshape((-1,) + self.image_shape)

  def loss(self, images, cond, rng, stage, context):
    del rng, context
    err = jnp.square(images - jax.nn.sigmoid(self._logit(cond)))
    err = err.reshape(err.shape[0], -1).sum(-1)
    if stage == "polish" and self.adversarial:
      return {"w_loss": err, "b_loss": -err}, {"sq": err}
    return {"loss": err}, {"sq": err}

  def abduct(self, images, cond, rng, temperature=1.0):
    del rng
    x = jnp.clip(images, 1e-3, 1 - 1e-3)
    return {"u": (jnp.log(x) - jnp.log1p(-x) - self._logit(cond))
                  / temperature}

  def predict(self, cond, u, rng, temperature=1.0):
    del rng
    return jax.nn.sigmoid(self._logit(cond) + temperature * u["u"])

  def prior(self, rng, batch):
    return {"u": jax.random.logistic(rng, (batch,) + self.image_shape)}

  def relabel(self, images, cond, new_cond, rng):
    return None  # No cheap decode: the ANCM trains without faithfulness.


@pytest.fixture(autouse=True)
def registered(monkeypatch):
  monkeypatch.setitem(mechanisms.REGISTRY, "tiny", Tiny)


def tiny_mechanism_config(adversarial=False):
  config = tiny_config()
  config.model.image = mechanisms.image_config("tiny")
  config.model.image.tiny.adversarial = adversarial
  return config


def flat(tree):
  return {mechanisms.path_names(p): np.asarray(x) for p, x in
          jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.slow
def test_two_stages_train_in_turn_edit_and_evaluate(tmp_path):
  config = tiny_eval(evaluate.with_eval_defaults(tiny_mechanism_config()))
  workdir = tmp_path / "run"
  model, result = fit.train_and_evaluate(config, workdir)
  assert [s.name for s in model.stages] == ["fit", "polish"]
  assert result.steps == config.train.steps + 2
  # Stage 1 trained everything; stage 2 (own folder) only the bias.
  first = train.load_state(
      fit.stage_config(config, model, 0), workdir,
      fit.make_task(config, model, None, stage=0)).params
  _, _, last = fit.load(workdir)
  assert (workdir / "stages" / "polish").is_dir()
  a, b = flat(first), flat(last)
  changed = {k for k in a if not np.array_equal(a[k], b[k])}
  assert changed == {("image", "b")}
  assert np.abs(a[("image", "w")]).sum() > 0  # stage 1 moved w
  # No cheap decode: no faithfulness term, by the mechanism's own say.
  ds = fit.load_split(config, "train", 16)
  _, metrics = model.loss(last, ds, jax.random.key(0))
  assert "faithful_nll" not in metrics and "reader_nll" in metrics
  # The exact inverse makes the null edit the identity (up to the clip).
  labels = {k: ds[k][:4] for k in model.order}
  out = model.edit(last, ds["image"][:4], {}, jax.random.key(1),
                   num_samples=2, labels=labels)
  diff = np.abs(out["image"][:, 0].astype(int) - ds["image"][:4].astype(int))
  assert diff.max() <= 1
  # Sampler settings reach predict: temperature 0 drops u_I entirely.
  u = model.abduct_image(last, ds["image"][:4], labels, jax.random.key(2))
  cold = model.predict_image(last, labels, u, jax.random.key(3),
                             sampler={"temperature": 0.0})
  mean = model.predict_image(last, labels, jax.tree.map(jnp.zeros_like, u),
                             jax.random.key(3))
  np.testing.assert_allclose(cold, mean)
  with pytest.raises(MechanismError, match="unknown sampler setting 'eta'"):
    model.predict_image(last, labels, u, jax.random.key(3),
                        sampler={"eta": 0.0})
  # The unchanged evaluation: a full report with the tiny family's row.
  report = experiment.evaluate_models(
      config, workdir, [("ancm_tiny", model, last,
                         {"steps": result.steps, "seconds": 1.0})])
  (entry,) = report["models"]
  assert entry["model"] == "ancm_tiny" and entry["train"]["steps"] == 6
  assert set(entry["effectiveness"]) == {"do(D)", "do(C)", "do(B)"}
  assert len(entry["ctf_consistency"]) == 74
  for name in ("report.json", "report.md", "edits.png", "bounds.png"):
    assert (workdir / name).is_file()


@pytest.mark.slow
def test_each_group_descends_its_own_loss():
  config = tiny_mechanism_config(adversarial=True)
  model, params = fit.build(config, 0)
  params["image"] = jax.tree.map(lambda x: x + 0.1, params["image"])
  ds = fit.load_split(config, "train", 8)
  batch = {k: ds[k] for k in ds}
  key = jax.random.key(0)
  grads, _, metrics = model.stage_gradients(params, 1)(params, batch, key)
  sq = lambda p: model.stage_losses(p, batch, key, 1)[0]["w_loss"]
  ref = jax.grad(sq)(params)
  np.testing.assert_allclose(grads["image"]["w"], ref["image"]["w"],
                             rtol=1e-6)
  # b_loss = -w_loss, so b's gradient is the opposite of w_loss's.
  np.testing.assert_allclose(grads["image"]["b"], -ref["image"]["b"],
                             rtol=1e-6)
  for part in ("ncm", "reader"):  # frozen after the first stage
    assert all(not np.any(g) for g in jax.tree.leaves(grads[part]))
  assert {"loss_w_loss", "loss_b_loss"} <= set(metrics)


def test_unknown_kind_is_one_line():
  config = tiny_config()
  config.model.image.kind = "nope"
  with pytest.raises(MechanismError, match="unknown image mechanism kind "
                     "'nope'.*known: vae"):
    fit.model_of(config)


def test_abduction_gets_the_predictions_sampler_settings(tmp_path):
  # Tiny abducts u / temperature, so an inversion under the settings of the
  # prediction that uses it is exact, whatever the temperature.
  config = tiny_mechanism_config()
  model, params = fit.build(config, jax.random.key(0))
  ds = fit.load_split(config, "train", 8)
  labels = {k: ds[k] for k in model.order}
  for temperature in (0.5, 2.0):
    settings = {"temperature": temperature}
    u = model.abduct_image(params, ds["image"], labels, jax.random.key(1),
                           sampler=settings)
    out = model.predict_image(params, labels, u, jax.random.key(2), settings)
    diff = np.abs(np.round(np.asarray(out) * 255) - ds["image"])
    assert diff.max() <= 1


@pytest.mark.slow
def test_context_intervenes_on_one_feature_per_row():
  # Backdoor diagram D <-> C; D -> B; C -> B: a row's intervened feature may
  # move its descendants only, and score() is the frozen reader's NLL.
  config = tiny_config()
  model, params = fit.build(config, jax.random.key(0))
  ds = fit.load_split(config, "train", 48)
  v = {k: jnp.asarray(ds[k]) for k in model.order}
  new_cond, score = model.context(params, v).counterfactual(
      jax.random.key(3))
  cond = model.encode(v)
  widths = [model.features[k].width for k in model.order]
  starts = np.cumsum([0] + widths)

  def value(c, k):
    i = model.order.index(k)
    return np.asarray(c[:, starts[i]:starts[i + 1]]).argmax(-1)

  moved_any = set()
  for r in range(48):
    target = model.order[r % len(model.order)]
    reach = {target} | set(model.graph.descendants(target))
    for k in model.order:
      if value(new_cond, k)[r] != value(cond, k)[r]:
        assert k in reach, (r, target, k)
        moved_any.add(k)
  assert moved_any == set(model.order)  # every feature was intervened on
  # score() is -log h(v' | i) of the frozen reader, per image.
  new = {k: jnp.asarray(value(new_cond, k)) for k in model.order}
  heads = model._split_heads(model.reader_module(params)(ds["image"] / 255.))
  want = -sum(model.features[k].log_prob(heads[k], new[k])
              for k in model.order)
  np.testing.assert_allclose(score(ds["image"] / 255.), want, rtol=1e-5)


@pytest.mark.slow
def test_a_first_group_with_its_own_optimizer_leaves_the_features_theirs():
  # The image group trains with SGD(0.5); the NCM and reader keep the run's
  # optimizer in a "features" group, each from its own loss.
  config = tiny_mechanism_config()
  config.model.image.tiny.own_optimizer = True
  model, params = fit.build(config, jax.random.key(0))
  labels = model.param_labels(params)
  assert set(jax.tree.leaves(labels["ncm"])) == {"features"}
  assert set(jax.tree.leaves(labels["reader"])) == {"features"}
  assert set(jax.tree.leaves(labels["image"])) == {"loss"}
  ds = fit.load_split(config, "train", 16)
  grads, _, metrics = model.stage_gradients(params)(params, ds,
                                                    jax.random.key(1))
  assert {"loss_loss", "loss_features"} <= set(metrics)
  assert all(np.abs(g).sum() > 0 for g in jax.tree.leaves(grads["ncm"]))
  # The image's update is SGD(0.5) of its own loss's gradient.
  opt = model.stage_optimizer(params, 0, config.train)
  updates, _ = opt.update(grads, opt.init(params), params)
  np.testing.assert_allclose(updates["image"]["w"].value,
                             -0.5 * grads["image"]["w"].value, rtol=1e-6)


# Every registered family at CelebA's size (64x64x3): the CPU network (its
# default config) trains and edits there, and the papers' CelebA networks
# (`accelerator_config((64, 64, 3))`) build there.

KINDS = ("vae", "hvae", "gan", "ddpm", "vae_ddpm")
CELEBA = (64, 64, 3)
COND = 4  # celeba/simple: Smiling and Eyeglasses, one-hot each


def celeba_config(kind, source):
  """The CPU ANCM config on celeba/simple with image mechanism `kind`, its
  network the family's default; the feature model shrunk. Building reads
  nothing from the download folder `source`."""
  config = ancm.get_config()
  config.data.name = "celeba/simple"
  config.data.source = str(source)
  config.model.image.kind = kind
  config.model.ncm_hidden = (16,)
  config.model.num_particles = 16
  config.model.likelihood_particles = 8
  return config


def shapes(tree):
  """{parameter path: shape} of a params tree (arrays or abstract)."""
  return {mechanisms.path_names(p): tuple(x.shape) for p, x in
          jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_shapes(got, want):
  """Each path of `want` has its shape in `got` (None: is absent)."""
  for path, shape in want.items():
    assert got.get(path) == shape, (path, got.get(path), shape)


# What the image side derives in each family's CPU network at 64x64.
CPU_AT_64 = {
    # The decoder starts from an 8x8x32 map (4x4 at 32x32).
    "vae": {("decoder", "dense2", "kernel"): (128, 8 * 8 * 32)},
    # (32, 16, 8, 4, 1) gains a 64x64 level, a copy of the 32x32 one.
    "hvae": {("decoder", "bias", "64"): (1, 64, 64, 8),
             ("decoder", "bias", "32"): (1, 32, 32, 8)},
    # Three 2x transposed convs from an 8x8 map.
    "gan": {("generator", "dense", "kernel"): (32 + COND, 8 * 8 * 64),
            ("encoder", "hidden", "kernel"): (8 * 8 * 128, 512)},
    "ddpm": {},
    "vae_ddpm": {("vae", "decoder", "dense2", "kernel"): (128, 8 * 8 * 32)},
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_family_trains_and_edits_celeba_sized_images(kind, tmp_path):
  config = celeba_config(kind, tmp_path)
  model, params = fit.build(config, jax.random.key(0))
  assert model.image_shape == CELEBA
  assert_shapes(shapes(params["image"]), CPU_AT_64[kind])
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (4,) + CELEBA, dtype=np.uint8)}
  batch.update({k: rng.integers(0, 2, 4).astype(model.features[k].dtype)
                for k in model.order})
  # One optimizer step of every stage, as the training loop takes it.
  for stage in range(len(model.stages)):
    task = fit.make_task(config, model, None, stage=stage,
                         init_params=params)
    step = train.make_train_step(task.loss, task.optimizer,
                                 grads_fn=task.grads, loss_takes_step=True)
    state = train.create_train_state(jax.random.key(1), task.init,
                                     task.optimizer)
    before = flat(state.params["image"])
    state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"])), model.stages[stage].name
    assert np.isfinite(float(metrics["grad_norm"])), model.stages[stage].name
    params = jax.device_get(state.params)
    after = flat(params["image"])
    assert all(np.isfinite(x).all() for x in after.values())
    assert any(not np.array_equal(before[k], after[k]) for k in before)
  # Abduction of the images, prediction under flipped Smiling.
  sampler = {"steps": 2} if "steps" in dict(model.sampler) else None
  labels = {k: batch[k] for k in model.order}
  u = model.abduct_image(params, batch["image"], labels, jax.random.key(2),
                         sampler)
  assert all(x.shape[0] == 4 for x in jax.tree.leaves(u))
  new = {**labels, "Smiling": 1 - labels["Smiling"]}
  out = np.asarray(model.predict_image(params, new, u, jax.random.key(3),
                                       sampler))
  assert out.shape == (4,) + CELEBA
  assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


# What the papers' CelebA networks fix, by parameter path: Melistas et
# al.'s VAE (Tables 9-10), HVAE (A.3: 4 stochastic blocks at each of the
# resolutions 1 ... 64, widths 1024 ... 32, latents of 16 channels) and GAN
# widths (Tables 14-16); None: no such parameter.
CELEBA_VAE = {
    ("encoder", "convs", "0", "kernel"): (3, 3, 3, 32),
    ("encoder", "convs", "3", "kernel"): (3, 3, 128, 256),
    ("encoder", "convs", "4", "kernel"): (1, 1, 256, 256),
    ("encoder", "dense1", "kernel"): (4 * 4 * 256, 256),
    ("encoder", "dense2", "kernel"): (256 + COND, 256),
    ("encoder", "head", "kernel"): (256, 2 * 16),
    ("decoder", "dense1", "kernel"): (16 + COND, 256),
    ("decoder", "dense2", "kernel"): (256, 4096),
    ("decoder", "convs", "0", "kernel"): (3, 3, 256, 256),
    ("decoder", "convs", "3", "kernel"): (3, 3, 64, 32),
    ("decoder", "convs", "4", "kernel"): (3, 3, 32, 16),
    ("decoder", "convs", "5", "kernel"): None,
}
CELEBA_ACCEL = {
    "vae": CELEBA_VAE,
    "hvae": {
        ("encoder", "stem", "kernel"): (7, 7, 3, 32),
        ("decoder", "bias", "1"): (1, 1, 1, 1024),
        ("decoder", "bias", "4"): (1, 4, 4, 512),
        ("decoder", "bias", "64"): (1, 64, 64, 32),
        ("decoder", "layers", "0", "z_proj", "kernel"): (1, 1, 16, 1024),
        ("decoder", "layers", "23", "z_proj", "kernel"): (1, 1, 16, 32),
        ("decoder", "layers", "24", "z_proj", "kernel"): None,
    },
    "gan": {
        ("encoder", "convs", "3", "kernel"): (4, 4, 256, 256),
        ("encoder", "convs", "4", "kernel"): None,
        ("encoder", "hidden", "kernel"): (4 * 4 * 256, 512),
        ("encoder", "head", "kernel"): (512, 512),
        ("generator", "dense", "kernel"): (512 + COND, 4 * 4 * 512),
        ("generator", "convs", "1", "kernel"): (4, 4, 256, 256),
        ("generator", "convs", "3", "kernel"): (4, 4, 128, 64),
        ("discriminator", "convs", "4", "kernel"): (4, 4, 256, 1024),
        ("discriminator", "z2", "kernel"): (1024, 1024),
        ("discriminator", "joint", "kernel"): (2 * 2 * 1024 + 1024, 2048),
    },
    "ddpm": {},
    "vae_ddpm": {("vae",) + k: v for k, v in CELEBA_VAE.items()},
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_accelerator_networks_at_64x64_are_the_papers_celeba_ones(
    kind, tmp_path):
  config = celeba_config(kind, tmp_path)
  config.model.image[kind] = mechanisms.family(kind).accelerator_config(
      CELEBA)
  box = []
  sampler = {"steps": 1} if "steps" in mechanisms.family(kind).SAMPLER else {}

  def init():  # traced by eval_shape: nothing is computed
    model, params = fit.build(config, jax.random.key(0))
    box.append(model)
    image = model.image_module(params)
    drawn = image.predict(jnp.zeros((2, COND)), image.prior(
        jax.random.key(1), 2), jax.random.key(2), **sampler)
    return params, drawn

  params, drawn = jax.eval_shape(init)
  assert box[0].image_shape == CELEBA and drawn.shape == (2,) + CELEBA
  got = shapes(params["image"])
  assert_shapes(got, CELEBA_ACCEL[kind])
  if kind in ("ddpm", "vae_ddpm"):  # Sardesai's U-Net, about 100M
    unet = sum(int(np.prod(s)) for p, s in got.items() if "unet" in p)
    assert 95e6 < unet < 110e6, unet


def test_accelerator_config_at_32x32_is_the_one_without_a_shape():
  for kind in KINDS:
    family = mechanisms.family(kind)
    for shape in ((32, 32, 3), (32, 32, 1)):
      assert (family.accelerator_config(shape).to_dict()
              == family.accelerator_config().to_dict()), (kind, shape)


def test_hvae_levels_fit_the_image_side():
  arch = ((32, 16, 8, 4, 1), (8, 16, 32, 64, 64), (1, 1, 2, 2, 1))
  assert fit_to_image(32, *arch) == arch
  assert fit_to_image(128, *arch) == (
      (128, 64, 32, 16, 8, 4, 1), (8, 8, 8, 16, 32, 64, 64),
      (1, 1, 1, 1, 2, 2, 1))
  # Not a power of two above the first level: left for check_arch.
  assert fit_to_image(48, *arch) == arch


def test_vae_that_cannot_reach_the_image_size_is_one_line():
  settings = mechanisms.family("vae").default_config()
  with pytest.raises(MechanismError, match=r"model.image.vae: base \(3, 3, "
                     r"32\) with 3 2x upsamplings does not reach image size "
                     "28x28"):
    jax.eval_shape(lambda: nnx.split(mechanisms.family("vae").create(
        (28, 28, 1), 2, settings, rngs=nnx.Rngs(0)))[1])
