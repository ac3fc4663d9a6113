r"""Edits of the same test images under fixed interventions, model by model.

    python -m benchmarks.fixed_edits --workdir=runs/compare_hd_ncm_frontdoor \
        --models=diffusion_ncm,hd_ncm --do="C=1;D=8" \
        --out=runs/compare_hd_ncm_frontdoor/fixed_edits

The evaluation's edit figure moves every image by the protocol's shift
(do(D = d+5 mod 10), ...); a paper's figure often sets one value for
all, as Sardesai's report does with do(C=1) and do(D=8) on front-door
Colored MNIST. For each intervention of --do (';' between them, ','
inside one) this edits the first --images test images with each model of
a `launch.run` workdir and writes

* `<out>.png`: the first --rows images, the data generator's true
  counterfactual (same exogenous values), then each model's edits, each
  captioned with the features the evaluation's readers see;
* `<out>.json`: per model and intervention, over all --images edits, the
  share of edits in which the readers see the intervened value ("set")
  and, per other feature, the share in which they see the value the model
  drew for it ("follows": a non-descendant's drawn value is its factual
  one, a descendant's the NCM's draw), beside the same shares for the
  true counterfactuals and the readers' accuracy on the factual images.

The readers are the run's evaluation readers (`<workdir>/evaluators/`,
trained by `launch.run`'s evaluation or here), never a model's own label
reader.
"""

import json
import pathlib

import numpy as np
from absl import flags

from benchmarks import edit_effect
from launch import cli
from launch import edit_inputs
from launch import host_memory

flags.DEFINE_string("workdir", None, "A launch.run workdir (models/<name>/).")
flags.DEFINE_list("models", [], "Models of the workdir, in figure order.")
flags.DEFINE_string("do", None, "Interventions, ';' between them: 'C=1;D=8'.")
flags.DEFINE_integer("images", 100, "Test images edited per intervention.")
flags.DEFINE_integer("rows", 8, "Of them, the rows of the figure.")
flags.DEFINE_integer("chunk", 50, "Images per edit call (memory).")
flags.DEFINE_string("out", None, "Output path without extension.")
flags.DEFINE_integer("seed", 0, "Seed of the edits' abduction draws.")
FLAGS = flags.FLAGS


def label(do: dict) -> str:
  return "do(" + ", ".join(f"{k}={v}" for k, v in do.items()) + ")"


def main():
  # The library loads JAX; imported here so that --help answers at once.
  # pylint: disable=import-outside-toplevel
  import jax
  from ctfjax import files
  from ctfjax.ancm import fit
  from ctfjax.evaluate import core
  from ctfjax.evaluate import datasets
  from ctfjax.report import figures
  # pylint: enable=import-outside-toplevel
  root = files.existing_dir(cli.require("workdir"), "--workdir")
  out = pathlib.Path(cli.require("out"))
  if not FLAGS.models:
    cli.fail("--models names no model, e.g. --models=diffusion_ncm,hd_ncm")
  if not 0 < FLAGS.rows <= FLAGS.images or FLAGS.chunk < 1:
    cli.fail("need 0 < --rows <= --images and --chunk >= 1")
  runs = [edit_inputs.model_dir(str(root), m, True) for m in FLAGS.models]
  config = core.with_eval_defaults(fit.read_config(runs[0]))
  dataset = fit.dataset_of(config)
  _, domains = fit.features(dataset)
  features = list(domains)
  dos = edit_inputs.interventions(cli.require("do"), domains)
  for path in (out.with_suffix(".png"), out.with_suffix(".json")):
    files.writable_file(str(path), "--out")
  ev = datasets.evaluator(config.data)
  reader = ev.reader(root, config)
  test = dataset.load("test", FLAGS.images)
  n = min(FLAGS.images, len(test["image"]))
  images = np.asarray(test["image"][:n])
  labels = {k: np.asarray(test[k][:n]) for k in features}
  families = {label(d): {k: np.full(n, v) for k, v in d.items()}
              for d in dos}
  truth = ev.truth(config, test, families)
  rows = range(FLAGS.rows)
  factual_read = reader.read(images)
  result = {"workdir": str(root), "images": n, "seed": FLAGS.seed,
            "reader_accuracy_factual": {
                k: float(np.mean(factual_read[k] == labels[k]))
                for k in features},
            "true counterfactual": {}, "models": {}}
  blocks = [figures.EditBlock(
      "factual (test)", images[:FLAGS.rows, None],
      [[ev.caption(factual_read, i)] for i in rows], ["image"])]
  cols, caps = [], []
  for fam in families:
    t = truth[fam]
    if t is None:
      cols.append(np.zeros_like(images[:FLAGS.rows]))
      caps.append(["no ground truth"] * FLAGS.rows)
      continue
    read = reader.read(np.asarray(t["image"]))
    result["true counterfactual"][fam] = edit_effect.shares(
        read, dos[list(families).index(fam)], t, features)
    cols.append(np.asarray(t["image"])[:FLAGS.rows])
    caps.append([ev.caption(read, i) for i in rows])
  blocks.append(figures.EditBlock(
      "true counterfactual\n(data generator)", np.stack(cols, 1),
      [list(c) for c in zip(*caps)], list(families)))
  for name, run in zip(FLAGS.models, runs):
    _, model, params = fit.load(run)
    cols, caps, result["models"][name] = [], [], {}
    for j, (fam, do) in enumerate(families.items()):
      # One key per intervention, folded per chunk by edit_images.
      edits, drawn = core.edit_images(model, params, images, labels, do,
                                      jax.random.key(FLAGS.seed + j),
                                      FLAGS.chunk)
      read = reader.read(edits)
      result["models"][name][fam] = edit_effect.shares(read, dos[j], drawn,
                                                       features)
      cols.append(edits[:FLAGS.rows])
      caps.append([ev.caption(read, i) for i in rows])
      print(json.dumps({"model": name, "intervention": fam,
                        **result["models"][name][fam]}))
    blocks.append(figures.EditBlock(
        f"{name}\n{model.graph}", np.stack(cols, 1),
        [list(c) for c in zip(*caps)], list(families)))
  figures.edits_figure(
      blocks, out.with_suffix(".png"),
      title=f"Edits under {', '.join(families)}, {config.data.name}; "
            "captions: features the evaluation's readers see")
  cli.write_json(str(out.with_suffix(".json")), result)
  print(f"wrote {out.with_suffix('.png')}")


if __name__ == "__main__":
  cli.run(main, setup=host_memory.apply)
