"""The image-mechanism seam: a second family, defined here, plugs in unchanged.

`Tiny` is a per-pixel logistic mechanism, I = sigmoid(W cond + b + u_I),
with an exact inverse as abduction, two training stages (everything, then
the bias alone), a sampler setting and no cheap faithfulness decode. It is
registered with one line and then trained, edited and evaluated by the
ANCM code that trains and edits the VAE.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from ctfjax import evaluate
from ctfjax import experiment
from ctfjax import mechanisms
from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.mechanisms import Group, MechanismError, Stage
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
  def create(cls, image_shape, cond_dim, config, *, rngs):
    return cls(image_shape, cond_dim, rngs=rngs,
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
