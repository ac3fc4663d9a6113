"""One trained run opened for editing: what the browser editor serves.

`Session.open(workdir)` restores a trained run (a `launch.train` workdir or
a `launch.run` workdir with several models), its dataset's test split and
its readers; `describe()` answers `GET /api/model` and `edit(request)`
answers `POST /api/edit` (design.md has the contract, docs/editor.md the
fields). Both return JSON-able dicts; every bad request is an
`EditorError` whose one-line message names the offending field, and which
the server returns with its HTTP status.

The edit is the library's `model.edit` with `jax.random.key(seed)`, the
call `launch.edit` makes, so the same image, do(), seed and number of
samples give the same pixels. A test image is edited with its true labels
as the factual features (as the evaluation does); an uploaded image with
the features the model's label reader reads from it (as `launch.edit`
does without --labels).

Beside the edits, per feature, the exact optimal bounds of the probability
that the feature changes, P(Y_{x'} != y | the factual features), from the
exact core (`cc.bounds` on the dataset's diagram and P(V): the generator's
exact table where the dataset has one, else the empirical table of the
training labels) - for every categorical feature that is not intervened
on. A non-descendant of the intervention gets [0, 0]: it must never change.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import functools
import io
import math
import pathlib
import threading
from typing import Any, Callable, Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from ctfjax import causal as cc
from ctfjax import files
from ctfjax.errors import UserError

# What one request may ask for.
MAX_IMAGE_BYTES = 8 * 2**20
MAX_IMAGE_PIXELS = 6000 * 6000
MAX_SAMPLES = 64
MAX_TEST_PAGE = 100


class EditorError(UserError):
  """A bad request: its one-line message and the HTTP status to send."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


def png_base64(image: np.ndarray) -> str:
  """uint8 [H, W, C] -> base64 of its PNG (grayscale for one channel)."""
  image = np.asarray(image, np.uint8)
  buf = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
      buf, format="PNG")
  return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_image(text: Any, shape: tuple[int, int, int]) -> np.ndarray:
  """A user's base64 PNG/JPEG as the dataset's images are: centre-cropped
  to a square, resized (bilinear) to the model's size, in its mode.

  Args:
    text: base64 text (a `data:image/...;base64,` prefix is allowed).
    shape: the model's (H, W, C).

  Returns:
    uint8 [H, W, C].
  """
  if not isinstance(text, str) or not text:
    raise EditorError("image must be a base64-encoded PNG or JPEG")
  if text.startswith("data:"):
    text = text.partition(",")[2]
  if len(text) > MAX_IMAGE_BYTES * 4 // 3 + 4:
    raise EditorError(f"image is larger than {MAX_IMAGE_BYTES // 2**20} MB",
                      413)
  try:
    raw = base64.b64decode(text, validate=True)
  except (binascii.Error, ValueError):
    raise EditorError("image is not valid base64") from None
  try:
    with Image.open(io.BytesIO(raw)) as img:
      if img.format not in ("PNG", "JPEG"):
        raise EditorError(f"image is a {img.format} file; send a PNG or "
                          "JPEG", 415)
      if img.width * img.height > MAX_IMAGE_PIXELS:
        raise EditorError(f"image is {img.width}x{img.height}; at most "
                          f"{MAX_IMAGE_PIXELS // 10**6} megapixels", 413)
      img.load()
      h, w, c = shape
      img = img.convert({1: "L", 3: "RGB"}[c])
  except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
    raise EditorError("image is not a PNG or JPEG file", 415) from None
  if h != w:
    img = img.resize((w, h), Image.BILINEAR)
    return np.asarray(img, np.uint8).reshape(h, w, c)
  from ctfjax.data import folder  # pylint: disable=import-outside-toplevel
  return folder.to_square(img, h).reshape(h, w, c)


