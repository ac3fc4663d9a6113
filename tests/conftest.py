"""Pytest set-up: two fake CPU devices, and a suite that compiles less.

A cold suite's time is mostly XLA compiling small models. Three settings
keep it short without changing what a test checks:

* a persistent XLA compilation cache shared by the tests and the
  subprocesses of the CLI tests (through the environment, which
  subprocesses inherit);
* XLA's backend optimisation level 0 for the suite (its programs are tiny
  and run a few times);
* tests that share a module-scoped fixture (mostly a trained model) run on
  one xdist worker, so it is built once.
"""

import os
import tempfile

# Must happen before jax initialises its backends.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite's programs are tiny and most run a few times: XLA's LLVM
# optimisation of them costs more time than it saves (a cold suite is
# mostly compilation). The library's own runs keep XLA's default level.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
).strip()
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"ctfjax-tests-xla-{os.getuid()}"))

import jax  # noqa: E402
import pytest  # noqa: E402
from jax.experimental.compilation_cache import compilation_cache  # noqa: E402

jax.config.update("jax_num_cpu_devices", 2)


@pytest.fixture(scope="module")
def xla_cache_dir(tmp_path_factory):
  """A module's own persistent compilation cache that keeps every program.

  For modules whose runs compile the same programs again (a second run, a
  resumed one, subprocesses given the path): caching every entry keeps that
  fast without changing what runs. reset_cache() makes JAX re-read the
  settings, which it otherwise checks once per process. Use it with
  `pytestmark = pytest.mark.usefixtures("xla_cache_dir")`.
  """
  path = tmp_path_factory.mktemp("jax_cache")
  settings = {"jax_compilation_cache_dir": str(path),
              "jax_persistent_cache_min_compile_time_secs": 0,
              "jax_persistent_cache_min_entry_size_bytes": -1}
  old = {name: getattr(jax.config, name) for name in settings}
  for name, value in settings.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield path
  for name, value in old.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
  """Tests sharing a module-scoped fixture run on one xdist worker.

  Such fixtures are mostly trained models; under pyproject's
  `--dist loadgroup` their tests form one group, so each is built once
  rather than once on every worker that draws one of its tests.
  xla_cache_dir is cheap and worker-local, so it groups nothing.
  """
  del config
  for item in items:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs if info is not None else {}
    if any(name != "xla_cache_dir" and d[-1].scope == "module"
           for name, d in defs.items()):
      item.add_marker(pytest.mark.xdist_group(item.module.__name__))
