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
with tables shaped like the paper's, each with two rows per model: ours,
and the paper's published numbers for the same model, column by column; a
column only one side has is empty on the other (e.g. LPIPS where the run
has no VGG-16 weights; the measured effectiveness, which the paper does
not have). Then, where the dataset has one, a ground-truth table (ours
only: the paper has no ground truth) and both sides' training budgets.
The effectiveness and ground-truth tables end with the generator's true
counterfactuals scored the same way (the readers' floor), when the report
has them.

Which tables and columns: the dataset's `Paper` in `PAPERS` (by
`config.data.name`), so a second dataset is one entry, not a copy:

* "morpho_mnist": Melistas et al.'s (2024) Tables 1 (composition), 3
  (effectiveness) and 5 (realism and minimality), and our ground truth;
* "celeba/simple": their Tables 2 (composition), 4 (effectiveness: F1 of
  smiling and eyeglasses) and Table 5's CelebA half.

A row's `published` section (ConfigDict, numbers or None), with the keys
its dataset's `Paper` names:

    composition: {key: (1 cycle, 10 cycles)}, e.g. l1, embedding_l1, lpips
    effectiveness: {key: (one value per intervention family)}, e.g.
        thickness_mae: (do(thickness), do(intensity), do(digit))
    realism: {fid: value}
    minimality: (CLD, P(S_x* <= div), P(S_x >= div))
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping, Sequence

import jax
import ml_collections

from ctfjax.errors import UserError
from ctfjax.evaluate import datasets
from ctfjax.experiment import job
from ctfjax import files
from ctfjax.report import schema
from ctfjax.report import tables

OURS = "ours"
ORACLE = "true counterfactuals"  # The report's oracle entry.
ROW_KEYS = ("label", "published", "budget")
PUBLISHED_KEYS = ("composition", "effectiveness", "realism", "minimality")
CYCLES = (1, 10)  # The composition's cycle counts, ours and the paper's.
MINIMALITY = ("cld", "p1", "p2")  # Table 5's three minimality columns.


@dataclasses.dataclass(frozen=True)
class Column:
  """One column of the composition table.

  Attributes:
    header: its title.
    ours: the key of our report's "composition" section, or None (the
      paper's only).
    paper: (key of the row's published "composition", index) or None (ours
      only).
  """

  header: str
  ours: str | None
  paper: tuple[str, int] | None


def cycles(header: str, ours: str | None, paper: str | None
           ) -> tuple[Column, ...]:
  """The 1- and 10-cycle columns of one composition distance: ours from
  `{ours}_1` and `{ours}_10`, the paper's from `paper`'s pair."""
  return tuple(
      Column(f"{header} {m} cycle{'s' if m > 1 else ''}",
             None if ours is None else f"{ours}_{m}",
             None if paper is None else (paper, i))
      for i, m in enumerate(CYCLES))


@dataclasses.dataclass(frozen=True)
class Effect:
  """A column group of the effectiveness table: one column per family.

  Attributes:
    section: our report section ({family: {variable: value}}), or None (the
      paper's only).
    variable: the variable it scores.
    header: the group's title; each column adds the family's short name.
    paper: the key of the row's published "effectiveness" (one value per
      family, in `Paper.families` order), or None (ours only).
  """

  section: str | None
  variable: str
  header: str
  paper: str | None


@dataclasses.dataclass(frozen=True)
class Paper:
  """One dataset's tables beside a paper's.

  Attributes:
    families: {intervention family: its short name in column titles}, in
      the paper's column order.
    composition: the composition table's columns.
    effectiveness: the effectiveness table's column groups.
    ground_truth: (report section, variable or None, header) column
      groups of the ground-truth table, one column per family; () when the
      dataset has no ground truth (no such table).
    tables: (key, title, note) of each table in benchmark.md's order; keys
      of `BUILDERS`.
    command: the command line benchmark.md names.
    not_computed: (our composition keys, a line): the line follows the
      composition note when no row has any of those keys (e.g. no
      perceptual weights given); None: no such line.
  """

  families: Mapping[str, str]
  composition: tuple[Column, ...]
  effectiveness: tuple[Effect, ...]
  ground_truth: tuple[tuple[str, str | None, str], ...]
  tables: tuple[tuple[str, str, str], ...]
  command: str
  not_computed: tuple[tuple[str, ...], str] | None = None

  def published_keys(self, section: str) -> tuple[str, ...]:
    """The keys a row's published `section` may hold."""
    if section == "composition":
      return tuple(dict.fromkeys(c.paper[0] for c in self.composition
                                 if c.paper))
    if section == "effectiveness":
      return tuple(g.paper for g in self.effectiveness if g.paper)
    return ("fid",) if section == "realism" else ()

  def published_length(self, section: str) -> int | None:
    """How many values each published number list of `section` has."""
    return {"composition": len(CYCLES),
            "effectiveness": len(self.families),
            "minimality": len(MINIMALITY)}.get(section)


