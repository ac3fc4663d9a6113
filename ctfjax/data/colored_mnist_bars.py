"""Colored MNIST with bars: an explicit augmented SCM over (D, C, B, I).

Factors: D the digit 0-9; C the colour, the channel holding the digit strokes
(0 green, 1 red); B the bar (1 = a blue bar over the top `BAR_ROWS` rows).
Images are 32x32x3 uint8: a real MNIST digit padded 28 -> 32 in the red or
green channel, the bar in the blue channel, so the bar never covers a stroke.

Two diagrams (docs/datasets.md):

* backdoor (the paper's Fig. 6): D <-> C, D -> B, C -> B.
* frontdoor (Sardesai, "Ctf-editing using a diffusion NCM", Fig. 4):
  D -> C -> B, D <-> B.

The feature level is an exact `cc.DiscreteSCM` (`feature_scm`). Its default
probabilities are **[ours]**: the paper does not publish them; they follow the
pattern its Fig. 6 shows (more red large digits and green small ones; large
and red digits carry fewer bars). Threshold mechanisms read a discretised
uniform U ~ Unif{0..K-1}: V = 1[(U + 0.5) / K < p] = 1[U < pK], exact when p
is a multiple of 1/K.

* backdoor: U_DC ~ Bern(p_large) ("large": the confounder), U_D ~ Unif{0..4},
  D = U_D + 5 U_DC; U_C ~ Bern(1 - p_red_given_large), C = U_DC xor U_C;
  U_B ~ Unif{0..K_B-1}, P(B=1 | D, C) = bar_intercept + bar_slope_digit D
  + bar_slope_red C. Defaults 0.5, 0.8, K_B = 20, 0.9, -0.05, -0.3.
* frontdoor: U_DB ~ Bern(p_large), U_D ~ Unif{0..4}, D = U_D + 5 U_DB;
  U_C ~ Unif{0..K_C-1}, P(C=1 | D) = red_intercept + red_slope_digit D;
  U_B ~ Unif{0..K_B-1}, P(B=1 | C, U_DB) = bar_intercept + bar_slope_red C
  + bar_slope_large U_DB. Defaults 0.5, K_C = 50, 0.1, 0.08, K_B = 20, 0.8,
  -0.5, -0.2.

Image mechanism f_I(D, C, B, U_I), **[ours]**: U_I ~ Unif[0, 1) is a style
slot r; the image of digit d uses exemplar floor(r n_d) of the n_d digits of
class d in the source split (source order). The same r thus picks "the same
relative exemplar" in every class, which makes do(D) a defined ground truth
(one member of the compatible set, not the only one: docs/concepts.md,
"What is not identifiable").

Every sample stores its exogenous values under "exogenous" (u_* of the feature
SCM plus the style slot "u_i"), and `Generator.from_exogenous` is the one code
path for factual samples and true counterfactuals: `Generator.counterfactual`
re-runs it with the same exogenous values under do().

`read_colour` / `read_bar` are the exact pixel rules that read C and B back
from an image (the labeller h of the ASCM), tolerant of blurry model outputs.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ctfjax import causal as cc
from ctfjax.data import base, mnist, storage
from ctfjax.data.errors import DataError

GRAPHS = {
    "backdoor": "D <-> C; D -> B; C -> B",
    "frontdoor": "D -> C; C -> B; D <-> B",
}
FACTORS = ("D", "C", "B")
DOMAINS = {"D": 10, "C": 2, "B": 2}
IMAGE_SIZE = 32
PAD = (IMAGE_SIZE - 28) // 2
BAR_ROWS = 4  # rows 0-3: padding and MNIST's empty top margin
RED, GREEN, BLUE = 0, 1, 2
STYLE = "u_i"  # exogenous name of the style slot U_I
# Bump when the same (spec, seed) would produce different data.
VERSION = 1

# Display hooks read by `ctfjax.data.show` (the paper's Fig. 6 layout).
GROUP_BY = ("C", "B")
SORT_BY = "D"
VALUE_NAMES = {"C": ("Green", "Red"), "B": ("Without Bars", "With Bars")}

# Defaults [ours]; see the module docstring for what each one sets.
DEFAULT_PARAMS = {
    "backdoor": {
        "p_large": 0.5,
        "p_red_given_large": 0.8,
        "bar_levels": 20,
        "bar_intercept": 0.9,
        "bar_slope_digit": -0.05,
        "bar_slope_red": -0.3,
    },
    "frontdoor": {
        "p_large": 0.5,
        "red_levels": 50,
        "red_intercept": 0.1,
        "red_slope_digit": 0.08,
        "bar_levels": 20,
        "bar_intercept": 0.8,
        "bar_slope_red": -0.5,
        "bar_slope_large": -0.2,
    },
}
_PROBABILITIES = ("p_large", "p_red_given_large")
# Tolerance for "p is a multiple of 1/K" (defaults like 0.9 - 0.05 * 3 are
# not exact in binary floating point).
_GRID_TOL = 1e-6


def _check_graph(graph: str):
  if graph not in GRAPHS:
    raise DataError(f"unknown Colored MNIST graph {graph!r}; expected one of "
                    f"{', '.join(GRAPHS)}")


def resolve_params(graph: str, overrides: Any = None) -> dict[str, Any]:
  """The generator parameters of `graph`: defaults updated by `overrides`.

  Args:
    graph: "backdoor" or "frontdoor".
    overrides: mapping (or ml_collections ConfigDict) of parameter -> value.

  Returns:
    A new dict holding every parameter.

  Raises:
    DataError: unknown parameter, wrong type, probability outside [0, 1].
  """
  _check_graph(graph)
  params = dict(DEFAULT_PARAMS[graph])
  if overrides is None:
    return params
  if hasattr(overrides, "to_dict"):
    overrides = overrides.to_dict()
  if not isinstance(overrides, Mapping):
    raise DataError(f"Colored MNIST parameters must be a mapping, got "
                    f"{type(overrides).__name__}")
  for key, value in overrides.items():
    if key not in params:
      raise DataError(f"unknown parameter {key!r} for the {graph} Colored "
                      f"MNIST; known: {', '.join(params)}")
    integer = isinstance(value, (int, np.integer))
    number = integer or isinstance(value, (float, np.floating))
    if isinstance(value, bool) or not number or not math.isfinite(value):
      raise DataError(f"{key} must be a finite number, got {value!r}")
    if key.endswith("_levels"):
      if not integer or value < 1:
        raise DataError(f"{key} must be a positive integer, got {value!r}")
      params[key] = int(value)
    elif key in _PROBABILITIES and not 0 <= value <= 1:
      raise DataError(f"{key} must be a probability in [0, 1], got {value!r}")
    else:
      params[key] = float(value)
  return params


def _grid_thresholds(probs: np.ndarray, levels: int, what: str,
                     names: tuple[str, ...], level_key: str) -> np.ndarray:
  """Integer thresholds k = p K of a table of probabilities p (exact check)."""
  scaled = np.asarray(probs, dtype=np.float64) * levels
  k = np.rint(scaled)
  for idx in zip(*np.nonzero((np.abs(scaled - k) > _GRID_TOL) |
                             (k < 0) | (k > levels))):
    p = float(probs[idx])
    where = ", ".join(f"{n}={i}" for n, i in zip(names, idx))
    if not -_GRID_TOL <= p <= 1 + _GRID_TOL:
      raise DataError(f"{what.format(where)} = {p:.6g} is not a probability; "
                      "adjust the intercept and slopes")
    raise DataError(f"{what.format(where)} = {p:.6g} is not a multiple of "
                    f"1/{levels} ({level_key}); the feature SCM would not be "
                    "exact")
  return k.astype(np.int64)


def _bernoulli(p: float) -> list[float]:
  return [1.0 - p, p]


def feature_scm(graph: str = "backdoor", params: Any = None) -> cc.DiscreteSCM:
  """The exact feature-level SCM over (D, C, B) of `graph`.

  Args:
    graph: "backdoor" or "frontdoor".
    params: overrides of `DEFAULT_PARAMS[graph]`.

  Returns:
    A `cc.DiscreteSCM` whose exogenous variables are the u_* stored with
    every sample (the style slot u_i is image-level and not part of it).

  Raises:
    DataError: invalid parameters (see `resolve_params`), or thresholds that
      are not multiples of 1/K.
  """
  p = resolve_params(graph, params)
  digit = np.arange(10)
  uniform5 = [0.2] * 5
  if graph == "backdoor":
    kb = p["bar_levels"]
    bar = _grid_thresholds(
        p["bar_intercept"] + p["bar_slope_digit"] * digit[:, None] +
        p["bar_slope_red"] * np.arange(2)[None, :], kb, "P(B=1 | {})",
        ("D", "C"), "bar_levels")  # [10, 2]
    return cc.DiscreteSCM.from_functions(
        exogenous={"u_dc": _bernoulli(p["p_large"]), "u_d": uniform5,
                   "u_c": _bernoulli(1.0 - p["p_red_given_large"]),
                   "u_b": [1.0 / kb] * kb},
        endogenous={
            "D": (10, ("u_d", "u_dc"), lambda ud, udc: ud + 5 * udc),
            "C": (2, ("u_dc", "u_c"), lambda udc, uc: udc ^ uc),
            "B": (2, ("D", "C", "u_b"), lambda d, c, ub: ub < bar[d, c]),
        })
  kc, kb = p["red_levels"], p["bar_levels"]
  red = _grid_thresholds(
      p["red_intercept"] + p["red_slope_digit"] * digit, kc, "P(C=1 | {})",
      ("D",), "red_levels")  # [10]
  bar = _grid_thresholds(
      p["bar_intercept"] + p["bar_slope_red"] * np.arange(2)[:, None] +
      p["bar_slope_large"] * np.arange(2)[None, :], kb, "P(B=1 | {})",
      ("C", "U_DB"), "bar_levels")  # [2, 2]
  return cc.DiscreteSCM.from_functions(
      exogenous={"u_db": _bernoulli(p["p_large"]), "u_d": uniform5,
                 "u_c": [1.0 / kc] * kc, "u_b": [1.0 / kb] * kb},
      endogenous={
          "D": (10, ("u_d", "u_db"), lambda ud, udb: ud + 5 * udb),
          "C": (2, ("D", "u_c"), lambda d, uc: uc < red[d]),
          "B": (2, ("C", "u_db", "u_b"), lambda c, udb, ub: ub < bar[c, udb]),
      })


class Generator:
  """The ASCM of one graph over one split's MNIST digits.

  Attributes:
    graph: "backdoor" or "frontdoor".
    params: the resolved parameters.
    scm: the exact feature-level `cc.DiscreteSCM`.
    exemplars: uint8 [N, 28, 28], the source digits grouped by class, source
      order within a class.
    counts: int [10], exemplars per class.
    offsets: int [10], index of each class's first exemplar.
  """

  def __init__(self, graph: str, images: np.ndarray, labels: np.ndarray,
               params: Any = None):
    """Builds the generator.

    Args:
      graph: "backdoor" or "frontdoor".
      images: uint8 [N, 28, 28] MNIST digits.
      labels: int [N] their classes 0-9; every class must occur.
      params: overrides of `DEFAULT_PARAMS[graph]`.
    """
    self.graph = graph
    self.params = resolve_params(graph, params)
    self.scm = feature_scm(graph, self.params)
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or \
        images.dtype != np.uint8:
      raise DataError(f"MNIST digits must be uint8 [N, 28, 28], got "
                      f"{images.dtype} {images.shape}")
    if labels.shape != images.shape[:1]:
      raise DataError(f"{len(labels)} labels for {len(images)} digits")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
      raise DataError("MNIST labels must be digits 0-9")
    order = np.argsort(labels, kind="stable")
    self.exemplars = images[order]
    self.counts = np.bincount(labels, minlength=10)
    missing = np.flatnonzero(self.counts == 0)
    if missing.size:
      raise DataError(f"the MNIST split has no digit {missing[0]}; do(D) "
                      "needs exemplars of every class")
    self.offsets = np.concatenate([[0], np.cumsum(self.counts)[:-1]])

  @property
  def num_exemplars(self) -> int:
    return len(self.exemplars)

  @property
  def exogenous_names(self) -> tuple[str, ...]:
    return (*self.scm.exogenous, STYLE)

  # Exogenous -----------------------------------------------------------------

  def sample_exogenous(self, rng: Any, n: int) -> dict[str, np.ndarray]:
    """Draws n exogenous configurations: feature u_* (int32) and u_i (float32).

    Args:
      rng: a numpy Generator, seed or SeedSequence.
      n: number of samples.
    """
    rng = np.random.default_rng(rng)
    u = {k: v.astype(np.int32)
         for k, v in self.scm.sample_exogenous(rng, n).items()}
    # Drawn in float32 directly: a float64 draw rounded to float32 can be 1.0.
    u[STYLE] = rng.random(n, dtype=np.float32)
    return u

  def _check_exogenous(self, exogenous: Mapping[str, Any]
                       ) -> dict[str, np.ndarray]:
    if not isinstance(exogenous, Mapping):
      raise DataError("exogenous values must be a mapping name -> array")
    u = {}
    for name in self.exogenous_names:
      if name not in exogenous:
        raise DataError(f"exogenous value {name!r} is missing; the "
                        f"{self.graph} generator needs "
                        f"{', '.join(self.exogenous_names)}")
      u[name] = np.asarray(exogenous[name])
      if u[name].ndim != 1:
        raise DataError(f"exogenous {name!r} must be a 1-D array, got shape "
                        f"{u[name].shape}")
    n = {a.shape[0] for a in u.values()}
    if len(n) != 1:
      raise DataError(f"exogenous arrays have different lengths {sorted(n)}")
    for name, probs in self.scm.exogenous.items():
      a = u[name]
      if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or
                     a.max() >= len(probs)):
        raise DataError(f"exogenous {name!r} must hold integers in "
                        f"0..{len(probs) - 1}")
    r = u[STYLE]
    if r.size and not (np.issubdtype(r.dtype, np.floating) and
                       np.all((r >= 0) & (r < 1))):
      raise DataError(f"style slot {STYLE!r} must hold floats in [0, 1)")
    return u

  def _check_do(self, do: Mapping[str, Any] | None, n: int
                ) -> dict[str, np.ndarray]:
    checked = {}
    for var, value in dict(do or {}).items():
      if var not in DOMAINS:
        raise DataError(f"cannot intervene on {var!r}; the factors are "
                        f"{', '.join(FACTORS)}")
      v = np.asarray(value)
      if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != n):
        raise DataError(f"do({var}) must be a scalar or an array of length "
                        f"{n}, got shape {v.shape}")
      if v.size and (not np.issubdtype(v.dtype, np.integer) or v.min() < 0 or
                     v.max() >= DOMAINS[var]):
        raise DataError(f"do({var}) values must be integers in "
                        f"0..{DOMAINS[var] - 1}")
      checked[var] = np.broadcast_to(v, (n,)).astype(np.int64)
    return checked

  # Mechanisms ----------------------------------------------------------------

  def features(self, exogenous: Mapping[str, Any],
               do: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """(D, C, B) computed from exogenous values, optionally under do().

    Args:
      exogenous: name -> array [n] (the style slot may be present).
      do: {factor: value}, the value a scalar or an int array [n] (one
        intervention per sample, e.g. do(C = 1 - C)).

    Returns:
      {"D", "C", "B"}: int32 arrays [n].
    """
    u = self._check_exogenous(exogenous)
    n = len(u[STYLE])
    do = self._check_do(do, n)
    feature_u = {k: u[k] for k in self.scm.exogenous}
    if not do:
      return {v: a.astype(np.int32)
              for v, a in self.scm.evaluate(feature_u).items()}
    out = {v: np.empty(n, np.int32) for v in FACTORS}
    # One SCM evaluation per distinct intervention (at most 40 of them).
    keys = sorted(do)
    combos, which = np.unique(np.stack([do[k] for k in keys], axis=1),
                              axis=0, return_inverse=True)
    which = which.reshape(-1)
    for j, combo in enumerate(combos):
      mask = which == j
      vals = self.scm.evaluate({k: a[mask] for k, a in feature_u.items()},
                               do=dict(zip(keys, combo.tolist())))
      for v in FACTORS:
        out[v][mask] = vals[v]
    return out

  def exemplar_index(self, digit: np.ndarray, style: np.ndarray) -> np.ndarray:
    """Index into `exemplars` of the image f_I uses: floor(r n_d) of class d."""
    digit = np.asarray(digit, dtype=np.int64)
    n_d = self.counts[digit]
    slot = np.floor(np.asarray(style, dtype=np.float64) * n_d).astype(np.int64)
    return self.offsets[digit] + np.minimum(slot, n_d - 1)

  def render(self, digit: np.ndarray, colour: np.ndarray, bar: np.ndarray,
             style: np.ndarray) -> np.ndarray:
    """The image mechanism f_I(D, C, B, U_I).

    Args:
      digit, colour, bar: int arrays [n].
      style: float array [n] in [0, 1), the style slot.

    Returns:
      uint8 [n, 32, 32, 3].
    """
    strokes = self.exemplars[self.exemplar_index(digit, style)]  # [n, 28, 28]
    colour = np.asarray(colour)[:, None, None]
    images = np.zeros((len(strokes), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    inner = slice(PAD, PAD + 28)
    images[:, inner, inner, RED] = np.where(colour == 1, strokes, 0)
    images[:, inner, inner, GREEN] = np.where(colour == 0, strokes, 0)
    images[np.asarray(bar) == 1, :BAR_ROWS, :, BLUE] = 255
    return images

  def from_exogenous(self, exogenous: Mapping[str, Any],
                     do: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A full sample computed from exogenous values, optionally under do().

    Args:
      exogenous: name -> array [n], every name in `exogenous_names`.
      do: as in `features`.

    Returns:
      {"image": uint8 [n, 32, 32, 3], "D", "C", "B": int32 [n],
       "exogenous": the exogenous arrays (copies)}.
    """
    u = self._check_exogenous(exogenous)
    v = self.features(u, do)
    image = self.render(v["D"], v["C"], v["B"], u[STYLE])
    return {"image": image, **v,
            "exogenous": {k: np.array(a) for k, a in u.items()}}

  def sample(self, rng: Any, n: int) -> dict[str, Any]:
    """Draws n samples (see `from_exogenous` for the format)."""
    return self.from_exogenous(self.sample_exogenous(rng, n))

  def counterfactual(self, batch: Mapping[str, Any],
                     do: Mapping[str, Any]) -> dict[str, Any]:
    """The TRUE counterfactual of a batch of samples under do().

    Same exogenous values (feature u_* and the style slot), the mechanisms of
    the intervened factors replaced: non-descendants of the intervened
    factors keep their values, descendants follow their mechanisms, and the
    image is re-rendered with the same style slot.

    Args:
      batch: samples of this generator (they carry "exogenous").
      do: {factor: value}, scalar or int array [n] per factor.

    Returns:
      The counterfactual samples, in the format of `from_exogenous`.
    """
    if not isinstance(batch, Mapping) or "exogenous" not in batch:
      raise DataError("the batch has no 'exogenous' values; true "
                      "counterfactuals need samples of the generator")
    return self.from_exogenous(batch["exogenous"], do)


