"""The benchmark: a models x datasets x metrics grid in one set of tables.

The grid is a list of runs of the main job (`job.run`), each a dataset
of `config.benchmark.datasets` in its workdir of `benchmark.workdirs`, so a
run already trained is only re-evaluated, and one whose report is current
is taken as it is. A run trains this config's models by default; its entry
of `benchmark.configs` may name another config file (a comparison config
whose variants are other image mechanisms: the two-stage ANCM, the
diffusion NCM), its entry of `benchmark.overrides` config overrides
("key=value", as on the command line), and its entry of `benchmark.models`
the models it trains and reports (its `run.models`), so that a run of a
comparison config adds only its new rows. A (dataset, model) row comes
from one run only.

The tables follow the layout of Melistas et al. (2024) (one row per model
and dataset): composition (its Table 1), effectiveness (Table 3), realism
and minimality (Table 5), reversibility, plus the models' budgets (steps,
seconds), ctf-consistency and ground-truth error, which the paper does not
have.
Outputs, in `config.benchmark.out`: benchmark.md (the runs that gave the
rows, then the tables), benchmark.csv (every cell in long form) and
benchmark.json (the reports).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import ml_collections

from ctfjax import train
from ctfjax.errors import UserError
from ctfjax.evaluate import datasets
from ctfjax.experiment import job
from ctfjax.experiment import published
from ctfjax import files
from ctfjax.report import schema
from ctfjax.report import tables


def _check(config: ml_collections.ConfigDict):
  b = config.get("benchmark")
  if b is None:
    raise UserError("the config has no 'benchmark' section; use "
                    "configs/benchmark_colored_mnist.py or build on it")
  for key in ("workdirs", "configs", "overrides", "models"):
    value = tuple(b.get(key) or ())
    if (value or key == "workdirs") and len(value) != len(b.datasets):
      raise UserError(f"config keys 'benchmark.datasets' "
                      f"({len(b.datasets)}) and 'benchmark.{key}' "
                      f"({len(value)}) must have the same length")
  known = [t for t in tables.TABLES if t != "summary"]
  for name in b.tables:
    if name not in known:
      raise UserError(f"config key 'benchmark.tables': unknown table "
                      f"{name!r}; known: {', '.join(known)}")


def _run_config(config: ml_collections.ConfigDict, dataset: str,
                file: str, overrides: Sequence[str], models: Sequence[str]
                ) -> ml_collections.ConfigDict:
  """The main-job config of one run: `file`'s (this config's when empty)
  with `overrides`, on `dataset`, training `models` (all of its
  `run.models` when empty)."""
  overrides = list(overrides)
  base = (train.load_config(file, overrides) if file
          else train.apply_overrides(config, overrides))
  out = base.copy_and_resolve_references()
  with out.unlocked():
    if "benchmark" in out:
      del out["benchmark"]
    out.data.name = dataset
    if models:
      if "run" not in out:
        out.run = ml_collections.ConfigDict()
      out.run.models = tuple(models)
  return out


class Run(NamedTuple):
  """One run of the grid: its dataset, workdir and main-job config, and
  where the config came from (its file, "the benchmark config" for this
  one, then its overrides)."""

  dataset: str
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  origin: tuple[str, ...]


def runs(config: ml_collections.ConfigDict) -> list[Run]:
  """Every run of the grid, each checked before any training.

  Raises:
    UserError: mismatched lengths, an unknown table, dataset or model, a
      config file that fails to load, or a (dataset, model) row that two
      runs would give.
  """
  _check(config)
  b = config.benchmark
  n = len(b.datasets)
  config_files = tuple(b.get("configs") or ("",) * n)
  overrides = tuple(b.get("overrides") or ((),) * n)
  models = tuple(b.get("models") or ((),) * n)
  out, seen = [], {}
  for dataset, workdir, file, changes, names in zip(
      b.datasets, b.workdirs, config_files, overrides, models):
    try:
      cfg = _run_config(config, dataset, file, changes, names)
      datasets.evaluator(cfg.data)
    except UserError as e:
      raise UserError(f"benchmark run {workdir}: {e}") from None
    for name in job.run_models(cfg):
      other = seen.setdefault((dataset, name), workdir)
      if other != workdir:
        raise UserError(
            f"config key 'benchmark': the row {name} on {dataset} would "
            f"come from two runs ({other} and {workdir}); leave it out of "
            f"one with 'benchmark.models'")
    out.append(Run(dataset, pathlib.Path(workdir), cfg,
                   (file or "the benchmark config", *changes)))
  return out


def benchmark(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Runs (or reuses) every dataset's run and writes the benchmark tables.

  A config whose `benchmark` section has `rows` is a benchmark beside a
  paper's published numbers instead (`published.benchmark`, e.g.
  configs/benchmark_morpho_mnist.py).

  Args:
    config: a main-job config with a `benchmark` section (datasets,
      workdirs, optional configs, overrides and models, tables, out,
      reuse_reports); see configs/benchmark_colored_mnist.py.

  Returns:
    {"reports": [report per dataset], "paths": {name: path}}.
  """
  if published.is_published_benchmark(config):
    return published.benchmark(config)
  grid = runs(config)  # Checks the whole grid first.
  b = config.benchmark
  files.writable_dir(b.out, "config key 'benchmark.out'")
  for _, workdir, _, _ in grid:
    files.writable_dir(workdir, "benchmark workdir")
  reports, sources = [], []
  for dataset, workdir, cfg, origin in grid:
    report = job.current_report(cfg, workdir) if b.reuse_reports else None
    if report is None:
      job.log(f"benchmark: {dataset} in {workdir}")
      report = job.run(cfg, workdir)
    else:
      job.log(f"benchmark: {dataset}: reusing {workdir}/report.json")
    reports.append(report)
    sources.append(f"`{workdir}` ({'; '.join((dataset, *origin))}): "
                   f"{', '.join(e['model'] for e in report['models'])}")
  out = pathlib.Path(b.out)
  names = list(b.tables)
  rows = tables.long_rows(reports, names)
  notes = {}  # The datasets' own wording of each table's note.
  for _, _, cfg, _ in grid:
    for name, note in datasets.evaluator(cfg.data).table_notes().items():
      notes.setdefault(name, note)
  paths = {
      "benchmark.md": files.write_text(
          out / "benchmark.md", tables.benchmark_markdown(
              reports, names, title="Benchmark: models x datasets",
              notes=notes, intro=["The rows by run (workdir, dataset, "
                                  "config file, overrides):", ""] + [
                                      f"* {line}" for line in sources])),
      "benchmark.csv": tables.write_csv(rows, out / "benchmark.csv"),
      "benchmark.json": files.write_text(
          out / "benchmark.json",
          json.dumps(schema.clean({"reports": reports}), indent=1) + "\n"),
  }
  return {"reports": reports, "paths": {k: str(v) for k, v in paths.items()}}
