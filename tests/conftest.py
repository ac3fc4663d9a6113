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

jax.config.update("jax_num_cpu_devices", 2)
