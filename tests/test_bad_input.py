"""A sweep of bad inputs: each is one `error:` line, exit 2, nothing on disk.

The command cases run every launcher's real `main` under `launch.cli.run`
(`tests/launch_runner.py`: one process per launcher, flags reset between
cases). `{root}` in an argument is a scratch folder holding the fixtures
below; `{ro}` a folder this process cannot write in (read-only for root too).
The API cases call the library directly: a bad value is a `UserError` naming
it, never a silently wrong answer.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ctfjax import causal as cc
from ctfjax import files
from ctfjax import train
from ctfjax.causal import examples
from ctfjax.causal import scm as scm_lib
from ctfjax.errors import UserError

QS = "--config=configs/quickstart.py:tiny"
FOLDER = "--config=examples/folder_config.py:tiny"
W = "--workdir={root}/w"  # Must not appear: every case fails first.
EDIT = ["--workdir={root}/trained", "--image=examples/digit.png", "--do=C=1",
        "--out={root}/out.png"]
SCM = "--scm=examples/scm.json"
QUERY = "--query=P(Y_{X=1}=1 | X=0, Y=0)"
MODEL = "--model=examples/four_pixel_numpyro.py:model"


def _with(args, **changes):
  """`args` with the flags in `changes` replaced (None: dropped)."""
  out = [a for a in args if a.split("=", 1)[0][2:] not in changes]
  return out + [f"--{k}={v}" for k, v in changes.items() if v is not None]


CASES = {
    "launch.train": [
        ([], "--workdir is required"),
        ([W], "--config is required"),
        ([W, "--config=configs/nope.py"],
         "config file configs/nope.py does not exist"),
        ([W, "--config={root}/not_python.py"], "fails to load: SyntaxError"),
        ([W, "--config=README.md"],
         "config file README.md is not a Python file (.py)"),
        ([W, "--config=configs"], "config file configs is not a Python file"),
        ([W, "--config={root}/empty.py"], "returned an empty config"),
        ([W, "--config={root}/no_get_config.py"], "has no get_config()"),
        ([W, "--config={root}/returns_dict.py"],
         "must return a ConfigDict, got dict"),
        ([W, "--config={root}/raises.py"],
         "get_config() of {root}/raises.py raised KeyError"),
        ([W, "--config={root}/no_data.py"], "config has no 'data.name'"),
        ([W, "--config=configs/quickstart.py:huge"],
         "unknown config preset 'huge'"),
        ([W, "--config={root}/no_preset.py:tiny"], "takes no size preset"),
        ([W, QS, "--config.train.steps=-5"],
         "config key 'train.steps' must be > 0"),
        ([W, QS, "--config.train.steps=0"],
         "config key 'train.steps' must be > 0"),
        ([W, QS, "--config.train.batch_size=0"],
         "config key 'train.batch_size' must be > 0"),
        ([W, QS, "--config.train.learning_rate=0.0"],
         "config key 'train.learning_rate' must be > 0"),
        ([W, QS, "--config.train.learning_rate=-0.1"],
         "config key 'train.learning_rate' must be > 0"),
        ([W, QS, "--config.train.learning_rate=nan"],
         "config key 'train.learning_rate' expects float, got 'nan'"),
        ([W, QS, "--config.train.log_every=0"],
         "config key 'train.log_every' must be > 0"),
        ([W, QS, "--config.train.warmup_steps=-1"],
         "config key 'train.warmup_steps' must be >= 0"),
        ([W, QS, "--config.train.grad_clip=-1.0"],
         "config key 'train.grad_clip' must be >= 0"),
        ([W, QS, "--config.ckpt.max_to_keep=0"],
         "config key 'ckpt.max_to_keep' must be > 0"),
        ([W, QS, "--config.mesh.data=0"],
         "config key 'mesh.data' must be > 0 or -1"),
        ([W, QS, "--config.train.optimizer=sgdd"],
         "config key 'train.optimizer' must be one of"),
        ([W, QS, "--config.train.schedule=linear"],
         "config key 'train.schedule' must be one of"),
        ([W, QS, "--config.train.stepz=3"],
         "unknown config key 'train.stepz'; did you mean 'train.steps'?"),
        ([W, QS, "--config.train.steps=many"],
         "config key 'train.steps' expects int, got 'many'"),
        ([W, QS, "--config.train.steps"], "is not of the form key=value"),
        ([W, QS, "--config.data.name=nosuch"], "unknown dataset 'nosuch'"),
        ([W, QS, "--config.model.image.kind=nosuch"], "nosuch"),
        ([W, QS, "--config.model.graph=A -> B"],
         "must have exactly the dataset's features"),
        ([W, QS, "--config.data.source={root}/missing"], "{root}/missing"),
        (["--workdir={root}/a_file", QS], "is a file, not a folder"),
        (["--workdir={root}/a_file/sub", QS],
         "cannot be created: {root}/a_file is a file"),
        (["--workdir={ro}/w", QS], "read-only"),
        (["--workdir={root}/trained", QS, "--config.data.seed=5"],
         "was trained with another data config"),
        ([W, FOLDER, "--config.data.source={root}/missing"],
         "data.source {root}/missing is not a folder"),
        ([W, FOLDER, "--config.data.source={root}/empty_dir"],
         "folder {root}/empty_dir has no attributes.csv"),
        ([W, FOLDER, "--config.data.source={root}/folder_single"],
         "attribute 'bar' has a single value '1'"),
        ([W, FOLDER, "--config.data.source={root}/folder_single",
          "--config.data.graph=digit -> hue"], "data.graph names 'hue'"),
        ([W, FOLDER, "--config.data.source={root}/folder_single",
          "--config.data.image_size=0"], "data.image_size must be"),
        ([W, QS, "--coordinator=127.0.0.1:1", "--num_processes=two",
          "--process_id=0"], "--num_processes (or $JAX_NUM_PROCESSES)"),
        ([W, QS, "--num_processes=2"],
         "--coordinator (or $JAX_COORDINATOR_ADDRESS) is required"),
        ([W, QS, "extra"], "unexpected argument 'extra'"),
        ([W, QS, "--bogus=1"], "Unknown command line flag 'bogus'"),
    ],
    "launch.run": [
        ([QS], "--workdir is required"),
        ([W, "--config=configs/nope.py"],
         "config file configs/nope.py does not exist"),
        ([W, "--config={root}/empty.py"], "returned an empty config"),
        ([W, "--config={root}/no_data.py"], "config has no 'data.name'"),
        ([W, QS, "--config.train.stepz=3"],
         "unknown config key 'train.stepz'; did you mean 'train.steps'?"),
        ([W, QS, "--config.run.models=('ancm_vae','gan')"],
         "unknown model 'gan'"),
        ([W, QS, "--config.run.models=('ancm_vae','ancm_vae')"],
         "names a model twice"),
        ([W, QS, "--config.train.steps=-5"],
         "config key 'train.steps' must be > 0"),
        ([W, QS, "--config.train.batch_size=0"],
         "config key 'train.batch_size' must be > 0"),
        ([W, QS, "--config.data.name=celeba/simple"], "celeba/simple"),
        ([W, QS, "--config.data.name=nosuch"], "nosuch"),
        (["--workdir={root}/a_file", QS], "is a file, not a folder"),
        (["--workdir={ro}/w", QS], "read-only"),
        (["--workdir={root}/trained", QS],
         "is a single-model launch.train workdir"),
        ([W, QS, "--config.eval.test_size=0"], "eval.test_size"),
        ([W, QS, "--config.eval.seed=x"], "eval.seed"),
        ([W, QS, "--config=configs/quickstart.py:accel:x"], "config"),
    ],
    "launch.evaluate": [
        ([], "--workdir is required"),
        (["--workdir={root}/missing"], "workdir {root}/missing does not exist"),
        (["--workdir={root}/a_file"], "is a file, not a folder"),
        (["--workdir={root}/empty_dir"], "is not a trained run"),
        (["--workdir={ro}"], "read-only"),
        (["--workdir={root}/trained", "--config.train.steps=3"],
         "only eval.* settings can change at evaluation"),
        (["--workdir={root}/corrupt"], "is not valid JSON"),
        (["--workdir={root}/run_dir"],
         "no checkpoint in {root}/run_dir/models/ancm_vae"),
    ],
    "launch.edit": [
        (_with(EDIT, image=None), "--image is required"),
        (_with(EDIT, out=None), "--out is required"),
        (_with(EDIT, do=None), "--do is required"),
        (_with(EDIT, workdir=None), "--workdir is required"),
        (_with(EDIT, workdir="{root}/missing"),
         "workdir {root}/missing does not exist"),
        (_with(EDIT, workdir="{root}/a_file"), "is a file, not a folder"),
        (_with(EDIT, workdir="{root}/empty_dir"), "is not a trained run"),
        (_with(EDIT, model="nosuch"), "drop --model"),
        (_with(EDIT, workdir="{root}/run_dir", model="nosuch"),
         "no trained model 'nosuch' in {root}/run_dir; it has ancm_vae"),
        (_with(EDIT, workdir="{root}/corrupt"), "is not valid JSON"),
        (_with(EDIT, image="{root}/missing.png"), "does not exist"),
        (_with(EDIT, image="{root}/not_image.png"),
         "cannot be read as an image"),
        (_with(EDIT, image="{root}/big.png"), "is 64x64"),
        (_with(EDIT, image="{root}/gray.png"), "has mode L"),
        (_with(EDIT, image="{root}"), "{root}"),
        (_with(EDIT, do="C"), "cannot parse --do item 'C'"),
        (_with(EDIT, do="C="), "cannot parse --do item 'C='"),
        (_with(EDIT, do="=1"), "cannot parse --do item '=1'"),
        (_with(EDIT, do="Z=1"), "unknown factor 'Z'"),
        (_with(EDIT, do="C=5"), "C=5 is outside its domain 0..1"),
        (_with(EDIT, do="C=-1"), "C=-1 is outside its domain 0..1"),
        (_with(EDIT, do="C=a"), "C=a is not an integer"),
        (_with(EDIT, do="C=1.5"), "C=1.5 is not an integer"),
        (_with(EDIT, do="C=1,C=0"), "names 'C' twice"),
        (_with(EDIT, labels="D=3"), "--labels must give exactly D, C, B"),
        (_with(EDIT, labels="D=3,C=0,B=7"), "B=7 is outside its domain"),
        (_with(EDIT, num_samples="0"), "must be positive"),
        (_with(EDIT, scale="0"), "must be positive"),
        (_with(EDIT, num_samples="many"), "--num_samples"),
        (_with(EDIT, seed="x"), "--seed"),
        (_with(EDIT, out="{ro}/out.png"), "read-only"),
        (_with(EDIT, out="{root}/empty_dir"), "is a folder, not a file"),
        (_with(EDIT, out="{root}/a_file/out.png"), "cannot be created"),
        (_with(EDIT, care="Q"), "the care set names unknown feature 'Q'"),
        (_with(EDIT, care="D,C"),
         "the care set names 'C', which do() sets: a feature cannot be both "
         "preserved and set"),
        (_with(EDIT, care="D,,B"), "--care=D,,B: an empty feature name"),
        (_with(EDIT, care="D,D"), "--care=D,D names 'D' twice"),
    ],
    "launch.query": [
        ([QUERY], "give exactly one of --scm=spec.json or --example=NAME"),
        ([SCM, "--example=four_pixel", QUERY], "give exactly one of --scm"),
        (["--example=nosuch", QUERY], "unknown example 'nosuch'"),
        (["--scm={root}/missing.json", QUERY], "{root}/missing.json"),
        (["--scm={root}/not_json.json", QUERY], "not valid JSON"),
        (["--scm={root}/bad_probs.json", QUERY], "u_x"),
        (["--scm={root}/a_list.json", QUERY],
         "SCM spec file '{root}/a_list.json': an SCM spec must be a mapping"),
        ([SCM], "give exactly one of --query or --distribution"),
        ([SCM, QUERY, "--distribution=Y"], "give exactly one of --query"),
        ([SCM, "--query=P(Y=1"], "P(Y=1"),
        ([SCM, "--query=P(Z=1)"], "Z"),
        ([SCM, "--query=P(Y=7)"], "7"),
        ([SCM, "--query=P(Y_{X=3}=1)"], "3"),
        ([SCM, "--query=P(Y=1 | X=0, X=1)"], "probability zero"),
        ([SCM, "--distribution=Z"], "Z"),
        ([SCM, "--distribution=Y", "--given=X"], "X"),
        ([SCM, "--distribution=Y", "--given=X=9"], "9"),
        ([SCM, MODEL, QUERY], "give exactly one of --scm"),
        (["--model={root}/missing.py:model", QUERY],
         "model file {root}/missing.py does not exist"),
        (["--model=examples/four_pixel_numpyro.py", QUERY],
         "--model must be path/to/model.py:function"),
        (["--model={root}/not_python.py:model", QUERY],
         "fails to load: SyntaxError"),
        (["--model=examples/four_pixel_numpyro.py:nosuch", QUERY],
         "model file examples/four_pixel_numpyro.py has no function "
         "'nosuch'"),
        (["--model=examples/four_pixel_numpyro.py:jnp", QUERY],
         "'jnp' is a module, not a function"),
        (["--model={root}/models.py:not_a_model", QUERY],
         "the NumPyro model has no sample or deterministic sites"),
        (["--model={root}/models.py:needs_data", QUERY],
         "calling needs_data() as a NumPyro model raised TypeError"),
        (["--model={root}/models.py:continuous", QUERY],
         "site 'z' has the continuous distribution Normal"),
        ([MODEL, "--domains=I16", QUERY],
         "--domains item 'I16' is not NAME=SIZE"),
        ([SCM, "--domains=I=16", QUERY], "--domains applies to --model only"),
        ([SCM, QUERY, "--backend=funsor"],
         "unknown backend 'funsor'; known: einsum, numpyro"),
        ([SCM, "--distribution=Y", "--backend=funsor"],
         "unknown backend 'funsor'"),
    ],
    "launch.bounds": [
        ([SCM], "--query is required"),
        ([QUERY],
         "give exactly one of --scm, --example, or --graph with --table"),
        ([SCM, QUERY, "--time_limit=-1"],
         "time_limit must be a finite number of seconds >= 0, got -1.0"),
        ([SCM, QUERY, "--time_limit=nan"],
         "time_limit must be a finite number of seconds >= 0, got nan"),
        ([SCM, QUERY, "--time_limit=inf"],
         "time_limit must be a finite number of seconds >= 0, got inf"),
        ([SCM, QUERY, "--time_limit=soon"], "--time_limit"),
        (["--example=nosuch", QUERY], "unknown example 'nosuch'"),
        (["--graph=X -> Y", QUERY], "--table is required"),
        (["--table={root}/table.json", QUERY], "--graph is required"),
        (["--graph=X -> ", "--table={root}/table.json", QUERY], "X ->"),
        (["--graph=X -> Z", "--table={root}/table.json", QUERY], "Z"),
        (["--graph=X -> Y", "--table={root}/not_json.json", QUERY],
         "is not valid JSON"),
        (["--graph=X -> Y", "--table={root}/table_keys.json", QUERY],
         "must hold exactly 'variables' and 'probs'"),
        (["--graph=X -> Y", "--table={root}/table_sum.json", QUERY], "sum"),
        (["--graph=X -> Y", "--table={root}/missing.json", QUERY],
         "{root}/missing.json"),
        ([SCM, "--query=P(Y_{X=1}=1 | X=0, Y=0"], "P(Y_{X=1}=1 | X=0, Y=0"),
        ([SCM, MODEL, QUERY], "give exactly one of --scm, --example"),
        (["--model={root}/missing.py:model", QUERY],
         "model file {root}/missing.py does not exist"),
        (["--model=examples/four_pixel_numpyro.py:nosuch", QUERY],
         "has no function 'nosuch'"),
        (["--model={root}/models.py:not_a_model", QUERY],
         "no sample or deterministic sites"),
        (["--model={root}/models.py:continuous", QUERY],
         "site 'z' has the continuous distribution Normal"),
        ([SCM, QUERY, "--backend=funsor"], "unknown backend 'funsor'"),
        (["--graph=X -> Y", "--table={root}/table.json", QUERY,
          "--backend=numpyro"], "--backend needs a model"),
    ],
    "launch.serve": [
        ([], "--workdir is required"),
        (["--workdir={root}/nosuch"], "does not exist"),
        (["--workdir={root}/a_file"], "is a file, not a folder"),
        (["--workdir={root}/empty_dir"], "is not a trained run"),
        (["--workdir={root}/run_dir"], "has no trained model yet"),
        (["--workdir={root}/trained", "--model=ancm_vae"],
         "is a single trained model (a launch.train workdir); drop --model"),
        (["--workdir={root}/run_dir", "--port=-1"],
         "--port=-1 is outside 0..65535"),
        (["--workdir={root}/run_dir", "--queue=0"], "--queue must be positive"),
    ],
    "launch.show_data": [
        (["--out={root}/g.png"], "--dataset is required"),
        (["--dataset=colored_mnist_bars/backdoor"], "--out is required"),
        (["--dataset=nosuch", "--out={root}/g.png"], "nosuch"),
        (["--dataset=colored_mnist_bars/backdoor", "--out={root}/g.png",
          "--num=0"], "--num"),
        (["--dataset=colored_mnist_bars/backdoor", "--out={ro}/g.png"],
         "read-only"),
        (["--dataset=colored_mnist_bars/backdoor", "--out={root}/empty_dir"],
         "is a folder, not a file"),
        (["--dataset=colored_mnist_bars/backdoor", "--out={root}/g.png",
          "--split=nosuch"], "nosuch"),
        (["--dataset=colored_mnist_bars/backdoor", "--out={root}/g.png",
          "--source={root}/missing"], "{root}/missing"),
    ],
    "launch.benchmark": [
        ([], "--config is required"),
        (["--config=configs/nope.py"],
         "config file configs/nope.py does not exist"),
        (["--config=configs/quickstart.py"], "has no 'benchmark' section"),
        (["--config=configs/benchmark_colored_mnist.py",
          "--config.benchmark.tables=('speed',)"], "unknown table 'speed'"),
        (["--config={root}/empty.py"], "returned an empty config"),
        (["--config=configs/benchmark_colored_mnist.py",
          "--config.benchmark.out={ro}/b"], "read-only"),
    ],
}

# NumPyro "models" the exact core cannot read (--model={root}/models.py:fn).
MODEL_FILE = """
import numpyro
from numpyro import distributions as dist