def is_published_benchmark(config: ml_collections.ConfigDict) -> bool:
  """Whether `config.benchmark` describes rows beside published numbers."""
  b = config.get("benchmark")
  return b is not None and "rows" in b


def paper(config: ml_collections.ConfigDict) -> Paper:
  """The `Paper` of the config's dataset.

  Raises:
    UserError: no published tables for that dataset.
  """
  name = config.get("data", {}).get("name")
  if name not in PAPERS:
    raise UserError(f"no published tables for dataset {name!r} "
                    f"(config key 'data.name'); known: "
                    f"{', '.join(PAPERS)}")
  return PAPERS[name]


def _check(config: ml_collections.ConfigDict) -> Paper:
  """The config's `Paper`, after checking its benchmark section, its rows'
  published numbers, the dataset and every row's model config."""
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
  spec = paper(config)
  for name, row in b.rows.items():
    _check_keys(f"benchmark.rows.{name}", row, ROW_KEYS)
    published = row.get("published") or {}
    _check_keys(f"benchmark.rows.{name}.published", published,
                PUBLISHED_KEYS)
    for section, value in published.items():
      _check_published(f"benchmark.rows.{name}.published.{section}",
                       section, value, spec)
  datasets.evaluator(config.data)  # Fails before any training.
  for name in models:
    job.model_config(config, name)  # Bad overrides fail here too.
  return spec


def _check_keys(where: str, section: Mapping[str, Any],
                known: Sequence[str]):
  extra = sorted(set(section) - set(known))
  if extra:
    raise UserError(f"config key '{where}': unknown key {extra[0]!r}; "
                    f"known: {', '.join(known)}")


def _check_published(where: str, section: str, value: Any, spec: Paper):
  """A published section's keys are the ones its table reads and each
  number list has one value per column, so that a number cannot land in
  no cell or in the wrong one."""
  if value is None:
    return
  length = spec.published_length(section)
  if hasattr(value, "keys"):
    _check_keys(where, value, spec.published_keys(section))
    lists = {f"{where}.{k}": v for k, v in value.items()}
  else:
    lists = {where: value}
  if length is None:
    return
  for key, numbers in lists.items():
    if numbers is not None and (isinstance(numbers, str) or not isinstance(
        numbers, Sequence) or len(numbers) != length):
      raise UserError(f"config key '{key}' must list {length} numbers (or "
                      f"None), got {numbers!r}")


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


def composition_table(spec: Paper, rows, entries
                      ) -> tuple[list[str], list[list[Any]]]:
  """The paper's composition table: `spec.composition`'s columns (e.g.
  l1 image space, l1 embeddings, LPIPS; 1 and 10 cycles)."""
  header = ["model", "source"] + [c.header for c in spec.composition]
  ours = lambda e: [None if c.ours is None else
                    _get(e, "composition", c.ours)
                    for c in spec.composition]
  seed = lambda p: [None if c.paper is None else
                    _get(p, "composition", *c.paper)
                    for c in spec.composition]
  return header, _pairs(rows, entries, ours, seed)


def effectiveness_table(spec: Paper, rows, entries
                        ) -> tuple[list[str], list[list[Any]]]:
  """The paper's effectiveness table: each group of `spec.effectiveness`
  under each intervention family (e.g. thickness MAE, intensity MAE and
  digit accuracy under do(t), do(i), do(y)), then our columns the paper
  does not have."""
  header = ["model", "source"] + [f"{g.header} {short}"
                                  for g in spec.effectiveness
                                  for short in spec.families.values()]

  def ours(e):
    return [None if g.section is None else _get(e, g.section, f, g.variable)
            for g in spec.effectiveness for f in spec.families]

  def seed(p):
    return [None if g.paper is None else _get(p, "effectiveness", g.paper, i)
            for g in spec.effectiveness for i in range(len(spec.families))]

  return header, _pairs(rows, entries, ours, seed) + _oracle(entries, ours)


