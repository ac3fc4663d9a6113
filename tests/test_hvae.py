"""The conditional HVAE image mechanism and its counterfactual fine-tuning."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from numpyro import distributions as dist

from ctfjax import mechanisms
from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.mechanisms import MechanismError, hvae
from ctfjax.nn import hierarchical
import comparisons
from test_ancm import tiny_config

SHAPE = (32, 32, 3)
COND = 7


def tiny_settings(**overrides):
  c = hvae.HVAE.default_config()
  c.resolutions = (32, 8, 1)
  c.widths = (8, 8, 16)
  c.enc_blocks = (1, 1, 1)
  c.dec_blocks = (1, 1, 1)
  c.z_dim = 4
  c.update(overrides)
  return c


def build(settings, shape=SHAPE, cond_dim=COND, seed=0):
  """(graphdef, state) of an HVAE, initialised under jit (an eager init
  compiles op by op) from an "rbg" key (a third of threefry's compile time
  for the init's many small draws on CPU)."""
  box = []

  def init(key):
    graph, state = nnx.split(hvae.HVAE.create(shape, cond_dim, settings,
                                              rngs=nnx.Rngs(key)))
    box.append(graph)
    return state

  state = jax.jit(init)(jax.random.key(seed, impl="rbg"))
  return box[0], state


def data(b=8, seed=1):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return (jax.random.uniform(k1, (b,) + SHAPE),
          jax.random.normal(k2, (b, COND)))


@pytest.fixture(scope="module")
def tiny():
  return build(tiny_settings())


def perturbed(state, scale=0.05):
  """Every weight moved by scale * N(0, 1): the init zeroes the prior's and
  the posterior's heads, so that both start at N(0, I)."""
  return jax.tree.map(
      lambda x: x + scale * jax.random.normal(jax.random.key(3), x.shape),
      state)


@pytest.mark.slow
def test_prior_and_posterior_start_at_the_standard_normal(tiny):
  """At initialisation q(z_i | ...) = p(z_i | ...) = N(0, I) at every
  level, whatever the image and the features: the ELBO's KL starts at 0."""
  graph, state = tiny
  images, cond = data()

  @jax.jit
  def run(state):
    m = nnx.merge(graph, state)
    _, _, stats = m._posterior(images, cond, jax.random.key(2))
    return stats, m.kl_per_level(stats)

  stats, kls = run(state)
  for s in stats:
    for key in ("q_loc", "q_logscale", "p_loc", "p_logscale"):
      np.testing.assert_array_equal(s[key], 0.0)
  for kl in kls:
    np.testing.assert_array_equal(kl, 0.0)


@pytest.mark.slow
def test_block_parts_are_the_output_split_by_channels():
  # The prior's and posterior's statistics come from Block.parts: the same
  # values as slicing the block's output, a product per group.
  block = hierarchical.Block(6, 4, 9, residual=False, cond_dim=3,
                             rngs=nnx.Rngs(0))
  a, b = (jax.random.normal(jax.random.key(i), (2, 4, 4, 3))
          for i in (1, 2))
  pa = jax.random.normal(jax.random.key(3), (2, 3))
  whole = block(a, b, pa=pa)
  parts = block.parts(a, b, sizes=(2, 2, 5), pa=pa)
  for part, (lo, hi) in zip(parts, ((0, 2), (2, 4), (4, 9))):
    np.testing.assert_allclose(part, whole[..., lo:hi], atol=1e-5)
  with pytest.raises(ValueError, match="parts of \\(2, 2\\) channels"):
    block.parts(a, b, sizes=(2, 2), pa=pa)
  with pytest.raises(ValueError, match="non-residual"):
    hierarchical.Block(3, 2, 3, rngs=nnx.Rngs(0)).parts(a, sizes=(3,))


@pytest.mark.slow
def test_latent_shapes_and_kl_of_each_level(tiny):
  graph, state = tiny
  state = perturbed(state)  # q and p away from N(0, I)
  images, cond = data()

  @jax.jit
  def run(state):
    m = nnx.merge(graph, state)
    h, zs, stats = m._posterior(images, cond, jax.random.key(2))
    return zs, stats, m.kl_per_level(stats), m.nelbo(images, cond,
                                                      jax.random.key(2))

  zs, stats, kls, (nelbo, parts) = run(state)
  # One latent per top-down block, lowest resolution first: dec_blocks
  # (1, 1, 1) at resolutions (32, 8, 1).
  assert [z.shape for z in zs] == [(8, 1, 1, 4), (8, 8, 8, 4),
                                   (8, 32, 32, 4)]
  # Random Gaussian pairs too.
  k = jax.random.split(jax.random.key(5), 4)
  rand = [jax.random.normal(kk, (3, 5)) for kk in k]
  pairs = [(s["q_loc"], s["q_logscale"], s["p_loc"], s["p_logscale"])
           for s in stats] + [tuple(rand)]
  for q_loc, q_ls, p_loc, p_ls in pairs:
    want = dist.kl_divergence(dist.Normal(q_loc, jnp.exp(q_ls)),
                              dist.Normal(p_loc, jnp.exp(p_ls)))
    np.testing.assert_allclose(hvae.kl_normal(q_loc, q_ls, p_loc, p_ls),
                               want, rtol=1e-4, atol=1e-5)
  for kl, s in zip(kls, stats):
    want = dist.kl_divergence(
        dist.Normal(s["q_loc"], jnp.exp(s["q_logscale"])),
        dist.Normal(s["p_loc"], jnp.exp(s["p_logscale"])))
    np.testing.assert_allclose(kl, want.reshape(8, -1).sum(-1), rtol=1e-4,
                               atol=1e-6)
    assert np.all(np.asarray(kl) > 0)
  # The ELBO: Gaussian NLL of the images plus the levels' KL.
  np.testing.assert_allclose(parts["kl"], sum(kls), rtol=1e-5)
  np.testing.assert_allclose(nelbo, parts["nll"] + parts["kl"], rtol=1e-5)


@pytest.mark.slow
def test_prior_ignores_cond_and_prediction_follows_it(tiny):
  graph, state = tiny
  images, cond = data()
  other = jnp.roll(cond, 1, axis=0) + 1.0
  state = perturbed(state)  # a non-trivial prior

  @jax.jit
  def run(state):
    m = nnx.merge(graph, state)
    u = m.prior(jax.random.key(4), 8)
    _, _, stats_a = m.decoder(cond, latents=u["z"])
    _, _, stats_b = m.decoder(other, latents=u["z"])
    return (u, m.prior(jax.random.key(4), 8), stats_a, stats_b,
            m.predict(cond, u), m.predict(other, u))

  u, u_again, stats_a, stats_b, out_a, out_b = run(state)
  for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(u_again)):
    np.testing.assert_array_equal(a, b)
  # p(z_i | z_{>i}) under two different conds, the same latents: equal.
  for a, b in zip(stats_a, stats_b):
    np.testing.assert_array_equal(a["p_loc"], b["p_loc"])
    np.testing.assert_array_equal(a["p_logscale"], b["p_logscale"])
    assert float(jnp.abs(a["p_loc"]).max()) > 0  # the prior is non-trivial
  # ... while the image under fixed latents follows the cond.
  assert float(jnp.abs(out_a - out_b).mean()) > 1e-3


