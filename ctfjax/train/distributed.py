"""Multi-process training: joining the job before JAX starts its backends.

One process per host (or per accelerator group) runs the same command; each
is told the coordinator's address (process 0's host and a free port), the
process count and its own id, on the command line or through the
environment a scheduler sets:

  JAX_COORDINATOR_ADDRESS=host:port JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \
      python -m launch.train --config=... --workdir=...

After `initialize`, `jax.devices()` lists the devices of every process, the
mesh spans them all, each process feeds its own share of every global batch
(`ctfjax.data.batches`, `sharding.process_share`) and XLA all-reduces the
gradients across processes; orbax writes one checkpoint set, every process
writing its shards and process 0 the metadata.
"""

import dataclasses
import os
from collections.abc import Mapping

import jax

from ctfjax.errors import UserError

# The environment variables read when a flag is absent. JAX itself reads the
# first when `jax.distributed.initialize` is not given an address.
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class Processes:
  """Where this process stands in a multi-process job.

  Attributes:
    coordinator: "host:port" of process 0's coordination service.
    num_processes: processes in the job (>= 1).
    process_id: this process's id, 0 .. num_processes - 1.
  """

  coordinator: str
  num_processes: int
  process_id: int


def _integer(value: str | int, name: str, minimum: int) -> int:
  try:
    number = int(value)
  except (TypeError, ValueError):
    number = None
  if number is None or number < minimum or str(value).strip() != str(number):
    raise UserError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return number


def _check_address(address: str, name: str) -> str:
  host, sep, port = address.rpartition(":")
  if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
    raise UserError(f"{name} must be host:port (e.g. node001:12345), got "
                    f"{address!r}")
  return address


def processes_from(coordinator: str | None = None,
                   num_processes: str | int | None = None,
                   process_id: str | int | None = None, *,
                   environ: Mapping[str, str] | None = None
                   ) -> Processes | None:
  """Validates a job's layout; a value left None comes from the environment.

  Args:
    coordinator: "host:port" of process 0; default $JAX_COORDINATOR_ADDRESS.
    num_processes: process count; default $JAX_NUM_PROCESSES.
    process_id: this process's id; default $JAX_PROCESS_ID.
    environ: the environment to read; None for `os.environ`.

  Returns:
    The layout, or None for a single process (nothing set, or only a
    process count of 1).

  Raises:
    UserError: a missing or malformed value, naming the flag and variable.
  """
  environ = os.environ if environ is None else environ
  given = {"coordinator": (coordinator, ENV_COORDINATOR),
           "num_processes": (num_processes, ENV_NUM_PROCESSES),
           "process_id": (process_id, ENV_PROCESS_ID)}
  values, names = {}, {}
  for key, (value, env) in given.items():
    names[key] = f"--{key} (or ${env})"
    value = environ.get(env) if value in (None, "") else value
    values[key] = None if value in (None, "") else value
  if values["coordinator"] is None and values["process_id"] is None and (
      values["num_processes"] is None or str(values["num_processes"]) == "1"):
    return None
  for key, value in values.items():
    if value is None:
      raise UserError(f"{names[key]} is required for a multi-process run")
  count = _integer(values["num_processes"], names["num_processes"], 1)
  index = _integer(values["process_id"], names["process_id"], 0)
  if index >= count:
    raise UserError(f"{names['process_id']} is {index}, but ids run from 0 "
                    f"to {count - 1} for {count} process(es)")
  return Processes(_check_address(str(values["coordinator"]),
                                  names["coordinator"]), count, index)


def initialize(processes: Processes | None, *,
               timeout_s: int = 300) -> None:
  """Joins the job; must run before any JAX computation in this process.

  Args:
    processes: the layout from `processes_from`; None does nothing.
    timeout_s: how long to wait for every process to join.

  Raises:
    UserError: the job could not be joined (unreachable coordinator, a
      process that never came, JAX already started).
  """
  if processes is None:
    return
  # CPU devices of different processes only exchange gradients through a
  # collectives library; gloo (over TCP) ships with jaxlib. Accelerators
  # ignore the setting.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
        coordinator_address=processes.coordinator,
        num_processes=processes.num_processes,
        process_id=processes.process_id,
        initialization_timeout=timeout_s)
  except Exception as e:  # JAX raises RuntimeError, ValueError, XlaRuntime...
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise UserError(
        f"process {processes.process_id} of {processes.num_processes} could "
        f"not join the job at {processes.coordinator}: {reason}") from e
