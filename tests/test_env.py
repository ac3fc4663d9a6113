"""Environment switches: 0/1, anything else a one-line error naming it, from
the library and from every launcher before anything is written."""

import os
import subprocess
import sys

import pytest

from ctfjax import compiler
from ctfjax import env
from ctfjax.errors import UserError


def test_switch_values(monkeypatch):
  monkeypatch.delenv("CTFJAX_TEST_SWITCH", raising=False)
  assert env.switch("CTFJAX_TEST_SWITCH", "on", "off")
  monkeypatch.setenv("CTFJAX_TEST_SWITCH", "0")
  assert not env.switch("CTFJAX_TEST_SWITCH", "on", "off")
  monkeypatch.setenv("CTFJAX_TEST_SWITCH", "1")
  assert env.switch("CTFJAX_TEST_SWITCH", "on", "off")
  monkeypatch.setenv("CTFJAX_TEST_SWITCH", "true")
  with pytest.raises(UserError, match=r"^CTFJAX_TEST_SWITCH='true': use 1 "
                     r"\(on\) or 0 \(off\)$"):
    env.switch("CTFJAX_TEST_SWITCH", "on", "off")


def test_a_bad_value_is_a_one_line_error_from_a_launcher(tmp_path):
  variable = compiler.VARIABLE
  environ = dict(os.environ, **{variable: "yes"})
  result = subprocess.run([sys.executable, "-m", "launch.train",
                           "--config=configs/quickstart.py",
                           f"--workdir={tmp_path / 'run'}"], env=environ,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 2
  assert result.stderr.startswith(f"error: {variable}='yes'")
  assert len(result.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "run").exists()
