"""Keep freed host memory, so XLA's CPU buffers stop page-faulting.

XLA's CPU runtime allocates every execution's temporary buffer with
``malloc`` and frees it afterwards. A train step's buffer is large
(gigabytes for the paper-size HVAE at batch 128 and for the diffusers-size
U-Net at batch 64), so glibc serves it by ``mmap`` and returns it by
``munmap`` (or, from its heap, gives it back by trimming): each step
touches hundreds of thousands of fresh pages, each a page fault and a page
of zeroes, and in a virtual machine the host may have reclaimed the memory
in between.

:func:`keep_freed_memory` does two things:

* it tells glibc to serve large blocks from its heap rather than by
  ``mmap``, and never to trim the heap, so freed memory stays mapped;
* it turns off JAX's asynchronous CPU dispatch, so a single-device
  computation runs on the calling thread and its buffer comes from the main
  heap. With dispatch on a worker thread the buffer comes from that thread's
  arena, and glibc maps any block above a thread arena's 64 MB heap limit
  afresh, whatever the settings.

Glibc's arenas are left alone: capping them at one instead of turning
dispatch synchronous makes the threads' small allocations contend for one
lock (docs/training.md, "Host memory").

It is process-wide state, so the library never sets it: a launcher that
trains passes :func:`apply` to ``launch.cli.run``, which calls it before the
launcher's ``main`` starts JAX. :func:`apply` acts only where JAX will
compute on the CPU (on an accelerator, device buffers have their own
allocator) and unless ``--nokeep_freed_memory`` is given; ``query``,
``bounds``, ``edit`` and ``show_data`` never apply it. It changes nothing for
computations over several devices (JAX dispatches those asynchronously
anyway), and the malloc half does nothing where the C library is not glibc.
The costs: the process keeps its peak host memory until it exits, and the
host no longer runs ahead of a CPU computation (it waits for each one).
Not every call is free of faults: now and then one still gets fresh pages,
far fewer than without it.
"""

import ctypes
import ctypes.util
import importlib.metadata
import importlib.util
import os
import pkgutil

from absl import flags

flags.DEFINE_bool(
    "keep_freed_memory", True, "On a CPU backend, keep XLA's freed host "
    "buffers mapped (glibc never trims or unmaps them; synchronous CPU "
    "dispatch) so that large train steps stop page-faulting. "
    "--nokeep_freed_memory leaves glibc's and JAX's defaults.")
FLAGS = flags.FLAGS

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER = -1  # mallopt(3): a trim threshold of -1 disables trimming


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

  Call it before JAX starts its CPU client: the dispatch setting is read
  when the client is created, and threads that already allocated keep
  their arenas.
  """
  import jax  # pylint: disable=import-outside-toplevel  (not for --help)
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  mallopt = _glibc_mallopt()
  if mallopt is None:  # not glibc: nothing more to configure
    return False
  # No trimming: the largest finite threshold, 2 GiB, is below the U-Net
  # step's buffer, which would then go back to the system every step.
  return all(
      mallopt(param, value) == 1
      for param, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER)))


def _accelerator_plugin() -> bool:
  """Whether a JAX accelerator plugin (CUDA, ROCm, TPU) is installed: the
  ways JAX discovers them, read without starting a backend."""
  if importlib.util.find_spec("libtpu") is not None:
    return True
  if importlib.metadata.entry_points(group="jax_plugins"):
    return True
  try:
    import jax_plugins  # pylint: disable=import-outside-toplevel
  except ImportError:
    return False
  return any(True for _ in pkgutil.iter_modules(jax_plugins.__path__))


def cpu_backend(platforms: str | None = None) -> bool:
  """Whether JAX will compute on the CPU, decided before any backend starts:
  the first of `platforms` (default ``JAX_PLATFORMS``) where that is set,
  else whether no accelerator plugin is installed."""
  platforms = platforms or os.environ.get("JAX_PLATFORMS")
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  return not _accelerator_plugin()


def apply() -> bool:
  """The training launchers' policy (``cli.run(main, setup=apply)``):
  `keep_freed_memory()` where JAX computes on the CPU, unless
  ``--nokeep_freed_memory``. True if glibc was configured."""
  if not FLAGS.keep_freed_memory or not cpu_backend():
    return False
  return keep_freed_memory()
