"""Thin absl entry points: parse flags, call the library."""

from ctfjax import host_memory
from launch import cli

# Before any launcher starts JAX's CPU client: keep XLA's freed CPU buffers
# mapped unless CTFJAX_KEEP_FREED_MEMORY=0 (see the module's docstring).
try:
  KEEPS_FREED_MEMORY = host_memory.keep_freed_memory()
except ValueError as e:
  cli.fail(str(e))
