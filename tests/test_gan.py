"""The conditional GAN image mechanism with an encoder and cyclic fine-tuning.

Losses against a hand-computed cross-entropy, each parameter group moved by
its own loss and optimizer, the cyclic stage (encoder only, lower
reconstruction L1), fixed-seed reproducibility, both losses on the progress
bar, and the stops of a diverging run (NaN, discriminator collapse) with
the last good checkpoint intact - all through the unchanged ANCM.
"""

import dataclasses
import io
import shutil
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.ancm.model import to_uint8
from ctfjax.mechanisms import gan
from ctfjax.mechanisms.base import MechanismError
from ctfjax.train import Checkpoints, TrainingDivergedError, apply_overrides
from ctfjax.train import example, read_metrics
from configs import ancm_gan_colored_mnist_backdoor
from configs import deepscm_gan_morpho_mnist
import comparisons
import test_ancm

GAN_STEPS = 24  # enough for G to depend on z at the tiny size
CYCLIC_STEPS = 30


def tiny_config(finetune_steps=0):
  """The Colored MNIST GAN-ANCM shrunk to seconds of CPU."""
  config = test_ancm.tiny_config(ancm_gan_colored_mnist_backdoor.get_config())
  g = config.model.image.gan
  g.latent_dim = 4
  g.encoder_convs = (8, 8)
  g.encoder_hidden = 8
  g.generator_base = 8
  g.generator_convs = (8, 8)
  g.discriminator_convs = (8, 8)
  g.z_hidden = 16
  g.joint_hidden = 16
  g.learning_rate = 2e-3
  g.finetune_steps = finetune_steps
  g.finetune_learning_rate = 3e-3  # its cosine decay halves the mean rate
  g.latent_weight = 1.0  # all three cyclic terms, so the tests see each
  g.embed_weight = 1.0
  g.collapse_loss = 0.0
  config.train.steps = 2
  config.train.log_every = 1
  config.train.eval_every = 2
  config.ckpt.every = 2
  return config


pytestmark = pytest.mark.usefixtures("xla_cache_dir")


def _params_of(workdir, config, stage):
  model = fit.model_of(config)
  state = train.load_state(
      fit.stage_config(config, model, stage),
      fit.stage_dir(workdir, model, stage),
      fit.make_task(config, model, None, stage=stage))
  return jax.device_get(state.params)


def _leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


