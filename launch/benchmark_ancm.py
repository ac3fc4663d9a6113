r"""Speed of the ANCM and of the seed-004 conditional VAE, written as JSON.

    python -m launch.benchmark_ancm --out=runs/benchmark_ancm.json

Two models, each timed for training (one optimizer step, jitted) and editing
(abduction + prediction), after compilation, on whatever backend JAX finds:

* `ancm_colored_mnist`: the VAE-ANCM of configs/ancm_colored_mnist_backdoor.py
  on 32x32x3 images (train step = the one `launch.train` runs: NCM
  likelihood + ELBO + label reader + faithfulness; edit = label-conditioned
  feature abduction, image abduction, prediction).
* `cvae_seed004_morphomnist`: the conditional VAE image mechanism of seed 004
  (Appendix A.2, Tables 7-8): 32x32x1 images, 12-dim parents, latent 16,
  learned-sigma Gaussian likelihood, AdamW(1e-3, b1=b2=0.9, wd=0.01); trained
  at batch 128, abduct + predict at batch 256, so it can be compared side by
  side with the published PyTorch implementation.

Reported: compile seconds, steady-state seconds per step (median of repeats),
images per second, and peak memory (device peak bytes where the backend
reports it, else the process's peak resident set).
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
from ctfjax.ancm import train as ancm_train
from ctfjax.mechanisms import vae
from configs import ancm_colored_mnist_backdoor
from launch import cli
from launch import timing
from launch.timing import peak_memory, timed, timed_train

flags.DEFINE_string("out", "runs/benchmark_ancm.json", "JSON output.")
flags.DEFINE_integer("repeats", 10, "Timed calls per measurement.")
flags.DEFINE_integer("ancm_batch", 64, "ANCM training batch.")
flags.DEFINE_integer("ancm_edit_batch", 256, "ANCM edit batch.")
FLAGS = flags.FLAGS


def bench_ancm(repeats):
  config = ancm_colored_mnist_backdoor.get_config()
  model = ancm_train.model_of(config)
  ds = ancm_train.load_split(config, "train", 1000)
  b = FLAGS.ancm_batch
  batch = {k: jnp.asarray(ds[k][:b]) for k in ds}
  # The very step `launch.train` runs (first stage), without a mesh.
  task = ancm_train.make_task(config, model, ds)
  step = train.make_train_step(task.loss, task.optimizer, grads_fn=task.grads)
  state = train.create_train_state(jax.random.key(0), task.init,
                                   task.optimizer)
  params = jax.tree.map(jnp.copy, state.params)  # the step donates state
  compile_train, train_s = timed_train(step, state, batch, repeats)
  e = FLAGS.ancm_edit_batch
  images = ds["image"][:e]
  labels = {k: ds[k][:e] for k in model.order}
  edit = lambda: model.edit(params, images, {"C": 1 - labels["C"]},
                            jax.random.key(1), num_samples=1,
                            labels=labels)["image"]
  compile_edit, edit_s = timed(edit, repeats)
  return {"model": "ancm_colored_mnist", "image_shape": [32, 32, 3],
          "train_batch": b, "edit_batch": e,
          "compile_train_s": compile_train, "train_step_s": train_s,
          "train_images_per_s": b / train_s,
          "compile_edit_s": compile_edit, "edit_s": edit_s,
          "edit_images_per_s": e / edit_s,
          "params": int(sum(x.size for x in jax.tree.leaves(params)))}


def bench_cvae(repeats):
  cond_dim, train_b, edit_b = 12, 128, 256
  settings = vae.VAE.default_config()
  settings.learned_sigma = True
  settings.decoder_convs = ((32, 3), (32, 3), (16, 5))
  module = train.PureModule(lambda rngs: vae.VAE.create(
      (32, 32, 1), cond_dim, settings, rngs=rngs))
  loss = lambda p, batch, rng: (module.apply(
      p, batch["x"], batch["pa"], rng, method="loss")[0]["loss"].mean(), {})
  optimizer = optax.adamw(1e-3, b1=0.9, b2=0.9, weight_decay=0.01)
  state = train.create_train_state(jax.random.key(0), module.init, optimizer)
  params = jax.tree.map(jnp.copy, state.params)  # the step donates state
  rng = np.random.default_rng(0)
  data = lambda n: {
      "x": jnp.asarray(rng.random((n, 32, 32, 1), np.float32)),
      "pa": jnp.asarray(rng.random((n, cond_dim), np.float32))}
  batch = data(train_b)
  step = train.make_train_step(loss, optimizer)
  compile_train, train_s = timed_train(step, state, batch, repeats)
  ebatch = data(edit_b)
  pa_new = jnp.roll(ebatch["pa"], 1, axis=0)

  abduct_predict = timing.abduct_predict(module)
  compile_edit, edit_s = timed(
      lambda: abduct_predict(params, ebatch["x"], ebatch["pa"], pa_new),
      repeats)
  return {"model": "cvae_seed004_morphomnist", "image_shape": [32, 32, 1],
          "parents_dim": cond_dim, "latent_dim": 16,
          "train_batch": train_b, "edit_batch": edit_b,
          "compile_train_s": compile_train, "train_step_s": train_s,
          "train_images_per_s": train_b / train_s,
          "compile_edit_s": compile_edit, "edit_s": edit_s,
          "edit_images_per_s": edit_b / edit_s,
          "params": int(sum(x.size for x in jax.tree.leaves(params)))}


def main():
  rows = []
  for bench in (bench_ancm, bench_cvae):
    row = bench(FLAGS.repeats)
    row.update(peak_memory())
    rows.append(row)
    print(json.dumps(row))
  out = {"benchmark": "ancm_speed", "backend": jax.default_backend(),
         "devices": [str(d) for d in jax.devices()],
         "machine": platform.machine(), "cpus": os.cpu_count(),
         "rows": rows}
  cli.write_json(FLAGS.out, out)


if __name__ == "__main__":
  cli.run(main)
