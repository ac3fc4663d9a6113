r"""Diffusion mechanism benchmarks: null-edit L1 against DDIM steps, and speed.

    python -m benchmarks.diffusion --workdir=runs/diffusion_frontdoor \
        --out=runs/diffusion_frontdoor/benchmark_diffusion.json

The workdir is a trained run whose abduction is DDIM inversion: the
diffusion mechanism or the two-stage VAE + DDPM (whose null edit also goes
through its VAE).

The null edit, written to JSON (the U-Net's speed beside the diffusers peer
is the `unet` row of `benchmarks.speed`): test images are inverted
by deterministic DDIM under their true features and regenerated under the
same features; the mean L1 to the input on the 0-255 scale for each number
of DDIM steps (--null_steps). The issue's bar: below 3 at 50 steps.
With --grid, a PNG of test images, their null edits and single-feature
edits.

The effect of single-feature edits (--effect_images test images; for each
classifier-free guidance weight of --guidance, in the inversion and the
generation alike): do(X = another value) for each feature X (a
categorical's next class; a continuous feature one data spread, its
kind's `scale`, higher), and the run's own label reader (trained on real
images beside the model) reads every feature off the edits. For a
categorical feature, "agree" is the fraction of edits whose reading is
the counterfactual value the edit was drawn with (X's new value; a
descendant's value as the NCM drew it) and "kept" the fraction whose
reading is the factual value, each with its 95% Wilson interval over
the edits ("agree_ci95", "kept_ci95"; sampling of edits only: another
training of the same config can land outside it); for a continuous one,
"agree_mae" and "kept_mae" are the mean absolute differences between the
reading and those values, in the feature's units; "others_unchanged" and
"others_changed" give "kept" again over the edits whose other features
the NCM left as they were and over those where it changed one (a
descendant), with their counts. Beside them: the null edit's L1 at
that weight and the reader's accuracy ("reader_acc_real") or error
("reader_mae_real") on the real test images, its ceiling.
"""

import json
import os
import platform
import textwrap
import time

import jax
import numpy as np
from absl import flags

from ctfjax.ancm import model as ancm_model
from ctfjax.ancm import fit
from ctfjax.errors import UserError
from ctfjax.report import figures
from launch import cli
from launch import host_memory
from benchmarks.edit_effect import agreement
from benchmarks.edit_effect import another
from benchmarks.edit_effect import by_others

flags.DEFINE_string("out", "runs/benchmark_diffusion.json", "JSON output.")
flags.DEFINE_string("workdir", None, "A trained run of a diffusion or "
                    "vae_ddpm config.")
flags.DEFINE_list("null_steps", ["10", "20", "50", "100"],
                  "DDIM steps of the null-edit sweep.")
flags.DEFINE_integer("null_images", 32, "Test images of the null edit.")
flags.DEFINE_string("grid", "", "With --workdir: a PNG of test images, "
                    "their null edits per step count and single-feature "
                    "edits; empty skips it.")
flags.DEFINE_integer("grid_rows", 6, "Test images in the grid.")
flags.DEFINE_integer("effect_images", 64, "Test images of the single-"
                     "feature edits' effect; 0 skips it.")
flags.DEFINE_list("guidance", [], "Classifier-free guidance weights of the "
                  "effect sweep; empty: the run's own.")
flags.DEFINE_integer("train_batch", 64, "Training batch (peer: 64).")
flags.DEFINE_integer("sample_batch", 64, "Sampling batch (peer: 64).")
flags.DEFINE_integer("sample_steps", 50, "DDIM steps (peer: 50; fewer "
                     "are extrapolated to 50, and marked so).")
FLAGS = flags.FLAGS

# Image kinds whose abduction is DDIM inversion (sampler settings `steps`).
INVERTIBLE = ("ddpm", "vae_ddpm")


