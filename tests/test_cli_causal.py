"""launch.query and launch.bounds end to end, bad input included."""

import json
import os
import subprocess
import sys

import pytest

from ctfjax import data
from ctfjax.causal import examples

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def run(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args],
                        capture_output=True, text=True, env=ENV, timeout=120)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("cli") / "b2.json"
  path.write_text(json.dumps(examples.witness_b()[1].to_dict()))
  return str(path)


@pytest.mark.slow
def test_query_value_and_distribution(spec_file):
  out = run("launch.query", f"--scm={spec_file}",
            "--query=P(Y_{X=1}=1 | X=0, Y=0)")
  assert out.returncode == 0, out.stderr
  assert float(out.stdout) == pytest.approx(0.75, abs=1e-9)
  out = run("launch.query", "--example=four_pixel", "--json",
            "--distribution=I_{X=1}", "--given=I=5")
  assert out.returncode == 0, out.stderr
  got = {k: p for k, p in json.loads(out.stdout)["probs"]}
  assert got == pytest.approx({5: 6 / 19, 6: 4 / 19, 14: 9 / 19})


@pytest.mark.slow
def test_bounds(spec_file, tmp_path):
  out = run("launch.bounds", f"--scm={spec_file}", "--json",
            "--query=P(Y_{X=1}=1 | X=0, Y=0)")
  assert out.returncode == 0, out.stderr
  got = json.loads(out.stdout)
  assert got["bounds"] == pytest.approx([0.5, 0.75])
  assert got["model_value"] == pytest.approx(0.75)
  table = tmp_path / "t.json"
  table.write_text(json.dumps(examples.witness_b()[0].observational()
                              .as_dict()))
  out = run("launch.bounds", "--graph=X -> Y", f"--table={table}",
            "--query=P(Y_{X=1}=1 | X=0, Y=0)")
  assert out.returncode == 0, out.stderr
  assert [float(x) for x in out.stdout.split()] == pytest.approx([0.5, 0.75])


@pytest.mark.slow
def test_bounds_of_a_polynomial_program(tmp_path):
  scm = data.feature_scm("colored_mnist_bars/frontdoor")
  table = tmp_path / "frontdoor.json"
  table.write_text(json.dumps(scm.observational().as_dict()))
  args = [f"--graph={scm.graph}", f"--table={table}",
          "--query=P(B_{D=1}=1 | D=0, B=0)"]
  out = run("launch.bounds", "--json", *args)
  assert out.returncode == 0, out.stderr
  got = json.loads(out.stdout)
  assert got["method"] == "polynomial" and got["exact"]
  assert got["gap"] <= 1e-6 and got["note"] == ""
  assert got["bounds"] == pytest.approx([0.0, 0.424], abs=1e-6)
  out = run("launch.bounds", *args)
  assert out.returncode == 0, out.stderr
  assert out.stdout.split("\t")[1].startswith("(polynomial (SCIP), gap")


@pytest.mark.parametrize("module, args, message", [
    ("launch.query", ["--example=four_pixel", "--query=P(Q=1)"],
     "unknown variable 'Q'"),
    ("launch.query", ["--example=four_pixel", "--query=P(X=2)"],
     "value 2 of 'X'"),
    ("launch.query", ["--example=four_pixel", "--query=P(X=1 | I=4)"],
     "probability zero"),
    ("launch.query", ["--example=four_pixel", "--query=X=1"],
     "cannot parse query"),
    ("launch.query", ["--scm=/no/such.json", "--query=P(X=1)"],
     "does not exist"),
    ("launch.query", ["--example=four_pixel"], "exactly one of --query"),
    ("launch.query", ["--nonsense=1"], "Unknown command line flag"),
    ("launch.bounds", ["--graph=X -> Y", "--query=P(Y=1)"],
     "--table is required"),
    ("launch.bounds", ["--example=witness_b1", "--query=P(Y=1 | X=0"],
     "cannot parse query"),
])
@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(module, args, message):
  out = run(module, *args)
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
  assert message in lines[0]
  assert "Traceback" not in out.stderr


def test_bad_spec_file(tmp_path):
  bad = tmp_path / "bad.json"
  spec = examples.witness_b()[0].to_dict()
  spec["exogenous"]["u_x"] = [0.5, 0.6]
  bad.write_text(json.dumps(spec))
  out = run("launch.query", f"--scm={bad}", "--query=P(Y=1)")
  assert out.returncode == 2
  assert "u_x" in out.stderr and "sum to 1.1" in out.stderr
