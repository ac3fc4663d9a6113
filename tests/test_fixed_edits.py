"""benchmarks.fixed_edits's parts: the shares it reports against hand
counts, and its --do parsed and checked against the model's features.
(The module itself defines flags, so it is not imported here.)"""

import numpy as np
import pytest

from benchmarks import edit_effect
from ctfjax.errors import UserError
from launch import edit_inputs

DOMAINS = {"D": 10, "C": 2, "B": 2}


def test_shares_count_set_and_followed_values_by_hand():
  read = {"D": np.array([8, 8, 3, 8]), "C": np.array([1, 0, 1, 1]),
          "B": np.array([0, 0, 1, 1])}
  drawn = {"D": np.full(4, 8), "C": np.array([1, 1, 1, 0]),
           "B": np.array([0, 1, 1, 1])}
  got = edit_effect.shares(read, {"D": 8}, drawn, ("D", "C", "B"))
  # D read as 8 in 3 of 4 edits; C as drawn in edits 0 and 2; B in 0, 2, 3.
  assert got == {"set": 0.75, "follows": {"C": 0.5, "B": 0.75}}
  # Two intervened features: an edit counts when both are seen.
  both = edit_effect.shares(read, {"D": 8, "C": 1}, drawn, ("D", "C", "B"))
  assert both == {"set": 0.5, "follows": {"B": 0.75}}


def test_interventions_are_parsed_per_semicolon_and_typed():
  assert edit_inputs.interventions("C=1; D=8", DOMAINS) == [{"C": 1},
                                                            {"D": 8}]
  assert edit_inputs.interventions("C=1,B=0", DOMAINS) == [{"C": 1, "B": 0}]
  with pytest.raises(UserError, match="unknown factor 'Z'"):
    edit_inputs.interventions("C=1;Z=2", DOMAINS)
  with pytest.raises(UserError, match="D=10 is outside its domain 0..9"):
    edit_inputs.interventions("D=10", DOMAINS)
  with pytest.raises(UserError, match="--do names no intervention"):
    edit_inputs.interventions(" ; ", DOMAINS)
