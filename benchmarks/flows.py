r"""The MorphoMNIST flows, and stacks of splines, against exact densities.

    python -m benchmarks.flows [--workdir=runs/deepscm_morpho_learned] \
        [--out=runs/benchmark_flows.json]
    python -m benchmarks.flows --mode=stack \
        [--stack_out=benchmarks/results/flows/spline_stacks.json]

MorphoMNIST's feature model is known in closed form (ctfjax.data.morpho_mnist):
thickness = 0.5 + Gamma(10, rate 5) and intensity = 64 + 191 sigmoid(2 (t -
2.5) + N(0, 0.5^2)), so the exact log-density of (thickness, intensity) is

    log Gamma(t - 0.5; 10, 5) + log N(u; 0, 0.5^2) - log(191 s (1 - s)),

with s = (i - 64) / 191 and u = logit(s) - 2 (t - 2.5). The benchmark
compares the held-out mean log-likelihood of the feature NCM's spline flows
(`log_likelihood(nodes=("thickness", "intensity"))`, 1,024 latent draws) with
that exact mean on the same fresh draws; the gap is at least zero in
expectation (it is a KL divergence plus Monte-Carlo bias). Target: within
0.05 nats.

Without --workdir the flows are trained here exactly as the Deep-SCM run
trains them (configs/deepscm.py: its NCM sizes, optimizer,
batch, likelihood particles and steps; the loss term -log P^(v) of the
ANCM's first stage), on as many generator draws as the run has digits, but
without the images: the image terms do not touch the NCM's parameters. With
--workdir it scores the NCM of a trained run.

`--mode=stack` asks what stacking splines (`Spline.num_layers`, the
paper's three layers) adds over one: it fits the unconditional spline kind
(its head a free parameter vector, no network) of 1, 2 and 3 layers by
maximum likelihood to draws of two 1-D laws with closed-form densities - a
bimodal two-Gaussian mixture and MorphoMNIST's skewed thickness law - with
the same steps and optimizer, and reports each fit's held-out mean
log-likelihood beside the exact one and the law's entropy (by quadrature).
"""

import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags
from scipy import special
from scipy import stats

from configs import deepscm
from ctfjax import data as ctfjax_data
from ctfjax import files
from ctfjax import ncm
from ctfjax.ancm import fit
from ctfjax.causal.spline import Spline
from ctfjax.data import morpho_mnist as mm
from ctfjax.train.state import create_train_state, make_optimizer
from launch import cli
from launch import host_memory

flags.DEFINE_string("workdir", "", "A trained Deep-SCM MorphoMNIST run to "
                    "score; empty = train the flows here.")
flags.DEFINE_string("out", "runs/benchmark_flows.json", "JSON output.")
flags.DEFINE_integer("train_size", 4000, "Generator draws to train on (the "
                     "bundled training digits of the Deep-SCM run).")
flags.DEFINE_integer("steps", 0, "Training steps; 0 = the config's.")
flags.DEFINE_integer("test_size", 20_000, "Held-out generator draws.")
flags.DEFINE_integer("latent_samples", 1024, "Latent draws per likelihood.")
flags.DEFINE_integer("seed", 0, "Root seed.")
flags.DEFINE_enum("mode", "ncm", ["ncm", "stack"], "ncm: the feature NCM's "
                  "flows; stack: spline stacks of 1-3 layers on 1-D laws.")
flags.DEFINE_string("stack_out", "benchmarks/results/flows/spline_stacks.json",
                    "JSON output of --mode=stack.")
flags.DEFINE_integer("stack_steps", 2000, "Adam steps of each stack fit.")
FLAGS = flags.FLAGS
NODES = ("thickness", "intensity")
# --mode=stack: layers compared, and the bimodal law's components
# (weight, mean, sd).
STACK_LAYERS = (1, 2, 3)
MIXTURE = ((0.4, -2.0, 0.5), (0.6, 1.5, 0.8))
STACK_TRAIN, STACK_LR = 4000, 1e-2


def draw(n: int, seed: int) -> dict[str, np.ndarray]:
  """n generator draws of the features (no images)."""
  rng = np.random.default_rng(seed)
  t = mm.thickness_mechanism(rng.gamma(mm.GAMMA_CONCENTRATION,
                                       1.0 / mm.GAMMA_RATE, n))
  i = mm.intensity_mechanism(t, rng.normal(0.0, mm.INTENSITY_NOISE_STD, n))
  return {"thickness": t, "intensity": i,
          "digit": rng.integers(0, 10, n).astype(np.int32)}


