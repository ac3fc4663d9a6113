"""The image-mechanism interface: what the ANCM stages call, and nothing else.

An image mechanism is the image node's structural equation I := f_I(v, u_I)
of an ANCM (docs/models.md) together with the abduction of its
exogenous U_I from an image. Every family (VAE, HVAE, GAN with an encoder,
DDPM with DDIM inversion, VAE + DDPM) implements `ImageMechanism` as an nnx
module; the ANCM merges it with its parameters at the boundary, so each
method below is a pure function of (params, inputs, rng).

Conventions:

* `images` are float32 [B, H, W, C] in [0, 1];
* `cond` is the features' encoding [B, D]: one-hots for categorical
  features, standardised values for continuous ones
  (`ctfjax.causal.kinds.encode`), the same for every family, or the
  values' learned codes when the feature model has them
  (`ctfjax.ncm.codes.CodeNCM`; the ANCM asks `NCM.condition`);
* `u` (U_I) is any pytree whose leaves have the leading batch axis B;
* `features` (`Features`, given to `create`) says what `cond` holds: the
  features' names in the model's (topological) order, each one's width
  and so its slice of `cond`, the diagram the model assumes and the
  dataset's true diagram when known. Most families read only its
  `cond_dim`; a family whose networks are wired per feature (CGN's three
  mechanisms, DEAR's SCM over the factors' codes) reads the rest, so no
  config restates a dataset's layout.

What differs between families and is therefore owned by the mechanism:

* its training stages (`stages`): which of its parameters train, with which
  of its losses and which optimizer, for how many steps. A VAE has one
  stage; a two-stage model trains its VAE, then its refiner; a GAN trains
  two parameter groups with two optimizers inside each step (each group's
  gradient comes from its own loss);
* its sampler settings (`SAMPLER` defaults, overridable per `predict` call:
  number of steps, eta, ...) and its use of `rng` in `predict`;
* the compiler options its computations run fastest with, per backend
  (`COMPILER_OPTIONS`, optional; `ctfjax.compiler`): its training steps and
  the ANCM's abduction and prediction are compiled with them;
* `relabel`: a cheap differentiable decode of images under new features
  for the ANCM's label-faithfulness term, or None where the family has
  none (a 50-1000 step sampler), which switches the term off;
* what its later stages need from the rest of the ANCM: every `loss` call
  gets a `Context` with the ANCM's frozen feature model and label reader
  (random counterfactual features of the batch and the reader's score of
  images under them - counterfactual fine-tuning; the reader's embedding -
  a cyclic fine-tuning's feature term).

A new family is one module defining a class with these members plus one
line in `ctfjax.mechanisms.REGISTRY`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol, Sequence

import jax
import ml_collections
import optax

from ctfjax.causal.graph import Graph
from ctfjax.errors import UserError

Array = jax.Array
# A parameter's path inside the mechanism's nnx state, e.g.
# ("decoder", "head", "kernel").
ParamPath = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Features:
  """The features as an image mechanism sees them: the layout of `cond`
  and the diagrams over them.

  `ANCM.create` builds it from its feature NCM (and the dataset's diagram);
  `Features.of(width)` is a layout known only by its width, for a
  mechanism built alone (a unit test, a speed benchmark).

  Attributes:
    names: the features in the order of their encodings in `cond`: the
      model's topological order.
    widths: each feature's encoding width (one-hot size of a categorical
      feature, 1 for a continuous one), in `names` order.
    graph: the diagram the model assumes over `names` (directed parents,
      bidirected pairs); None when unknown.
    true_graph: the dataset's true diagram; None when unknown. It differs
      from `graph` for a model run under another diagram (the edgeless
      `cvae_noncausal`), where prior knowledge of the true causal order is
      still the dataset's (DEAR's super-graph).
  """

  names: tuple[str, ...]
  widths: tuple[int, ...]
  graph: Graph | None = None
  true_graph: Graph | None = None

  def __post_init__(self):
    object.__setattr__(self, "names", tuple(self.names))
    object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
    if len(self.names) != len(self.widths):
      raise MechanismError(f"features {self.names} have {len(self.widths)} "
                           "widths; one each is needed")
    for graph in (self.graph, self.true_graph):
      if graph is not None and set(graph.nodes) != set(self.names):
        raise MechanismError(f"diagram {graph} is not over the features "
                             f"{', '.join(self.names)}")

  @classmethod
  def of(cls, features: Features | int) -> Features:
    """`features` itself, or for an int D one unnamed feature "cond" of
    width D and no diagram."""
    if isinstance(features, Features):
      return features
    return cls(("cond",), (int(features),))

  @property
  def cond_dim(self) -> int:
    """D, the width of `cond`: the sum of the widths."""
    return sum(self.widths)

  @property
  def slices(self) -> tuple[slice, ...]:
    """Each feature's slice of `cond`, in `names` order."""
    return block_slices(self.widths)

  def index(self, name: str, key: str) -> int:
    """The position of feature `name` in `names`.

    Args:
      name: a feature's name.
      key: the config key that gave it, for the error.

    Raises:
      MechanismError: no feature has that name.
    """
    if name not in self.names:
      raise MechanismError(f"config key '{key}': unknown feature {name!r}; "
                           f"the features are {', '.join(self.names)}")
    return self.names.index(name)


