"""The features as the ANCM hands them to an image mechanism.

`ANCM.create` gives `mechanisms.create` a `mechanisms.Features`: the
features' names in the model's order, their widths (so each one's slice of
cond), the diagram the model assumes and the dataset's true one. Pinned
against hand-written layouts for both Colored MNIST graphs, under the true
and the edgeless diagram, and for the CelebA benchmark's CGN and DEAR rows;
a run config written before CGN's and DEAR's hand-written layout keys
(`blocks`, index roles, index `edges`) were removed still builds the same
layout and resumes.
"""

import jax
import ml_collections
import pytest
from flax import nnx

from configs import benchmark_celeba
from configs import compare_cgn_dear_colored_mnist as compare
from ctfjax import experiment
from ctfjax import mechanisms
from ctfjax import train
from ctfjax.ancm import fit
from ctfjax.causal.graph import Graph
from ctfjax.mechanisms import Features, MechanismError, cgn, dear

# Colored MNIST: D (10 digits), C (2 colours), B (2 bar states), in the
# model's order under every diagram the comparison uses.
NAMES, WIDTHS = ("D", "C", "B"), (10, 2, 2)
SLICES = (slice(0, 10), slice(10, 12), slice(12, 14))
TRUE = {"backdoor": "D <-> C; D -> B; C -> B",
        "frontdoor": "D -> C; C -> B; D <-> B"}
# DEAR's super-graph as the comparison config wrote it by hand before:
# (parent, child) indices into D, C, B.
EDGES = {"backdoor": ((0, 2), (1, 2)), "frontdoor": ((0, 1), (1, 2))}
# The cgn and dear sections of a config.json written before the layout
# came from the model (runs/compare_cgn_dear_backdoor/models/*/).
OLD_CGN = {"blocks": [10, 2, 2], "shape": 0, "texture": 1, "background": 2,
           "latent_dim": 8, "decoder_convs": [[24, 3], [24, 3], [16, 3]],
           "beta": 1.0}
OLD_DEAR = {"blocks": [10, 2, 2], "edges": [[0, 2], [1, 2]], "rest_dim": 8,
            "sup_coef": 100.0, "decoder_convs": [[24, 3], [24, 3], [16, 3]],
            "beta": 1.0}


def layout_of(config, monkeypatch) -> Features:
  """The `Features` that building `config`'s model hands the mechanism
  (built abstractly: nothing is computed)."""
  seen, create = [], mechanisms.create

  def spy(image, image_shape, features, rngs):
    seen.append(features)
    return create(image, image_shape, features, rngs)

  monkeypatch.setattr(mechanisms, "create", spy)
  fit.model_of(config)
  (features,) = seen
  return features


def built_image(config):
  """The image mechanism of `config`'s model with abstract parameters."""
  box = []

  def params():
    model, p = fit.build(config, jax.random.key(0))
    box.append(model)
    return p

  abstract = jax.eval_shape(params)
  return nnx.merge(box[0].image_def, abstract["image"])


@pytest.mark.parametrize("dataset", ["backdoor", "frontdoor"])
@pytest.mark.parametrize("name, edgeless", [
    ("cgn", True), ("dear", True), ("ancm_vae", False)])
def test_colored_mnist_layout_is_the_hand_written_one(
    dataset, name, edgeless, monkeypatch):
  run = compare.get_config("tiny")
  run.data.name = f"colored_mnist_bars/{dataset}"
  config = experiment.model_config(run, name)
  got = layout_of(config, monkeypatch)
  assert got.names == NAMES and got.widths == WIDTHS
  assert got.slices == SLICES and got.cond_dim == 14
  true = Graph.parse(TRUE[dataset])
  assert got.true_graph == true
  assert got.graph == (Graph.parse("D; C; B") if edgeless else true)
  # What the comparison config used to restate by hand.
  assert dear.super_graph_edges(got) == EDGES[dataset]
  assert cgn.assign_roles(got, {}) == NAMES


@pytest.mark.parametrize("kind", ["cgn", "dear"])
def test_the_celeba_benchmark_builds_cgn_and_dear(kind, tmp_path,
                                                 monkeypatch):
  config = train.load_config(benchmark_celeba.__file__,
                             [f"data.source={tmp_path}"])
  config = experiment.model_config(config, kind)
  assert config.model.image.kind == kind
  got = layout_of(config, monkeypatch)
  assert got.names == ("Smiling", "Eyeglasses") and got.widths == (2, 2)
  assert got.slices == (slice(0, 2), slice(2, 4))
  assert got.graph == got.true_graph == Graph.parse("Smiling; Eyeglasses")
  image = built_image(config)
  if kind == "cgn":
    # The glasses are the masked layer, the face beneath reads Smiling;
    # the texture mechanism is left without a feature (its latent only).
    assert image.roles == ("Eyeglasses", None, "Smiling")
    assert image.reads == ((2, 4), (0, 0), (0, 2))
  else:
    # Independent attributes: DEAR's SCM has no edge.
    assert image.scm.blocks == (2, 2) and image.scm.edges == ()


def test_a_layout_known_only_by_its_width_is_one_unnamed_feature():
  got = Features.of(6)
  assert got.names == ("cond",) and got.widths == (6,) and got.cond_dim == 6
  assert got.graph is None and got.true_graph is None
  layout = Features(NAMES, WIDTHS)
  assert Features.of(layout) is layout


@pytest.mark.parametrize("make, match", [
    (lambda: Features(NAMES, (10, 2)), "have 2 widths; one each"),
    (lambda: Features(NAMES, WIDTHS, Graph.parse("D -> C")),
     "not over the features"),
    (lambda: Features(NAMES, WIDTHS).index("X", "model.image.k.f"),
     r"config key 'model.image.k.f': unknown feature 'X'; the features "
     "are D, C, B"),
], ids=["widths", "graph", "name"])
def test_a_bad_layout_is_one_line(make, match):
  with pytest.raises(MechanismError, match=match):
    make()


@pytest.mark.parametrize("kind, old", [("cgn", OLD_CGN), ("dear", OLD_DEAR)])
def test_settings_leave_out_the_retired_layout_keys(kind, old):
  image = ml_collections.ConfigDict({"kind": kind, kind: {**old,
                                                          "beta": 2.0}})
  got = mechanisms.settings(image)
  assert set(got) == set(mechanisms.family(kind).default_config())
  assert got.beta == 2.0  # the run's own value of a key kept


@pytest.mark.parametrize("kind, old", [("cgn", OLD_CGN), ("dear", OLD_DEAR)])
def test_a_run_written_with_the_old_layout_keys_builds_and_resumes(
    kind, old, monkeypatch):
  config = experiment.model_config(compare.get_config("tiny"), kind)
  new_model = config.model.to_dict()
  # The run's config.json as it was written: the family's old section.
  config.model.image[kind] = ml_collections.ConfigDict(old)
  old_model = config.model.to_dict()
  assert (fit.resumed_part("model", old_model)
          == fit.resumed_part("model", new_model))
  got = layout_of(config, monkeypatch)
  settings = mechanisms.settings(config.model.image)
  if kind == "cgn":
    assert cgn.assign_roles(got, {
        m: settings[cgn.ROLE_KEYS[m]] for m in cgn.MECHANISMS}) == NAMES
  else:
    assert dear.super_graph_edges(got, settings.super_graph) == EDGES[
        "backdoor"]
