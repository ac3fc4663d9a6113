"""Keep freed host memory, so XLA's CPU buffers stop page-faulting.

XLA's CPU runtime allocates every execution's temporary buffer with
``malloc`` and frees it afterwards. A train step's buffer is large (1.96 GB
for the seed-size HVAE at batch 128, 6.48 GB for the diffusers-size U-Net
at batch 64), so glibc serves it by ``mmap`` and returns it by ``munmap``
(or, from its heap, gives it back by trimming): each step touches fresh
pages, about 480,000 for the HVAE and 1.6 million for the U-Net, each a page
fault and a page of zeroes, and in a virtual machine the host may have
reclaimed the memory in between. :func:`keep_freed_memory` tells glibc to
serve every allocation from its main heap and not to give freed memory back,
so the second step reuses the first step's pages without a fault.

It changes nothing on an accelerator (device buffers have their own
allocator) and nothing where the C library is not glibc. The costs: the
process keeps its peak host memory until it exits, and with one arena the
threads' small allocations contend for one lock, which slows models with
small buffers (the quick start's 400-step training: 20.7-21.9 s without,
30.2-34.3 s with). So it is off by default: the launchers call it at
import and it acts when ``CTFJAX_KEEP_FREED_MEMORY=1``;
``launch.benchmark_speed``, which times the large models, turns it on
unless the variable is ``0``.
"""

import ctypes
import ctypes.util
import os

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER = -1  # mallopt(3): a trim threshold of -1 disables trimming


def keep_freed_memory(default: bool = False) -> bool:
  """Configure glibc malloc to keep freed memory; True if it was configured.

  ``CTFJAX_KEEP_FREED_MEMORY`` (``1`` or ``0``) decides; `default` where it
  is unset. Call it before JAX starts its CPU client: threads that already
  allocated keep their own arenas, which still return large blocks to the
  system.
  """
  setting = os.environ.get("CTFJAX_KEEP_FREED_MEMORY")
  if not (default if setting is None else setting == "1"):
    return False
  name = ctypes.util.find_library("c")
  if name is None:
    return False
  try:
    libc = ctypes.CDLL(name)
    mallopt = libc.mallopt
    version = libc.gnu_get_libc_version  # only glibc has it
    del version
  except (OSError, AttributeError):  # not glibc: nothing to configure
    return False
  # One arena: a block above a thread arena's 64 MB heap limit is always
  # mmapped, whatever the settings. No mmap: large blocks come from the heap.
  # No trimming: the largest finite threshold, 2 GiB, is below the U-Net
  # step's buffer, which would then go back to the system every step.
  return all(
      mallopt(param, value) == 1
      for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0),
                           (_M_TRIM_THRESHOLD, _NEVER)))
