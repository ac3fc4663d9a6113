"""Generic training: train state, pure steps, data-parallel mesh, the loop.

Models plug in as a `Task` of pure functions (see `loop`); nnx modules become
pure functions through `PureModule`.

  from ctfjax import train
  config = train.base_train_config()
  result = train.train_and_evaluate(config, workdir, task)
"""

from ctfjax.train.checkpoint import Checkpoints, find_checkpoints
from ctfjax.train.config import apply_overrides, base_eval_config
from ctfjax.train.config import base_train_config, check_train_config
from ctfjax.train.config import PRESETS, load_config, size_preset
from ctfjax.train.loop import Task, TrainingDivergedError, TrainResult
from ctfjax.train.loop import batches_from_fn, load_state, train_and_evaluate
from ctfjax.train.distributed import Processes, processes_from
from ctfjax.train.ema import model_params
from ctfjax.train.metrics_log import read_metrics
from ctfjax.train.sharding import make_mesh, process_share, replicated
from ctfjax.train.sharding import shard_batch
from ctfjax.train.state import PureModule, TrainState, create_train_state
from ctfjax.train.state import make_optimizer, stream_key
from ctfjax.train.step import make_eval_step, make_train_step

__all__ = [
    "Checkpoints", "Processes", "PureModule", "Task", "TrainResult",
    "TrainState", "TrainingDivergedError", "apply_overrides",
    "base_eval_config", "base_train_config", "batches_from_fn",
    "check_train_config", "create_train_state", "find_checkpoints",
    "PRESETS", "load_config", "load_state", "make_eval_step", "make_mesh",
    "make_optimizer", "make_train_step", "model_params", "process_share",
    "processes_from", "read_metrics", "replicated", "shard_batch",
    "size_preset", "stream_key", "train_and_evaluate",
]
