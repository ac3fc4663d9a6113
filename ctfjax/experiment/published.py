"""A benchmark beside published numbers: one run, rows named after a paper's.

    from ctfjax import experiment, train
    config = train.load_config("configs/benchmark_morpho_mnist.py")
    result = experiment.benchmark(config)

`config.benchmark.rows` names the rows: each a model of the run
(`config.run.models`, usually a variant: `job.variants`) with the label the
paper gives it, its published numbers (None where the paper has none) and
the paper's training budget for it. The run trains every row's model in
`config.benchmark.workdir` (resuming, or taking its report as it is when
it matches the config and this evaluation version), then writes
benchmark.md, benchmark.csv and benchmark.json in `config.benchmark.out`,
with tables shaped like Melistas et al.'s (2024) Tables 1 (composition), 3
(effectiveness) and 5 (realism and minimality), each with two rows per
model: ours, and the paper's published numbers for the same model, column
by column; a column only one side has is empty on the other (e.g. LPIPS,
which needs pretrained VGG weights that cannot be downloaded here; the
measured effectiveness, which the paper does not have). Then a
ground-truth table (ours only: the paper has no ground truth) and both
sides' training budgets. Table 3 and the ground-truth table end with the
generator's true counterfactuals scored the same way (the readers'
floor).

A row's `published` section (ConfigDict, numbers or None):

    composition: l1, embedding_l1, lpips: (1 cycle, 10 cycles)
    effectiveness: thickness_mae, intensity_mae, digit_acc:
        (do(thickness), do(intensity), do(digit))
    realism: fid
    minimality: (CLD, P(S_x* <= div), P(S_x >= div))
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping, Sequence

import ml_collections

from ctfjax.errors import UserError
from ctfjax.evaluate import datasets
from ctfjax.experiment import job
from ctfjax import files
from ctfjax.report import schema
from ctfjax.report import tables

OURS = "ours"
ORACLE = "true counterfactuals"  # The report's oracle entry.
FAMILIES = ("do(thickness)", "do(intensity)", "do(digit)")
# Table 3's column groups: (our report section, variable, header, the
# published key).
EFFECTIVENESS = (
    ("effectiveness_mae", "thickness", "Thickness MAE", "thickness_mae"),
    ("effectiveness_mae", "intensity", "Intensity MAE", "intensity_mae"),
    ("effectiveness", "digit", "Digit acc.", "digit_acc"),
)
MEASURED = (
    ("effectiveness_measured", "thickness", "measured thickness MAE"),
    ("effectiveness_measured", "intensity", "measured intensity MAE"),
)
ROW_KEYS = ("label", "published", "budget")
PUBLISHED_KEYS = ("composition", "effectiveness", "realism", "minimality")


def is_published_benchmark(config: ml_collections.ConfigDict) -> bool:
  """Whether `config.benchmark` describes rows beside published numbers."""
  b = config.get("benchmark")
  return b is not None and "rows" in b


def _check(config: ml_collections.ConfigDict):
  b = config.benchmark
  for key in ("rows", "workdir", "out", "reference", "reuse_reports"):
    if key not in b:
      raise UserError(f"config key 'benchmark.{key}' is missing; see "
                      "configs/benchmark_morpho_mnist.py")
  if not b.rows:
    raise UserError("config key 'benchmark.rows' names no row")
  models = tuple(config.get("run", {}).get("models", ()))
  if sorted(models) != sorted(b.rows):
    raise UserError(f"config key 'run.models' {models} must list the "
                    f"benchmark rows: {', '.join(sorted(b.rows))}")
  for name, row in b.rows.items():
    extra = sorted(set(row) - set(ROW_KEYS))
    if extra:
      raise UserError(f"config key 'benchmark.rows.{name}': unknown key "
                      f"{extra[0]!r}; known: {', '.join(ROW_KEYS)}")
    published = row.get("published") or {}
    extra = sorted(set(published) - set(PUBLISHED_KEYS))
    if extra:
      raise UserError(f"config key 'benchmark.rows.{name}.published': "
                      f"unknown key {extra[0]!r}; known: "
                      f"{', '.join(PUBLISHED_KEYS)}")
  datasets.evaluator(config.data)  # Fails before any training.
  for name in models:
    job.model_config(config, name)  # Bad overrides fail here too.


def run_config(config: ml_collections.ConfigDict
               ) -> ml_collections.ConfigDict:
  """The main-job config of the benchmark (without its `benchmark`)."""
  out = config.copy_and_resolve_references()
  with out.unlocked():
    del out["benchmark"]
  return out


def _get(tree: Any, *path: Any) -> Any:
  for key in path:
    if tree is None:
      return None
    if isinstance(key, int):
      tree = tree[key] if isinstance(tree, (list, tuple)) and \
          key < len(tree) else None
    else:
      tree = tree.get(key) if hasattr(tree, "get") else None
  return tree


def _plain(value: Any) -> Any:
  """A ConfigDict as a plain dict (for JSON); anything else as it is."""
  return value.to_dict() if hasattr(value, "to_dict") else value


def _mean(values: Sequence[Any]) -> float | None:
  values = [v for v in values if v is not None]
  return sum(values) / len(values) if values else None


def _pairs(rows: Mapping[str, Any], entries: Mapping[str, Mapping],
           ours, published) -> list[list[Any]]:
  """Two rows per model: [label, "ours", *ours(entry)] and [label,
  reference, *published(row's published numbers)]."""
  out = []
  for name, row in rows.items():
    label = row.get("label") or name
    out.append([label, OURS, *ours(entries[name])])
    out.append([label, "seed", *published(row.get("published") or {})])
  return out


def composition_table(rows, entries) -> tuple[list[str], list[list[Any]]]:
  """Melistas et al. Table 1: l1 image space, l1 embeddings, LPIPS; 1 and
  10 cycles."""
  header = ["model", "source", "l1 image 1 cycle", "l1 image 10 cycles",
            "l1 embeddings 1 cycle", "l1 embeddings 10 cycles",
            "LPIPS 1 cycle", "LPIPS 10 cycles"]
  ours = lambda e: [_get(e, "composition", k) for k in
                    ("l1_1", "l1_10", "embedding_l1_1", "embedding_l1_10")
                    ] + [None, None]
  seed = lambda p: [_get(p, "composition", k, i)
                    for k in ("l1", "embedding_l1", "lpips")
                    for i in (0, 1)]
  return header, _pairs(rows, entries, ours, seed)


def effectiveness_table(rows, entries) -> tuple[list[str],
                                                list[list[Any]]]:
  """Melistas et al. Table 3 (thickness MAE, intensity MAE, digit accuracy under
  do(t), do(i), do(y)), then our measured MAE columns."""
  short = {"do(thickness)": "do(t)", "do(intensity)": "do(i)",
           "do(digit)": "do(y)"}
  header = ["model", "source"]
  header += [f"{head} {short[f]}" for _, _, head, _ in EFFECTIVENESS
             for f in FAMILIES]
  header += [f"{head} {short[f]}" for _, _, head in MEASURED
             for f in FAMILIES]

  def ours(e):
    cells = [_get(e, section, f, var) for section, var, _, _ in EFFECTIVENESS
             for f in FAMILIES]
    return cells + [_get(e, section, f, var) for section, var, _ in MEASURED
                    for f in FAMILIES]

  def seed(p):
    cells = [_get(p, "effectiveness", key, i)
             for _, _, _, key in EFFECTIVENESS for i in range(3)]
    return cells + [None] * (len(MEASURED) * len(FAMILIES))

  return header, _pairs(rows, entries, ours, seed) + _oracle(entries, ours)


def _oracle(entries, ours) -> list[list[Any]]:
  """The generator's true counterfactuals through the same readers (the
  readers' floor), when the report has them."""
  oracle = entries.get(ORACLE)
  return [] if oracle is None else [[ORACLE, "generator", *ours(oracle)]]


def ground_truth_table(rows, entries) -> tuple[list[str],
                                               list[list[Any]]]:
  """Ours only (the paper has no ground truth): against the generator's
  true counterfactual of the same exogenous values."""
  short = {"do(thickness)": "do(t)", "do(intensity)": "do(i)",
           "do(digit)": "do(y)"}
  columns = [("ground_truth_error", None, "pixel L1")]
  columns += [(section, var, f"{var} {label} err")
              for section, label in (("ground_truth_measured", "measured"),
                                     ("ground_truth_drawn", "drawn"))
              for var in ("thickness", "intensity")]
  header = ["model", "source"] + [f"{head} {short[f]}"
                                  for _, _, head in columns
                                  for f in FAMILIES]

  def ours(e):
    return [_get(e, section, f) if var is None else
            _get(e, section, f, var)
            for section, var, _ in columns for f in FAMILIES]

  out = [[row.get("label") or name, OURS, *ours(entries[name])]
         for name, row in rows.items()]
  return header, out + _oracle(entries, ours)


def realism_table(rows, entries) -> tuple[list[str], list[list[Any]]]:
  """Melistas et al. Table 5 (MorphoMNIST): FID and minimality (CLD, P1, P2),
  ours averaged over the intervention families."""
  header = ["model", "source", "FID (seed) / FD (ours)", "CLD",
            "P(S_x* <= div)", "P(S_x >= div)", "FD real test (floor)",
            "FD[latent_vae]"]

  def ours(e):
    per = _get(e, "minimality", "per_intervention") or {}
    return [
        _mean(list((_get(e, "realism", "per_intervention") or {}).values())),
        *(_mean([v.get(k) for v in per.values()])
          for k in ("cld", "p1", "p2")),
        _get(e, "realism", "real_test"),
        _mean(list((_get(e, "realism_latent", "per_intervention") or {})
                   .values())),
    ]

  def seed(p):
    return [_get(p, "realism", "fid"),
            *(_get(p, "minimality", i) for i in range(3)), None, None]

  return header, _pairs(rows, entries, ours, seed)


def budget_table(rows, entries, config) -> tuple[list[str],
                                                 list[list[Any]]]:
  """Each side's training budget per model."""
  header = ["model", "source", "training"]
  out = []
  for name, row in rows.items():
    label = row.get("label") or name
    e = entries[name]
    steps, seconds = e["train"]["steps"], e["train"]["seconds"]
    model_config = job.model_config(config, name)
    out.append([label, OURS,
                f"{steps} steps of batch {model_config.train.batch_size} "
                f"on CPU, {seconds:.0f} s"])
    out.append([label, "seed", row.get("budget") or None])
  return header, out


TABLE_SPECS = (
    ("composition", "Table 1: Composition",
     "The null intervention applied 1 and 10 times: mean L1 to the original "
     "on 0-255 pixels and of the embeddings (mean absolute difference per "
     "dimension). Ours embeds with our CPU-sized anti-causal predictors, "
     "the paper with its own, so embedding distances compare in kind, not "
     "in value. LPIPS needs pretrained VGG-16 weights, which this "
     "benchmark cannot download: the paper's numbers only."),
    ("effectiveness", "Table 3: Effectiveness",
     "Random single-parent interventions (values from the marginals). "
     "Thickness MAE (pixels), intensity MAE (0-255) and digit accuracy, "
     "read from the edits by anti-causal predictors against the parents "
     "the model drew (intervened, propagated, preserved). The 'measured' "
     "columns (ours only) measure thickness and intensity on the image "
     "with the Morpho-MNIST tools, no learned predictor."),
    ("realism", "Table 5: Realism and minimality",
     "The paper's FID uses a pretrained Inception network; ours is the "
     "Frechet distance on our predictors' embedding (FD), which no "
     "published FID compares with; FD[latent_vae] on the CLD VAE's "
     "posterior means. CLD (w = 0.8, 0.2) and its two probabilities, "
     "continuous parents in 10 bins; ours averaged over do(thickness), "
     "do(intensity) and do(digit)."),
    ("ground_truth", "Ground truth (ours only)",
     "The paper has no ground truth. Against the generator's true "
     "counterfactual image of the same exogenous values: mean pixel L1 "
     "(0-255), the MAE between the measured thickness / intensity of the "
     "edit and of the true image, and the MAE between the parents the "
     "model drew and the true counterfactual parents (its flows' "
     "abduction). do(digit) has no ground truth: empty."),
    ("budget", "Training budgets", ""),
)


def _tables(rows, entries, config) -> dict[str, tuple[list, list]]:
  return {"composition": composition_table(rows, entries),
          "effectiveness": effectiveness_table(rows, entries),
          "realism": realism_table(rows, entries),
          "ground_truth": ground_truth_table(rows, entries),
          "budget": budget_table(rows, entries, config)}


def markdown(report: Mapping[str, Any], built: Mapping[str, tuple],
             reference: str, command: str) -> str:
  """benchmark.md: the tables with their notes and the run's notes."""
  out = [f"# {report['dataset']}: ours beside {reference}", "",
         f"Command: `{command}`. True diagram: `{report['graph']}`. "
         f"'seed' rows: the numbers {reference} publishes for the same "
         "model (— where it has none).", ""]
  out += [f"{line}" for line in report.get("notes", [])] + [""]
  for key, title, note in TABLE_SPECS:
    out += [f"## {title}", ""]
    if note:
      out += [note, ""]
    out += [tables.markdown_table(*built[key]), ""]
  return "\n".join(out)


def long_rows(built: Mapping[str, tuple]) -> list[dict[str, Any]]:
  """Every cell as {table, model, source, column, value} (the CSV)."""
  out = []
  for key, (header, rows) in built.items():
    for row in rows:
      for column, value in zip(header[2:], row[2:]):
        out.append({"table": key, "model": row[0], "source": row[1],
                    "column": column, "value": value})
  return out


def benchmark(config: ml_collections.ConfigDict,
              command: str = "python -m launch.benchmark "
                             "--config=configs/benchmark_morpho_mnist.py"
              ) -> dict[str, Any]:
  """Trains (or reuses) the rows' run and writes the published-beside-ours
  tables.

  Args:
    config: a main-job config with a `benchmark` section (rows, workdir,
      out, reference, reuse_reports); see configs/benchmark_morpho_mnist.py.
    command: the command line the markdown names.

  Returns:
    {"reports": [the run's report], "tables": {name: (header, rows)},
    "paths": {file name: path}}.
  """
  _check(config)
  b = config.benchmark
  cfg = run_config(config)
  files.writable_dir(b.out, "config key 'benchmark.out'")
  workdir = files.writable_dir(b.workdir, "config key 'benchmark.workdir'")
  report = job.current_report(cfg, workdir) if b.reuse_reports else None
  if report is None:
    job.log(f"benchmark: {cfg.data.name} in {workdir}")
    report = job.run(cfg, workdir)
  else:
    job.log(f"benchmark: reusing {workdir}/report.json")
  entries = {e["model"]: e for e in report["models"]}
  if report.get("oracle"):
    entries[ORACLE] = report["oracle"]
  # Rows in `run.models` order (a ConfigDict keeps its keys sorted).
  rows = {name: b.rows[name] for name in cfg.run.models}
  built = _tables(rows, entries, cfg)
  out = pathlib.Path(b.out)
  published = {name: {"label": row.get("label") or name,
                      "budget": row.get("budget"),
                      "published": _plain(row.get("published"))}
               for name, row in rows.items()}
  paths = {
      "benchmark.md": files.write_text(
          out / "benchmark.md",
          markdown(report, built, b.reference, command)),
      "benchmark.csv": tables.write_csv(long_rows(built),
                                        out / "benchmark.csv"),
      "benchmark.json": files.write_text(out / "benchmark.json", json.dumps(
          schema.clean({"reference": b.reference, "rows": published,
                        "tables": {k: {"header": h, "rows": r}
                                   for k, (h, r) in built.items()},
                        "reports": [report]}), indent=1) + "\n"),
  }
  return {"reports": [report], "tables": built,
          "paths": {k: str(v) for k, v in paths.items()}}
