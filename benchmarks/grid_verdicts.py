r"""The per-model verdict of the committed CPU grid, from its CSV.

    python -m benchmarks.grid_verdicts

The grid (`launch.benchmark --config=configs/benchmark_colored_mnist.py`,
benchmarks/results/cpu_grid/) was evaluated before the verdict existed;
its runs are not kept, but its CSV holds what the verdict reads for the
back-door models: the ctf-consistency counts, the effectiveness cells and
the realism on the digit CNN's embedding with its real-test floor (the
true counterfactuals of Colored MNIST are real digits, and score that
floor). This rebuilds those entries and writes verdict.md beside the CSV.
The CSV has no true-counterfactual rows, so effectiveness is judged
against a perfect reading (bar 0.9), not against the readers' own floor.
"""

import csv
import pathlib

from ctfjax.report import tables
from ctfjax.report import verdict

GRID = pathlib.Path(__file__).parent / "results" / "cpu_grid"
FAMILIES = ("do(D)", "do(C)", "do(B)")


def entries(path: pathlib.Path = GRID / "benchmark.csv",
            dataset: str = "colored_mnist_bars/backdoor") -> dict[str, dict]:
  """{model: the parts of its report entry that the verdict reads}."""
  out = {}
  with open(path, newline="") as f:
    for row in csv.DictReader(f):
      if row["dataset"] != dataset:
        continue
      e = out.setdefault(row["model"], {
          "model": row["model"], "dataset": dataset, "ctf_consistency": [],
          "effectiveness": {f: {} for f in FAMILIES}, "realism": {
              "metric": "FD[digit_cnn]", "per_intervention": {}}})
      col, value = row["column"], row["value"]
      if row["table"] == "ctf_consistency" and col == "ctf-consistent rows":
        good, total = map(int, value.split("/"))
        e["ctf_consistency"] = ([{"consistent": True}] * good +
                                [{"consistent": False}] * (total - good))
      elif row["table"] == "effectiveness":
        var, family = col.split(": ")
        e["effectiveness"][family][var] = float(value)
      elif row["table"] == "realism" and col.startswith("FD[digit_cnn]"):
        what = col[len("FD[digit_cnn] "):]
        if what == "real test (floor)":
          e["realism"]["real_test"] = float(value)
        else:
          e["realism"]["per_intervention"][what] = float(value)
  return out


def main():
  rows = []
  for name, entry in entries().items():
    v = verdict.verdict(entry)
    rows.append([name, "good" if v["ok"] else "not good",
                 "; ".join(v["reasons"]) or tables.NONE])
  text = "\n".join([
      "# Verdicts of the CPU grid's back-door models", "",
      "Written by `python -m benchmarks.grid_verdicts` from benchmark.csv "
      "(see its docstring: effectiveness against a perfect reading, realism "
      "on the digit CNN's embedding against the real test floor).", "",
      tables.markdown_table(["model", "verdict", "why not"], rows), ""])
  path = GRID / "verdict.md"
  path.write_text(text)
  print(text)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
