"""configs/benchmark_wrong_diagrams.py: every run's models resolve to the
intended diagrams, each wrong one a single edge away from the truth; and
the benchmark's per-model ctf-consistency table."""

import pytest

from configs import benchmark_wrong_diagrams as wrong
from ctfjax import train
from ctfjax.causal.graph import Graph
from ctfjax.data import colored_mnist_bars
from ctfjax.experiment import grid
from ctfjax.experiment import job
from ctfjax.report import tables

CONFIG = "configs/benchmark_wrong_diagrams.py"
BACK, FRONT = wrong.BACK, wrong.FRONT
# The one edge each wrong diagram changes: (kind, edge in the truth).
INTENDED = {
    BACK: {"drop_bidirected": ("drop <->", frozenset("DC")),
           "reverse_directed": ("reverse", ("C", "B")),
           "drop_directed": ("drop ->", ("D", "B"))},
    FRONT: {"drop_bidirected": ("drop <->", frozenset("DB")),
            "reverse_directed": ("reverse", ("D", "C")),
            "drop_directed": ("drop ->", ("C", "B"))},
}


@pytest.fixture(scope="module")
def resolved():
  """{dataset: (workdir, {model: the model.graph it trains with})}."""
  config = train.load_config(CONFIG)
  out = {}
  for run in grid.runs(config):
    out[run.dataset] = (str(run.workdir), {
        name: job.model_config(run.config, name).model.graph
        for name in job.run_models(run.config)})
  return out


def test_the_runs_reuse_the_quickstart_workdirs_with_every_model(resolved):
  assert {d: w for d, (w, _) in resolved.items()} == {
      BACK: "runs/quickstart", FRONT: "runs/quickstart_frontdoor"}
  wrong_ones = ("drop_bidirected", "reverse_directed", "drop_directed")
  for dataset in (BACK, FRONT):
    assert tuple(resolved[dataset][1]) == (*wrong.BASELINES, *wrong_ones)


@pytest.mark.parametrize("dataset", [BACK, FRONT])
def test_every_model_resolves_to_its_diagram(resolved, dataset):
  graphs = resolved[dataset][1]
  true_graph = colored_mnist_bars.GRAPHS[dataset.split("/")[1]]
  assert wrong.TRUE[dataset] == true_graph
  # The quickstart's models keep the graphs they were trained with.
  assert graphs["ancm_vae"] == ""
  assert graphs["cvae_noncausal"] == "D; C; B"
  assert graphs["deepscm_markovian"] == job.model_graph(
      "deepscm_markovian", true_graph)
  for name, text in wrong.WRONG[dataset].items():
    assert Graph.parse(graphs[name]) == Graph.parse(text), name


@pytest.mark.parametrize("dataset", [BACK, FRONT])
def test_each_wrong_diagram_changes_exactly_the_intended_edge(
    resolved, dataset):
  truth = Graph.parse(wrong.TRUE[dataset])
  for name, (kind, edge) in INTENDED[dataset].items():
    g = Graph.parse(resolved[dataset][1][name])
    assert set(g.nodes) == set(truth.nodes), name
    lost_d, new_d = truth.directed - g.directed, g.directed - truth.directed
    lost_b, new_b = (truth.bidirected - g.bidirected,
                     g.bidirected - truth.bidirected)
    if kind == "drop <->":
      assert (lost_b, new_b, lost_d, new_d) == ({edge}, set(), set(), set())
    elif kind == "reverse":
      assert (lost_d, new_d, lost_b, new_b) == (
          {edge}, {edge[::-1]}, set(), set()), name
    else:
      assert (lost_d, new_d, lost_b, new_b) == ({edge}, set(), set(),
                                                 set()), name
  # The baselines: the edgeless diagram has none, the Markovian one reads
  # the bidirected edge as a directed one.
  flat = Graph.parse(resolved[dataset][1]["cvae_noncausal"])
  assert not flat.directed and not flat.bidirected
  markov = Graph.parse(resolved[dataset][1]["deepscm_markovian"])
  assert not markov.bidirected
  assert markov.directed - truth.directed == {
      BACK: {("D", "C")}, FRONT: {("D", "B")}}[dataset]


def _row(estimate, lo, hi, truth, consistent):
  return {"intervention": "D=0", "query": f"q{estimate}{lo}",
          "estimate": estimate, "bounds": [lo, hi], "truth": truth,
          "consistent": consistent}


def test_the_by_diagram_table_counts_failures_and_their_distance():
  entry = {"model": "m", "graph": "D -> B", "ctf_consistency": [
      _row(1.0, 1.0, 1.0, 1.0, True),       # Preservation row, inside.
      _row(0.5, 1.0, 1.0, 1.0, False),      # 0.5 below [1, 1].
      _row(0.9, 0.2, 0.6, 0.2, False),      # 0.3 above, descendant row.
      _row(0.4, 0.2, 0.6, 0.3, True),       # Inside, descendant row.
      _row(None, 0.2, 0.6, 0.3, None),      # No data: not judged.
      _row(0.0, 0.7, 1.0, 0.7, True),       # 0.7 below, but not rejected.
  ]}
  header, rows = tables.table([entry], "ctf_by_diagram")
  cells = dict(zip(header, rows[0]))
  assert cells["assumed diagram"] == "`D -> B`"
  assert cells["inconsistent rows"] == "2/5"
  assert cells["inconsistent descendant rows"] == "1/3"
  # Only the failed rows count: the consistent row 0.7 out does not.
  assert cells["max outside bounds, failed rows"] == pytest.approx(0.5)
  assert cells["mean |estimate - truth|"] == pytest.approx(
      (0 + 0.5 + 0.7 + 0.1 + 0.7) / 5)
  assert tables.outside_bounds(_row(0.1, 0.2, 0.6, 0.2, False)) == \
      pytest.approx(0.1)
  # A failed row whose estimate is inside (it failed on images): 0.
  inside = {**entry, "ctf_consistency": [_row(0.4, 0.2, 0.6, 0.3, False)]}
  header, rows = tables.table([inside], "ctf_by_diagram")
  cells = dict(zip(header, rows[0]))
  assert cells["max outside bounds, failed rows"] == 0.0
  assert cells["inconsistent rows"] == "1/1"
  # No failed row: no distance.
  passed = {**entry, "ctf_consistency": entry["ctf_consistency"][3:]}
  header, rows = tables.table([passed], "ctf_by_diagram")
  cells = dict(zip(header, rows[0]))
  assert cells["max outside bounds, failed rows"] is None
  assert cells["inconsistent rows"] == "0/2"