class _TTY(io.StringIO):
  """A stderr the loop takes for a terminal, so its progress bar shows."""

  def isatty(self):
    return True


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The same two-stage config trained twice; the second with the bar."""
  config = tiny_config(finetune_steps=CYCLIC_STEPS)
  # The cyclic test needs a G whose image depends on z after GAN_STEPS
  # steps; the pixel-normed tiny G's barely does (3/255 mean L1 between
  # G(z) and G(E(G(z))) before any fine-tuning), so these runs leave the
  # norm out (test_pixel_norm_gives_each_position_unit_rms covers it).
  config.model.image.gan.pixel_norm = False
  config.train.steps = GAN_STEPS
  config.train.log_every = 4
  config.train.eval_every = GAN_STEPS
  config.ckpt.every = 12
  first = tmp_path_factory.mktemp("gan_a")
  fit.train_and_evaluate(config, first)
  second = tmp_path_factory.mktemp("gan_b")
  config_bar = config.copy_and_resolve_references()
  config_bar.train.progress = True
  old, sys.stderr = sys.stderr, _TTY()
  try:
    fit.train_and_evaluate(config_bar, second)
    bar = sys.stderr.getvalue()
  finally:
    sys.stderr = old
  return config, first, second, bar


def test_losses_are_the_hand_computed_cross_entropy():
  logits = np.linspace(-20.0, 20.0, 9)
  p = 1.0 / (1.0 + np.exp(-logits))  # float64 by hand
  real, fake = logits, logits[::-1]
  p_real, p_fake = p, p[::-1]
  np.testing.assert_allclose(
      gan.discriminator_loss(jnp.asarray(real, jnp.float32),
                             jnp.asarray(fake, jnp.float32)),
      -np.log(p_real) - np.log(1 - p_fake), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      gan.generator_loss(jnp.asarray(real, jnp.float32),
                         jnp.asarray(fake, jnp.float32)),
      -np.log(p_fake) - np.log(1 - p_real), rtol=1e-5, atol=1e-6)
  # Softplus form: finite where sigmoid saturates in float32.
  big = jnp.asarray([1e4, -1e4], jnp.float32)
  assert np.all(np.isfinite(gan.discriminator_loss(big, -big)))
  np.testing.assert_allclose(gan.discriminator_loss(big, -big), [0.0, 2e4])


def _build(config):
  """(model, params): `fit.build` with the init compiled (an eager
  build runs op by op, seconds on CPU)."""
  model = fit.model_of(config)
  params = jax.jit(lambda k: fit.build(config, k)[1])(
      jax.random.key(0))
  return model, params


def test_dropout_keeps_the_mean_and_drops_its_rate():
  x = jnp.ones((200_000,))
  out = np.asarray(gan.dropout(x, 0.3, jax.random.key(0)))
  assert set(np.unique(out)) == {0.0, np.float32(1 / 0.7)}
  assert abs((out == 0).mean() - 0.3) < 0.005  # sd 0.001
  assert abs(out.mean() - 1.0) < 0.01
  # Off without a key or at rate 0.
  np.testing.assert_array_equal(gan.dropout(x, 0.3, None), x)
  np.testing.assert_array_equal(gan.dropout(x, 0.0, jax.random.key(0)), x)


@pytest.mark.slow
def test_discriminator_drops_out_only_when_given_a_key():
  config = tiny_config().model.image.gan
  assert config.discriminator_dropout > 0
  g = gan.GAN.create((32, 32, 3), 6, config, rngs=nnx.Rngs(0))
  images = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3))
  z = jax.random.normal(jax.random.key(2), (4, 4))
  cond = jax.random.normal(jax.random.key(3), (4, 6))
  d = g.discriminator
  plain = d(images, z, cond)
  np.testing.assert_array_equal(plain, d(images, z, cond))
  a = d(images, z, cond, jax.random.key(4))
  assert not np.allclose(a, plain)
  assert not np.allclose(a, d(images, z, cond, jax.random.key(5)))
  np.testing.assert_array_equal(a, d(images, z, cond, jax.random.key(4)))


def test_a_dropout_rate_outside_0_1_is_a_one_line_config_error():
  config = tiny_config().model.image.gan
  for rate in (1.0, -0.1):
    config.discriminator_dropout = rate
    with pytest.raises(MechanismError) as info:
      gan.GAN.create((32, 32, 3), 6, config, rngs=nnx.Rngs(0))
    assert str(info.value) == (
        "model.image.gan.discriminator_dropout must be in [0, 1), got "
        f"{rate}")


@pytest.mark.slow
def test_pixel_norm_gives_each_position_unit_rms():
  x = np.random.RandomState(0).normal(size=(2, 3, 3, 5)) * [1, 10, 0.1, 3, 7]
  x = x.astype(np.float32)
  out = np.asarray(gan.pixel_norm(jnp.asarray(x)))
  by_hand = x / np.sqrt(np.mean(np.float64(x) ** 2, -1, keepdims=True))
  np.testing.assert_allclose(out, by_hand, rtol=1e-5)
  # The generator applies it after each hidden layer when asked: at
  # initialisation (zero biases, LReLU positively homogeneous) its image is
  # then the same for z and 1000 z; without it the sigmoid saturates.
  config = tiny_config().model.image.gan
  cond = jnp.zeros((3, 6))
  z = jax.random.normal(jax.random.key(0), (3, 4))
  g = gan.GAN.create((32, 32, 3), 6, config, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(g.generator(z, cond),
                             g.generator(1000.0 * z, cond), atol=1e-5)
  assert not np.allclose(g.generator(z, cond), g.generator(-z, cond))
  config.pixel_norm = False
  g = gan.GAN.create((32, 32, 3), 6, config, rngs=nnx.Rngs(0))
  assert not np.allclose(g.generator(z, cond),
                         g.generator(1000.0 * z, cond), atol=1e-3)


@pytest.mark.slow
def test_mechanism_loss_is_the_cross_entropy_of_its_discriminator():
  config = tiny_config().model.image.gan
  create = lambda: gan.GAN.create((32, 32, 3), 6, config, rngs=nnx.Rngs(0))
  graph, _ = nnx.split(nnx.eval_shape(create))
  state = jax.jit(lambda: nnx.split(create())[1])()  # not op by op
  images = jax.random.uniform(jax.random.key(1), (8, 32, 32, 3))
  cond = jax.random.normal(jax.random.key(2), (8, 6))
  rng = jax.random.key(3)

  @jax.jit
  def forward(p):
    g = nnx.merge(graph, p)
    losses, metrics = g.loss(images, cond, rng, gan.GAN_STAGE, None)
    # The pairs the loss must score, by hand, each through its own
    # dropout draw.
    z = jax.random.normal(rng, (8, 4))
    drop_real, drop_fake = jax.random.split(jax.random.fold_in(rng, 1))
    real = g.discriminator(images, g.encoder(images, cond), cond, drop_real)
    fake = g.discriminator(g.generator(z, cond), z, cond, drop_fake)
    return losses, metrics, real, fake

  losses, metrics, real, fake = forward(state)
  real, fake = np.float64(real), np.float64(fake)
  sig = lambda x: 1.0 / (1.0 + np.exp(-x))
  d_ref = -np.log(sig(real)) - np.log(1.0 - sig(fake))
  g_ref = -np.log(sig(fake)) - np.log(1.0 - sig(real))
  dims = 32 * 32 * 3  # the ANCM divides by it
  np.testing.assert_allclose(losses["discriminator"] / dims, d_ref,
                             rtol=1e-5)
  np.testing.assert_allclose(losses["generator"] / dims, g_ref, rtol=1e-5)
  np.testing.assert_allclose(metrics["d_real"], sig(real), rtol=1e-5)


@pytest.mark.slow
def test_one_step_moves_each_group_by_its_own_loss_and_optimizer():
  config = tiny_config()
  model, params = _build(config)
  ds = fit.load_split(config, "train", 16)
  batch = {k: ds[k] for k in ds}
  rng = jax.random.key(1)
  task = fit.make_task(config, model, ds, stage=0,
                              init_params=params)

  @jax.jit
  def step(p):
    grads, _, metrics = task.grads(p, batch, rng)
    updates, _ = task.optimizer.update(grads, task.optimizer.init(p), p)
    # Independently: each group's loss differentiated on its own.
    refs = [jax.grad(lambda q, n=n: model.stage_losses(q, batch, rng, 0)[0][n])(
        p) for n in ("generator", "discriminator")]
    return grads, metrics, optax.apply_updates(p, updates), refs

  grads, metrics, new, (g_gen, g_dis) = step(params)
  assert {"loss_generator", "loss_discriminator",
          "loss_features"} <= set(metrics)
  adam = optax.adam(config.model.image.gan.learning_rate, b1=0.5, b2=0.999)
  for part, ref in (("generator", g_gen), ("encoder", g_gen),
                    ("discriminator", g_dis)):
    ref = ref["image"][part]
    for got, want in zip(jax.tree.leaves(grads["image"][part]),
                         jax.tree.leaves(ref), strict=True):
      np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-8)
    step, _ = adam.update(ref, adam.init(params["image"][part]))
    expected = optax.apply_updates(params["image"][part], step)
    for got, want in zip(jax.tree.leaves(new["image"][part]),
                         jax.tree.leaves(expected), strict=True):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  # The other group's loss gives a different direction: the test would
  # notice a swap.
  other = jax.tree.leaves(g_gen["image"]["discriminator"])
  mine = jax.tree.leaves(grads["image"]["discriminator"])
  assert not all(np.allclose(a, b) for a, b in zip(mine, other, strict=True))
  # The NCM and reader train too, in their own group.
  for part in ("ncm", "reader"):
    assert not _leaves_equal(new[part], params[part])


def test_stages_and_guard_from_config():
  config = deepscm_gan_morpho_mnist.get_config()
  model = fit.model_of(config)
  assert [s.name for s in model.stages] == ["gan", "cyclic"]
  assert [g.name for g in model.stages[0].groups] == ["generator",
                                                      "discriminator"]
  with config.unlocked():
    config.model.image.gan.finetune_steps = 0
    config.model.image.gan.collapse_loss = 0.0
  model = fit.model_of(config)
  assert [s.name for s in model.stages] == ["gan"]
  assert model.stages[0].guard is None
  guard = gan.collapse_guard(0.01)
  assert guard({"loss_discriminator": 0.5}) is None
  assert "discriminator collapse" in guard({"loss_discriminator": 0.001})


def test_cyclic_stage_decays_its_learning_rate_along_a_cosine():
  """With a constant gradient, Adam's update is -lr(t) (m / sqrt(v) = 1):
  the cyclic group's steps follow lr0 (1 + cos(pi t / T)) / 2."""
  config = deepscm_gan_morpho_mnist.get_config()
  with config.unlocked():
    config.model.image.gan.finetune_steps = 8
    config.model.image.gan.finetune_learning_rate = 1e-3
  stage = gan.GAN.stages(config.model.image.gan, 10)[1]
  assert [g.name for g in stage.groups] == ["cyclic"]
  opt = stage.groups[0].optimizer(config.train)
  params = jnp.zeros(3)
  state = opt.init(params)
  got = []
  for _ in range(8):
    updates, state = opt.update(jnp.ones(3), state, params)
    got.append(float(updates[0]))
  want = [-1e-3 * (1 + np.cos(np.pi * t / 8)) / 2 for t in range(8)]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


