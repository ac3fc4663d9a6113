r"""ctfjax's diffusers-size U-Net beside its PyTorch peer, measured here.

    python -m launch.benchmark_unet_peer --peer_python=/tmp/peer/bin/python \
        --rounds=3 --out=runs/benchmark_unet_peer.json

`--peer_python` is an interpreter with torch 2.13 and diffusers, which
ctfjax does not depend on (`benchmarks/peer_diffusers_unet.py` says how to
make one). Each round runs the peer's script, then
`launch.benchmark_speed --rows=unet` for one round, each in a fresh
process, so that a drift in a shared machine's speed hits both alike; the
ratios are taken within each round and summarised by median and range
(`speed_rows.paired`). The issue's fixed peer figures (`speed_rows.PEERS`)
were measured on another day; this measures the peer on the day.
"""

import json
import os
import subprocess
import sys
import tempfile

import jax
from absl import flags

from ctfjax.errors import UserError
from launch import cli
from launch import speed_rows
from launch import timing

flags.DEFINE_string("peer_python", None, "An interpreter with torch and "
                    "diffusers.")
flags.DEFINE_string("peer_device", "cpu", "The peer's device: cpu (2 "
                    "threads), or cuda beside ctfjax on JAX's GPU.")
flags.DEFINE_string("out", "runs/benchmark_unet_peer.json", "JSON output.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds (peer, then ctfjax).")
flags.DEFINE_integer("microbatch", 16, "ctfjax's examples per U-Net pass.")
flags.DEFINE_integer("repeats", 4, "Timed train steps per side (and ctfjax's "
                     "timed sampler calls).")
flags.DEFINE_integer("sample_steps", 10, "DDIM levels ctfjax's sampler is "
                     "timed at; the peer samples 50. Both rates are per "
                     "50 levels.")
flags.DEFINE_bool("unet_attention", True, "Keep ctfjax's self-attention "
                  "layers; false times ctfjax's U-Net without them (the "
                  "ceiling for any attention implementation) against the "
                  "whole peer.")
FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_SCRIPT = os.path.join(ROOT, "benchmarks", "peer_diffusers_unet.py")


def _json_of(cmd: list[str], out: str) -> dict:
  done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True, check=False)
  if done.returncode:
    tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    raise UserError(f"{os.path.basename(cmd[0])} {cmd[1]} failed: {tail}")
  with open(out, encoding="utf-8") as f:
    return json.load(f)


def main():
  if not FLAGS.peer_python or not os.access(FLAGS.peer_python, os.X_OK):
    raise UserError(f"--peer_python: {FLAGS.peer_python!r} is not an "
                    f"executable (an interpreter with torch and diffusers)")
  if FLAGS.peer_device not in ("cpu", "cuda"):
    raise UserError(f"--peer_device: {FLAGS.peer_device!r} is neither cpu "
                    f"nor cuda")
  if FLAGS.rounds < 1 or FLAGS.repeats < 1 or FLAGS.sample_steps < 1:
    raise UserError("--rounds, --repeats and --sample_steps must be >= 1")
  rounds = []
  with tempfile.TemporaryDirectory() as tmp:
    peer_out, ours_out = (os.path.join(tmp, n) for n in ("p.json", "o.json"))
    for r in range(FLAGS.rounds):
      peer = _json_of([FLAGS.peer_python, PEER_SCRIPT, f"--out={peer_out}",
                       f"--repeats={FLAGS.repeats}",
                       f"--device={FLAGS.peer_device}"], peer_out)
      ours = _json_of([sys.executable, "-m", "launch.benchmark_speed",
                       "--rows=unet", f"--microbatch={FLAGS.microbatch}",
                       "--rounds=1", f"--heavy_repeats={FLAGS.repeats}",
                       f"--unet_sample_steps={FLAGS.sample_steps}",
                       f"--unet_attention={FLAGS.unet_attention}",
                       f"--out={ours_out}"], ours_out)["runs"][0]
      rounds.append({"round": r, "peer": peer, "ctfjax": ours})
      print(json.dumps({"round": r, **speed_rows.paired_round(peer, ours)}),
            flush=True)
  summary = speed_rows.paired(rounds)
  cli.write_json(FLAGS.out, {"benchmark": "unet_vs_peer",
                             "cpu": timing.cpu_model(),
                             "jax_device": str(jax.devices()[0].device_kind),
                             "load_average_end": list(os.getloadavg()),
                             **summary, "raw": rounds})
  print(speed_rows.paired_table(summary))


if __name__ == "__main__":
  cli.run(main)