# Label readers ----------------------------------------------------------------


def _check_images(images: Any) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
    raise DataError(f"expected Colored MNIST images [N, {IMAGE_SIZE}, "
                    f"{IMAGE_SIZE}, 3], got shape {images.shape}")
  if not (np.issubdtype(images.dtype, np.integer) or
          np.issubdtype(images.dtype, np.floating)):
    raise DataError(f"images must be numeric, got {images.dtype}")
  if np.issubdtype(images.dtype, np.floating) and \
      not np.all(np.isfinite(images)):
    raise DataError("images contain NaN or infinite values")
  return images


def read_colour(images: Any) -> np.ndarray:
  """C read from pixels: 1 (red) where the red channel holds more energy.

  Comparing whole-channel energies, not thresholding pixels, keeps the rule
  right for blurry or low-contrast model outputs. Scale-free: any value range.

  Args:
    images: [N, 32, 32, 3], uint8 or float.

  Returns:
    int32 [N].
  """
  images = _check_images(images)
  red = images[..., RED].sum(axis=(1, 2), dtype=np.float64)
  green = images[..., GREEN].sum(axis=(1, 2), dtype=np.float64)
  return (red > green).astype(np.int32)


def read_bar(images: Any, max_value: float = 255.0) -> np.ndarray:
  """B read from pixels: 1 where the bar region's mean blue exceeds half scale.

  The mean over the whole bar region (not single pixels) tolerates blur and
  noise; strokes live in red / green and never reach the blue channel.

  Args:
    images: [N, 32, 32, 3], uint8 or float.
    max_value: full-scale pixel value (255 for uint8, 1.0 for [0, 1]).

  Returns:
    int32 [N].
  """
  images = _check_images(images)
  mean = images[:, :BAR_ROWS, :, BLUE].mean(axis=(1, 2), dtype=np.float64)
  return (mean > max_value / 2).astype(np.int32)