@pytest.mark.slow
def test_encoder_hidden_layer_from_config():
  config = deepscm_gan_morpho_mnist.get_config().model.image.gan
  with config.unlocked():
    config.encoder_hidden = 0
  bare = gan.GAN.create((32, 32, 1), 5, config, rngs=nnx.Rngs(0))
  assert bare.encoder.hidden is None
  with config.unlocked():
    config.encoder_hidden = 24
  deep = gan.GAN.create((32, 32, 1), 5, config, rngs=nnx.Rngs(0))
  assert deep.encoder.hidden.kernel.get_value().shape[-1] == 24
  x, cond = jnp.ones((2, 32, 32, 1)), jnp.zeros((2, 5))
  assert deep.encoder(x, cond).shape == (2, config.latent_dim)
  # The embedding term needs the ANCM's frozen reader; without it the
  # cyclic loss says so instead of leaving the term out.
  with pytest.raises(ValueError, match="embedding term"):
    deep.loss(x, cond, jax.random.key(0), stage=gan.CYCLIC_STAGE)
  with config.unlocked():
    config.embed_weight = 0.0
  plain = gan.GAN.create((32, 32, 1), 5, config, rngs=nnx.Rngs(0))
  losses, metrics = plain.loss(x, cond, jax.random.key(0),
                               stage=gan.CYCLIC_STAGE)
  want = np.abs(np.asarray(x) - np.asarray(
      plain.predict(cond, plain.abduct(x, cond)))).reshape(2, -1).mean(-1)
  np.testing.assert_allclose(losses[gan.CYCLIC] / (32 * 32), want,
                             rtol=1e-5)


