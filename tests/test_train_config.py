"""The training config: defaults, validation and overrides with one-line
errors."""

import pathlib

import pytest

from ctfjax.errors import UserError
from ctfjax.mechanisms import diffusion
from ctfjax.mechanisms import hvae
from ctfjax.train import config as train_config
from launch import cli

load_config = train_config.load_config


def test_base_config_has_every_section_and_passes_its_own_check():
  config = train_config.base_train_config()
  for section in ("data", "model", "train", "eval", "ckpt", "mesh"):
    assert section in config
  train_config.check_train_config(config)


def test_overrides_from_mapping_and_strings():
  base = train_config.base_train_config()
  config = train_config.apply_overrides(
      base, {"train.steps": 7, "train.learning_rate": 1})
  assert config.train.steps == 7
  assert config.train.learning_rate == 1.0
  assert isinstance(config.train.learning_rate, float)
  assert base.train.steps == 1000  # The base is left alone.
  config = train_config.apply_overrides(
      base, ["train.optimizer=adamw", "ckpt.init_from=/tmp/run",
             "train.progress=False", "mesh.data=2"])
  assert config.train.optimizer == "adamw"
  assert config.ckpt.init_from == "/tmp/run"
  assert config.train.progress is False
  assert config.mesh.data == 2


@pytest.mark.parametrize("overrides, expected", [
    ({"train.stpes": 3}, "unknown config key 'train.stpes'; did you mean "
                         "'train.steps'?"),
    ({"trian.steps": 3}, "unknown config key 'trian.steps'; did you mean "
                         "'train.steps'?"),
    ({"train.steps.x": 3}, "unknown config key 'train.steps.x'"),
    ({"train.steps": "ten"}, "config key 'train.steps' expects int, got 'ten'"),
    ({"train.steps": 2.5}, "config key 'train.steps' expects int, got 2.5"),
    ({"train.progress": 1}, "config key 'train.progress' expects bool"),
    ({"train": 1}, "config key 'train' is a section, not a field"),
    (["train.steps"], "config override 'train.steps' is not of the form"),
])
def test_bad_overrides_are_one_line_user_errors(overrides, expected):
  with pytest.raises(UserError) as info:
    train_config.apply_overrides(train_config.base_train_config(), overrides)
  message = str(info.value)
  assert message.startswith(expected)
  assert "\n" not in message


@pytest.mark.parametrize("key, value, expected", [
    ("train.steps", 0, "config key 'train.steps' must be > 0"),
    ("train.log_every", 0, "config key 'train.log_every' must be > 0"),
    ("train.optimizer", "adagrad", "config key 'train.optimizer' must be one"),
    ("mesh.data", 0, "config key 'mesh.data' must be > 0 or -1"),
])
def test_check_rejects_bad_values(key, value, expected):
  config = train_config.apply_overrides(train_config.base_train_config(),
                                        {key: value})
  with pytest.raises(UserError, match=expected):
    train_config.check_train_config(config)


def test_check_names_a_missing_field():
  config = train_config.base_train_config()
  del config.ckpt["every"]
  with pytest.raises(UserError, match="config has no key 'ckpt.every'"):
    train_config.check_train_config(config)


def test_base_eval_config_has_a_minimum_per_field():
  config = train_config.base_eval_config()
  assert set(config) == {*train_config.EVAL_MINIMUM, *train_config.EVAL_FILES}
  assert all(config[k] >= low for k, low in train_config.EVAL_MINIMUM.items())
  assert all(config[k] == "" for k in train_config.EVAL_FILES)


def test_split_and_load_config(tmp_path):
  rest, overrides = cli.split_overrides(
      ["prog", "--config=c.py", "--config.train.steps=7", "--workdir=w"])
  assert rest == ["prog", "--config=c.py", "--workdir=w"]
  assert overrides == ["train.steps=7"]
  path = tmp_path / "c.py"
  path.write_text("from ctfjax.train import config\n"
                  "def get_config():\n"
                  "  return config.base_train_config()\n")
  assert train_config.load_config(path, overrides).train.steps == 7
  with pytest.raises(UserError, match="config file .*missing.py does not "
                     "exist"):
    train_config.load_config(tmp_path / "missing.py")