def not_a_model():
  return 3

def needs_data(data):
  numpyro.sample("u", dist.Bernoulli(probs=0.5))

def continuous():
  z = numpyro.sample("z", dist.Normal(0.0, 1.0))
  numpyro.deterministic("X", z > 0)
"""

CONFIG_FILES = {
    "not_python.py": "x = [\n",
    "empty.py": ("import ml_collections\n"
                 "def get_config():\n  return ml_collections.ConfigDict()\n"),
    "no_get_config.py": "x = 1\n",
    "returns_dict.py": "def get_config():\n  return {'train': {}}\n",
    "raises.py": "def get_config():\n  return {}['missing']\n",
    "no_data.py": ("from ctfjax import train\n"
                   "def get_config():\n  return train.base_train_config()\n"),
    "no_preset.py": ("from ctfjax import train\n"
                     "def get_config():\n  return train.base_train_config()\n"),
}


def read_only_dir(tmp: pathlib.Path) -> str:
  """A folder this process cannot create files in: a mode-555 folder for a
  normal user; for root, which ignores modes, a kernel folder."""
  if os.geteuid() == 0:
    return "/sys/kernel"
  path = tmp / "ro"
  path.mkdir()
  path.chmod(0o555)
  return str(path)


def make_fixtures(root: pathlib.Path):
  for name, text in CONFIG_FILES.items():
    (root / name).write_text(text)
  (root / "models.py").write_text(MODEL_FILE)
  (root / "a_file").write_text("not a folder\n")
  (root / "empty_dir").mkdir()
  config = train.load_config("configs/quickstart.py:tiny")
  (root / "trained").mkdir()
  (root / "trained" / "config.json").write_text(config.to_json(indent=1))
  (root / "corrupt").mkdir()
  (root / "corrupt" / "config.json").write_text("{not json")
  model = root / "run_dir" / "models" / "ancm_vae"
  model.mkdir(parents=True)
  (model / "config.json").write_text(config.to_json(indent=1))
  (root / "run_dir" / "run_config.json").write_text(config.to_json(indent=1))
  (root / "not_image.png").write_text("hello")
  Image.new("RGB", (64, 64)).save(root / "big.png")
  Image.new("L", (32, 32)).save(root / "gray.png")
  (root / "not_json.json").write_text("{")
  (root / "a_list.json").write_text("[1, 2]")
  spec = json.loads(pathlib.Path("examples/scm.json").read_text())
  spec["exogenous"]["u_x"] = [0.5, 0.6]
  (root / "bad_probs.json").write_text(json.dumps(spec))
  single = root / "folder_single"
  single.mkdir()
  with open(single / "attributes.csv", "w") as f:
    f.write("file,digit,colour,bar,split\n")
    for i in range(8):
      Image.new("RGB", (32, 32)).save(single / f"{i}.png")
      split = "test" if i % 4 == 0 else "train"
      f.write(f"{i}.png,{i},{('green', 'red')[i % 2]},1,{split}\n")
  table = {"variables": ["X", "Y"], "probs": [[0.25, 0.25], [0.25, 0.25]]}
  (root / "table.json").write_text(json.dumps(table))
  (root / "table_keys.json").write_text(json.dumps({"variables": ["X"]}))
  (root / "table_sum.json").write_text(json.dumps(
      {"variables": ["X", "Y"], "probs": [[0.5, 0.5], [0.5, 0.5]]}))


def _fill(text: str, root, ro) -> str:
  return text.replace("{root}", str(root)).replace("{ro}", str(ro))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
  """{(module, case index): result} for every command case."""
  root = tmp_path_factory.mktemp("bad_input")
  ro = read_only_dir(tmp_path_factory.mktemp("ro"))
  make_fixtures(root)
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  runner = pathlib.Path(__file__).with_name("launch_runner.py")
  out = {}
  for module, cases in CASES.items():
    argvs = [[_fill(a, root, ro) for a in args] for args, _ in cases]
    done = subprocess.run([sys.executable, str(runner), module, str(root)],
                          input=json.dumps(argvs), capture_output=True,
                          text=True, env=env, timeout=600, check=False,
                          cwd=runner.parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    for i, result in enumerate(json.loads(done.stdout)):
      out[module, i] = {**result, "root": str(root), "ro": ro}
  return out


COMMAND_CASES = [(m, i) for m, cases in CASES.items()
                 for i in range(len(cases))]


def test_the_sweep_has_at_least_100_cases():
  assert len(COMMAND_CASES) + len(API_CASES) >= 100


@pytest.mark.slow
@pytest.mark.parametrize("module, index", COMMAND_CASES,
                         ids=[f"{m[7:]}-{i}" for m, i in COMMAND_CASES])
def test_command_gives_one_line_exit_2_and_writes_nothing(sweep, module,
                                                          index):
  result = sweep[module, index]
  pattern = _fill(CASES[module][index][1], result["root"], result["ro"])
  lines = result["stderr"].strip().splitlines()
  assert result["code"] == 2, (result["args"], result["stderr"][-3000:])
  assert len(lines) == 1 and lines[0].startswith("error: "), lines
  assert pattern in lines[0], lines[0]
  assert result["changed"] == [], result["changed"]


# The library ----------------------------------------------------------------


def _binary_scm():
  return scm_lib.SCM({
      "X": scm_lib.categorical([], 2, lambda pa: jnp.zeros(2)),
      "Y": scm_lib.additive(["X"], lambda pa: pa["X"][..., 1])})


API_CASES = [
    (lambda: scm_lib.do(_binary_scm(), {"X": 5}),
     "do() value of 'X' is outside its domain 0..1"),
    (lambda: scm_lib.do(_binary_scm(), {"X": -1}),
     "do() value of 'X' is outside its domain 0..1"),
    (lambda: scm_lib.do(_binary_scm(), {"X": 1.5}),
     "do() value of 'X' must be integers"),
    (lambda: scm_lib.do(_binary_scm(), {"Y": math.nan}),
     "do() value of 'Y' is not finite"),
    (lambda: scm_lib.do(_binary_scm(), {"Z": 1}), "unknown variable 'Z'"),
    (lambda: scm_lib.additive([], lambda pa: 0.0, scale=-1),
     "scale must be a finite number > 0, got -1"),
    (lambda: scm_lib.additive([], lambda pa: 0.0, scale=0.0),
     "scale must be a finite number > 0, got 0.0"),
    (lambda: cc.sample_posterior(examples.witness_b()[0], "X=0, Y=0", 0, 5),
     "rng must be a JAX key such as jax.random.key(0), got int"),
    (lambda: examples.witness_b()[0].sample(np.zeros(3), 5),
     "rng must be a JAX key"),
    (lambda: examples.witness_b()[0].evaluate({"u_x": np.array([0]),
                                               "u_y": np.array([0])},
                                              do={"X": 5}),
     "do(X=5) is outside its domain 0..1"),
    (lambda: examples.witness_b()[0].evaluate({"u_x": np.array([0]),
                                               "u_y": np.array([0])},
                                              do={"X": 0.5}),
     "do(X=0.5) is outside its domain 0..1"),
    (lambda: cc.bounds_certificate("X -> Y",
                                   examples.witness_b()[0].observational(),
                                   "P(Y_{X=1}=1 | X=0, Y=0)", time_limit=-1),
     "time_limit must be a finite number of seconds >= 0"),
    (lambda: files.writable_dir("/sys/kernel/ctfjax", "workdir")
     if os.geteuid() == 0 else files.writable_dir("/proc/1/ctfjax",
                                                  "workdir"),
     "cannot be written"),
    (lambda: examples.by_name("nosuch"), "unknown example 'nosuch'"),
]


@pytest.mark.parametrize("index", range(len(API_CASES)))
def test_library_rejects_bad_values_by_name(index):
  call, pattern = API_CASES[index]
  with pytest.raises(UserError) as info:
    call()
  assert pattern in str(info.value) and "\n" not in str(info.value)


def test_sample_posterior_takes_a_jax_key_and_is_reproducible():
  scm = examples.witness_b()[0]
  a = cc.sample_posterior(scm, "X=0, Y=0", jax.random.key(3), 50)
  b = cc.sample_posterior(scm, "X=0, Y=0", jax.random.key(3), 50)
  c = cc.sample_posterior(scm, "X=0, Y=0", jax.random.key(4), 50)
  assert all(np.array_equal(a[k], b[k]) for k in a)
  assert any(not np.array_equal(a[k], c[k]) for k in a)
  draws = scm.sample(jax.random.key(0), 20, do={"X": 1})
  assert np.all(draws["X"] == 1)


def test_help_exits_0_without_loading_jax():
  for module in ("launch.train", "launch.edit", "launch.query",
                 "launch.serve"):
    code = (f"import runpy, sys; sys.argv = ['{module}', '--help']\n"
            "try:\n"
            f"  runpy.run_module('{module}', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "  assert e.code == 0, e.code\n"
            "assert 'jax' not in sys.modules, 'jax was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--workdir" in done.stdout or "--query" in done.stdout
