"""The benchmark: a models x datasets x metrics grid in one set of tables.

Each dataset of `config.benchmark.datasets` is one run of the main job
(`job.run`, all of `config.run.models`) in its own workdir, so a dataset
whose run is already trained is only re-evaluated, and one whose report is
current is taken as it is. The tables follow seed 004's layout (one row per
model and dataset): composition (its Table 1), effectiveness (Table 3),
realism and minimality (Table 5), reversibility, plus ctf-consistency and
ground-truth error, which the seed does not have. Outputs, in
`config.benchmark.out`: benchmark.md, benchmark.csv (every cell in long
form) and benchmark.json (the reports).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import ml_collections

from ctfjax.errors import UserError
from ctfjax.evaluate import datasets
from ctfjax.evaluate import job
from ctfjax.evaluate import published
from ctfjax.report import files
from ctfjax.report import schema
from ctfjax.report import tables


def _check(config: ml_collections.ConfigDict):
  b = config.get("benchmark")
  if b is None:
    raise UserError("the config has no 'benchmark' section; use "
                    "configs/benchmark.py or build on it")
  if len(b.datasets) != len(b.workdirs):
    raise UserError(f"config keys 'benchmark.datasets' ({len(b.datasets)}) "
                    f"and 'benchmark.workdirs' ({len(b.workdirs)}) must "
                    "have the same length")
  known = [t for t in tables.TABLES if t not in ("models", "summary")]
  for name in b.tables:
    if name not in known:
      raise UserError(f"config key 'benchmark.tables': unknown table "
                      f"{name!r}; known: {', '.join(known)}")
  for dataset in b.datasets:
    datasets.evaluator(dataset)  # Fails before any training.


def _dataset_config(config: ml_collections.ConfigDict,
                    dataset: str) -> ml_collections.ConfigDict:
  out = config.copy_and_resolve_references()
  with out.unlocked():
    del out["benchmark"]
  out.data.name = dataset
  return out


def benchmark(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Runs (or reuses) every dataset's run and writes the benchmark tables.

  A config whose `benchmark` section has `rows` is a benchmark beside a
  paper's published numbers instead (`published.benchmark`, e.g.
  configs/benchmark_morpho.py).

  Args:
    config: a main-job config with a `benchmark` section (datasets,
      workdirs, tables, out, reuse_reports); see configs/benchmark.py.

  Returns:
    {"reports": [report per dataset], "paths": {name: path}}.
  """
  if published.is_published_benchmark(config):
    return published.benchmark(config)
  _check(config)
  b = config.benchmark
  reports = []
  for dataset, workdir in zip(b.datasets, b.workdirs):
    cfg = _dataset_config(config, dataset)
    report = job.current_report(cfg, pathlib.Path(workdir)) \
        if b.reuse_reports else None
    if report is None:
      job.log(f"benchmark: {dataset} in {workdir}")
      report = job.run(cfg, workdir)
    else:
      job.log(f"benchmark: {dataset}: reusing {workdir}/report.json")
    reports.append(report)
  out = pathlib.Path(b.out)
  names = list(b.tables)
  rows = tables.long_rows(reports, names)
  notes = {}  # The datasets' own wording of each table's note.
  for report in reports:
    for name, note in datasets.evaluator(report["dataset"]).table_notes(
        ).items():
      notes.setdefault(name, note)
  paths = {
      "benchmark.md": files.write_text(
          out / "benchmark.md", tables.benchmark_markdown(
              reports, names, title="Benchmark: models x datasets",
              notes=notes)),
      "benchmark.csv": tables.write_csv(rows, out / "benchmark.csv"),
      "benchmark.json": files.write_text(
          out / "benchmark.json",
          json.dumps(schema.clean({"reports": reports}), indent=1) + "\n"),
  }
  return {"reports": reports, "paths": {k: str(v) for k, v in paths.items()}}
