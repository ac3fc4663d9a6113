"""Pytest set-up: two fake CPU devices, and a shared compilation cache.

The suite compiles the same small models in many tests and in the
subprocesses of the CLI tests; a persistent XLA compilation cache shared by
all of them (through the environment, which subprocesses inherit) keeps the
suite fast without changing what runs.
"""

import os
import tempfile

# Must happen before jax initialises its backends.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
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
