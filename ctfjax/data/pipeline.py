"""Deterministic, per-process sharded numpy batches over an in-memory dataset.

Every process computes the same permutation of the whole dataset for an epoch
from (seed, epoch) alone, cuts it into global batches and keeps its own
contiguous share of each, so the processes of a multi-host job read disjoint
samples without talking to each other, and a run restarted at step s sees
exactly the batches it would have seen. Plain numpy indexing of the (memory-
mapped) arrays is used instead of a grain pipeline, which is many times
slower per epoch (see `storage`).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import jax
import numpy as np

from ctfjax.data.errors import DataError


def _leaves(tree: Mapping[str, Any]) -> list[np.ndarray]:
  out = []
  for v in tree.values():
    out.extend(_leaves(v) if isinstance(v, Mapping) else [v])
  return out


def take(ds: Mapping[str, Any], idx: Any) -> dict[str, Any]:
  """Rows `idx` (indices, mask or slice) of every array of a dataset dict."""
  return {k: take(v, idx) if isinstance(v, Mapping) else np.asarray(v[idx])
          for k, v in ds.items()}


def num_examples(ds: Mapping[str, Any]) -> int:
  """The common leading dimension of every array of a dataset dict."""
  sizes = {len(a) for a in _leaves(ds)}
  if len(sizes) != 1:
    raise DataError(f"dataset arrays have different lengths {sorted(sizes)}")
  return sizes.pop()


def batches(ds: Mapping[str, Any], batch_size: int, *, seed: int = 0,
            shuffle: bool = True, epochs: int | None = None,
            drop_remainder: bool = True, start_step: int = 0,
            process_index: int | None = None,
            process_count: int | None = None) -> Iterator[dict[str, Any]]:
  """Iterates over numpy batches of `ds`, this process's share of each.

  Args:
    ds: nested dict of arrays with a common leading dimension (as returned by
      `ctfjax.data.load`; select the keys you need first).
    batch_size: GLOBAL batch size; each process gets batch_size /
      process_count rows of every batch (must divide evenly).
    seed: shuffling seed; epoch e uses the permutation of rng([seed, e]).
    shuffle: False iterates in dataset order (evaluation).
    epochs: number of epochs; None iterates forever.
    drop_remainder: drop the last incomplete batch of an epoch (fixed shapes
      for jit). Without it, the last batch is split as evenly as possible.
    start_step: global batch index to start from (resuming a run).
    process_index, process_count: this process's shard; default
      jax.process_index() and jax.process_count().

  Yields:
    Dicts of the same structure as `ds` holding numpy arrays.

  Raises:
    DataError: bad batch size, seed or step, or a dataset smaller than one
      batch.
  """
  n = num_examples(ds)
  if process_count is None:
    process_count = jax.process_count()
  if process_index is None:
    process_index = jax.process_index()
  if not 0 <= process_index < process_count:
    raise DataError(f"process index {process_index} is outside "
                    f"0..{process_count - 1}")
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or \
      batch_size < 1 or batch_size % process_count:
    raise DataError(f"batch size {batch_size!r} must be a positive multiple "
                    f"of the process count {process_count}")
  if not isinstance(seed, int) or seed < 0:
    raise DataError(f"seed must be a non-negative integer, got {seed!r}")
  if not isinstance(start_step, int) or start_step < 0:
    raise DataError(f"start_step must be a non-negative integer, got "
                    f"{start_step!r}")
  steps = n // batch_size if drop_remainder else -(-n // batch_size)
  if steps == 0:
    raise DataError(f"the dataset has {n} examples, fewer than one batch of "
                    f"{batch_size}")
  epoch, step = divmod(start_step, steps)
  while epochs is None or epoch < epochs:
    order = (np.random.default_rng([seed, epoch]).permutation(n) if shuffle
             else np.arange(n))
    for s in range(step, steps):
      idx = order[s * batch_size:(s + 1) * batch_size]
      yield take(ds, np.array_split(idx, process_count)[process_index])
    epoch, step = epoch + 1, 0
