"""The main job: train (or resume) a run's models, evaluate, report.

A run is one dataset and several models that differ only in the diagram
they assume (`MODELS`), each trained by `ctfjax.ancm.fit` in its own
workdir:

    <workdir>/run_config.json        the run's config
    <workdir>/models/<name>/         one training workdir per model
    <workdir>/evaluators/<name>/     the dataset's feature readers and CLD's
                                     unconditional VAE (each trained once)
    <workdir>/report.json, report.md, edits.png, bounds.png

The dataset's evaluator (`datasets.evaluator(config.data)`) supplies
its readers, protocol, ground truth, feature scores, figure captions and
notes; this module is the same for every dataset.

`run(config, workdir)` trains what is missing (resuming from checkpoints),
then evaluates every model and writes the outputs; a finished run only
re-evaluates and re-reports. `evaluate_workdir(workdir)` does the second
half for any trained run: a `launch.run` workdir as above or a single-model
`launch.train` workdir (its `config.json` at the top).

The baselines are the same ANCM with another diagram over the features:

* ancm_vae: the dataset's true diagram (the paper's estimator);
* cvae_noncausal: no edges, a conditional VAE: an edit changes only the
  intervened label, descendants never follow;
* deepscm_markovian: every bidirected edge read as a directed one (in the
  true diagram's topological order), the Markovian Deep-SCM reading of
  confounding as causation.

Rows can also differ by mechanism: a run may name *variants*, each a model
name of its own with config overrides and one of the diagrams above:

    config.run.variants = ml_collections.ConfigDict()
    config.run.variants.hvae = ml_collections.ConfigDict({
        "diagram": "ancm_vae",          # a MODELS key (default ancm_vae)
        "overrides": {"model": {"image": {"kind": "hvae"}}}})
    config.run.models = ("ancm_vae", "hvae")

The overrides are merged into the run's config for that model only (every
key must already exist, as with command-line overrides); the model trains
in models/<variant name>/ and reports under its name.

A variant may instead give its diagram as text, any diagram over the
dataset's features (e.g. a misspecified one: configs/
benchmark_wrong_diagrams.py):

    config.run.variants.no_dc = ml_collections.ConfigDict({
        "graph": "D -> B; C -> B", "overrides": {}})

It must parse and name exactly the true diagram's nodes; "graph" and
"diagram" are exclusive.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
import tqdm

from ctfjax import data
from ctfjax import files
from ctfjax import mechanisms
from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.causal.graph import Graph
from ctfjax.errors import UserError
from ctfjax.evaluate import core
from ctfjax.evaluate import datasets
from ctfjax.evaluate import unconditional_vae
from ctfjax.report import figures
from ctfjax.report import schema
from ctfjax.report import tables
from ctfjax.report import verdict

RUN_CONFIG = "run_config.json"
MODELS_DIR = "models"
def _noncausal(graph: Graph) -> str:
  return "; ".join(graph.topological_order())


def _markovian(graph: Graph) -> str:
  pos = {n: i for i, n in enumerate(graph.topological_order())}
  directed = set(graph.directed)
  for pair in graph.bidirected:
    a, b = sorted(pair, key=pos.get)
    directed.add((a, b))
  return str(Graph.from_edges(directed, nodes=graph.topological_order()))


# Report name -> the diagram the model assumes, from the true diagram
# ("" = the true diagram itself).
MODELS: dict[str, Callable[[Graph], str]] = {
    "ancm_vae": lambda graph: "",
    "cvae_noncausal": _noncausal,
    "deepscm_markovian": _markovian,
}


def model_graph(name: str, true_graph: Graph | str) -> str:
  """The `model.graph` config value of model `name` on a dataset.

  Raises:
    UserError: unknown model name.
  """
  if name not in MODELS:
    raise UserError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
  g = true_graph if isinstance(true_graph, Graph) else Graph.parse(true_graph)
  return MODELS[name](g)


DEFAULT_DIAGRAM = "ancm_vae"  # A variant's diagram when it names none.
VARIANT_KEYS = ("diagram", "graph", "overrides")


def _check_variant_graph(config: ml_collections.ConfigDict, where: str,
                         text: Any) -> None:
  """A variant's explicit "graph" must parse and name exactly the nodes of
  the dataset's true diagram (its features)."""
  try:
    graph = Graph.parse(text)
  except UserError as e:
    raise UserError(f"{where}.graph: {e}") from None
  true_graph = Graph.parse(datasets.evaluator(config.data).graph)
  if set(graph.nodes) != set(true_graph.nodes):
    raise UserError(
        f"{where}.graph: {text!r} names {', '.join(sorted(graph.nodes))}; "
        f"the dataset's features are {', '.join(sorted(true_graph.nodes))}")