def _oracle(entries, ours) -> list[list[Any]]:
  """The generator's true counterfactuals through the same readers (the
  readers' floor), when the report has them."""
  oracle = entries.get(ORACLE)
  return [] if oracle is None else [[ORACLE, "generator", *ours(oracle)]]


def ground_truth_table(spec: Paper, rows, entries
                       ) -> tuple[list[str], list[list[Any]]]:
  """Ours only (the paper has no ground truth): against the generator's
  true counterfactual of the same exogenous values."""
  header = ["model", "source"] + [f"{head} {short}"
                                  for _, _, head in spec.ground_truth
                                  for short in spec.families.values()]

  def ours(e):
    return [_get(e, section, f) if var is None else
            _get(e, section, f, var)
            for section, var, _ in spec.ground_truth for f in spec.families]

  out = [[row.get("label") or name, OURS, *ours(entries[name])]
         for name, row in rows.items()]
  return header, out + _oracle(entries, ours)


def realism_table(spec: Paper, rows, entries
                  ) -> tuple[list[str], list[list[Any]]]:
  """The paper's Table 5 (its half for this dataset): FID and minimality
  (CLD, P1, P2), ours averaged over the intervention families."""
  del spec  # Every dataset's report has the same realism sections.
  header = ["model", "source", "FID (seed) / FD (ours)", "CLD",
            "P(S_x* <= div)", "P(S_x >= div)", "FD real test (floor)",
            "FD[latent_vae]"]

  def ours(e):
    per = _get(e, "minimality", "per_intervention") or {}
    return [
        _mean(list((_get(e, "realism", "per_intervention") or {}).values())),
        *(_mean([v.get(k) for v in per.values()]) for k in MINIMALITY),
        _get(e, "realism", "real_test"),
        _mean(list((_get(e, "realism_latent", "per_intervention") or {})
                   .values())),
    ]

  def seed(p):
    return [_get(p, "realism", "fid"),
            *(_get(p, "minimality", i) for i in range(len(MINIMALITY))),
            None, None]

  return header, _pairs(rows, entries, ours, seed)


def budget_table(rows, entries, config) -> tuple[list[str],
                                                 list[list[Any]]]:
  """Each side's training budget per model."""
  header = ["model", "source", "training"]
  # The machine is this process's (a reused report's may have been
  # another's).
  device = jax.default_backend().upper()
  out = []
  for name, row in rows.items():
    label = row.get("label") or name
    e = entries[name]
    steps, seconds = e["train"]["steps"], e["train"]["seconds"]
    model_config = job.model_config(config, name)
    out.append([label, OURS,
                f"{steps} steps of batch {model_config.train.batch_size} "
                f"on {device}, {seconds:.0f} s"])
    out.append([label, "seed", row.get("budget") or None])
  return header, out


# Table key -> builder(spec, rows, entries, config).
BUILDERS = {
    "composition": lambda s, r, e, c: composition_table(s, r, e),
    "effectiveness": lambda s, r, e, c: effectiveness_table(s, r, e),
    "realism": lambda s, r, e, c: realism_table(s, r, e),
    "ground_truth": lambda s, r, e, c: ground_truth_table(s, r, e),
    "budget": lambda s, r, e, c: budget_table(r, e, c),
}


def tables_of(spec: Paper, rows: Mapping[str, Any],
              entries: Mapping[str, Mapping], config
              ) -> dict[str, tuple[list, list]]:
  """Every table of `spec`: {key: (header, rows)}.

  Args:
    spec: the dataset's `Paper`.
    rows: {model name: its benchmark row (label, published, budget)}, in
      the run's order.
    entries: {model name: its report entry}, plus `ORACLE` when the report
      has the generator's true counterfactuals.
    config: the run's config (each row's batch size).
  """
  return {key: BUILDERS[key](spec, rows, entries, config)
          for key, _, _ in spec.tables}