@pytest.mark.slow
def test_cyclic_stage_gradient_is_the_hand_written_loss_of_the_encoder():
  """Under the default cyclic weights (image L1 plus 0.1 times the frozen
  reader's embedding L1, no latent term), the gradient the cyclic stage
  gives the encoder is that of the loss written out by hand from the same
  networks; G, D and the rest get none."""
  config = tiny_config(finetune_steps=4)
  defaults = gan.GAN.default_config()
  with config.unlocked():
    config.model.image.gan.latent_weight = defaults.latent_weight
    config.model.image.gan.embed_weight = defaults.embed_weight
  model, params = _build(config)
  ds = fit.load_split(config, "train", 8)
  batch = {k: ds[k] for k in ds}
  task = fit.make_task(config, model, ds, stage=1, init_params=params)
  images = batch["image"].astype(np.float32) / 255.0
  cond = model.encode({k: batch[k] for k in model.order})

  def by_hand(encoder):
    m = model.image_module(
        {**params, "image": {**params["image"], "encoder": encoder}})
    recon = m.generator(m.encoder(images, cond), cond)
    reader = model.reader_module(params)
    image_l1 = jnp.abs(images - recon).reshape(8, -1).mean(-1)
    embed_l1 = jnp.abs(reader.features(images)
                       - reader.features(recon)).mean(-1)
    return (image_l1 + 0.1 * embed_l1).mean()

  @jax.jit
  def both(p):
    grads, _, _ = task.grads(p, batch, jax.random.key(1))
    return grads, jax.grad(by_hand)(p["image"]["encoder"])

  grads, want = both(params)
  got = grads["image"]["encoder"]
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
  # The encoder really moves, and nothing else does.
  assert optax.tree.norm(got) > 1e-3
  for part in ("generator", "discriminator"):
    assert optax.tree.norm(grads["image"][part]) == 0.0
  for part in ("ncm", "reader"):
    assert optax.tree.norm(grads[part]) == 0.0