def variants(config: ml_collections.ConfigDict
             ) -> dict[str, ml_collections.ConfigDict]:
  """{name: variant} of `config.run.variants` (see the module docstring).

  Raises:
    UserError: a variant reuses a `MODELS` name, has a key other than
      "diagram", "graph" and "overrides", names an unknown diagram, gives
      both "diagram" and "graph", or a graph that does not parse or does
      not name exactly the dataset's features.
  """
  run = config.get("run") or {}
  found = run.get("variants") or {}
  out = {}
  for name, spec in found.items():
    where = f"config key 'run.variants.{name}'"
    if name in MODELS:
      raise UserError(f"{where}: {name!r} is a built-in model name; "
                      "choose another")
    if not isinstance(spec, (dict, ml_collections.ConfigDict)):
      raise UserError(f"{where} must be a section with 'diagram' and "
                      f"'overrides', got {spec!r}")
    extra = sorted(set(spec) - set(VARIANT_KEYS))
    if extra:
      raise UserError(f"{where}: unknown key {extra[0]!r}; known: "
                      f"{', '.join(VARIANT_KEYS)}")
    if spec.get("graph") is not None:
      if spec.get("diagram"):
        raise UserError(f"{where}: give 'diagram' (a built-in model's) or "
                        "'graph' (a diagram's text), not both")
      _check_variant_graph(config, where, spec.get("graph"))
      out[name] = spec
      continue
    diagram = spec.get("diagram") or DEFAULT_DIAGRAM
    if diagram not in MODELS:
      raise UserError(f"{where}.diagram: unknown diagram {diagram!r}; "
                      f"known: {', '.join(MODELS)}")
    out[name] = spec
  return out


def _flatten(section, prefix: str = "") -> list[tuple[str, Any]]:
  """(dotted key, value) of every leaf of a nested section."""
  items = []
  for key, value in section.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      items += _flatten(value, f"{prefix}{key}.")
    else:
      items.append((f"{prefix}{key}", value))
  return items


def variant_graph(config: ml_collections.ConfigDict, name: str) -> str:
  """The `model.graph` value of model `name` (a `MODELS` key or a variant)
  of a run: its own diagram text, or that of the `MODELS` diagram it names
  ("" = the true diagram)."""
  spec = variants(config).get(name)
  if spec is not None and spec.get("graph") is not None:
    return str(Graph.parse(spec.graph))
  diagram = name if spec is None else (spec.get("diagram") or DEFAULT_DIAGRAM)
  return model_graph(diagram, datasets.evaluator(config.data).graph)


def model_name(config: ml_collections.ConfigDict) -> str:
  """The report name of a single-model config: the `MODELS` name of the
  diagram it assumes ("ancm_custom" for another), with the image
  mechanism's kind for one other than the VAE ("ancm_ddpm" for the
  diffusion NCM, "ancm_vae_ddpm" for the two-stage ANCM)."""
  true_graph = Graph.parse(datasets.evaluator(config.data).graph)
  assumed = config.model.get("graph") or ""
  name = "ancm_custom"
  for key in MODELS:
    want = model_graph(key, true_graph)
    if (not assumed and not want) or (
        assumed and want and Graph.parse(assumed) == Graph.parse(want)):
      name = key
      break
  kind = config.model.get("image", {}).get("kind", "vae")
  if kind == "vae":
    return name
  return f"ancm_{kind}" if name == DEFAULT_DIAGRAM else f"{name}_{kind}"