@pytest.mark.slow
def test_abduction_draws_each_level_from_its_posterior_at_a_temperature(tiny):
  """abduct's z_i = loc + t * scale * eps of q(z_i | z_{>i}, x, pa), each
  level given the draws above it: the standardised draws, recomputed from
  the posterior pass fed the abducted latents, are t * N(0, 1) (the same
  eps for every t with one key); t = 0 is the posterior means; no key and
  t > 0 is an error."""
  graph, state = tiny
  state = perturbed(state)
  images, cond = data(b=64)
  key = jax.random.key(11)

  def run(state, t):
    m = nnx.merge(graph, state)
    m.abduct_temperature = t
    zs = m.abduct(images, cond, key)["z"]
    # q of each level given the abducted latents above it.
    acts = m.encoder(2.0 * images - 1.0)
    h = s = m.decoder._start(64)
    locs, scales = [], []
    for layer, z in zip(m.decoder.layers, zs):
      h, s = m.decoder._to_res(h, layer.res), m.decoder._to_res(s, layer.res)
      _, _, p_feat = layer.prior_stats(s)
      q_loc, q_logscale = layer.posterior_stats(h, acts[layer.res], cond)
      locs.append(q_loc)
      scales.append(jnp.exp(q_logscale))
      h, s = layer.merge(h, z, p_feat, cond), layer.next_state(z, p_feat)
    return zs, locs, scales

  eps = {}
  for t in (1.0, 0.5):
    zs, locs, scales = jax.jit(run, static_argnums=1)(state, t)
    eps[t] = [(z - q) / (t * sc) for z, q, sc in zip(zs, locs, scales)]
    flat = np.concatenate([np.asarray(e).ravel() for e in eps[t]])
    assert abs(flat.mean()) < 0.02 and abs(flat.std() - 1) < 0.02, t
  for a, b in zip(eps[1.0], eps[0.5]):
    np.testing.assert_allclose(a, b, atol=1e-3)
  zs, locs, _ = jax.jit(run, static_argnums=1)(state, 0.0)
  for z, q in zip(zs, locs):
    np.testing.assert_allclose(z, q, atol=1e-5)
  m = nnx.merge(graph, state)
  with pytest.raises(MechanismError, match="pass an rng key"):
    m.abduct(images, cond)
  settings = tiny_settings(abduct_temperature=-1.0)
  with pytest.raises(MechanismError, match="abduct_temperature must be"):
    hvae.HVAE.create(SHAPE, COND, settings, rngs=nnx.Rngs(0))


