"""The numpyro backend agrees with the fast path (causal/numpyro_backend.py).

Each new query shape is traced and compiled by XLA (about a second on two
busy cores), so the sweeps are slow tests; the fast tier keeps one small
model and the checks that compile nothing.
"""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.small_queries import random_queries
from benchmarks.small_queries import random_scm
from ctfjax import causal as cc
from ctfjax.causal import examples
from ctfjax.causal import numpyro_file
from test_numpyro_frontend import assert_same_scm

TOL = 1e-12
FOUR_PIXEL = "examples/four_pixel_numpyro.py:model"

# A handful of queries per witness: observational, interventional and
# counterfactual with factual and counterfactual evidence.
QUERIES = {
    "four_pixel": ["P(I=5)", "P(I_{X=1}=14 | I=5)", "P(X=1, Y=0)",
                   "P(I_{X=1}=6, I_{X=0}=5 | Y=1)",
                   "P(Y_{X=0}=1 | I=5, X=1)",
                   "P(I_{Y=0}=6 | I_{X=1}=14)"],
    "witness_a1": ["P(I_{X=1}=6 | I=0)", "P(Y_{X=0}=0 | Y=1)", "P(I=3)",
                   "P(I_{X=1}=7 | X=0)"],
    "witness_a2": ["P(I_{X=1}=4 | I=0)", "P(Y_{X=0}=0 | Y=1)",
                   "P(I_{X=1}=6, Y=0)", "P(I_{X=1}=5 | X=0)"],
    "witness_b1": ["P(Y_{X=1}=1 | X=0, Y=0)", "P(Y=1)", "P(Y_{X=0}=1)",
                   "P(Y_{X=0}=0, Y_{X=1}=1)"],
    "witness_b2": ["P(Y_{X=1}=1 | X=0, Y=0)", "P(Y_{X=0}=0 | Y_{X=1}=1)"],
    "witness_c1": ["P(I_{X=1}=2 | I=0)", "P(I_{X=0}=1 | X=1, I=3)",
                   "P(I_{X=1}=3 | X=0)"],
    "witness_c2": ["P(I_{X=1}=3 | I=0)", "P(I_{X=0}=1, I=2)"],
}


def agree(scm, text):
  """Both backends' values of `text` (None for zero-probability evidence),
  checked to agree within TOL."""
  try:
    want = cc.query(scm, text)
  except cc.ZeroProbabilityError:
    with pytest.raises(cc.ZeroProbabilityError, match="probability zero"):
      cc.query(scm, text, backend="numpyro")
    return None
  got = cc.query(scm, text, backend="numpyro")
  assert abs(got - want) <= TOL, (text, got, want)
  return got


def test_every_witness_has_queries():
  assert set(QUERIES) == set(examples.BY_NAME)


def test_four_pixel_edit_is_exact():
  # Asymmetric priors and a counterfactual world: a prior read backwards,
  # a shifted table index or worlds with their own U all move it.
  scm = examples.four_pixel_ascm()
  got = cc.query(scm, "P(I_{X=1}=14 | I=5)", backend="numpyro")
  assert got == pytest.approx(9 / 19, abs=TOL)
  # The library never turns float64 on for the process.
  assert jnp.zeros(1).dtype == jnp.float32


def test_unknown_backend_is_one_line_naming_the_known_ones():
  scm = examples.witness_b()[0]
  for call in (lambda: cc.query(scm, "P(Y=1)", backend="funsor"),
               lambda: cc.distribution(scm, "Y", backend="funsor")):
    with pytest.raises(cc.SCMError) as e:
      call()
    assert str(e.value) == ("unknown backend 'funsor'; known: einsum, "
                            "numpyro")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(QUERIES))
def test_witnesses_agree_with_the_fast_path(name):
  scm = examples.by_name(name)
  values = [agree(scm, q) for q in QUERIES[name]]
  assert any(v is not None and 0 < v < 1 for v in values)


@pytest.mark.slow
def test_four_pixel_distribution():
  scm = examples.four_pixel_ascm()
  got = cc.distribution(scm, "I_{X=1}", given="I=5", backend="numpyro")
  want = cc.distribution(scm, "I_{X=1}", given="I=5")
  assert list(got) == list(want) == [5, 6, 14]
  assert got == pytest.approx(want, abs=TOL)
  assert got == pytest.approx({5: 6 / 19, 6: 4 / 19, 14: 9 / 19}, abs=TOL)
  # Several variables, one of them intervened on: tuple keys.
  got = cc.distribution(scm, "I_{X=1}, X_{X=1}, Y", given="I=5",
                        backend="numpyro")
  want = cc.distribution(scm, "I_{X=1}, X_{X=1}, Y", given="I=5")
  assert list(got) == list(want)
  assert got == pytest.approx(want, abs=TOL)


@pytest.mark.slow
def test_zero_probability_evidence_raises_as_the_fast_path():
  scm = examples.four_pixel_ascm()  # never draws the image 1111
  for backend in ("einsum", "numpyro"):
    with pytest.raises(cc.ZeroProbabilityError,
                       match=r"^evidence I=15 has probability zero$"):
      cc.query(scm, "P(X=1 | I=15)", backend=backend)
    with pytest.raises(cc.ZeroProbabilityError,
                       match=r"^evidence I=15 has probability zero$"):
      cc.distribution(scm, "I_{X=1}", given="I=15", backend=backend)
  # An outcome of probability zero is 0, not an error.
  assert cc.query(scm, "P(I=15 | X=1)", backend="numpyro") == 0.0


def random_models(count, seed):
  """`count` random models with one counterfactual query each, alternating
  factual and counterfactual evidence (benchmarks.small_queries' kinds)."""
  rng = np.random.default_rng(seed)
  for m in range(count):
    scm = random_scm(rng)
    yield scm, random_queries(rng, scm)[2 + m % 2]


def test_random_models_small():
  for scm, text in random_models(1, seed=1):
    agree(scm, text)


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(10))
def test_200_random_models(chunk):
  """20 models a chunk, so that xdist can share them between workers."""
  models = list(random_models(200, seed=0))[20 * chunk:20 * (chunk + 1)]
  values = [agree(scm, text) for scm, text in models]
  assert any(v is not None and 0 < v < 1 for v in values)


def test_load_model_reads_the_four_pixel_file():
  scm = numpyro_file.load_model(FOUR_PIXEL, ["I=16"])
  assert_same_scm(scm, examples.four_pixel_ascm())
  # Without --domains the image's domain stops at its largest value.
  assert numpyro_file.load_model(FOUR_PIXEL).domains["I"] == 15


@pytest.mark.slow
def test_cli_backends_print_the_same_value():
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  out = {}
  for backend in ("einsum", "numpyro"):
    done = subprocess.run(
        [sys.executable, "-m", "launch.query", f"--model={FOUR_PIXEL}",
         "--domains=I=16", "--query=P(I_{X=1}=14 | I=5)",
         f"--backend={backend}"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    out[backend] = done.stdout
  assert out["einsum"] == out["numpyro"] == "0.473684210526\n"