def run_models(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The names of the models `config` trains (`run.models`; a config
  without them trains "ancm_vae"), checked against `MODELS` and the
  variants.

  Raises:
    UserError: an unknown name, or one named twice.
  """
  names = tuple(config.get("run", {}).get("models", ())) or ("ancm_vae",)
  known = [*MODELS, *variants(config)]
  for name in names:
    if name not in known:  # Fails before any training.
      raise UserError(f"config key 'run.models': unknown model {name!r}; "
                      f"known: {', '.join(known)}")
  if len(set(names)) != len(names):
    raise UserError(f"config key 'run.models' names a model twice: {names}")
  return names


def model_config(config: ml_collections.ConfigDict,
                 name: str) -> ml_collections.ConfigDict:
  """The training config of model `name` (a `MODELS` key or a variant):
  `config` with the variant's overrides merged in and its diagram set.

  Raises:
    UserError: an override names a key the config does not have, or gives
      a value of the wrong type (named with its variant).
  """
  out = config.copy_and_resolve_references()
  spec = variants(config).get(name)
  if spec is not None and spec.get("overrides"):
    try:
      out = train.apply_overrides(out, dict(_flatten(spec.overrides)))
    except UserError as e:
      raise UserError(f"config key 'run.variants.{name}.overrides': {e}"
                      ) from None
  out.model.graph = variant_graph(config, name)
  return out


def training_plan(config: ml_collections.ConfigDict) -> str:
  """The steps of each training stage of the model of `config`: "1500
  steps", or "1500 steps (base), then 4000 steps (refiner)" for a
  mechanism trained in stages (the two-stage ANCM, fine-tuning)."""
  stages = mechanisms.stages(config.model.image, config.train.steps)
  if len(stages) == 1:
    return f"{stages[0].steps} steps"
  return ", then ".join(f"{s.steps} steps ({s.name})" for s in stages)


def _assumed_graph(config: ml_collections.ConfigDict, name: str) -> str | None:
  """The diagram model `name` assumes, as the report writes it."""
  if name not in MODELS and name not in variants(config):
    return None  # A single-model run's `model_name`: the model's spelling.
  return (variant_graph(config, name)
          or datasets.evaluator(config.data).graph)


def log(message: str):
  """One progress line on stderr (stdout is for results)."""
  print(message, file=sys.stderr, flush=True)


def _train_info(workdir: pathlib.Path) -> dict[str, Any]:
  records = [r for r in train.read_metrics(workdir) if "seconds" in r]
  if not records:
    return {"steps": 0, "seconds": 0.0}
  return {"steps": int(records[-1]["step"]),
          "seconds": float(records[-1]["seconds"] or 0.0)}


def _edit_blocks(evalset: core.EvalSet, per_model
                 ) -> list[figures.EditBlock]:
  """edits.png: the factual images, the true counterfactuals (blank where a
  family has none), then each model's edits; captions by the evaluator."""
  dataset = evalset.evaluator
  idx = evalset.figure_index
  fams = list(evalset.interventions)
  columns = [dataset.column_title(f) for f in fams]
  test = evalset.test
  rows = range(len(idx))
  factual_images = np.asarray(test["image"])[idx]
  factual = {k: evalset.labels[k][idx] for k in dataset.features}
  blocks = [figures.EditBlock(
      "factual (test)", factual_images[:, None],
      [[dataset.caption(factual, i)] for i in rows], ["image"])]
  true_imgs = np.stack([
      np.zeros_like(factual_images) if evalset.truth[f] is None else
      np.asarray(evalset.truth[f]["image"])[idx] for f in fams], 1)
  captions = {f: ["no ground truth"] * len(idx) if evalset.truth[f] is None
              else [dataset.caption({k: np.asarray(evalset.truth[f][k])[idx]
                                     for k in factual}, i) for i in rows]
              for f in fams}
  blocks.append(figures.EditBlock(
      "true counterfactual\n(data generator)", true_imgs,
      [[captions[f][i] for f in fams] for i in rows], columns))
  for name, graph, fig in per_model:
    imgs = np.stack([fig["images"][f] for f in fams], 1)
    blocks.append(figures.EditBlock(
        f"{name}\n{graph}", imgs,
        [[dataset.caption(fig["read"][f], i) for f in fams] for i in rows],
        columns))
  return blocks


def write_outputs(workdir: str | pathlib.Path, report: Mapping[str, Any],
                  blocks: Sequence[figures.EditBlock],
                  notes: Mapping[str, str]) -> dict[str, str]:
  """Writes report.json, report.md, edits.png and bounds.png atomically.

  The report is validated first, so a schema error writes nothing.
  bounds.png is written only when some model has ctf-consistency rows
  (a dataset's evaluator may score none).

  Returns:
    {file name: path}.
  """
  workdir = pathlib.Path(workdir)
  text = schema.dumps(report)
  clean = json.loads(text)
  title = f"{clean['dataset']}  (true diagram: {clean['graph']})"
  paths = {"edits.png": figures.edits_figure(
      blocks, workdir / "edits.png",
      title=f"Edits of test images, {title}; captions: features read "
            "from each image")}
  if any(e["ctf_consistency"] for e in clean["models"]):
    paths["bounds.png"] = figures.bounds_figure(
        clean, workdir / "bounds.png",
        title=f"Ctf-consistency, {title}; rows with bounds [0, 1] left out")
  paths["report.md"] = files.write_text(workdir / "report.md",
                                        tables.markdown(clean, notes))
  paths["report.json"] = files.write_text(workdir / "report.json", text)
  return {k: str(v) for k, v in paths.items()}


def evaluate_models(config: ml_collections.ConfigDict,
                    workdir: str | pathlib.Path,
                    trained: Sequence[tuple[str, Any, Any, Mapping]]
                    ) -> dict[str, Any]:
  """Evaluates trained models of one dataset and writes the run's outputs.

  Args:
    config: the run's config (data and eval sections are read).
    workdir: where the evaluators are cached and the outputs go.
    trained: (name, model, params, {"steps", "seconds"}) per model.

  Returns:
    The report.
  """
  config = core.with_eval_defaults(config)
  dataset = datasets.evaluator(config.data)
  workdir = pathlib.Path(workdir)
  t0 = time.perf_counter()
  log("evaluation: feature readers")
  reader = dataset.reader(workdir, config)
  log("evaluation: CLD's unconditional VAE")
  latent = unconditional_vae.latent_vae(
      workdir, dataset=data.from_config(config.data),
      size=config.data.size or None, steps=config.eval.latent_steps)
  evalset = core.prepare(config, reader, latent)
  # Per model: each family's edits, the composition, and each family's
  # reversibility rounds (`core.evaluate_model`'s progress calls).
  stages = len(trained) * (2 * len(evalset.interventions) + 1)
  show = sys.stderr.isatty()
  entries, per_model = [], []
  with tqdm.tqdm(total=stages, unit="stage", file=sys.stderr,
                 disable=not show, desc="evaluate") as bar:
    def tick(stage):
      bar.set_postfix_str(stage)
      bar.update()
      if not show:
        log(f"evaluation: {stage} done")
    for name, model, params, info in trained:
      entry, fig = core.evaluate_model(
          evalset, reader, model, params, name=name, train_info=info,
          graph=_assumed_graph(config, name),
          seed=config.eval.seed, progress=tick)
      # The caveat travels with the scores: report.json, report.md and the
      # printed summary flag a model short of its dataset's bars.
      entry["usable"] = datasets.usability(entry, dataset.usable_bars)
      entries.append(entry)
      per_model.append((name, entry["graph"], fig))
  oracle = core.evaluate_truth(evalset, reader)
  report = {
      "version": schema.VERSION,
      "evaluation_version": core.EVALUATION_VERSION,
      "dataset": evalset.dataset,
      "graph": dataset.graph,
      "models": entries,
      "oracle": oracle,
      "evaluators": {**reader.evaluators, latent.name: dict(latent.info)},
      "eval": core.eval_settings(config),
      "notes": [
          *dataset.notes(evalset, reader),
          *(["The row 'true counterfactuals' scores the generator's own "
             "counterfactual images through the same readers: what the "
             "readers alone cost."] if oracle else []),
      ],
      "seconds": {"evaluation": time.perf_counter() - t0},
  }
  verdict.with_verdicts(report)
  blocks = _edit_blocks(evalset, per_model)
  write_outputs(workdir, report, blocks, dataset.table_notes())
  return json.loads(schema.dumps(report))


def _save_run_config(config: ml_collections.ConfigDict,
                     workdir: pathlib.Path):
  """Records the run's config; a resumed run must keep its data and model."""
  if (workdir / fit.CONFIG_FILE).is_file():
    raise UserError(f"{workdir} is a single-model launch.train workdir; "
                    "evaluate it with python -m launch.evaluate or use a new "
                    "--workdir")
  path = workdir / RUN_CONFIG
  if path.is_file():
    old = json.loads(path.read_text())
    new = json.loads(config.to_json())
    for section in ("data", "model"):
      if (fit.resumed_part(section, old.get(section))
          != fit.resumed_part(section, new.get(section))):
        raise UserError(f"{workdir} holds a run with another {section} "
                        f"config; use a new --workdir")
  files.write_text(path, config.to_json(indent=1) + "\n")


def run(config: ml_collections.ConfigDict,
        workdir: str | pathlib.Path) -> dict[str, Any]:
  """Trains (or resumes) every model of `config.run.models`, then reports.

  Args:
    config: an ANCM config with a `run` section (`run.models`: names of
      `MODELS`) and optional `eval` fields (`train.base_eval_config`).
    workdir: the run's folder.

  Returns:
    The report (also written to `workdir`, with report.md and figures).
  """
  fit.check_config(config)
  names = run_models(config)
  config = core.with_eval_defaults(config)
  datasets.evaluator(config.data)  # Fails here, before training.
  workdir = files.writable_dir(workdir, "workdir")
  # Every model's config (variants' overrides included) is checked before
  # any training or write.
  configs = {name: model_config(config, name) for name in names}
  for c in configs.values():
    fit.check_config(c)
  trained = []
  with files.removed_on_failure(workdir, keep=fit.has_checkpoint):
    _save_run_config(config, workdir)
    for i, name in enumerate(names, 1):
      log(f"[{i}/{len(names)}] {name} ({_assumed_graph(config, name)}): "
          f"training {training_plan(configs[name])}")
      model, result = fit.train_and_evaluate(
          configs[name], workdir / MODELS_DIR / name)
      log(f"[{i}/{len(names)}] {name}: {result.steps} steps, "
          f"{result.seconds:.0f} s of training")
      params = jax.device_get(train.model_params(result.state))
      trained.append((name, model, params,
                      {"steps": result.steps, "seconds": result.seconds}))
  return evaluate_models(config, workdir, trained)


def load_run(workdir: str | pathlib.Path) -> tuple[ml_collections.ConfigDict,
                                                   list[tuple]]:
  """The config and trained models of a workdir, for re-evaluation.

  Args:
    workdir: a `launch.run` workdir (models/<name>/) or a single-model
      `launch.train` workdir (config.json at the top).

  Returns:
    (config, [(name, model, params, {"steps", "seconds"})]).

  Raises:
    UserError: the folder is missing or holds no trained model.
  """
  root = files.existing_dir(workdir, "workdir")
  if (root / fit.CONFIG_FILE).is_file():
    config, model, params = fit.load(root)
    return config, [(model_name(config), model, params, _train_info(root))]
  if not (root / RUN_CONFIG).is_file():
    raise UserError(f"{workdir} is not a trained run: it has neither "
                    f"{fit.CONFIG_FILE} nor {RUN_CONFIG}")
  try:
    config = ml_collections.ConfigDict(json.loads(
        (root / RUN_CONFIG).read_text()))
  except json.JSONDecodeError as e:
    raise UserError(f"{root / RUN_CONFIG} is not valid JSON: {e.msg}"
                    ) from None
  trained = []
  for name in run_models(config):
    sub = root / MODELS_DIR / name
    if not (sub / fit.CONFIG_FILE).is_file():
      raise UserError(f"model {name!r} of {workdir} was never trained "
                      f"({sub} is missing); run python -m launch.run again")
    _, model, params = fit.load(sub)
    trained.append((name, model, params, _train_info(sub)))
  return config, trained


def evaluate_workdir(workdir: str | pathlib.Path,
                     overrides: Mapping[str, Any] | Sequence[str] = ()
                     ) -> dict[str, Any]:
  """Re-evaluates a trained run and rewrites its outputs.

  Args:
    workdir: see `load_run`.
    overrides: eval settings, e.g. {"eval.test_size": 200} or
      ["eval.test_size=200"]; only `eval.*` keys.

  Returns:
    The report.
  """
  items = overrides.items() if isinstance(overrides, Mapping) else [
      tuple(o.split("=", 1)) if "=" in o else (o, None) for o in overrides]
  for key, _ in items:
    if not str(key).startswith("eval."):
      raise UserError(f"only eval.* settings can change at evaluation, got "
                      f"{key!r}")
  files.existing_dir(workdir, "workdir")
  files.writable_dir(workdir, "workdir")  # Before a minute of evaluation.
  config, trained = load_run(workdir)
  config = core.with_eval_defaults(config)
  config = train.apply_overrides(config, overrides)
  return evaluate_models(config, workdir, trained)


def current_report(config: ml_collections.ConfigDict,
                   workdir: pathlib.Path) -> dict[str, Any] | None:
  """The workdir's report if it was written for exactly this config (its
  data, model, train and run sections - a variant's overrides, per-model
  steps included, live in `run` - its eval settings and models) by this
  version of the evaluation, else None: a benchmark reuses its scores as
  they are, each model's "usable" judged again by the dataset's bars."""
  path, saved_path = workdir / "report.json", workdir / RUN_CONFIG
  if not (path.is_file() and saved_path.is_file()):
    return None
  saved = json.loads(saved_path.read_text())
  wanted = json.loads(config.to_json())
  if any(saved.get(k) != wanted.get(k)
         for k in ("data", "model", "train", "run")):
    return None
  try:
    report = schema.read(path)
  except UserError:
    return None
  config = core.with_eval_defaults(config)
  same = (report.get("evaluation_version") == core.EVALUATION_VERSION
          and report.get("dataset") == config.data.name
          and [e["model"] for e in report["models"]] ==
          list(config.run.models)
          and report.get("eval") == core.eval_settings(config))
  if not same:
    return None
  # Judged again from the stored scores: the dataset's bars as they are now
  # (a report written before the bars existed has no "usable").
  bars = datasets.evaluator(config.data).usable_bars
  for entry in report["models"]:
    entry["usable"] = datasets.usability(entry, bars)
  return verdict.with_verdicts(report)