def _integer(request: Mapping[str, Any], field: str, default: int, lo: int,
             hi: int) -> int:
  value = request.get(field, default)
  if isinstance(value, bool) or not isinstance(value, int):
    raise EditorError(f"{field} must be an integer, got {value!r}")
  if not lo <= value <= hi:
    raise EditorError(f"{field}={value} is outside {lo}..{hi}")
  return value


def layout(graph: cc.Graph) -> dict[str, Any]:
  """The diagram for drawing: nodes in columns by directed depth (x, y in
  [0, 1]), its directed and bidirected edges."""
  depth = {}
  for n in graph.topological_order():
    depth[n] = max((depth[p] + 1 for p in graph.parents(n)), default=0)
  columns = max(depth.values()) + 1
  nodes = []
  for d in range(columns):
    col = [n for n in graph.nodes if depth[n] == d]
    for i, n in enumerate(col):
      nodes.append({"name": n, "x": (d + 0.5) / columns,
                    "y": (i + 0.5) / len(col)})
  return {"nodes": nodes,
          "directed": sorted([a, b] for a, b in graph.directed),
          "bidirected": sorted(sorted(p) for p in graph.bidirected)}


@dataclasses.dataclass
class Reader:
  """Reads each feature from uint8 images [N, H, W, C]: {feature: [N]}.

  Attributes:
    name: what reads them, for the page.
    read: the function.
  """

  name: str
  read: Callable[[np.ndarray], dict[str, np.ndarray]]


