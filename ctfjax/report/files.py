"""Atomic file writes for reports; the one implementation is `ctfjax.files`.

Kept so that `from ctfjax.report import files` (tables, schema, figures and
the evaluation jobs) goes on working; new code imports `ctfjax.files`.
"""

from ctfjax.files import atomic_path, write_json, write_text, write_with

__all__ = ["atomic_path", "write_json", "write_text", "write_with"]