def read_labels(images: Any, max_value: float = 255.0) -> dict[str, np.ndarray]:
  """{"C", "B"} read from pixels (D needs a trained classifier)."""
  return {"C": read_colour(images), "B": read_bar(images, max_value)}


class ColoredMNISTBars(base.Dataset):
  """The dataset entry of "colored_mnist_bars/<graph>" (`ctfjax.data`).

  Settings: `seed` (the sample of features and styles), `source` (MNIST IDX
  folder; default the bundled digits), `params` (overrides of
  `DEFAULT_PARAMS`).
  """

  EVALUATOR = "ctfjax.evaluate.datasets.colored_mnist:ColoredMNIST"
  image_shape = (IMAGE_SIZE, IMAGE_SIZE, 3)
  value_names = VALUE_NAMES

  def __init__(self, name: str, *, seed: int = 0, source: str | None = None,
               params: Any = None):
    self.name = name
    self.variant = name.split("/", 1)[1]
    self.seed = base.check_seed(seed)
    self.source = source
    self.params = resolve_params(self.variant, params)
    self.graph = GRAPHS[self.variant]
    self.kinds = dict(DOMAINS)

  def load(self, split="train", size=None, *, data_dir=None, cache=True):
    base.check_size(size)
    spec = {"name": self.name, "split": split, "size": size,
            "seed": self.seed, "source": mnist.source_id(self.source, split),
            "params": self.params, "version": VERSION}

    def build():
      gen = self.generator(split)
      return gen.sample(base.stream_seed(self.name, split, self.seed),
                        size or gen.num_exemplars)

    if not cache:
      return build()
    return storage.cached(self.name, split, spec, build, data_dir)

  def identity(self, split="train"):
    return {"data_seed": self.seed,
            "source": mnist.source_id(self.source, split)}

  def generator(self, split="train") -> Generator:
    images, labels = mnist.load(self.source, split)
    return Generator(self.variant, images, labels, self.params)

  def counterfactual(self, batch, do, split="train"):
    return self.generator(split).counterfactual(batch, do)

  def feature_scm(self) -> cc.DiscreteSCM:
    return feature_scm(self.variant, self.params)

  def display(self):
    return {"group_by": GROUP_BY, "sort_by": SORT_BY,
            "value_names": dict(VALUE_NAMES), "graph": self.graph}