class Session:
  """A trained run opened for editing (see the module docstring).

  Attributes:
    root: the workdir.
    models: {name: folder} of the run's trained models.
    default: the model a request without "model" edits.
    dataset: the run's `data.Dataset`.
    graph: the dataset's diagram.
    kinds: {feature: kind object}, parents first.
    test: the test split ("image", one array per feature, and "exogenous"
      where the dataset has a generator).
  """

  def __init__(self, root: pathlib.Path, models: dict[str, pathlib.Path],
               default: str):
    # pylint: disable=import-outside-toplevel
    from ctfjax.ancm import fit
    # pylint: enable=import-outside-toplevel
    self.root, self.models, self.default = root, models, default
    self.config = fit.read_config(models[default])
    self.dataset = fit.dataset_of(self.config)
    self.graph, self.kinds = fit.features(self.dataset)
    self.test = self.dataset.load("test")
    self._loaded: dict[str, tuple[Any, Any]] = {}
    self._lock = threading.RLock()
    self._reader: Reader | None = None
    self._table = None

  @classmethod
  def open(cls, workdir: str, model: str | None = None) -> Session:
    """The run at `workdir` (one error line if it holds no trained model).

    Args:
      workdir: a `launch.train` or `launch.run` folder.
      model: the default model of a `launch.run` folder (default: the
        ANCM if it has one, else its first model).
    """
    # pylint: disable=import-outside-toplevel
    from ctfjax.ancm import fit
    # pylint: enable=import-outside-toplevel
    root = files.existing_dir(workdir, "workdir")
    if (root / fit.CONFIG_FILE).is_file():
      if model:
        raise UserError(f"--model={model}: {workdir} is a single trained "
                        "model (a launch.train workdir); drop --model")
      found = {root.name: root}
    else:
      found = {p.name: p for p in sorted((root / "models").glob("*"))
               if (p / fit.CONFIG_FILE).is_file()}
    trained = {k: p for k, p in found.items() if fit.has_checkpoint(p)}
    if not found:
      raise UserError(f"{workdir} is not a trained run: it has no "
                      f"{fit.CONFIG_FILE} and no models/")
    if not trained:
      raise UserError(f"{workdir} has no trained model yet (no checkpoint "
                      f"of {', '.join(found)})")
    if model and model not in trained:
      raise UserError(f"no trained model {model!r} in {workdir}; it has "
                      f"{', '.join(trained)}")
    default = model or ("ancm_vae" if "ancm_vae" in trained
                        else next(iter(trained)))
    return cls(root, trained, default)

  # The model and its readers, restored once. -------------------------------

  def model(self, name: str | None) -> tuple[Any, Any]:
    """(model, params) of one of the run's models, restored on first use."""
    # pylint: disable=import-outside-toplevel
    from ctfjax.ancm import fit
    # pylint: enable=import-outside-toplevel
    name = self.default if name is None else name
    if not isinstance(name, str) or name not in self.models:
      raise EditorError(f"model {name!r} is not one of this run's: "
                        f"{', '.join(self.models)}")
    with self._lock:  # Two first requests restore it once.
      if name not in self._loaded:
        _, model, params = fit.load(self.models[name])
        self._loaded[name] = (model, params)
    return self._loaded[name]

  def reader(self) -> Reader:
    """The evaluation's readers where the run trained them (a launch.run
    folder has them in evaluators/), else the default model's own label
    reader."""
    with self._lock:
      if self._reader is None:
        self._reader = self._make_reader()
    return self._reader

  def _make_reader(self) -> Reader:
    if (self.root / "evaluators").is_dir():
      # pylint: disable=import-outside-toplevel
      from ctfjax.evaluate import core
      # pylint: enable=import-outside-toplevel
      readers = self.dataset.evaluator().reader(
          self.root, core.with_eval_defaults(self.config))
      return Reader("the evaluation's readers", readers.read)
    model, params = self.model(None)
    return Reader(f"{self.default}'s label reader",
                  lambda images: {k: np.asarray(v) for k, v in
                                  model.read_labels(params, images).items()})

  def warm(self) -> None:
    """Restore the default model and the readers now, not at the first
    request."""
    self.model(None)
    self.reader()

  # GET /api/model ----------------------------------------------------------

  def describe(self) -> dict[str, Any]:
    """The features, their values, the diagram, the models, the test size."""
    features = {}
    names = dict(self.dataset.value_names)
    for k, kind in self.kinds.items():
      if categories(kind):
        features[k] = {"kind": "categorical",
                       "values": list(range(categories(kind))),
                       "names": list(names.get(k, ()))}
      else:
        values = np.asarray(self.test[k], np.float64)
        features[k] = {"kind": "continuous",
                       "values": [float(values.min()), float(values.max())]}
    return {"features": features, "graph": self.dataset.graph,
            "diagram": layout(self.graph), "models": list(self.models),
            "default_model": self.default, "dataset": self.dataset.name,
            "image_shape": list(self.dataset.image_shape),
            "test_size": int(len(self.test["image"])),
            "reader": self.reader().name,
            "has_truth": "exogenous" in self.test,
            "has_bounds": self.has_bounds()}

  def test_images(self, start: int, count: int) -> dict[str, Any]:
    """Test images start..start+count-1 as PNGs, with their labels."""
    n = len(self.test["image"])
    if not 0 <= start < n:
      raise EditorError(f"start={start} is outside 0..{n - 1}")
    if not 1 <= count <= MAX_TEST_PAGE:
      raise EditorError(f"count={count} is outside 1..{MAX_TEST_PAGE}")
    idx = range(start, min(start + count, n))
    return {"start": start,
            "images": [png_base64(self.test["image"][i]) for i in idx],
            "labels": [self._labels_of(i) for i in idx]}

  def _labels_of(self, i: int) -> dict[str, Any]:
    return {k: _json_value(self.test[k][i]) for k in self.kinds}

  # POST /api/edit ----------------------------------------------------------

  def check_do(self, do: Any, what: str = "do") -> dict[str, int | float]:
    """{feature: value} with each value in its feature's domain."""
    if not isinstance(do, Mapping):
      raise EditorError(f"{what} must be an object {{feature: value}}")
    out = {}
    for k, v in do.items():
      if k not in self.kinds:
        raise EditorError(f"{what}: unknown feature {k!r}; the model has "
                          f"{', '.join(self.kinds)}")
      size = categories(self.kinds[k])
      if size:
        if isinstance(v, bool) or not isinstance(v, int):
          raise EditorError(f"{what}: {k}={v!r} is not an integer (a class "
                            f"0..{size - 1})")
        if not 0 <= v < size:
          raise EditorError(f"{what}: {k}={v} is outside its domain "
                            f"0..{size - 1}")
      elif (isinstance(v, bool) or not isinstance(v, (int, float))
            or not math.isfinite(v)):
        raise EditorError(f"{what}: {k}={v!r} is not a finite number")
      out[k] = v
    return out

  def check_labels(self, labels: Any) -> dict[str, np.ndarray] | None:
    """An uploaded image's factual features as given (every feature, each
    in its domain), or None to read them with the model's label reader."""
    if labels is None:
      return None
    if not isinstance(labels, Mapping) or set(labels) != set(self.kinds):
      raise EditorError("labels must give exactly "
                        f"{', '.join(self.kinds)}")
    checked = self.check_do(labels, "labels")
    return {k: np.asarray([checked[k]]) for k in self.kinds}

  def edit(self, request: Any, lock: threading.Lock | None = None
           ) -> dict[str, Any]:
    """Answer one edit request (design.md's contract; docs/editor.md).

    Args:
      request: the decoded JSON body.
      lock: held only around the model's computation, so that checking
        and encoding never wait on another request's edit.
    """
    # pylint: disable=import-outside-toplevel
    import jax
    # pylint: enable=import-outside-toplevel
    if not isinstance(request, Mapping):
      raise EditorError("the request body must be a JSON object")
    known = {"test_index", "image", "labels", "do", "num_samples", "seed",
             "model"}
    for k in request:
      if k not in known:
        raise EditorError(f"unknown field {k!r}; known: "
                          f"{', '.join(sorted(known))}")
    if ("test_index" in request) == ("image" in request):
      raise EditorError("give exactly one of test_index or image")
    do = self.check_do(request.get("do", {}))
    n = _integer(request, "num_samples", 8, 1, MAX_SAMPLES)
    seed = _integer(request, "seed", 0, 0, 2**31 - 1)
    model, params = self.model(request.get("model"))
    if "test_index" in request:
      i = _integer(request, "test_index", 0, 0, len(self.test["image"]) - 1)
      image = self.test["image"][i]
      labels = {k: np.asarray(self.test[k][i:i + 1]) for k in model.order}
      if "labels" in request:
        raise EditorError("labels are for an uploaded image; a test image "
                          "is edited with its own")
    else:
      image = decode_image(request["image"], self.dataset.image_shape)
      i, labels = None, self.check_labels(request.get("labels"))
    with lock or contextlib.nullcontext():
      result = model.edit(params, image[None], do, jax.random.key(seed),
                          num_samples=n, labels=labels)
      used = labels or model.read_labels(params, image[None])
      result = jax.device_get(result)
      used = {k: np.asarray(v) for k, v in jax.device_get(used).items()}
      edits = np.asarray(result["image"][0])
      read = self.reader().read(np.concatenate([image[None], edits]))
    factual = {k: _json_value(used[k][0]) for k in model.order}
    out = {
        "factual": png_base64(image),
        "factual_features": {k: _json_value(read[k][0]) for k in read},
        "labels": factual,
        "labels_from": ("the dataset" if i is not None else "the request"
                        if labels else f"{self.default}'s label reader"),
        "edits": [png_base64(e) for e in edits],
        "edit_features": [{k: _json_value(read[k][s + 1]) for k in read}
                          for s in range(n)],
        "drawn": [{k: _json_value(result[k][0, s]) for k in model.order}
                  for s in range(n)],
        "truth": None, "truth_features": None,
        "bounds": None, "bounds_notes": {}, "bounds_truth": None,
        "changed": self._changed(read, do),
        "effect": {k: float(np.mean(np.asarray(read[k][1:]) == v))
                   for k, v in do.items() if categories(self.kinds[k])},
        "model": request.get("model", self.default),
        "reader": self.reader().name,
    }
    if i is not None and "exogenous" in self.test:
      out["truth"], out["truth_features"] = self._truth(i, do)
    if self.has_bounds():
      out["bounds"], out["bounds_notes"], out["bounds_truth"] = (
          self.change_bounds(factual, do))
    return out

  def _changed(self, read: Mapping[str, np.ndarray],
               do: Mapping[str, Any]) -> dict[str, float]:
    """Per categorical feature not intervened on: the share of edits in
    which the reader sees another value than in the factual image."""
    out = {}
    for k, kind in self.kinds.items():
      if k in do or not categories(kind):
        continue
      r = np.asarray(read[k])
      out[k] = float(np.mean(r[1:] != r[0]))
    return out

  def _truth(self, i: int, do: Mapping[str, Any]):
    batch = {k: (v[i:i + 1] if k != "exogenous" else
                 {u: w[i:i + 1] for u, w in v.items()})
             for k, v in self.test.items()}
    true = self.dataset.counterfactual(batch, do, split="test")
    return (png_base64(np.asarray(true["image"][0])),
            {k: _json_value(true[k][0]) for k in self.kinds})

  # Bounds ------------------------------------------------------------------

  def has_bounds(self) -> bool:
    """Whether every feature is categorical (the exact core's domain)."""
    return all(categories(k) for k in self.kinds.values())

  def table(self) -> cc.Table:
    """P(V): the generator's exact feature table, else the empirical
    table of the training labels."""
    if self._table is None:
      try:
        self._table = self.dataset.feature_scm().observational()
      except UserError:
        # pylint: disable=import-outside-toplevel
        from ctfjax.evaluate.datasets import attributes
        # pylint: enable=import-outside-toplevel
        train = self.dataset.load("train")
        self._table = attributes.empirical_table(
            train, {k: categories(kind) for k, kind in self.kinds.items()})
    return self._table

  def change_bounds(self, factual: Mapping[str, int], do: Mapping[str, int]):
    """({feature: [lo, hi]} of P(feature changes | factual) under do,
    {feature: why no bounds}, {feature: true probability or None})."""
    return _change_bounds(self, tuple(factual.items()),
                          tuple(sorted(do.items())))


