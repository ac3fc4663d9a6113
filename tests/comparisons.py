"""What every comparison config (configs/compare_*.py) must hold."""

from configs import quickstart
from ctfjax.experiment import job


def quickstart_vae_of(config):
  """The comparison's "ancm_vae" model config, checked to be the quick
  start's own model (data, model and training settings), so that its row
  is the quick start's."""
  plain = job.model_config(config, "ancm_vae")
  want = job.model_config(quickstart.get_config(), "ancm_vae")
  for section in ("data", "model", "train"):
    assert plain[section].to_dict() == want[section].to_dict(), section
  return plain
