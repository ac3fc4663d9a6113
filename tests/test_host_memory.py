"""keep_freed_memory: a freed large block is reused without page faults."""

import os
import subprocess
import sys

import pytest

_PROBE = """
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


def _faults(keep: str | None, size: int) -> tuple[str, int]:
  env = dict(os.environ, CTFJAX_KEEP_FREED_MEMORY=keep or "")
  if keep is None:
    del env["CTFJAX_KEEP_FREED_MEMORY"]
  out = subprocess.run([sys.executable, "-c", _PROBE, str(size)], env=env,
                       check=True, capture_output=True,
                       text=True).stdout.split()
  return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="glibc malloc settings")
def test_second_large_block_reuses_the_first_blocks_pages():
  # Above 2 GiB, the largest finite trim threshold, as the U-Net step's
  # 6.48 GB buffer is: glibc must not trim it either.
  size = (9 << 30) // 4
  configured, faults = _faults("1", size)
  if configured != "True":
    pytest.skip("the C library is not glibc")
  page = os.sysconf("SC_PAGE_SIZE")
  assert faults < size // page // 100
  # Without the settings glibc unmaps the block and every page faults again.
  size = 256 << 20
  configured, faults = _faults("0", size)
  assert configured == "False"
  assert faults > size // page // 2
  # Off unless asked for: one arena slows models with small buffers.
  configured, _ = _faults(None, size)
  assert configured == "False"
