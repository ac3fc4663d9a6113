r"""Speed of every image mechanism beside its PyTorch peer, written as JSON.

    python -m benchmarks.speed --out=runs/benchmark_speed.json
    python -m benchmarks.speed --rows=cvae,ancm --rounds=3

For each row of `benchmarks.speed_rows` (cvae, ancm, hvae, gan, unet): the
jitted training step and the counterfactual edit (abduction + prediction;
DDIM sampling for the U-Net) in images/s, their compile seconds, XLA's
count of their work (GFLOP per image, and the GFLOP/s it was done at,
beside the machine's float32 matrix-product rate) and the process's peak
memory. Each `--microbatch` setting (`config.train
.microbatch`: examples per forward/backward pass, 0 = whole batch) is
measured in turn, `--rounds` times, alternating, so that a drift in the
machine's load hits every setting alike; the summary gives each setting's
median and range over rounds and its ratio to the peer's figure.

The PyTorch figures (`speed_rows.PEERS`) were measured on this project's
2-core CPU with PyTorch 2.13 and 2 threads; they are not re-measured here.
Run on a quiet machine: the JSON records the load average beside each
figure.
"""

import json
import os
import platform

import jax
from absl import flags

from ctfjax import compiler
from ctfjax.errors import UserError
from ctfjax.mechanisms import diffusion
from launch import cli
from launch import host_memory
from benchmarks import speed_rows
from benchmarks import timing

flags.DEFINE_string("out", "runs/benchmark_speed.json", "JSON output.")
flags.DEFINE_list("rows", ["cvae", "ancm", "hvae", "gan", "unet"],
                  f"Rows to time, of {sorted(speed_rows.ROWS)}.")
flags.DEFINE_list("microbatch", ["0", "16"], "config.train.microbatch "
                  "settings to compare (0 = the whole batch in one pass).")
flags.DEFINE_integer("rounds", 2, "Alternating rounds over the settings.")
flags.DEFINE_integer("repeats", 10, "Timed calls per measurement of the "
                     "cvae and ancm rows.")
flags.DEFINE_integer("heavy_repeats", 2, "Timed calls per measurement of the "
                     "hvae, gan and unet rows (seconds per call; also the "
                     "U-Net's timed sampler calls).")
flags.DEFINE_integer("unet_sample_steps", 5, "DDIM levels timed for the "
                     "U-Net's sampling rate (scaled to the peer's 50).")
flags.DEFINE_bool("unet_attention", True, "Keep the U-Net's self-attention "
                  "layers; false removes them, to measure the ceiling any "
                  "attention implementation could lift the row to.")
FLAGS = flags.FLAGS


def measure(name: str, microbatch: int) -> dict:
  if name == "unet":
    return speed_rows.unet_row(FLAGS.heavy_repeats, microbatch,
                               sample_steps=FLAGS.unet_sample_steps,
                               sample_repeats=FLAGS.heavy_repeats,
                               attention=FLAGS.unet_attention)
  repeats = FLAGS.repeats if name in ("cvae", "ancm") else FLAGS.heavy_repeats
  return speed_rows.ROWS[name](repeats, microbatch)


def main():
  unknown = sorted(set(FLAGS.rows) - set(speed_rows.ROWS))
  if unknown:
    raise UserError(f"--rows: unknown {unknown}; choose from "
                        f"{sorted(speed_rows.ROWS)}")
  try:
    settings = [int(m) for m in FLAGS.microbatch]
  except ValueError:
    raise UserError(f"--microbatch: integers, got {FLAGS.microbatch}"
                        ) from None
  if any(m < 0 for m in settings) or FLAGS.rounds < 1:
    raise UserError("--microbatch values must be >= 0 and --rounds >= 1")
  runs = {name: {m: [] for m in settings} for name in FLAGS.rows}
  for r in range(FLAGS.rounds):
    for name in FLAGS.rows:
      for m in (settings if r % 2 == 0 else settings[::-1]):
        row = measure(name, m)
        row["round"] = r
        runs[name][m].append(row)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                          for k, v in row.items()}), flush=True)
  summary = []
  for name in FLAGS.rows:
    peer = speed_rows.PEERS.get(name)
    for m in settings:
      s = {"row": name, "model": runs[name][m][0]["model"],
           "params": runs[name][m][0]["params"], "microbatch": m,
           **speed_rows.summarise(runs[name][m])}
      if peer:
        s["peer_images_per_s"] = peer
        for what in ("train", "edit"):
          s[f"{what}_vs_peer"] = s[f"{what}_images_per_s"] / peer[what][0]
      summary.append(s)
  out = {"benchmark": "speed", "backend": jax.default_backend(),
         "jax": jax.__version__, "cpu": timing.cpu_model(),
         "cpus": os.cpu_count(), "machine": platform.machine(),
         "xla_flags": os.environ.get("XLA_FLAGS", ""),
         # The U-Net row's compiler options (the diffusion mechanisms').
         "unet_xla_cpu_options": compiler.for_backend(
             diffusion.Diffusion.COMPILER_OPTIONS),
         # Idempotent: whether cli.run configured glibc before main.
         "keeps_freed_memory": host_memory.apply(),
         "load_average_end": list(os.getloadavg()),
         # What XLA's float32 matrix product reaches here: the ceiling to
         # read each row's GFLOP/s against.
         "matmul_2048_gflop_per_s": timing.matmul_gflop_per_s(),
         "summary": summary,
         "runs": [row for name in FLAGS.rows for m in settings
                  for row in runs[name][m]],
         **timing.peak_memory()}
  cli.write_json(FLAGS.out, out)
  print(speed_rows.table(summary))


if __name__ == "__main__":
  cli.run(main, setup=host_memory.apply)