@functools.lru_cache(maxsize=1024)
def _change_bounds(session: Session, factual: tuple, do: tuple):
  bounds, notes, truth = {}, {}, {}
  if not do:
    return {k: [0.0, 0.0] for k, _ in factual}, notes, {}
  descendants = session.graph.descendants([k for k, _ in do])
  world = ",".join(f"{k}={v}" for k, v in do)
  given = ", ".join(f"{k}={v}" for k, v in factual)
  try:
    scm = session.dataset.feature_scm()
  except UserError:
    scm = None
  for k, y in factual:
    if k in dict(do):
      continue
    if k not in descendants:
      bounds[k], truth[k] = [0.0, 0.0], 0.0
      continue
    q = f"P({k}_{{{world}}}={y} | {given})"
    try:
      lo, hi = cc.bounds(session.graph, session.table(), q)
      bounds[k] = [1.0 - float(hi), 1.0 - float(lo)]
    except cc.BoundsError as e:
      bounds[k], notes[k] = None, str(e)
    truth[k] = None if scm is None else 1.0 - float(cc.query(scm, q))
  return bounds, notes, truth


def categories(kind: Any) -> int | None:
  """K of a categorical feature's kind (an int K or a `Categorical`), None
  for a continuous one."""
  if isinstance(kind, cc.kinds.Categorical):
    return kind.size
  if isinstance(kind, int) and not isinstance(kind, bool):
    return kind
  return None


def _json_value(value) -> int | float:
  value = np.asarray(value).item()
  return int(value) if isinstance(value, (int, np.integer)) else float(value)
