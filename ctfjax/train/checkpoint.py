"""Orbax checkpoints of a run, with one-line errors for bad directories.

A checkpoint is a step folder under `<workdir>/checkpoints/` holding the whole
`TrainState` ("state") and a little JSON ("meta": wall-clock seconds so far).
Orbax writes each step to a temporary folder and renames it when complete, so
a run killed mid-save leaves the previous checkpoint as the newest one.
"""

import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from ctfjax.errors import UserError

CHECKPOINT_DIR = "checkpoints"


def _one_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  reason = text[0] if text else ""
  reason = reason if len(reason) <= 160 else reason[:157] + "..."
  return f"{type(error).__name__}: {reason}" if reason else type(error).__name__


def _restore_args(abstract: Any,
                  partial: bool = False) -> ocp.args.PyTreeRestore:
  return ocp.args.PyTreeRestore(
      item=abstract,
      restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
      partial_restore=partial)


def _leaves_by_path(tree: Any) -> dict[str, Any]:
  """{"params/hidden/kernel": leaf, ...}, the same for saved and live trees."""
  def name(key):
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey.
      if hasattr(key, attr):
        return str(getattr(key, attr))
    return str(key)
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(name(k) for k in path): leaf for path, leaf in flat}


def _misfit(saved: Any, abstract: Any) -> str | None:
  """How a saved tree's structure differs from `abstract`, or None."""
  saved, wanted = _leaves_by_path(saved), _leaves_by_path(abstract)
  for path, leaf in wanted.items():
    if path not in saved:
      return f"it has no {path}"
    # Typed PRNG keys are stored as their raw uint32 data.
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      continue
    if tuple(saved[path].shape) != tuple(leaf.shape):
      return (f"its {path} has shape {tuple(saved[path].shape)}, this model's "
              f"{tuple(leaf.shape)}")
  extra = sorted(set(saved) - set(wanted))
  return f"it has {extra[0]}, which this model lacks" if extra else None


def find_checkpoints(path: str | os.PathLike[str]) -> pathlib.Path:
  """The checkpoint folder of a run given its workdir or the folder itself."""
  path = pathlib.Path(path)
  return path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path


class Checkpoints:
  """The checkpoint folder of one run, on top of an orbax CheckpointManager.

  Every failure to read a checkpoint surfaces as a one-line `UserError`
  naming the folder, never as a stack of orbax internals.
  """

  def __init__(self, directory: str | os.PathLike[str], *,
               max_to_keep: int = 3, async_save: bool = True,
               read_only: bool = False):
    """Opens (or, unless read_only, creates) a checkpoint folder.

    Args:
      directory: the folder that holds the step folders.
      max_to_keep: newest checkpoints kept; older ones are deleted.
      async_save: write in a background thread after the device-to-host copy.
      read_only: for loading another run's checkpoints; raises UserError if
        the folder holds none.
    """
    self.directory = pathlib.Path(directory).absolute()
    if read_only and not self.directory.is_dir():
      raise UserError(f"no checkpoint folder at {self.directory}")
    if self.directory.exists() and not self.directory.is_dir():
      raise UserError(f"checkpoint path {self.directory} is not a folder")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        read_only=read_only,
        create=not read_only,
        enable_async_checkpointing=async_save,
        # Removes the temporary folders of saves cut short by a kill.
        cleanup_tmp_directories=not read_only,
    )
    try:
      self._manager = ocp.CheckpointManager(
          self.directory, options=options,
          # Named handlers let item_metadata read a checkpoint's structure
          # before restoring it.
          item_handlers={"state": ocp.PyTreeCheckpointHandler(),
                         "meta": ocp.JsonCheckpointHandler()})
    except Exception as e:  # Orbax raises a variety of types here.
      raise UserError(f"cannot open checkpoint folder {self.directory} "
                      f"({_one_line(e)})") from e
    if read_only and self.latest_step() is None:
      raise UserError(f"no checkpoint in {self.directory}")

  def latest_step(self) -> int | None:
    """The newest complete step, or None if there is none."""
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Saves `state` (a pytree) and JSON-able `meta` as checkpoint `step`."""
    self._manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.PyTreeSave(state), meta=ocp.args.JsonSave(meta)),
        force=True)

  def restore(self, abstract_state: Any,
              step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restores a whole state.

    Args:
      abstract_state: the state's structure as jax.ShapeDtypeStructs, with the
        shardings the arrays should be restored with.
      step: which checkpoint; None for the newest.

    Returns:
      (state, meta).

    Raises:
      UserError: no checkpoint, or it is unreadable or belongs to another
        model.
    """
    step = self._step(step)
    self._check_fits(step, abstract_state)
    restored = self._restore(step, ocp.args.Composite(
        state=_restore_args(abstract_state), meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"] or {})

  def restore_fields(self, abstract_fields: dict[str, Any],
                     step: int | None = None) -> dict[str, Any]:
    """Restores some top-level fields of a saved state, e.g. only "params".

    Args:
      abstract_fields: {field name: abstract pytree}, as in `restore`.
      step: which checkpoint; None for the newest.

    Returns:
      {field name: restored pytree}.
    """
    step = self._step(step)
    self._check_fits(step, abstract_fields, partial=True)
    restored = self._restore(step, ocp.args.Composite(
        state=_restore_args(abstract_fields, partial=True)))
    return dict(restored["state"])

  def close(self) -> None:
    """Waits for pending background saves and releases the manager."""
    self._manager.close()

  def _step(self, step: int | None) -> int:
    step = self.latest_step() if step is None else step
    if step is None or step not in self._manager.all_steps():
      raise UserError(f"no checkpoint{'' if step is None else f' {step}'} "
                      f"in {self.directory}")
    return step

  def _check_fits(self, step: int, abstract: Any, partial: bool = False):
    """Compares structures first: a failed orbax restore is slow and noisy."""
    try:
      saved = self._manager.item_metadata(step)["state"].tree
    except Exception as e:  # Corrupt metadata surfaces as many types.
      raise UserError(f"checkpoint {self.directory / str(step)} is unreadable "
                      f"({_one_line(e)}); delete it to fall back to an "
                      "earlier one") from e
    if partial:
      saved = {name: saved.get(name) for name in abstract}
    misfit = _misfit(saved, abstract)
    if misfit:
      raise UserError(f"checkpoint {self.directory / str(step)} does not fit "
                      f"this model: {misfit}")

  def _restore(self, step: int, args: ocp.args.Composite) -> Any:
    try:
      return self._manager.restore(step, args=args)
    except Exception as e:  # Corrupt files surface as many different types.
      raise UserError(
          f"checkpoint {self.directory / str(step)} is unreadable or from "
          f"another model ({_one_line(e)}); delete it to fall back to an "
          "earlier one") from e
