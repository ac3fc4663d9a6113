"""Thin absl entry points: parse flags, call the library."""

from ctfjax import host_memory

# Before any launcher starts JAX's CPU client; acts only when
# CTFJAX_KEEP_FREED_MEMORY=1 (see the module's docstring).
host_memory.keep_freed_memory()