def markdown(spec: Paper, report: Mapping[str, Any],
             built: Mapping[str, tuple], reference: str, command: str,
             flagged: Mapping[str, Mapping] | None = None) -> str:
  """benchmark.md: the tables with their notes and the run's notes.

  Args:
    spec: the dataset's `Paper`.
    report: the run's report.
    built: `tables_of`'s tables.
    reference: the paper, as the markdown names it.
    command: the command line it names.
    flagged: {row label: report entry} of the models that failed their
      dataset's bars (`flagged`): their rows of ours get `tables.UNUSABLE`
      and a footnote says why.
  """
  flagged = flagged or {}
  out = [f"# {report['dataset']}: ours beside {reference}", "",
         f"Command: `{command}`. True diagram: `{report['graph']}`. "
         f"'seed' rows: the numbers {reference} publishes for the same "
         "model (— where it has none).", ""]
  out += [f"{line}" for line in report.get("notes", [])]
  out += tables.usability_notes([{**e, "model": label}
                                 for label, e in flagged.items()]) + [""]
  for key, title, note in spec.tables:
    out += [f"## {title}", ""]
    if key == "composition" and _not_computed(spec, report):
      note = f"{note} {spec.not_computed[1]}"
    if note:
      out += [note, ""]
    header, rows = built[key]
    rows = [[f"{r[0]} {tables.UNUSABLE}", *r[1:]]
            if r[1] == OURS and r[0] in flagged else r for r in rows]
    out += [tables.markdown_table(header, rows), ""]
  return "\n".join(out)


def flagged(rows: Mapping[str, Any], entries: Mapping[str, Mapping]
            ) -> dict[str, Mapping]:
  """{row label: report entry} of the rows whose model failed its
  dataset's bars on training (the entry's "usable")."""
  return {row.get("label") or name: entries[name]
          for name, row in rows.items() if tables.unusable(entries[name])}


def _not_computed(spec: Paper, report: Mapping[str, Any]) -> bool:
  """Whether no model of the report has any of `spec.not_computed`'s
  composition keys."""
  if spec.not_computed is None:
    return False
  keys = spec.not_computed[0]
  return all(_get(e, "composition", k) is None
             for e in report["models"] for k in keys)


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
              command: str | None = None) -> dict[str, Any]:
  """Trains (or reuses) the rows' run and writes the published-beside-ours
  tables.

  Args:
    config: a main-job config with a `benchmark` section (rows, workdir,
      out, reference, reuse_reports) on a dataset of `PAPERS`; see
      configs/benchmark_morpho_mnist.py.
    command: the command line the markdown names; None: the dataset's
      (`Paper.command`).

  Returns:
    {"reports": [the run's report], "tables": {name: (header, rows)},
    "paths": {file name: path}}.
  """
  spec = _check(config)
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
  built = tables_of(spec, rows, entries, cfg)
  out = pathlib.Path(b.out)
  published = {name: {"label": row.get("label") or name,
                      "budget": row.get("budget"),
                      "published": _plain(row.get("published"))}
               for name, row in rows.items()}
  paths = {
      "benchmark.md": files.write_text(
          out / "benchmark.md",
          markdown(spec, report, built, b.reference,
                   command or spec.command, flagged(rows, entries))),
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


# The papers' tables, by dataset ---------------------------------------------

MORPHO_MNIST = Paper(
    families={"do(thickness)": "do(t)", "do(intensity)": "do(i)",
              "do(digit)": "do(y)"},
    composition=(cycles("l1 image", "l1", "l1")
                 + cycles("l1 embeddings", "embedding_l1", "embedding_l1")
                 + cycles("LPIPS", None, "lpips")),
    effectiveness=(
        Effect("effectiveness_mae", "thickness", "Thickness MAE",
               "thickness_mae"),
        Effect("effectiveness_mae", "intensity", "Intensity MAE",
               "intensity_mae"),
        Effect("effectiveness", "digit", "Digit acc.", "digit_acc"),
        Effect("effectiveness_measured", "thickness",
               "measured thickness MAE", None),
        Effect("effectiveness_measured", "intensity",
               "measured intensity MAE", None),
    ),
    ground_truth=(
        ("ground_truth_error", None, "pixel L1"),
        *((section, var, f"{var} {label} err")
          for section, label in (("ground_truth_measured", "measured"),
                                 ("ground_truth_drawn", "drawn"))
          for var in ("thickness", "intensity")),
    ),
    tables=(
        ("composition", "Table 1: Composition",
         "The null intervention applied 1 and 10 times: mean L1 to the "
         "original on 0-255 pixels and of the embeddings (mean absolute "
         "difference per dimension). Ours embeds with our CPU-sized "
         "anti-causal predictors, the paper with its own, so embedding "
         "distances compare in kind, not in value. LPIPS needs pretrained "
         "VGG-16 weights, which this benchmark cannot download: the "
         "paper's numbers only."),
        ("effectiveness", "Table 3: Effectiveness",
         "Random single-parent interventions (values from the marginals). "
         "Thickness MAE (pixels), intensity MAE (0-255) and digit "
         "accuracy, read from the edits by anti-causal predictors against "
         "the parents the model drew (intervened, propagated, preserved). "
         "The 'measured' columns (ours only) measure thickness and "
         "intensity on the image with the Morpho-MNIST tools, no learned "
         "predictor."),
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
         "(0-255), the MAE between the measured thickness / intensity of "
         "the edit and of the true image, and the MAE between the parents "
         "the model drew and the true counterfactual parents (its flows' "
         "abduction). do(digit) has no ground truth: empty."),
        ("budget", "Training budgets", ""),
    ),
    command="python -m launch.benchmark "
            "--config=configs/benchmark_morpho_mnist.py",
)

