"""launch.host_memory: a freed large block is reused without page faults,
only a launcher sets it, and only where JAX computes on the CPU."""

import os
import pathlib
import subprocess
import sys

import pytest

from launch import host_memory

# Each probe prints whether glibc was configured, then the minor page faults
# of a second pass over a large block, freed after the first.
_MALLOC_PROBE = """
import ctypes, resource, sys
from launch import host_memory
print(sys.argv[2] == "1" and host_memory.keep_freed_memory())
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = int(sys.argv[1])
def touch():
  p = libc.malloc(size)
  ctypes.memset(p, 1, size)
  libc.free(p)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

# A jitted computation whose 128 MB buffers XLA mallocs and frees per call;
# the median of seven calls' faults: now and then one call in a few still
# gets fresh pages (seen in about one process in four; cause not pinned down).
_JAX_PROBE = """
import resource, sys
import ctfjax.ancm, ctfjax.experiment  # the library sets nothing on import
from launch import host_memory
print(sys.argv[2] == "1" and host_memory.keep_freed_memory())
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.cumsum(jnp.sin(x))[::-1].sum())
x = jnp.arange(int(sys.argv[1]) // 4, dtype=jnp.float32)
f(x).block_until_ready()
faults = []
for _ in range(7):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[3])
"""

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc malloc settings")


def _probe(code: str, keep: str, size: int) -> tuple[str, int]:
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # the buffers of XLA's default build
  out = subprocess.run([sys.executable, "-c", code, str(size), keep],
                       env=env, check=True, capture_output=True,
                       text=True).stdout.split()
  return out[0], int(out[1])


@pytest.mark.slow
def test_second_large_block_reuses_the_first_blocks_pages():
  # Above 2 GiB, the largest finite trim threshold, as the U-Net step's
  # 6.48 GB buffer is: glibc must not trim it either.
  size = (9 << 30) // 4
  configured, faults = _probe(_MALLOC_PROBE, "1", size)
  if configured != "True":
    pytest.skip("the C library is not glibc")
  assert faults < size // _PAGE // 100
  # Without the settings glibc unmaps the block and every page faults again.
  size = 256 << 20
  configured, faults = _probe(_MALLOC_PROBE, "0", size)
  assert configured == "False"
  assert faults > size // _PAGE // 2


@pytest.mark.slow
def test_xla_buffers_are_reused_when_kept_and_fault_without():
  # With asynchronous dispatch the buffers come from a worker thread's arena,
  # which maps blocks above 64 MB afresh whatever the malloc settings. Without
  # the call - importing the library included - every page faults again.
  size = 128 << 20
  configured, faults = _probe(_JAX_PROBE, "1", size)
  if configured != "True":
    pytest.skip("the C library is not glibc")
  assert faults < size // _PAGE // 100
  configured, faults = _probe(_JAX_PROBE, "0", size)
  assert configured == "False"
  assert faults > size // _PAGE // 2


@pytest.mark.parametrize("platforms, cpu", [
    ("cpu", True), ("cuda", False), ("tpu,cpu", False), ("cpu,cuda", True)])
def test_the_policy_applies_on_a_cpu_backend_only(platforms, cpu):
  assert host_memory.cpu_backend(platforms) == cpu


_APPLY_PROBE = """
import sys, jax
from absl import flags
from launch import host_memory
flags.FLAGS(["probe", *sys.argv[1:]])
print(host_memory.apply(), jax.config.read("jax_cpu_enable_async_dispatch"))
"""


@pytest.mark.parametrize("args, platforms, expected", [
    ([], "cpu", "True False"),
    (["--nokeep_freed_memory"], "cpu", "False True"),
    ([], "cuda", "False True"),  # an accelerator: nothing changes
])
def test_apply_follows_the_flag_and_the_backend(args, platforms, expected):
  env = dict(os.environ, JAX_PLATFORMS=platforms)
  out = subprocess.run([sys.executable, "-c", _APPLY_PROBE, *args], env=env,
                       check=True, capture_output=True, text=True).stdout
  if expected.startswith("True") and out.startswith("False"):
    pytest.skip("the C library is not glibc")
  assert out.split() == expected.split()


def test_query_and_bounds_never_apply_it():
  # Only launchers that train import the policy (and define its flag).
  import launch  # pylint: disable=import-outside-toplevel
  root = pathlib.Path(launch.__file__).parent
  for name in ("query", "bounds", "edit", "show_data"):
    assert "host_memory" not in (root / f"{name}.py").read_text(), name
  for name in ("run", "train", "evaluate", "benchmark"):
    assert "setup=host_memory.apply" in (root / f"{name}.py").read_text()
