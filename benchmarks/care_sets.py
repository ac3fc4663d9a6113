r"""Care sets on Colored MNIST: W = {}, {D}, {D, B} under do(C).

    python -m benchmarks.care_sets [--workdir=runs/quickstart] \
        [--out=benchmarks/results/care_sets] [--test_size=500]

Edits the backdoor test images with do(C = 1 - c) under each care set W
(`ANCM.edit`'s care) and writes into --out:

* care_sets.json: per W the kept, free and descendant features, how often
  each non-intervened feature changed, and the ctf-consistency rows of the
  W-specific queries with their exact bounds (`colored_mnist.reference`
  with the care set), decided by `metrics.decide`;
* care_sets.md: the same as tables;
* care_sets.png: a grid of edits per W (factual first, then three draws).

The model is the quick start's ANCM (models/ancm_vae of the --workdir run)
when that run exists; otherwise this trains the quick start's ANCM at the
`tiny` preset into <out>/tiny_run first and says so in the outputs. Rows
are decided on the features the model drew for its edits (its NCM, exact);
the image test of the full evaluator is `launch.evaluate
--config.eval.care=...`.
"""

import json
import pathlib
import time

import jax
import numpy as np
from absl import app, flags

from ctfjax import data
from ctfjax import files
from ctfjax import metrics
from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.evaluate import core
from ctfjax.evaluate.datasets import colored_mnist

flags.DEFINE_string("workdir", "runs/quickstart",
                    "A launch.run quick-start run (its models/ancm_vae).")
flags.DEFINE_string("out", "benchmarks/results/care_sets", "Output folder.")
flags.DEFINE_integer("test_size", 500, "Test images edited per care set.")
flags.DEFINE_integer("seed", 0, "Seed of the abduction draws.")
FLAGS = flags.FLAGS

DATASET = "colored_mnist_bars/backdoor"
CARE_SETS = ((), ("D",), ("D", "B"))
X = "C"  # The intervened feature: do(C = 1 - c).
FIGURE_ROWS = 6
FIGURE_DRAWS = 3


def trained_model(workdir: pathlib.Path, out: pathlib.Path):
  """(model, params, where it came from): the run's ANCM, or a new one
  trained at the tiny preset when the run has none."""
  run = workdir / "models" / "ancm_vae"
  if (run / fit.CONFIG_FILE).is_file():
    _, model, params = fit.load(run)
    return model, params, f"trained quick-start run {run}"
  config = train.load_config("configs/quickstart.py:tiny")
  tiny = out / "tiny_run"
  fit.train_and_evaluate(config, tiny)
  _, model, params = fit.load(tiny)
  return model, params, (f"no run at {run}: the quick start's ANCM trained "
                         f"here at the tiny preset ({tiny})")


def roles(graph, care) -> dict[str, list[str]]:
  """Which features a care set keeps, frees and draws under do(X)."""
  below = graph.descendants(X)
  others = [v for v in graph.topological_order() if v != X]
  return {"kept": [v for v in others if v in care and v not in below],
          "free": [v for v in others if v not in care and v not in below],
          "descendants_in_w": [v for v in others if v in care and v in below],
          "descendants_free": [v for v in others
                               if v not in care and v in below]}


def evaluate_care(model, params, test, care, rng) -> dict:
  """One care set's edits of the test images, its rows and change rates."""
  labels = {k: np.asarray(test[k]) for k in model.order}
  do = {X: 1 - labels[X]}
  edited, drawn = core.edit_images(model, params, test["image"], labels, do,
                                   rng, chunk=100, care=care)
  ref = colored_mnist.reference(DATASET, care)
  rows = metrics.ctf_consistency(labels, drawn, do, ref.queries[f"do({X})"],
                                 bounds=ref.bounds, truth=ref.truth)
  keep = ("query", "bounds", "truth", "estimate", "n", "decision",
          "consistent")
  return {
      "care": list(care),
      **roles(model.graph, care),
      "changed": {k: float(np.mean(drawn[k] != labels[k]))
                  for k in model.order if k != X},
      "rows": [{k: r[k] for k in keep} for r in rows],
      "all_consistent": all(r["consistent"] for r in rows),
  }, edited