@pytest.mark.slow
def test_a_fixed_seed_reproduces_the_run(runs):
  config, first, second, _ = runs
  for stage in (0, 1):
    assert _leaves_equal(_params_of(first, config, stage),
                         _params_of(second, config, stage))
  a = read_metrics(first / "metrics.jsonl")
  b = read_metrics(second / "metrics.jsonl")
  assert [r.get("train/loss") for r in a] == [r.get("train/loss") for r in b]


@pytest.mark.slow  # the `runs` fixture trains for a minute
def test_progress_bar_shows_both_losses(runs):
  *_, bar = runs
  assert "train/loss_generator" in bar
  assert "train/loss_discriminator" in bar
  assert "train/loss_cyclic" in bar


@pytest.mark.slow
def test_cyclic_stage_trains_only_the_encoder(runs):
  config, workdir, *_ = runs
  before = _params_of(workdir, config, 0)
  after = _params_of(workdir, config, 1)
  for part in ("ncm", "reader"):
    assert _leaves_equal(before[part], after[part])
  for part in ("generator", "discriminator"):
    assert _leaves_equal(before["image"][part], after["image"][part])
  assert not _leaves_equal(before["image"]["encoder"],
                           after["image"]["encoder"])
  logged = read_metrics(workdir / "stages/cyclic/metrics.jsonl")
  assert {"train/loss_cyclic", "train/recon_l1", "train/latent_l2",
          "train/embed_l1"} <= set(logged[-1])


@pytest.mark.slow
def test_cyclic_stage_lowers_reconstruction_l1(runs, tmp_path):
  """On images the trained generator can reproduce, x = G(z*, pa), the
  cyclic stage (all three terms) must teach E to invert G: the image L1
  of G(E(x, pa), pa) falls."""
  config, workdir, *_ = runs
  model = fit.model_of(config)
  params = _params_of(workdir, config, 0)
  g = model.image_module(params)
  ds = fit.load_split(config, "train", config.data.size)
  cond = model.encode({k: ds[k] for k in model.order})
  z = jax.random.normal(jax.random.key(7), (cond.shape[0], 4))
  ds["image"] = np.asarray(to_uint8(g.predict(cond, {"z": z})))
  images = ds["image"].astype(np.float32) / 255.0

  def recon_l1(p):
    m = model.image_module(p)
    return float(jnp.abs(m.predict(cond, m.abduct(images, cond))
                         - images).mean())

  task = fit.make_task(config, model, ds, stage=1,
                              init_params=params)
  result = train.train_and_evaluate(
      fit.stage_config(config, model, 1), tmp_path,
      dataclasses.replace(task, eval=None, eval_batches=None))
  after = jax.device_get(result.state.params)
  l1_before, l1_after = recon_l1(params), recon_l1(after)
  assert l1_after < 0.7 * l1_before, (l1_before, l1_after)