@pytest.mark.parametrize("text, expected", [
    ("x = 1\n", "has no get_config()"),
    ("def get_config():\n  return {}\n", "must return a ConfigDict"),
    ("1 +\n", "fails to load: SyntaxError"),
])
def test_load_config_rejects_a_broken_file(tmp_path, text, expected):
  path = tmp_path / "bad.py"
  path.write_text(text)
  with pytest.raises(UserError, match=expected):
    train_config.load_config(path)


def test_a_preset_after_the_file_reaches_get_config(tmp_path):
  root = pathlib.Path(__file__).resolve().parents[1]
  cpu = load_config(root / "configs" / "quickstart.py")
  tiny = load_config(f"{root / 'configs' / 'quickstart.py'}:tiny")
  accel = load_config(f"{root / 'configs' / 'quickstart.py'}:accel")
  assert (cpu.train.steps, tiny.train.steps, accel.train.steps) == (
      1500, 4, 50_000)
  assert tiny.model.image.vae.latent_dim == 4
  assert accel.model.image.vae.latent_dim == 32 and accel.train.microbatch == 0
  # What no preset sizes stays the experiment's own.
  assert tiny.data.name == accel.data.name == cpu.data.name
  assert tiny.run.models == cpu.run.models
  # The `cpu` preset is the default.
  cpu_named = load_config(f"{root / 'configs' / 'quickstart.py'}:cpu")
  assert cpu_named.to_dict() == cpu.to_dict()
  with pytest.raises(UserError, match="unknown config preset 'huge'"):
    load_config(f"{root / 'configs' / 'quickstart.py'}:huge")
  plain = tmp_path / "plain.py"
  plain.write_text("import ml_collections\n"
                   "def get_config():\n"
                   "  return ml_collections.ConfigDict({'a': 1})\n")
  assert load_config(plain).a == 1
  with pytest.raises(UserError, match="takes no size preset"):
    load_config(f"{plain}:tiny")


def test_accel_gives_each_mechanism_its_papers_network():
  root = pathlib.Path(__file__).resolve().parents[1]
  ddpm = load_config(
      f"{root / 'configs' / 'ancm_ddpm_colored_mnist_frontdoor.py'}:accel")
  assert ddpm.model.image.ddpm.channels == (128, 256, 512, 512)
  assert ddpm.model.image.ddpm.sampler.steps == 50  # the CPU config: 20
  # Settings that are not sizes stay the experiment's (v-prediction here).
  cpu = load_config(root / "configs" / "ancm_ddpm_colored_mnist_frontdoor.py")
  assert ddpm.model.image.ddpm.prediction == cpu.model.image.ddpm.prediction
  assert cpu.model.image.ddpm.prediction != \
      diffusion.Diffusion.default_config().prediction
  morpho = load_config(
      f"{root / 'configs' / 'deepscm_hvae_morpho_mnist.py'}:accel")
  assert morpho.model.image.hvae.widths == \
      hvae.HVAE.accelerator_config().widths


@pytest.mark.parametrize("path", sorted(
    str(p) for p in (pathlib.Path(__file__).parents[1] / "configs").glob(
        "[!_]*.py")))
def test_every_config_file_loads_at_every_preset_and_resolves_its_dataset(
    path, tmp_path):
  from ctfjax import data  # pylint: disable=import-outside-toplevel
  for preset in ("tiny", "cpu", "accel"):
    config = train_config.load_config(f"{path}:{preset}")
    if "data" not in config or "name" not in config.data:
      continue  # A family base without a dataset.
    if not config.data.source and data.entry_class(config.data.name).__name__ \
        in ("CelebA", "Folder"):
      config.data.source = str(tmp_path)  # Real data: the user's folder.
    assert data.from_config(config.data).name == config.data.name
