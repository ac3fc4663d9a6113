r"""Speed of seed 004's MorphoMNIST conditional HVAE, written as JSON.

    python -m launch.benchmark_hvae --out=runs/benchmark_hvae.json

The image mechanism alone, as the published PyTorch implementation
(biomedia-mira/causal-gen, "morphomnist" hyper-parameters) is timed: the
accelerator configuration of `ctfjax.mechanisms.hvae` (about 2.0M
parameters; 32x32x1 images, 12-dim parents, latents of 16 channels at
resolutions 1, 4, 8, 16, 32, four per resolution), learned-sigma Gaussian
likelihood, AdamW(1e-3, b1=b2=0.9, wd=0.01):

* train step (negative ELBO, gradient, AdamW update; jitted, state donated)
  at batch 128;
* counterfactual abduct + predict (posterior top-down pass with the factual
  parents, top-down pass with the latents under new parents) at batch 256.

Reported per row: compile (first call) seconds, median steady seconds per
call, images per second, parameter count and peak memory. On a shared CPU
the figures move with the other load: run it on a quiet machine for
numbers to quote. The PyTorch peer does 70-72 images/s training and
120-124 images/s abduct + predict on the project's 2-core CPU.
"""

import json
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

from ctfjax import train
from ctfjax.mechanisms import hvae
# Its flags (--out, --repeats) serve this benchmark too.
from launch import benchmark_ancm  # noqa: F401  pylint: disable=unused-import
from launch import cli
from launch import timing

flags.FLAGS.set_default("out", "runs/benchmark_hvae.json")
flags.DEFINE_integer("train_batch", 128, "HVAE training batch.")
flags.DEFINE_integer("edit_batch", 256, "HVAE abduct + predict batch.")
FLAGS = flags.FLAGS

COND_DIM = 12  # thickness, intensity, digit one-hot (MorphoMNIST parents)


def bench_hvae(repeats, train_b, edit_b):
  """One JSON row: the seed-004 HVAE's train step and abduct + predict."""
  settings = hvae.HVAE.accelerator_config()
  module = train.PureModule(lambda rngs: hvae.HVAE.create(
      (32, 32, 1), COND_DIM, settings, rngs=rngs))
  loss = lambda p, batch, rng: (module.apply(
      p, batch["x"], batch["pa"], rng, method="loss")[0]["loss"].mean(), {})
  optimizer = optax.adamw(1e-3, b1=0.9, b2=0.9, weight_decay=0.01)
  init = jax.jit(lambda key: train.create_train_state(key, module.init,
                                                      optimizer))
  state = init(jax.random.key(0))
  params = jax.tree.map(jnp.copy, state.params)  # the step donates state
  rng = np.random.default_rng(0)
  data = lambda n: {
      "x": jnp.asarray(rng.random((n, 32, 32, 1), np.float32)),
      "pa": jnp.asarray(rng.random((n, COND_DIM), np.float32))}
  step = train.make_train_step(loss, optimizer)
  compile_train, train_s = timing.timed_train(
      step, state, data(train_b), repeats)
  ebatch = data(edit_b)
  pa_new = jnp.roll(ebatch["pa"], 1, axis=0)

  abduct_predict = timing.abduct_predict(module)
  compile_edit, edit_s = timing.timed(
      lambda: abduct_predict(params, ebatch["x"], ebatch["pa"], pa_new),
      repeats)
  return {"model": "hvae_seed004_morphomnist", "image_shape": [32, 32, 1],
          "parents_dim": COND_DIM, "train_batch": train_b,
          "edit_batch": edit_b,
          "compile_train_s": compile_train, "train_step_s": train_s,
          "train_images_per_s": train_b / train_s,
          "compile_edit_s": compile_edit, "edit_s": edit_s,
          "edit_images_per_s": edit_b / edit_s,
          "pytorch_peer_images_per_s": {"train": [70, 72],
                                        "abduct_predict": [120, 124]},
          "params": int(sum(x.size for x in jax.tree.leaves(params)))}


def main():
  row = bench_hvae(FLAGS.repeats, FLAGS.train_batch, FLAGS.edit_batch)
  row.update(timing.peak_memory())
  print(json.dumps(row))
  out = {"benchmark": "hvae_speed", "backend": jax.default_backend(),
         "devices": [str(d) for d in jax.devices()],
         "machine": platform.machine(), "cpus": os.cpu_count(),
         "load_average": list(os.getloadavg()), "rows": [row]}
  cli.write_json(FLAGS.out, out)


if __name__ == "__main__":
  cli.run(main)
