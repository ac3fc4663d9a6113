"""Data parallelism on a device mesh: batch split along 'data', state copied.

The successor of pmap in current JAX: one `jax.make_mesh` mesh, `NamedSharding`
for placements and `jax.jit` with in/out shardings, so XLA inserts the gradient
all-reduce. Model code needs no sharding annotations.
"""

from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from ctfjax.errors import UserError

DATA_AXIS = "data"


def make_mesh(mesh_config: ml_collections.ConfigDict | None = None) -> Mesh:
  """A 1-D mesh whose 'data' axis spans `mesh.data` devices.

  Args:
    mesh_config: `config.mesh`; None or `data == -1` uses every device.

  Returns:
    The mesh, over the first `mesh.data` devices.

  Raises:
    UserError: more devices asked for than exist.
  """
  available = jax.device_count()
  n = available if mesh_config is None or mesh_config.data == -1 else (
      mesh_config.data)
  if not 0 < n <= available:
    raise UserError(f"config key 'mesh.data' is {n}, but {available} "
                    "device(s) are available")
  # Auto axes let XLA propagate the batch sharding through unannotated model
  # code (make_mesh defaults to Explicit axes, which would demand
  # sharding-aware models).
  return jax.make_mesh((n,), (DATA_AXIS,), (AxisType.Auto,),
                       devices=jax.devices()[:n])


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (params, optimizer state)."""
  return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """The leading (batch) axis is split across the 'data' axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def process_share(batch: Any) -> Any:
  """This process's contiguous share of a global batch (all of it alone).

  The share `shard_batch` expects from each process, cut as
  `ctfjax.data.batches` cuts it: process i of n gets the i-th of n near-equal
  row blocks, the rows its devices hold on a mesh in process order.

  Args:
    batch: a pytree whose every leaf has the global batch as its leading
      axis.

  Returns:
    The same pytree of numpy arrays holding this process's rows.
  """
  n = jax.process_count()
  if n == 1:
    return batch
  i = jax.process_index()
  return jax.tree.map(lambda x: np.array_split(np.asarray(x), n)[i], batch)


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Places a host batch on the mesh, split along its leading axis.

  Args:
    batch: a pytree whose every leaf has the batch as its leading axis
      (numpy or jax arrays). With several hosts, each passes its own slice.

  Returns:
    The same pytree of global jax.Arrays sharded along 'data'.

  Raises:
    UserError: a leaf's batch size does not divide over the data axis.
  """
  sharding = data_sharded(mesh)
  n = mesh.shape[DATA_AXIS]

  def put(path, x):
    if np.ndim(x) == 0 or np.shape(x)[0] % n:
      name = jax.tree_util.keystr(path) or "batch"
      raise UserError(
          f"batch leaf {name} has shape {np.shape(x)}, whose leading axis "
          f"does not split over the {n} device(s) of mesh axis 'data'; "
          "change train.batch_size or mesh.data")
    if isinstance(x, jax.Array) and jax.process_count() == 1:
      return jax.device_put(x, sharding)  # Stays on device, no host trip.
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))

  return jax.tree_util.tree_map_with_path(put, batch)