def exact_log_density(v) -> np.ndarray:
  """log p(thickness, intensity) of the generator, [N] (float64)."""
  t = np.asarray(v["thickness"], np.float64)
  s = (np.asarray(v["intensity"], np.float64) - 64.0) / 191.0
  u = special.logit(s) - 2.0 * (t - 2.5)
  return (stats.gamma.logpdf(t - 0.5, mm.GAMMA_CONCENTRATION,
                             scale=1.0 / mm.GAMMA_RATE)
          + stats.norm.logpdf(u, 0.0, mm.INTENSITY_NOISE_STD)
          - np.log(191.0 * s * (1.0 - s)))


def model_log_density(model, params, v, rng, m: int) -> np.ndarray:
  """The NCM's log P^(thickness, intensity), [N], in chunks."""
  fn = jax.jit(lambda p, x, k: model.log_likelihood(p, x, k, m, nodes=NODES))
  out = []
  for start in range(0, len(v["thickness"]), 1000):
    chunk = {k: jnp.asarray(v[k][start:start + 1000]) for k in NODES}
    out.append(np.asarray(fn(params, chunk, jax.random.fold_in(rng, start))))
  return np.concatenate(out).astype(np.float64)


def train_flows(config, steps: int, seed: int):
  """The feature NCM of `config`, trained on -log P^(v) alone."""
  graph, features = fit.features(ctfjax_data.dataset("morpho_mnist"))
  m = config.model
  model, params = ncm.NCM.create(graph, features, seed,
                                 latent_dim=m.ncm_latent_dim,
                                 hidden=tuple(m.ncm_hidden))
  data = draw(FLAGS.train_size, seed + 1)
  train = config.train.copy_and_resolve_references()
  train.steps = steps
  optimizer = make_optimizer(train)
  particles = m.likelihood_particles

  def loss_fn(p, batch, key, t):
    del t
    nll = -model.log_likelihood(p, batch, key, particles).mean()
    return nll, {}

  step = ncm.make_step(loss_fn, optimizer)
  state = create_train_state(jax.random.key(seed),
                                     lambda _: params, optimizer)
  order = np.random.default_rng(seed + 2)
  b = train.batch_size
  for _ in range(steps):
    idx = order.integers(0, FLAGS.train_size, b)
    state, _ = step(state, {k: jnp.asarray(x[idx]) for k, x in data.items()})
  return model, jax.device_get(state.params)


def mixture_draw(n: int, seed: int) -> np.ndarray:
  """n draws of the bimodal `MIXTURE` law, float64 [n]."""
  rng = np.random.default_rng(seed)
  w, mu, sd = (np.array(c) for c in zip(*MIXTURE))
  k = rng.choice(len(w), n, p=w)
  return rng.normal(mu[k], sd[k])


def mixture_log_density(x) -> np.ndarray:
  w, mu, sd = (np.array(c) for c in zip(*MIXTURE))
  x = np.asarray(x, np.float64)[..., None]
  return special.logsumexp(np.log(w) + stats.norm.logpdf(x, mu, sd), -1)


def thickness_draw(n: int, seed: int) -> np.ndarray:
  """n draws of MorphoMNIST's thickness, 0.5 + Gamma(10, rate 5)."""
  return draw(n, seed)["thickness"].astype(np.float64)


def thickness_log_density(x) -> np.ndarray:
  return stats.gamma.logpdf(np.asarray(x, np.float64) - 0.5,
                            mm.GAMMA_CONCENTRATION, scale=1.0 / mm.GAMMA_RATE)


# --mode=stack's laws: name -> (draw(n, seed), exact log-density, support
# (lo, hi) holding all but a negligible mass, for the entropy's quadrature).
LAWS = {
    "bimodal_mixture": (mixture_draw, mixture_log_density, (-8.0, 8.0)),
    "thickness_gamma": (thickness_draw, thickness_log_density, (0.5, 12.0)),
}


def entropy(log_density, support) -> float:
  """-int p log p by the trapezoid rule on 200,001 points, nats."""
  x = np.linspace(*support, 200_001)
  lp = log_density(x)
  return float(-np.trapezoid(np.exp(lp) * np.where(np.isfinite(lp), lp, 0.0),
                             x))


