"""Keep freed host memory, so XLA's CPU buffers stop page-faulting.

XLA's CPU runtime allocates every execution's temporary buffer with
``malloc`` and frees it afterwards. A train step's buffer is large (1.96 GB
for the seed-size HVAE at batch 128, 6.48 GB for the diffusers-size U-Net
at batch 64), so glibc serves it by ``mmap`` and returns it by ``munmap``
(or, from its heap, gives it back by trimming): each step touches fresh
pages, about 480,000 for the HVAE and 1.6 million for the U-Net, each a page
fault and a page of zeroes, and in a virtual machine the host may have
reclaimed the memory in between.

:func:`keep_freed_memory` does two things:

* it tells glibc to serve large blocks from its heap rather than by
  ``mmap``, and never to trim the heap, so freed memory stays mapped;
* it turns off JAX's asynchronous CPU dispatch, so a single-device
  computation runs on the calling thread and its buffer comes from the main
  heap. With dispatch on a worker thread the buffer comes from that thread's
  arena, and glibc maps any block above a thread arena's 64 MB heap limit
  afresh, whatever the settings.

An earlier version capped glibc at one arena instead of turning dispatch
synchronous: the threads' small allocations then contended for one lock,
and the quick start's training slowed 1.45x. This version leaves the
arenas alone (quick start unchanged within the machine's noise; the HVAE
step 1.2-1.8x faster than with one arena, in alternating runs).

It is on by default in the launchers (``launch.cli.run`` calls it before
a launcher's ``main``, so importing ``launch`` changes nothing);
``CTFJAX_KEEP_FREED_MEMORY=0`` turns it off. Calling it again is harmless
and returns the same. It changes nothing on
an accelerator (device buffers have their own allocator), nothing for
computations over several devices (JAX dispatches those asynchronously
anyway), and the malloc half does nothing where the C library is not glibc.
The costs: the process keeps its peak host memory until it exits, and the
host no longer runs ahead of a CPU computation (it waits for each one).
Not every call is free of faults: now and then one still gets fresh pages
(the HVAE and U-Net steps: 0 to 4,000 faults a step, against 480,000 and
1.6 million without; a 256 MB test buffer: one call in a few, in about one
process in four).
"""

import ctypes
import ctypes.util

import jax

from ctfjax import env

VARIABLE = "CTFJAX_KEEP_FREED_MEMORY"

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER = -1  # mallopt(3): a trim threshold of -1 disables trimming


def enabled() -> bool:
  """Whether ``CTFJAX_KEEP_FREED_MEMORY`` (``1`` or unset: yes; ``0``: no)
  asks for it.

  Raises UserError naming the variable for any other value.
  """
  return env.switch(VARIABLE, "keep freed host memory", "glibc's defaults")


def _glibc_mallopt():
  name = ctypes.util.find_library("c")
  if name is None:
    return None
  try:
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "gnu_get_libc_version"):  # only glibc has it
      return None
    return libc.mallopt
  except OSError:
    return None


def keep_freed_memory() -> bool:
  """Keep XLA's freed CPU buffers mapped; True if glibc was configured.

  Acts if `enabled()`. Call it before JAX starts its CPU client: the
  dispatch setting is read when the client is created, and threads that
  already allocated keep their arenas.
  """
  if not enabled():
    return False
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  mallopt = _glibc_mallopt()
  if mallopt is None:  # not glibc: nothing more to configure
    return False
  # No trimming: the largest finite threshold, 2 GiB, is below the U-Net
  # step's buffer, which would then go back to the system every step.
  return all(
      mallopt(param, value) == 1
      for param, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER)))
