r"""The diffusers-size U-Net under several XLA CPU option sets, in one process.

    python -m benchmarks.xla_options --out=runs/benchmark_xla_options.json
    python -m benchmarks.xla_options \
        --sets=default,diffusion,INDIVIDUAL_DOT+ELTWISE+REDUCE --rounds=6

Compiles `benchmarks.speed_rows.unet_programs` (the training step and the DDIM
sampler that `benchmarks.speed --rows=unet` times) once per option
set, then times them in alternation, `--rounds` times, the order reversed
every other round: each setting meets the machine's drift alike, which
separate processes (minutes apart) do not give on a shared 2-core machine.
This is how `ctfjax.compiler.CPU_CONVOLUTIONS_IN_XLA` was chosen
(docs/speed.md, "Compiler options on the CPU").

A set is `default` (XLA's defaults), `diffusion` (the diffusion
mechanisms' `COMPILER_OPTIONS`, as `ctfjax.compiler.for_backend`
passes them) or YNNPACK fusion kinds joined by `+` (`INDIVIDUAL_DOT`,
`ELTWISE`, `REDUCE`, `DOT`; the value of
`xla_cpu_experimental_ynn_fusion_type`), or `none` (no YNNPACK fusions).
"""

import json
import os
import statistics
import time

import jax
from absl import flags

from ctfjax import compiler
from ctfjax.errors import UserError
from launch import cli
from launch import host_memory
from benchmarks import speed_rows
from benchmarks import timing

flags.DEFINE_list("sets", ["default", "diffusion"], "XLA CPU option sets "
                  "to compare: default, diffusion, none, or YNNPACK fusion "
                  "kinds joined by '+'.")
flags.DEFINE_string("out", "runs/benchmark_xla_options.json", "JSON output.")
flags.DEFINE_integer("rounds", 6, "Alternating rounds over the sets.")
flags.DEFINE_integer("microbatch", 16, "Examples per U-Net pass (train "
                     "slices and sampler passes; 0 = the whole batch).")
flags.DEFINE_integer("train_calls", 2, "Train steps per timed call.")
flags.DEFINE_integer("sample_steps", 5, "DDIM levels per timed sampler "
                     "call; the rate is scaled to 50.")
FLAGS = flags.FLAGS

BATCH = 64  # the peer's train and sample batches


def _seconds(fn) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def main():
  if jax.default_backend() != "cpu":
    raise UserError(f"XLA CPU options need the CPU backend, not "
                    f"{jax.default_backend()!r}")
  if FLAGS.rounds < 1 or FLAGS.train_calls < 1 or FLAGS.sample_steps < 1:
    raise UserError("--rounds, --train_calls and --sample_steps must be >= 1")
  if FLAGS.microbatch < 0:
    raise UserError(f"--microbatch must be >= 0, got {FLAGS.microbatch}")
  if len(set(FLAGS.sets)) != len(FLAGS.sets) or not FLAGS.sets:
    raise UserError(f"--sets: distinct names, got {FLAGS.sets}")
  sets = {name: speed_rows.xla_option_set(name) for name in FLAGS.sets}
  programs, states = {}, {}
  for name, options in sets.items():
    p = speed_rows.unet_programs(FLAGS.microbatch, options, BATCH, BATCH,
                                 FLAGS.sample_steps)
    programs[name] = p
    # Compile and warm both programs; the step's state is fed back.
    states[name], _ = p.step(p.state, p.batch)
    jax.block_until_ready((states[name], p.sample()))

  def train_call(name):
    def call():
      for _ in range(FLAGS.train_calls):
        states[name], metrics = programs[name].step(states[name],
                                                    programs[name].batch)
      return states[name], metrics
    return call

  rates = {name: {"train": [], "sample": []} for name in sets}
  for r in range(FLAGS.rounds):
    order = FLAGS.sets if r % 2 == 0 else FLAGS.sets[::-1]
    for name in order:
      rates[name]["train"].append(
          FLAGS.train_calls * BATCH / _seconds(train_call(name)))
    for name in order:
      rates[name]["sample"].append(
          BATCH / (_seconds(programs[name].sample) * 50 / FLAGS.sample_steps))
    print(json.dumps({"round": r, **{
        name: {k: round(v[-1], 3) for k, v in rates[name].items()}
        for name in sets}}), flush=True)
  summary = {name: {f"{k}_images_per_s": statistics.median(v)
                    for k, v in rates[name].items()} for name in sets}
  cli.write_json(FLAGS.out, {
      "benchmark": "xla_cpu_options", "jax": jax.__version__,
      "cpu": timing.cpu_model(),
      "microbatch": FLAGS.microbatch, "batch": BATCH,
      "sample_steps_timed": FLAGS.sample_steps,
      "options": sets, "xla_cpu_options_enabled": compiler.enabled(),
      "load_average_end": list(os.getloadavg()), "summary": summary,
      "rounds": rates})
  print("| set | train img/s (median) | DDIM-50 img/s (median) |")
  print("| --- | --- | --- |")
  for name in sets:
    print(f"| {name} | {summary[name]['train_images_per_s']:.2f} | "
          f"{summary[name]['sample_images_per_s']:.2f} |")


if __name__ == "__main__":
  cli.run(main, setup=host_memory.apply)