def block_slices(widths: Sequence[int]) -> tuple[slice, ...]:
  """Consecutive slices of the given widths: each block's slice of `cond`."""
  out, start = [], 0
  for width in widths:
    out.append(slice(start, start + int(width)))
    start += int(width)
  return tuple(out)


@dataclasses.dataclass(frozen=True)
class Group:
  """Parameters trained together by one loss with one optimizer.

  Attributes:
    name: the loss this group descends: a key of the dict that the
      mechanism's `loss` returns for the stage. A Lagrange multiplier
      ascends by descending the negated Lagrangian in its own group.
    params: predicate on a parameter's path inside the mechanism; True for
      the parameters of this group. Parameters in no group of a stage are
      frozen during it.
    optimizer: `train config section -> optax transformation`; None uses
      the run's `config.train` optimizer (with the stage's step count).
      In the first stage the feature NCM and the reader train with the
      first group's optimizer when it is None, else in a group of their
      own ("features") with the run's optimizer.
  """

  name: str
  params: Callable[[ParamPath], bool] = lambda path: True
  optimizer: Callable[[ml_collections.ConfigDict],
                      optax.GradientTransformation] | None = None


@dataclasses.dataclass(frozen=True)
class Context:
  """The rest of the ANCM, frozen, as a mechanism's `loss` may use it.

  Both callables are differentiable in their image arguments and never
  train the feature model or the reader (their parameters are behind
  `stop_gradient`).

  Attributes:
    counterfactual: `rng -> (new_cond [B, D], score)`: the batch's features
      under a random single-feature intervention each (the feature chosen
      per row, its value drawn from the model's P(V)), carried to the
      descendants through the feature model's abduction; and `score(images)
      -> [B]`, the reader's -log h(v' | images) of those counterfactual
      features (nats, summed over features).
    embed: `images [B, H, W, C] -> [B, E]`: the reader's penultimate
      features (an anti-causal embedding of the image).
    step: int32 [] updates made so far in this stage, for losses with
      schedules (a KL warm-up); None outside training (evaluation), where
      a schedule's final value applies.
  """

  counterfactual: Callable[[jax.Array], tuple[jax.Array,
                                               Callable[[jax.Array],
                                                        jax.Array]]]
  embed: Callable[[jax.Array], jax.Array]
  step: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class Stage:
  """One training stage of a mechanism.

  Attributes:
    name: the stage's name (also its loss's `stage` argument and, after the
      first stage, its checkpoint folder `stages/<name>`).
    steps: optimizer steps.
    groups: parameter groups; in the ANCM's first stage the first group
      also trains the feature NCM and the label reader (and carries the
      label-faithfulness term).
    guard: `{metric: mean over a logging window} -> message or None`,
      checked whenever the loop logs (metrics named without "train/");
      a message stops training there, naming the step, before that step
      checkpoints (e.g. a GAN's discriminator collapse). None: no check.
  """

  name: str
  steps: int
  groups: tuple[Group, ...] = (Group("loss"),)
  guard: Callable[[Mapping[str, float]], str | None] | None = None