@pytest.mark.slow
def test_null_edit_is_exact_with_pixel_residual():
  graph, state = build(tiny_settings(pixel_noise=True))
  images, cond = data()

  @jax.jit
  def run(state):
    m = nnx.merge(graph, state)
    u = m.abduct(images, cond, jax.random.key(1))
    return m.predict(cond, u), m.predict(-cond, u), m.relabel(
        images, cond, cond, jax.random.key(0))

  same, other, relabel = run(state)
  np.testing.assert_allclose(same, images, atol=1e-4)
  np.testing.assert_allclose(relabel, images, atol=1e-4)
  assert float(jnp.abs(other - images).mean()) > 1e-3


@pytest.mark.slow
def test_short_training_makes_the_null_edit_close():
  # Eight images, the mechanism alone, 150 Adam steps: abduct-then-predict
  # must approach the input (no pixel residual).
  _, cond = data(b=8)
  # Bars at one of two places and two brightnesses, a stripe per image.
  level = (jnp.arange(8) % 2 + 1) / 2.0
  place = (jnp.arange(32)[None, :] // 8) == (jnp.arange(8)[:, None] % 4)
  images = jnp.broadcast_to((place * level[:, None])[:, None, :, None],
                            (8,) + SHAPE)
  # The fixed likelihood scale: a learned one first explains the images by
  # its variance (measured: null-edit L1 0.27 after 150 steps, 0.09 after
  # 300, against 0.02 and 0.007 with the fixed scale).
  graph, state = build(tiny_settings(learned_sigma=False))
  opt = optax.adam(1e-2)
  opt_state = opt.init(state)

  def null_l1(state):
    m = nnx.merge(graph, state)
    u = m.abduct(images, cond, jax.random.key(7))
    return jnp.abs(m.predict(cond, u) - images).mean()

  @jax.jit
  def step(state, opt_state, i):
    loss = lambda s: nnx.merge(graph, s).loss(
        images, cond, jax.random.fold_in(jax.random.key(0), i))[0][
            "loss"].mean()
    g = jax.grad(loss)(state)
    upd, opt_state = opt.update(g, opt_state, state)
    return optax.apply_updates(state, upd), opt_state

  before = float(jax.jit(null_l1)(state))
  for i in range(150):
    state, opt_state = step(state, opt_state, i)
  after = float(jax.jit(null_l1)(state))
  assert after < 0.05 < before, (before, after)


@pytest.mark.slow
def test_kl_warm_up_weighs_the_kl_by_the_step():
  """The "hvae" stage's loss is nll + w(step) kl, w ramping linearly to beta
  over kl_warmup_steps; without a step (evaluation) it is the ELBO."""
  graph, state = build(tiny_settings(kl_warmup_steps=4, beta=2.0))
  state = perturbed(state)
  model = nnx.merge(graph, state)
  images, cond = data()
  key = jax.random.key(5)
  _, parts = model.nelbo(images, cond, jax.random.split(key, 3)[0])
  at = lambda step: model.loss(images, cond, key, "hvae", mechanisms.Context(
      counterfactual=None, embed=None, step=step))[0]["loss"]
  for step, weight in ((0, 0.5), (1, 1.0), (2, 1.5), (3, 2.0), (9, 2.0)):
    np.testing.assert_allclose(at(jnp.int32(step)),
                               parts["nll"] + weight * parts["kl"], rtol=1e-5)
  np.testing.assert_allclose(at(None), parts["nll"] + 2.0 * parts["kl"],
                             rtol=1e-5)
  assert float(parts["kl"].min()) > 0  # the weights above were tested


def test_lagrangian_hand_example():
  dims = 4.0
  cf_nll = jnp.array([1.0, 3.0])
  bound = 0.5
  rho = jnp.log(jnp.expm1(2.0))  # lambda = 2
  violated = jnp.array([dims * 0.6, dims * 0.8])  # nelbo / dims: .6, .8
  losses, lam, g = hvae.lagrangian(cf_nll, violated, dims, bound, rho)
  np.testing.assert_allclose(lam, 2.0, rtol=1e-6)
  np.testing.assert_allclose(g, [0.1, 0.3], rtol=1e-5)
  # After the ANCM's division by dims: cf_nll + lambda * g, and -lambda g.
  np.testing.assert_allclose(losses["loss"] / dims, [1.2, 3.6], rtol=1e-5)
  np.testing.assert_allclose(losses["multiplier"] / dims, [-0.2, -0.6],
                             rtol=1e-5)

  def rho_grad(nelbo):
    return jax.grad(lambda r: hvae.lagrangian(
        cf_nll, nelbo, dims, bound, r)[0]["multiplier"].mean() / dims)(rho)

  # d/drho of -softplus(rho) * mean(g) = -sigmoid(rho) * mean(g).
  want = -jax.nn.sigmoid(rho) * 0.2
  np.testing.assert_allclose(rho_grad(violated), want, rtol=1e-5)
  # Descending it: lambda rises when violated, falls when satisfied.
  assert rho_grad(violated) < 0
  assert rho_grad(jnp.array([dims * 0.1, dims * 0.2])) > 0
  # The network's loss sees lambda as a constant: its gradient in nelbo is
  # lambda / dims per example, in cf_nll 1.
  gn = jax.grad(lambda n: hvae.lagrangian(cf_nll, n, dims, bound, rho)[0][
      "loss"].sum())(violated)
  np.testing.assert_allclose(gn, [2.0, 2.0], rtol=1e-5)


def hvae_config(cf_steps=2):
  config = tiny_config()
  config.train.eval_every = 0  # one evaluation per stage, at its end
  config.model.image = mechanisms.image_config("hvae")
  # No faithfulness decode: it would add two top-down passes to compile
  # (relabel itself is checked in the pixel-residual test).
  config.model.image.hvae.update(tiny_settings(cf_steps=cf_steps,
                                               elbo_ref_rate=0.5,
                                               relabel=False,
                                               cf_margin=-100.0,
                                               kl_warmup_steps=4))
  return config


def flat(tree):
  return {mechanisms.path_names(p): np.asarray(x) for p, x in
          jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.slow
def test_trains_through_the_ancm_with_both_stages(tmp_path):
  config = hvae_config()
  workdir = tmp_path / "run"
  model, result = fit.train_and_evaluate(config, workdir)
  assert [s.name for s in model.stages] == ["hvae", "cf"]
  assert result.steps == config.train.steps + 2
  first = flat(train.load_state(
      fit.stage_config(config, model, 0), workdir,
      fit.make_task(config, model, None, stage=0)).params)
  _, _, last = fit.load(workdir)
  last = flat(last)
  mult, ref = ("image", "multiplier"), ("image", "elbo_ref")
  # Stage 1 trained the network, the NCM, the reader and the ELBO estimate
  # (a moving average of the batch nelbo per pixel value, from 0), not
  # lambda (still its initial value).
  rho0 = math.log(math.expm1(config.model.image.hvae.cf_multiplier_init))
  np.testing.assert_allclose(first[mult], rho0, rtol=1e-6)
  assert first[ref] > 0
  # Stage "cf" moved the image network and lambda only.
  changed = {k for k in first if not np.array_equal(first[k], last[k])}
  assert mult in changed and ref not in changed
  assert all(k[0] == "image" for k in changed)
  assert any(k[:2] == ("image", "decoder") for k in changed)
  assert any(k[:2] == ("image", "encoder") for k in changed)
  # A margin of -100 nats per pixel value violates the constraint at every
  # step, so lambda = softplus(rho) rose (and stays >= 0).
  logged = [r for r in train.read_metrics(workdir / "stages" / "cf")
            if "train/constraint" in r]
  assert logged and all(r["train/constraint"] > 0 for r in logged)
  assert all(r["train/multiplier"] > 0 for r in logged)
  assert {"train/cf_nll", "train/nll", "train/elbo_ref"} <= set(logged[0])
  # The KL warm-up followed the first stage's steps: weights 1/4, 2/4, 3/4,
  # 4/4 at updates 0..3, logged as means over windows of 2; its evaluation
  # (no step) weighs the KL fully.
  first_logs = train.read_metrics(workdir)
  ramp = [r["train/kl_weight"] for r in first_logs if "train/kl_weight" in r]
  np.testing.assert_allclose(ramp, [0.375, 0.875], rtol=1e-6)
  assert [r["eval/kl_weight"] for r in first_logs
          if "eval/kl_weight" in r] == [1.0]
  # The logged image loss is the ELBO's (the "loss" group), not the sum of
  # every group's loss: the elbo_ref tracker's group trains in this stage
  # too, and its squared error is no image loss.
  evals = [r for r in first_logs if "eval/image_loss_per_dim" in r]
  dims = np.prod(model.image_shape)
  np.testing.assert_allclose(
      [r["eval/image_loss_per_dim"] for r in evals],
      [(r["eval/nll"] + r["eval/kl"]) / dims for r in evals], rtol=1e-5)
  lam = float(jax.nn.softplus(last[mult]))
  assert lam > float(jax.nn.softplus(first[mult])) > 0


@pytest.mark.slow
def test_accelerator_config_has_the_seeds_two_million_parameters():
  settings = hvae.HVAE.accelerator_config()
  state = jax.eval_shape(lambda: nnx.split(hvae.HVAE.create(
      (32, 32, 1), 12, settings, rngs=nnx.Rngs(0)))[1])
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state))
  assert abs(count - 2.0e6) / 2.0e6 < 0.05, count
  assert len(settings.resolutions) == 5 and sum(settings.dec_blocks) == 20


