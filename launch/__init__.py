"""Thin absl entry points: parse flags, call the library."""

from ctfjax import host_memory

# Before any launcher starts JAX's CPU client (see the module's docstring).
host_memory.keep_freed_memory()
