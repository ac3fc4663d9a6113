"""Evaluation readers share no architecture with the reader a model trains
against: images drawn to fool a model's frozen label reader (the HVAE's
counterfactual fine-tuning) must not fool the evaluation by construction.
Weights, data and seeds are separate already (the readers are trained by
the evaluation, on their own data)."""

import pytest
from flax import nnx

from ctfjax.ancm import fit
from ctfjax.evaluate import attribute_predictors
from ctfjax.evaluate import digit_cnn
from ctfjax.evaluate import morpho_predictors
from configs import ancm
from configs import quickstart

pytestmark = pytest.mark.slow  # Builds a model (about 10 s on 2 cores).


def trunk(module) -> list[tuple[int, ...]]:
  """(kernel h, kernel w, output channels) of a module's conv layers, in
  order: the input channels differ with the images a reader sees."""
  kernels = [p.shape for path, p in nnx.to_flat_state(
      nnx.state(module, nnx.Param)) if "convs" in path and path[-1] ==
             "kernel"]
  return [(k[0], k[1], k[3]) for k in kernels]


def model_reader_trunk() -> list[tuple[int, ...]]:
  model, params = fit.build(ancm.sized(quickstart.get_config(), "tiny"), 0)
  return trunk(nnx.merge(model.reader_def, params["reader"]))


def test_the_digit_reader_shares_no_layer_shape_with_the_model_reader():
  model = model_reader_trunk()
  evaluation = trunk(digit_cnn.DigitCNN(rngs=nnx.Rngs(0)))
  assert len(model) == len(evaluation) == 3
  assert not set(model) & set(evaluation), (model, evaluation)


def test_the_other_evaluation_readers_have_other_trunks():
  model = model_reader_trunk()
  for module in (morpho_predictors.Predictor(10, 0, 1, rngs=nnx.Rngs(0)),
                 attribute_predictors.AttributeCNN(3, 2, 1,
                                                   rngs=nnx.Rngs(0))):
    assert trunk(module) and trunk(module) != model, type(module).__name__