@pytest.mark.slow
def test_bad_architecture_is_one_line():
  with pytest.raises(MechanismError, match="model.image.hvae: resolutions "
                     r"\(32, 12\) must decrease by integer factors"):
    build(tiny_settings(resolutions=(32, 12), widths=(8, 8),
                        enc_blocks=(1, 1), dec_blocks=(1, 1)))
  with pytest.raises(MechanismError, match="kl_warmup_steps must be >= 0"):
    build(tiny_settings(kl_warmup_steps=-1))
  with pytest.raises(MechanismError, match="no training stage 'nope'"):
    graph, state = build(tiny_settings())
    images, cond = data(2)
    nnx.merge(graph, state).loss(images, cond, jax.random.key(0), "nope")


@pytest.mark.slow
def test_hvae_comparison_is_the_quickstart_model_with_another_mechanism():
  """configs/compare_hvae_colored_mnist_backdoor.py compares like with like:
  its VAE-ANCM is the quickstart's model; the HVAE rows change only the image
  mechanism (and
  the step's slicing), the ELBO-only row also drops the label-faithfulness
  term, and the fine-tuned row adds the "cf" stage after as many
  pre-training steps."""
  from configs import compare_hvae_colored_mnist_backdoor as compare_hvae
  from ctfjax.experiment import job

  config = compare_hvae.get_config()
  plain = comparisons.quickstart_vae_of(config)
  steps = plain.train.steps
  for name, stages in (("ancm_hvae_elbo", [("hvae", steps)]),
                       ("ancm_hvae", [("hvae", steps)]),
                       ("ancm_hvae_cf", [("hvae", steps),
                                         ("cf", compare_hvae.CF_STEPS)])):
    other = job.model_config(config, name)
    assert other.model.image.kind == "hvae"
    assert other.model.graph == plain.model.graph
    rest = lambda c: {k: v for k, v in c.model.to_dict().items()
                      if k not in ("image", "faithful_weight")}
    assert rest(other) == rest(plain)
    # Only the ELBO-only row drops the label-faithfulness term.
    assert other.model.faithful_weight == (
        0.0 if name == "ancm_hvae_elbo" else plain.model.faithful_weight)
    assert plain.model.faithful_weight > 0
    train_a, train_b = other.train.to_dict(), plain.train.to_dict()
    assert train_a.pop("microbatch") == 0
    train_b.pop("microbatch")
    assert train_a == train_b
    model = fit.model_of(other)
    assert [(s.name, s.steps) for s in model.stages] == stages