def null_edit(workdir, steps_list, n):
  """Mean L1 (0-255) of invert-then-regenerate under the true features."""
  config, model, params = fit.load(workdir)
  if model.image_kind not in INVERTIBLE:
    raise UserError(f"{workdir} is a {model.image_kind!r} run; its "
                    f"abduction is no DDIM inversion ({', '.join(INVERTIBLE)})")
  ds = fit.load_split(config, "test", n)
  images = ds["image"][:n]
  labels = {k: ds[k][:n] for k in model.order}
  rows, nulls = [], []
  for steps in steps_list:
    sampler = {"steps": int(steps), "eta": 0.0}
    start = time.perf_counter()
    u = model.abduct_image(params, images, labels, jax.random.key(0),
                           sampler)
    out = ancm_model.to_uint8(model.predict_image(
        params, labels, u, jax.random.key(1), sampler))
    out = np.asarray(out)
    nulls.append(out)
    seconds = time.perf_counter() - start
    l1 = np.abs(out.astype(np.float64) - images).mean()
    rows.append({"steps": int(steps), "l1_255": float(l1),
                 "seconds_with_compile": seconds, "images": int(n)})
    print(json.dumps(rows[-1]))
  if FLAGS.grid:
    edit_grid(model, params, images, labels, steps_list, nulls, FLAGS.grid)
  return rows


def edit_grid(model, params, images, labels, steps_list, nulls, path):
  """Input | null edit per step count | do(X = another value) per feature
  (the run's sampler settings, true labels), one row per test image."""
  r = min(FLAGS.grid_rows, images.shape[0])
  cols, names = [images[:r]], ["input"]
  cols += [n[:r] for n in nulls]
  names += [f"null\n{s} steps" for s in steps_list]
  sub = {k: np.asarray(v[:r]) for k, v in labels.items()}
  for k in model.order:
    new, how = another(model.features[k], sub[k])
    out = model.edit(params, images[:r], {k: new}, jax.random.key(2),
                     labels=sub)
    cols.append(np.asarray(out["image"][:, 0]))
    names.append(f"{textwrap.fill(f'do({k} {how})', 14)}\n"
                 f"{dict(model.sampler)['steps']} steps")
  captions = [[textwrap.fill(" ".join(f"{k}={sub[k][i]:.3g}"
                                      for k in model.order), 16)]
              + [""] * (len(cols) - 1) for i in range(r)]
  figures.edits_figure([figures.EditBlock(
      f"{model.image_kind} ANCM (DDIM inversion)", np.stack(cols, 1), captions,
      names)], path, title="null edits and single-feature edits")


def effect(workdir, n, guidances):
  """Null-edit L1 and the reader's agreement with single-feature edits,
  per guidance weight (floats; empty: the run's own; see the module
  docstring)."""
  config, model, params = fit.load(workdir)
  ds = fit.load_split(config, "test", n)
  images = ds["image"][:n]
  labels = {k: np.asarray(ds[k][:n]) for k in model.order}
  names = {"agree": "reader_acc_real", "agree_ci95": "reader_acc_real_ci95",
           "agree_mae": "reader_mae_real"}
  ceiling = {names[key]: v for key, v in agreement(
      model, model.read_labels(params, images), labels).items()}
  weights = guidances or [float(dict(model.sampler).get("guidance", 1.0))]
  rows = []
  for w in weights:
    sampler = {"guidance": w}
    u = model.abduct_image(params, images, labels, jax.random.key(0),
                           sampler)
    null = np.asarray(ancm_model.to_uint8(model.predict_image(
        params, labels, u, jax.random.key(1), sampler)))
    row = {"guidance": w, "images": int(n),
           "null_l1_255": float(np.abs(null.astype(np.float64)
                                       - images).mean()),
           **ceiling, "do": {}}
    for k in model.order:
      new, _ = another(model.features[k], labels[k])
      out = model.edit(params, images, {k: new}, jax.random.key(2),
                       labels=labels, sampler=sampler)
      read = model.read_labels(params, out["image"][:, 0])
      drawn = {j: out[j][:, 0] for j in model.order}
      row["do"][k] = {
          **agreement(model, read, drawn),
          **{key.replace("agree", "kept"): v for key, v in
             agreement(model, read, labels).items()},
          **by_others(model, k, read, drawn, labels)}
    rows.append(row)
    print(json.dumps(row))
  return rows


def main():
  result = {"benchmark": "diffusion", "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg())}
  workdir = cli.require("workdir")
  try:  # Checked before any work.
    guidances = [float(w) for w in FLAGS.guidance]
  except ValueError:
    raise UserError(f"--guidance: numbers, got {','.join(FLAGS.guidance)}"
                    ) from None
  result["null_edit"] = null_edit(workdir, FLAGS.null_steps,
                                  FLAGS.null_images)
  if FLAGS.effect_images > 0:
    result["effect"] = effect(workdir, FLAGS.effect_images, guidances)
  cli.write_json(FLAGS.out, result)


if __name__ == "__main__":
  cli.run(main, setup=host_memory.apply)