def figure(model, params, test, rng, path: pathlib.Path):
  """Rows: test images (one per (C, B) pair and more); columns: the
  factual, then FIGURE_DRAWS edits of do(C = 1 - c) per care set."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  ev = colored_mnist.ColoredMNIST(data.dataset(DATASET))
  labels = {k: np.asarray(test[k]) for k in model.order}
  idx = ev.figure_rows(labels, FIGURE_ROWS)
  sub = {k: v[idx] for k, v in labels.items()}
  do = {X: 1 - sub[X]}
  cols = 1 + len(CARE_SETS) * FIGURE_DRAWS
  fig, axes = plt.subplots(len(idx), cols, figsize=(1.3 * cols,
                                                    1.45 * len(idx)))
  for r in range(len(idx)):
    axes[r, 0].imshow(test["image"][idx[r]])
    axes[r, 0].set_title(ev.caption(sub, r), fontsize=7)
  for j, care in enumerate(CARE_SETS):
    res = model.edit(params, test["image"][idx], do, jax.random.fold_in(
        rng, 100 + j), num_samples=FIGURE_DRAWS, labels=sub, care=care)
    for r in range(len(idx)):
      for s in range(FIGURE_DRAWS):
        ax = axes[r, 1 + j * FIGURE_DRAWS + s]
        ax.imshow(np.asarray(res["image"][r, s]))
        drawn = {k: np.asarray(res[k][:, s]) for k in model.order}
        kept = drawn["D"][r] == sub["D"][r]
        ax.set_title(ev.caption(drawn, r), fontsize=7,
                     color="black" if kept else "tab:red")
        if r == 0 and s == 1:
          ax.text(0.5, 1.45, f"W = {{{', '.join(care)}}}",
                  transform=ax.transAxes, ha="center", fontsize=10)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle("do(C = 1 - c) per care set W (caption: drawn digit, "
               "colour, bar; red: digit changed)", fontsize=9, y=0.995)
  fig.tight_layout()
  files.write_with(path, lambda tmp: fig.savefig(tmp, format="png",
                                                 dpi=110))
  plt.close(fig)


def markdown(result: dict) -> str:
  """care_sets.md: the roles table and each care set's rows."""
  lines = ["# Care sets on Colored MNIST (backdoor), do(C = 1 - c)", "",
           f"Model: {result['model']}. {result['test_size']} test images "
           "per care set, one edit each; rows decided on the drawn "
           "features (`metrics.decide`).", "",
           "| W | kept (non-descendants in W) | free (redrawn) | "
           "descendants in W | D changed | B changed | rows | all "
           "consistent |", "|---|---|---|---|---|---|---|---|"]
  fmt = lambda names: ", ".join(names) or "-"
  for c in result["care_sets"]:
    lines.append(
        f"| {{{', '.join(c['care'])}}} | {fmt(c['kept'])} | "
        f"{fmt(c['free'])} | {fmt(c['descendants_in_w'])} | "
        f"{c['changed']['D']:.3f} | {c['changed']['B']:.3f} | "
        f"{len(c['rows'])} | {'yes' if c['all_consistent'] else 'no'} |")
  for c in result["care_sets"]:
    lines += ["", f"## W = {{{', '.join(c['care'])}}}", "",
              "| query | bounds | truth | estimate | n | decision |",
              "|---|---|---|---|---|---|"]
    for r in c["rows"]:
      b = r["bounds"]
      est = "-" if r["estimate"] is None else f"{r['estimate']:.3f}"
      lines.append(f"| {r['query']} | [{b[0]:.3f}, {b[1]:.3f}] | "
                   f"{r['truth']:.3f} | {est} | {r['n']} | "
                   f"{r['decision']} |")
  return "\n".join(lines) + "\n"



def main(argv):
  del argv
  t0 = time.perf_counter()
  out = pathlib.Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  model, params, source = trained_model(pathlib.Path(FLAGS.workdir), out)
  test = data.dataset(DATASET).load("test", FLAGS.test_size)
  rng = jax.random.key(FLAGS.seed)
  result = {"command": "python -m benchmarks.care_sets", "model": source,
            "test_size": int(len(test["image"])), "intervention": "do(C)",
            "care_sets": []}
  for i, care in enumerate(CARE_SETS):
    entry, _ = evaluate_care(model, params, test, care,
                             jax.random.fold_in(rng, i))
    result["care_sets"].append(entry)
    print(f"W = {{{', '.join(care)}}}: D changed {entry['changed']['D']:.3f}"
          f", B changed {entry['changed']['B']:.3f}, {len(entry['rows'])} "
          f"rows, all consistent: {entry['all_consistent']}")
  figure(model, params, test, rng, out / "care_sets.png")
  result["seconds"] = time.perf_counter() - t0
  files.write_text(out / "care_sets.json",
                   json.dumps(result, indent=1) + "\n")
  files.write_text(out / "care_sets.md", markdown(result))
  print(f"wrote {out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
  app.run(main)