class ImageMechanism(Protocol):
  """f_I(v, u_I) and its abduction; see the module docstring.

  Class-level members:
    SAMPLER: {setting: default} of `predict` ({} when it has none).
    COMPILER_OPTIONS: optional; {backend: {XLA option: value}} to compile
      the family's computations with (`compiler_options`).
    RETIRED: optional; names of settings the family no longer has, which
      `mechanisms.settings` drops from older runs' configs.
    accelerator_config(image_shape=None): optional classmethod; the family
      section of the `accel` size preset for images of that shape
      (`celeba_sized` picks the paper's CelebA or MorphoMNIST network).
  """

  SAMPLER: Mapping[str, Any]

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    """The family's `model.image.<kind>` section, every field commented."""

  @classmethod
  def create(cls, image_shape: Sequence[int], features: Features | int,
             config: ml_collections.ConfigDict, *, rngs) -> ImageMechanism:
    """A freshly initialised mechanism from its config section; every
    family builds its defaults for 32x32 and 64x64 images alike.
    `features` is a `Features` (an int: `Features.of`); most families
    read only its `cond_dim`."""

  @classmethod
  def stages(cls, config: ml_collections.ConfigDict,
             steps: int) -> tuple[Stage, ...]:
    """The training stages; `steps` is the run's `train.steps`."""

  def loss(self, images: Array, cond: Array, rng: Array, stage: str,
           context: Context) -> tuple[dict[str, Array], dict[str, Array]]:
    """Per-example losses [B] by group name, and metrics {name: [B]}.

    Losses are in nats (or the family's natural unit) per image, summed
    over pixels; the ANCM divides by the number of pixel values. `context`
    is the ANCM's frozen rest (see `Context`); most stages ignore it.
    """

  def abduct(self, images: Array, cond: Array, rng: Array,
             **sampler: Any) -> Any:
    """u_I for each image given its factual features; `sampler` holds the
    same settings as the `predict` that will use it (e.g. a DDIM inversion
    runs the sampler's steps backwards)."""

  def predict(self, cond: Array, u: Any, rng: Array,
              **sampler: Any) -> Array:
    """f_I(cond, u_I): images [B, H, W, C] in [0, 1]."""

  def prior(self, rng: Array, batch: int) -> Any:
    """u_I drawn from P(U_I) (independent of the features)."""

  def relabel(self, images: Array, cond: Array, new_cond: Array,
              rng: Array) -> Array | None:
    """Differentiable images with the content of `images` and the features
    `new_cond`, or None if the family has no cheap decode."""


def celeba_sized(image_shape: Sequence[int] | None) -> bool:
  """Whether a family's `accelerator_config(image_shape)` is Melistas et
  al.'s CelebA network (images of side 64 or more) rather than their
  MorphoMNIST one (32x32; also when no shape is given)."""
  return image_shape is not None and min(image_shape[:2]) >= 64


def compiler_options(mechanism: type) -> Mapping[str, Mapping[str, str]]:
  """The family's `COMPILER_OPTIONS`, {backend: {option: value}} ({}: XLA's
  defaults everywhere, if it names none)."""
  return getattr(mechanism, "COMPILER_OPTIONS", {})


def sampler_settings(mechanism: type, overrides: Mapping[str, Any] | None
                     ) -> tuple[tuple[str, Any], ...]:
  """The sampler settings of one `predict` call, checked and hashable.

  Args:
    mechanism: the mechanism class.
    overrides: {setting: value} from a config or a call; None for defaults.

  Returns:
    Sorted (setting, value) pairs: a static argument for jit.

  Raises:
    MechanismError: a setting the family does not have.
  """
  defaults = dict(mechanism.SAMPLER)
  for key in overrides or {}:
    if key not in defaults:
      known = ", ".join(defaults) or "none"
      raise MechanismError(f"unknown sampler setting {key!r} for "
                           f"{mechanism.__name__}; it has: {known}")
  return tuple(sorted({**defaults, **dict(overrides or {})}.items()))


def path_names(path) -> ParamPath:
  """A jax key path as plain strings: ("decoder", "head", "kernel").

  The `value` attribute through which nnx state reaches a variable's array
  is dropped, so a path names the module attribute a family defined.
  """
  out = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        out.append(str(getattr(key, attr)))
        break
    else:
      out.append(str(key))
  if len(out) > 1 and out[-1] == "value":
    out.pop()
  return tuple(out)


class MechanismError(UserError):
  """Bad image-mechanism input: unknown kind, sampler setting, ..."""
