"""keep_freed_memory: a freed large block is reused without page faults."""

import os
import subprocess
import sys

import pytest

from ctfjax import host_memory

# Each probe prints whether glibc was configured, then the minor page faults
# of a second pass over a large block, freed after the first.
_MALLOC_PROBE = """
import ctypes, resource, sys
from ctfjax import host_memory
print(host_memory.keep_freed_memory())
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
from ctfjax import host_memory
print(host_memory.keep_freed_memory())
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


def _probe(code: str, keep: str | None, size: int) -> tuple[str, int]:
  env = dict(os.environ)
  env.pop(host_memory.VARIABLE, None)
  env.pop("XLA_FLAGS", None)  # the buffers of XLA's default build
  if keep is not None:
    env[host_memory.VARIABLE] = keep
  out = subprocess.run([sys.executable, "-c", code, str(size)], env=env,
                       check=True, capture_output=True,
                       text=True).stdout.split()
  return out[0], int(out[1])


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


def test_xla_buffers_are_reused_by_default_and_fault_when_turned_off():
  # With asynchronous dispatch the buffers come from a worker thread's arena,
  # which maps blocks above 64 MB afresh whatever the malloc settings.
  size = 128 << 20
  configured, faults = _probe(_JAX_PROBE, None, size)
  if configured != "True":
    pytest.skip("the C library is not glibc")
  assert faults < size // _PAGE // 100
  configured, faults = _probe(_JAX_PROBE, "0", size)
  assert configured == "False"
  assert faults > size // _PAGE // 2
