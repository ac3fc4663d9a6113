r"""A speed row of ctfjax beside its PyTorch peer, both measured here.

    python -m benchmarks.peer --peer_python=/tmp/peer/bin/python \
        --rounds=3 --out=runs/benchmark_unet_peer.json
    python -m benchmarks.peer --row=hvae \
        --peer_python=/tmp/peer/bin/python \
        --peer_repo=/tmp/cfb/counterfactual_benchmark \
        --rounds=3 --out=runs/benchmark_hvae_peer.json

`--peer_python` is an interpreter with the peer's libraries, which ctfjax
does not depend on (each peer script says how to make one):

* `--row=unet`: diffusers' `UNet2DModel` at the size of the peer of
  Sardesai's diffusion NCM (`benchmarks/peer_diffusers_unet.py`; torch
  2.13 and diffusers), beside `benchmarks.speed --rows=unet` in slices of
  `--microbatch`; the edit is DDIM sampling, timed at `--sample_steps`
  levels for ctfjax and 50 for the peer, both rates per 50 levels;
* `--row=cvae` and `--row=hvae`: the MorphoMNIST conditional VAE and HVAE
  of Melistas et al. (2024) from the peer's own code
  (`benchmarks/peer_deepscm.py`; torch, pytorch_lightning, pandas and a
  checkout of gulnazaki/counterfactual-benchmark, `--peer_repo`), beside
  `benchmarks.speed --rows=cvae` in slices of 16 and `--rows=hvae` in one
  pass; the edit is abduction + prediction.

Each round runs the peer's script, then ctfjax's row for one round, each
in a fresh process, so that a drift in a shared machine's speed hits both
alike; the ratios are taken within each round and summarised by median
and range (`speed_rows.paired`). The issues' fixed peer figures
(`speed_rows.PEERS`) were measured on another day; this measures the peer
on the day.
"""

import json
import os
import subprocess
import sys
import tempfile
from typing import NamedTuple

import jax
from absl import flags

from ctfjax.errors import UserError
from launch import cli
from launch import host_memory
from benchmarks import speed_rows
from benchmarks import timing


class Row(NamedTuple):
  """A row's peer: its script in benchmarks/, the edit column's name,
  ctfjax's default examples per pass, and the script's `--model` (the
  models of Melistas et al.'s code, which also need `--peer_repo`)."""
  script: str
  edit: str
  microbatch: int
  model: str | None = None


ROWS = {"unet": Row("peer_diffusers_unet.py", "DDIM-50", 16),
        "cvae": Row("peer_deepscm.py", "edit", 16, "cvae"),
        "hvae": Row("peer_deepscm.py", "edit", 0, "hvae")}

flags.DEFINE_enum("row", "unet", list(ROWS), "The row to pair with its peer.")
flags.DEFINE_string("peer_python", None, "An interpreter with the peer's "
                    "libraries (unet: torch and diffusers; cvae and hvae: "
                    "torch, pytorch_lightning, pandas).")
flags.DEFINE_string("peer_repo", None, "cvae, hvae: the "
                    "counterfactual_benchmark/ "
                    "folder of a gulnazaki/counterfactual-benchmark clone.")
flags.DEFINE_string("peer_device", "cpu", "unet: the peer's device, cpu (2 "
                    "threads) or cuda beside ctfjax on JAX's GPU.")
flags.DEFINE_string("out", None, "JSON output (default "
                    "runs/benchmark_<row>_peer.json).")
flags.DEFINE_integer("rounds", 3, "Alternating rounds (peer, then ctfjax).")
flags.DEFINE_integer("microbatch", None, "ctfjax's examples per pass "
                     "(0: the whole batch); default 16, for the hvae row 0.")
flags.DEFINE_integer("repeats", 4, "Timed train steps per side (and timed "
                     "edits: the Deep-SCM peers', ctfjax's sampler "
                     "calls).")
