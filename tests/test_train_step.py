"""Pure train/eval steps: data parallel on 2 fake devices, compiled once,
nnx modules behind pure functions."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from ctfjax.train import example, sharding
from ctfjax.train.state import PureModule, create_train_state, make_optimizer
from ctfjax.errors import UserError
from ctfjax.train.config import microbatches_of
from ctfjax.train.step import accumulate, make_eval_step, make_train_step


def _mesh(n):
  return sharding.make_mesh(ml_collections.ConfigDict({"data": n}))


def _init(mesh, *args, **kwargs):
  # Created on the mesh, as the loop does: its type then matches the step's
  # output and the step is traced once.
  return jax.jit(lambda: create_train_state(*args, **kwargs),
                 out_shardings=sharding.replicated(mesh))()


def _train(task, config, mesh, steps):
  optimizer = make_optimizer(config.train)
  state = _init(mesh, jax.random.key(0), task.init, optimizer)
  step_fn = make_train_step(task.loss, optimizer, mesh=mesh)
  batches = task.train_batches(0)
  history = []
  for _ in range(steps):
    batch = sharding.shard_batch(next(batches), mesh)
    state, metrics = step_fn(state, batch)
    history.append(float(metrics["loss"]))
  return state, batch, history


@pytest.mark.slow
def test_two_devices_train_like_one():
  assert jax.device_count() == 2  # Set up by tests/conftest.py.
  config = example.get_config()
  task = example.make_task(config)
  state1, _, loss1 = _train(task, config, _mesh(1), steps=5)
  state2, batch2, loss2 = _train(task, config, _mesh(2), steps=5)
  # The batch really is split and the params really are copied.
  assert batch2["x"].sharding.num_devices == 2
  assert batch2["x"].addressable_shards[0].data.shape[0] == (
      config.train.batch_size // 2)
  leaf = jax.tree.leaves(state2.params)[0]
  assert leaf.sharding.is_fully_replicated and leaf.sharding.num_devices == 2
  # Same maths; only the order of the cross-device sums may differ.
  np.testing.assert_allclose(loss1, loss2, rtol=1e-5)
  chex.assert_trees_all_close(jax.device_get(state1.params),
                              jax.device_get(state2.params),
                              rtol=1e-5, atol=1e-6)
  assert int(state2.step) == 5
  assert loss2[-1] < loss2[0]


def test_microbatches_average_to_the_whole_batch_gradient_on_two_devices():
  # A mean-over-examples loss: the mean of the slices' gradients is the
  # gradient of the whole batch (the independent computation: jax.grad of
  # the one-pass loss). Each slice is interleaved across both devices.
  config = example.get_config()
  task = example.make_task(config)
  mesh = _mesh(2)
  optimizer = make_optimizer(config.train)
  batch = sharding.shard_batch(next(task.train_batches(0)), mesh)
  states = {}
  for k in (1, 4):
    state = _init(mesh, jax.random.key(0), task.init, optimizer)
    step_fn = make_train_step(task.loss, optimizer, mesh=mesh, microbatches=k)
    for _ in range(3):
      state, metrics = step_fn(state, batch)
    states[k] = (jax.device_get(state.params), float(metrics["loss"]))
  chex.assert_trees_all_close(states[1][0], states[4][0], rtol=1e-5,
                              atol=1e-6)
  np.testing.assert_allclose(states[1][1], states[4][1], rtol=1e-5)
  # And the update really moved the parameters.
  start = jax.device_get(_init(mesh, jax.random.key(0), task.init,
                               optimizer).params)
  assert not np.allclose(jax.tree.leaves(start)[0],
                         jax.tree.leaves(states[4][0])[0])


def test_microbatch_slices_interleave_and_fold_their_keys():
  seen = []

  def grads_fn(params, batch, rng):
    seen.append((np.asarray(batch["i"]), rng))
    return params, batch["i"].mean(), {"n": jnp.float32(batch["i"].size)}

  rng = jax.random.key(5)
  _, loss, metrics = accumulate(grads_fn, 3)(
      {"w": jnp.ones(2)}, {"i": np.arange(6)}, rng)
  assert [list(b) for b, _ in seen] == [[0, 3], [1, 4], [2, 5]]
  for i, (_, key) in enumerate(seen):
    np.testing.assert_array_equal(
        jax.random.key_data(key),
        jax.random.key_data(jax.random.fold_in(rng, i)))
  assert float(loss) == 2.5 and float(metrics["n"]) == 2.0
  with pytest.raises(ValueError, match="3 equal microbatches"):
    accumulate(grads_fn, 3)({"w": jnp.ones(2)}, {"i": np.arange(7)}, rng)


def test_microbatch_update_is_the_mean_of_the_slices_gradients():
  # A loss that is not a mean over examples (the square of the batch's mean
  # residual), so the slices' mean gradient is not the whole batch's: the
  # update must be -lr times the mean of the interleaved slices' gradients.
  def loss_fn(params, batch, rng):
    del rng
    r = batch["x"] @ params["w"] - batch["y"]
    return jnp.mean(r) ** 2, {}

  rng = np.random.default_rng(0)
  batch = {"x": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32),
           "y": jnp.asarray(rng.normal(size=8), jnp.float32)}
  params = {"w": jnp.asarray([0.5, -1.0, 2.0])}
  lr = 0.1
  # (loss, grads) of one pass over the examples given.
  by_hand = jax.jit(lambda p, b: jax.value_and_grad(
      lambda q: loss_fn(q, b, None)[0])(p))
  for k in (2, 4):
    slices = [jax.tree.map(lambda x, i=i, k=k: x[i::k], batch)
              for i in range(k)]
    grads = [by_hand(params, s)[1]["w"] for s in slices]
    want = params["w"] - lr * np.mean(grads, axis=0)
    step_fn = make_train_step(loss_fn, optax.sgd(lr), microbatches=k)
    # A copy: the step donates the state's buffers.
    state = create_train_state(jax.random.key(0), lambda _: jax.tree.map(
        jnp.array, params), optax.sgd(lr))
    state, metrics = step_fn(state, batch)
    np.testing.assert_allclose(state.params["w"], want, rtol=1e-6)
    np.testing.assert_allclose(
        metrics["loss"], np.mean([by_hand(params, s)[0] for s in slices]),
        rtol=1e-6)
  # The slices really disagree with the whole batch (else the test could
  # not tell a mean over slices from one pass).
  whole = by_hand(params, batch)[1]["w"]
  assert np.abs(np.mean(grads, axis=0) - whole).max() > 0.1


@pytest.mark.parametrize("grad_clip", [0.0, 0.5])
def test_sgd_with_or_without_clipping_trains_alike_in_1_2_4_slices(
    grad_clip):
  # For a mean-over-examples loss, SGD (with momentum; unlike Adam it does
  # not rescale the gradient, so a sum of slices would show) and global-norm
  # clipping of the accumulated gradient give the same parameters whatever
  # the number of slices.
  def loss_fn(params, batch, rng):
    del rng
    return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2), {}

  rng = np.random.default_rng(1)
  batch = {"x": jnp.asarray(rng.normal(size=(16, 3)), jnp.float32),
           "y": jnp.asarray(rng.normal(size=16), jnp.float32)}
  train = example.get_config().train
  train.optimizer = "sgd"
  train.learning_rate = 0.1
  train.grad_clip = grad_clip
  optimizer = make_optimizer(train)
  start = jnp.asarray([1.0, -2.0, 3.0])
  params = {}
  for k in (1, 2, 4):
    state = create_train_state(jax.random.key(0), lambda _: {
        "w": jnp.array(start)}, optimizer)
    step_fn = make_train_step(loss_fn, optimizer, microbatches=k)
    for _ in range(3):
      state, metrics = step_fn(state, batch)
      if grad_clip and k == 1:  # the clip binds at every step
        assert float(metrics["grad_norm"]) > 2 * grad_clip
    params[k] = np.asarray(state.params["w"])
  for k in (2, 4):
    np.testing.assert_allclose(params[k], params[1], rtol=1e-5, atol=1e-6)
  assert np.abs(params[1] - start).max() > 0.1


@pytest.mark.parametrize("batch, devices, micro, want", [
    (64, 1, 0, 1), (64, 1, 16, 4), (64, 2, 16, 2), (16, 2, 16, 1),
    (64, 1, 64, 1), (64, 1, 128, 1)])
def test_microbatches_of_counts_slices_per_device(batch, devices, micro,
                                                  want):
  train = ml_collections.ConfigDict({"batch_size": batch,
                                     "microbatch": micro})
  assert microbatches_of(train, devices) == want


def test_a_microbatch_that_does_not_divide_the_batch_is_a_user_error():
  train = ml_collections.ConfigDict({"batch_size": 64, "microbatch": 24})
  with pytest.raises(UserError,
                     match=r"'train.microbatch' \(24\) must divide"):
    microbatches_of(train, 1)


def test_train_step_traces_once_and_folds_rng_from_step():
  seen = []

  @chex.assert_max_traces(n=1)
  def loss_fn(params, batch, rng):
    jax.debug.callback(lambda k: seen.append(np.asarray(k)),
                       jax.random.key_data(rng))
    return jnp.sum((params["w"] * batch) ** 2), {}

  optimizer = optax.sgd(0.1)
  mesh = _mesh(2)
  root = jax.random.key(3)
  state = _init(mesh, root, lambda k: {"w": jnp.ones(3)}, optimizer)
  step_fn = make_train_step(loss_fn, optimizer, mesh=mesh)
  for _ in range(4):
    state, metrics = step_fn(state, sharding.shard_batch(np.ones((4, 3)), mesh))
  jax.effects_barrier()
  assert set(metrics) == {"loss", "grad_norm"}
  train_root = jax.random.fold_in(root, 1)  # stream_key(root, "train")
  expected = [jax.random.key_data(jax.random.fold_in(train_root, s))
              for s in range(4)]
  np.testing.assert_array_equal(np.stack(seen), np.stack(expected))


def test_loss_can_take_the_step_for_schedules():
  def loss_fn(params, batch, rng, step):
    del rng
    beta = jnp.minimum(1.0, step / 2)  # A warm-up over two steps.
    return beta * jnp.sum(params["w"] * batch), {"beta": beta}

  optimizer = optax.sgd(1.0)
  state = _init(_mesh(1), jax.random.key(0), lambda k: {"w": jnp.zeros(2)},
                optimizer)
  step_fn = make_train_step(loss_fn, optimizer, loss_takes_step=True)
  betas = []
  for _ in range(3):
    state, metrics = step_fn(state, jnp.ones((1, 2)))
    betas.append(float(metrics["beta"]))
  assert betas == [0.0, 0.5, 1.0]
  np.testing.assert_allclose(state.params["w"], [-1.5, -1.5])


def test_update_extra_keeps_an_ema_and_eval_can_read_it():
  optimizer = optax.sgd(1.0)
  loss_fn = lambda p, b, r: (jnp.sum(p["w"] * b), {})  # grad = batch sum
  # The EMA starts as the params themselves: two outputs of one value must
  # still be separate buffers, or donating the state would fail.
  state = _init(_mesh(1), jax.random.key(0), lambda k: {"w": jnp.zeros(2)},
                optimizer, init_extra=lambda p: {"ema": p})
  step_fn = make_train_step(
      loss_fn, optimizer,
      update_extra=lambda e, p, s: {"ema": jax.tree.map(
          lambda a, b: 0.5 * a + 0.5 * b, e["ema"], p)})
  eval_fn = make_eval_step(lambda p, b, r: {"w0": p["w"][0]},
                           params_of=lambda s: s.extra["ema"])
  state, _ = step_fn(state, jnp.ones((1, 2)))  # w = -1, ema = -0.5
  state, _ = step_fn(state, jnp.ones((1, 2)))  # w = -2, ema = -1.25
  assert float(eval_fn(state, jnp.ones((1, 2)), np.int32(0))["w0"]) == -1.25


def test_eval_rng_depends_on_batch_index_not_train_step():
  draw = lambda p, b, r: {"u": jax.random.uniform(r)}
  eval_fn = make_eval_step(draw, mesh=_mesh(2))
  optimizer = optax.sgd(0.1)
  state = _init(_mesh(2), jax.random.key(0), lambda k: {}, optimizer)
  batch = sharding.shard_batch(np.zeros((2, 1)), _mesh(2))
  later = state.replace(step=state.step + 7)
  first = float(eval_fn(state, batch, np.int32(0))["u"])
  assert float(eval_fn(later, batch, np.int32(0))["u"]) == first
  assert float(eval_fn(state, batch, np.int32(1))["u"]) != first


class _Net(nnx.Module):

  def __init__(self, rngs):
    self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs),
                            nnx.Linear(4, 2, rngs=rngs)])
    self.drop = nnx.Dropout(0.5, rngs=rngs)

  def __call__(self, x, rngs=None):
    x = self.drop(jnp.tanh(self.layers[0](x)), rngs=rngs,
                  deterministic=rngs is None)
    return self.layers[1](x)

  def width(self):
    return self.layers[0].kernel.shape[1]


@pytest.mark.slow
def test_pure_module_matches_the_module_and_is_pure():
  pm = PureModule(_Net)
  params = pm.init(jax.random.key(1))
  # A plain dict of arrays: what the optimizer and orbax see.
  assert set(params) == {"layers"}
  assert params["layers"][0]["kernel"].shape == (3, 4)
  module = _Net(nnx.Rngs(1))
  x = jnp.ones((5, 3))
  np.testing.assert_allclose(pm.apply(params, x), module(x), rtol=1e-6)
  assert pm.apply(params, method="width") == 4

  @jax.jit
  def f(params, rng):
    return pm.apply(params, x, rngs=nnx.Rngs(dropout=rng))

  a = f(params, jax.random.key(0))
  np.testing.assert_array_equal(a, f(params, jax.random.key(0)))
  assert not np.allclose(a, f(params, jax.random.key(1)))
  grads = jax.grad(lambda p: jnp.sum(pm.apply(p, x)))(params)
  assert jax.tree.structure(grads) == jax.tree.structure(params)