def fit_stack(kind: Spline, train: np.ndarray, steps: int, seed: int):
  """The head [head_size] of `kind` maximising the mean log-likelihood of
  `train` (full batch, Adam), started near the identity spline."""
  x = jnp.asarray(train, jnp.float32)
  head = 0.01 * jax.random.normal(jax.random.key(seed), (kind.head_size,))
  opt = optax.adam(STACK_LR)
  loss = lambda h: -kind.log_prob(h, x).mean()

  def step(carry, _):
    h, s = carry
    grads = jax.grad(loss)(h)
    updates, s = opt.update(grads, s, h)
    return (optax.apply_updates(h, updates), s), None

  (head, _), _ = jax.jit(lambda h: jax.lax.scan(
      step, (h, opt.init(h)), None, length=steps))(head)
  return head


def stack_study(steps: int, seed: int, test_size: int) -> dict:
  """Each law: its entropy, the exact held-out mean log-density, and per
  layer count the fit's, with the paired gap (exact - model, a KL estimate)
  and its standard error."""
  laws = {}
  for i, (name, (sample, log_density, support)) in enumerate(LAWS.items()):
    train = sample(STACK_TRAIN, seed + 10 * i + 1)
    test = sample(test_size, seed + 10 * i + 2)
    exact = log_density(test)
    units = {"loc": float(train.mean()), "scale": float(train.std())}
    fits = {}
    for layers in STACK_LAYERS:
      kind = Spline(**units, num_layers=layers)
      t0 = time.time()
      head = fit_stack(kind, train, steps, seed)
      model = np.asarray(jax.jit(kind.log_prob)(
          head, jnp.asarray(test, jnp.float32)), np.float64)
      gap = exact - model
      fits[str(layers)] = {
          "head_size": kind.head_size, "mean_log_lik": float(model.mean()),
          "gap": float(gap.mean()),
          "gap_stderr": float(gap.std(ddof=1) / np.sqrt(len(gap))),
          "seconds": round(time.time() - t0, 1)}
    laws[name] = {"entropy": entropy(log_density, support),
                  "exact_mean_log_lik": float(exact.mean()),
                  "num_layers": fits}
  return laws


def stack_main():
  start = time.time()
  laws = stack_study(FLAGS.stack_steps, FLAGS.seed, FLAGS.test_size)
  result = {
      "what": "held-out mean log-likelihood (nats) of the spline kind with "
              "num_layers = 1, 2, 3 fitted by maximum likelihood, beside "
              "the exact law's (and its entropy: minus the expected "
              "exact log-density)",
      "laws": laws,
      "mixture": [dict(zip(("weight", "mean", "sd"), c)) for c in MIXTURE],
      "bins": Spline().bins, "bound": Spline().bound,
      "steps": FLAGS.stack_steps, "optimizer": f"adam({STACK_LR}), full "
      f"batch", "train_size": STACK_TRAIN, "test_size": FLAGS.test_size,
      "seed": FLAGS.seed, "seconds": round(time.time() - start, 1),
      "machine": {"processor": platform.processor() or platform.machine(),
                  "devices": [str(d) for d in jax.devices()]},
  }
  files.write_json(pathlib.Path(FLAGS.stack_out), result)
  print(json.dumps(result, indent=1))


def main():
  if FLAGS.mode == "stack":
    stack_main()
    return
  start = time.time()
  if FLAGS.workdir:
    config, ancm, params = fit.load(FLAGS.workdir)
    model, params = ancm.ncm, params["ncm"]
    source = {"workdir": FLAGS.workdir, "steps": int(config.train.steps)}
  else:
    config = deepscm.get_config()
    steps = FLAGS.steps or int(config.train.steps)
    model, params = train_flows(config, steps, FLAGS.seed)
    source = {"trained_here": True, "steps": steps,
              "batch_size": int(config.train.batch_size),
              "train_size": FLAGS.train_size,
              "likelihood_particles": int(config.model.likelihood_particles)}
  test = draw(FLAGS.test_size, FLAGS.seed + 100)
  exact = exact_log_density(test)
  ours = model_log_density(model, params, test, jax.random.key(FLAGS.seed),
                           FLAGS.latent_samples)
  gap = exact - ours
  result = {
      "what": "held-out mean log-density of (thickness, intensity), nats",
      "exact": float(exact.mean()), "model": float(ours.mean()),
      "gap": float(gap.mean()),
      "gap_stderr": float(gap.std(ddof=1) / np.sqrt(len(gap))),
      "target_gap": 0.05, "test_size": FLAGS.test_size,
      "latent_samples": FLAGS.latent_samples, **source,
      "seconds": round(time.time() - start, 1),
      "machine": {"processor": platform.processor() or platform.machine(),
                  "devices": [str(d) for d in jax.devices()]},
  }
  files.write_json(pathlib.Path(FLAGS.out), result)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  cli.run(main, setup=host_memory.apply)