# Our report's composition keys of the perceptual distances, each with
# "_1" and "_10": there when the run is given VGG-16 and LPIPS weights
# (eval.vgg16_weights, eval.lpips_weights;
# `ctfjax.evaluate.core.perceptual_distances`).
VGG_L1, LPIPS = "vgg16_l1", "lpips"

CELEBA = Paper(
    families={"do(Smiling)": "do(s)", "do(Eyeglasses)": "do(e)"},
    # The paper's "l1 embeddings" are on VGG-16's embedding, so ours sit
    # beside them only when the run computes the same; our predictors'
    # embedding L1 is a column of its own.
    composition=(cycles("l1 image", "l1", "l1")
                 + cycles("l1 VGG-16 embeddings", VGG_L1, "embedding_l1")
                 + cycles("LPIPS", LPIPS, "lpips")
                 + cycles("l1 predictor embeddings", "embedding_l1", None)),
    # F1 of the attribute classifiers' reading, as the paper scores it.
    effectiveness=(
        Effect("effectiveness_f1", "Smiling", "Smiling F1", "smiling_f1"),
        Effect("effectiveness_f1", "Eyeglasses", "Eyeglasses F1",
               "eyeglasses_f1"),
    ),
    ground_truth=(),
    tables=(
        ("composition", "Table 2: Composition",
         "The null intervention applied 1 and 10 times: mean L1 to the "
         "original on 0-255 pixels, L1 of VGG-16 embeddings (mean absolute "
         "difference per dimension of relu(fc7), the paper's embedding) "
         "and LPIPS (VGG-16, v0.1). The last two columns (ours only) embed "
         "with our attribute predictors instead, which the paper's "
         "numbers do not compare with."),
        ("effectiveness", "Table 4: Effectiveness",
         "do(X = 1 - x) for each binary attribute: the F1 score of the "
         "attribute classifiers' reading of the edits against the values "
         "the model drew (intervened or kept), positive class 1. Ours pool "
         "the test images; the paper averages per-batch F1 scores of its "
         "own classifiers."),
        ("realism", "Table 5: Realism and minimality (CelebA)",
         "The paper's FID uses a pretrained Inception network; ours is the "
         "Frechet distance on our attribute predictors' embedding (FD), "
         "which no published FID compares with; FD[latent_vae] on the CLD "
         "VAE's posterior means. CLD (w = 0.8, 0.2) and its two "
         "probabilities; ours averaged over do(Smiling) and "
         "do(Eyeglasses)."),
        ("budget", "Training budgets", ""),
    ),
    command="python -m launch.benchmark --config=configs/benchmark_celeba.py "
            "--config.data.source=DIR",
    not_computed=(
        tuple(f"{k}_{m}" for k in (VGG_L1, LPIPS) for m in CYCLES),
        "VGG-16 / LPIPS not computed: no weights given (eval.vgg16_weights, "
        "eval.lpips_weights)."),
)

# Dataset name (config.data.name) -> its tables beside the paper.
PAPERS = {"morpho_mnist": MORPHO_MNIST, "celeba/simple": CELEBA}