flags.DEFINE_integer("sample_steps", 10, "unet: DDIM levels ctfjax's "
                     "sampler is timed at; the peer samples 50. Both rates "
                     "are per 50 levels.")
flags.DEFINE_bool("unet_attention", True, "Keep ctfjax's self-attention "
                  "layers; false times ctfjax's U-Net without them (the "
                  "ceiling for any attention implementation) against the "
                  "whole peer.")
FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _json_of(cmd: list[str], out: str) -> dict:
  done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True, check=False)
  if done.returncode:
    tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    what = cmd[2] if cmd[1] == "-m" else os.path.basename(cmd[1])
    raise UserError(f"{os.path.basename(cmd[0])} {what} failed: {tail}")
  with open(out, encoding="utf-8") as f:
    return json.load(f)


def main():
  if not FLAGS.peer_python or not os.access(FLAGS.peer_python, os.X_OK):
    raise UserError(f"--peer_python: {FLAGS.peer_python!r} is not an "
                    f"executable (an interpreter with the peer's libraries)")
  if FLAGS.peer_device not in ("cpu", "cuda"):
    raise UserError(f"--peer_device: {FLAGS.peer_device!r} is neither cpu "
                    f"nor cuda")
  row = ROWS[FLAGS.row]
  if row.model and not (FLAGS.peer_repo and os.path.isfile(os.path.join(
      FLAGS.peer_repo, "models", "vaes", "hvae.py"))):
    raise UserError(f"--peer_repo: {FLAGS.peer_repo!r} is not the "
                    f"counterfactual_benchmark/ folder of a "
                    f"gulnazaki/counterfactual-benchmark clone")
  if FLAGS.rounds < 1 or FLAGS.repeats < 1 or FLAGS.sample_steps < 1:
    raise UserError("--rounds, --repeats and --sample_steps must be >= 1")
  rounds = []
  with tempfile.TemporaryDirectory() as tmp:
    peer_out, ours_out = (os.path.join(tmp, n) for n in ("p.json", "o.json"))
    microbatch = (row.microbatch if FLAGS.microbatch is None
                  else FLAGS.microbatch)
    peer_cmd = [FLAGS.peer_python, os.path.join(ROOT, "benchmarks",
                                                row.script),
                f"--out={peer_out}", f"--repeats={FLAGS.repeats}"]
    ours_cmd = [sys.executable, "-m", "benchmarks.speed",
                f"--rows={FLAGS.row}", "--rounds=1",
                f"--microbatch={microbatch}", f"--repeats={FLAGS.repeats}",
                f"--heavy_repeats={FLAGS.repeats}", f"--out={ours_out}"]
    if row.model:
      peer_cmd += [f"--model={row.model}", f"--peer_repo={FLAGS.peer_repo}"]
    else:
      peer_cmd.append(f"--device={FLAGS.peer_device}")
      ours_cmd += [f"--unet_sample_steps={FLAGS.sample_steps}",
                   f"--unet_attention={FLAGS.unet_attention}"]
    for r in range(FLAGS.rounds):
      peer = _json_of(peer_cmd, peer_out)
      ours = _json_of(ours_cmd, ours_out)["runs"][0]
      rounds.append({"round": r, "peer": peer, "ctfjax": ours})
      print(json.dumps({"round": r, **speed_rows.paired_round(peer, ours)}),
            flush=True)
  summary = speed_rows.paired(rounds)
  out = FLAGS.out or f"runs/benchmark_{FLAGS.row}_peer.json"
  cli.write_json(out, {"benchmark": f"{FLAGS.row}_vs_peer",
                       "cpu": timing.cpu_model(),
                       "jax_device": str(jax.devices()[0].device_kind),
                       "load_average_end": list(os.getloadavg()),
                       **summary, "raw": rounds})
  print(speed_rows.paired_table(summary, row.edit))


if __name__ == "__main__":
  cli.run(main, setup=host_memory.apply)