@pytest.mark.slow
def test_trains_and_edits_through_the_ancm(runs):
  config, workdir, *_ = runs
  _, model, params = fit.load(workdir)
  records = read_metrics(workdir / "metrics.jsonl")
  assert all(np.isfinite(r["train/faithful_nll"]) for r in records
             if "train/loss" in r)
  ds = fit.load_split(config, "test", 8)
  out = model.edit(params, ds["image"], {"C": 1}, jax.random.key(0),
                   num_samples=2)
  assert out["image"].shape == (8, 2, 32, 32, 3)
  assert out["image"].dtype == np.uint8
  assert np.all(np.asarray(out["C"]) == 1)
  # Prediction is deterministic in u: the same (v', u) gives the same image.
  v = {k: ds[k] for k in model.order}
  u = model.abduct_image(params, ds["image"], v, jax.random.key(1))
  assert u["z"].shape == (8, 4)
  a = model.predict_image(params, v, u, jax.random.key(2))
  b = model.predict_image(params, v, u, jax.random.key(3))
  np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_nan_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    runs, tmp_path):
  config, first, *_ = runs
  workdir = tmp_path / "run"
  shutil.copytree(first, workdir)
  good = _params_of(workdir, config, 0)
  bad = config.copy_and_resolve_references()
  bad.train.steps = GAN_STEPS + 4  # resume stage "gan" from its last step
  bad.train.learning_rate = 1e30  # the features group blows up
  with pytest.raises(TrainingDivergedError) as info:
    fit.train_and_evaluate(bad, workdir)
  message = str(info.value)
  # The update of step 25 makes the parameters huge; step 26's loss on
  # them is the first non-finite one.
  assert message.startswith(
      f"training diverged at step {GAN_STEPS + 2}:"), message
  ckpts = Checkpoints(workdir / "checkpoints", read_only=True)
  try:
    assert ckpts.latest_step() == GAN_STEPS
  finally:
    ckpts.close()
  restored = _params_of(workdir, bad, 0)
  assert _leaves_equal(restored, good)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored))


@pytest.mark.slow
def test_discriminator_collapse_stops_at_the_step_before_checkpointing(
    tmp_path):
  config = tiny_config()
  config.model.image.gan.collapse_loss = 1e9  # every window "collapses"
  with pytest.raises(TrainingDivergedError) as info:
    fit.train_and_evaluate(config, tmp_path)
  assert str(info.value).startswith(
      "training stopped at step 1: discriminator collapse: "
      "loss_discriminator = ")
  assert not list((tmp_path / "checkpoints").glob("*"))


def test_loop_guard_keeps_the_last_good_checkpoint(tmp_path):
  config = apply_overrides(example.get_config(), {
      "train.steps": 10, "train.log_every": 2, "train.eval_every": 0,
      "ckpt.every": 2, "train.progress": False})
  calls = []

  def guard(metrics):
    calls.append(metrics)
    return "too good" if len(calls) == 3 else None

  task = dataclasses.replace(example.make_task(config), guard=guard)
  with pytest.raises(TrainingDivergedError) as info:
    train.train_and_evaluate(config, tmp_path, task)
  assert str(info.value) == "training stopped at step 6: too good"
  assert "loss" in calls[0] and not any("/" in k for k in calls[0])
  ckpts = Checkpoints(tmp_path / "checkpoints", read_only=True)
  try:
    assert ckpts.latest_step() == 4
  finally:
    ckpts.close()


def test_gan_comparison_is_the_quickstart_model_with_another_mechanism():
  """configs/compare_gan_colored_mnist_backdoor.py compares like with like: its
  VAE-ANCM is the quickstart's model, and the GAN row changes only the image
  mechanism,
  at the CPU schedule of configs/deepscm_gan_morpho_mnist.py: as many
  adversarial steps as the VAE's, then the encoder's cyclic stage."""
  from configs import compare_gan_colored_mnist_backdoor as compare_gan
  from ctfjax.experiment import job

  config = compare_gan.get_config()
  plain = comparisons.quickstart_vae_of(config)
  gan = job.model_config(config, "ancm_gan")
  assert gan.model.image.kind == "gan"
  rest = lambda c: {k: v for k, v in c.model.to_dict().items()
                    if k != "image"}
  assert rest(gan) == rest(plain)
  assert gan.train.to_dict() == plain.train.to_dict()
  budget = ml_collections.ConfigDict()
  deepscm_gan_morpho_mnist.cpu_budget(budget)
  for key, value in budget.items():
    assert gan.model.image.gan[key] == value, key
  model = fit.model_of(gan)
  assert [(s.name, s.steps) for s in model.stages] == [
      ("gan", plain.train.steps), ("cyclic", budget.finetune_steps)]
