r"""The MorphoMNIST flows against the generator's exact density.

    python -m benchmarks.flows [--workdir=runs/deepscm_morpho_learned] \
        [--out=runs/benchmark_flows.json]

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
"""

import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from scipy import special
from scipy import stats

from configs import deepscm
from ctfjax import data as ctfjax_data
from ctfjax import files
from ctfjax import ncm
from ctfjax.ancm import fit
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
FLAGS = flags.FLAGS
NODES = ("thickness", "intensity")


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


def main():
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
