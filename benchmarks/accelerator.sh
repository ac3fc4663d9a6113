#!/usr/bin/env bash
# The diffusion checks that need an accelerator, in one run on a GPU machine.
#
#     bash benchmarks/accelerator.sh OUT_DIR [DIFFUSION_STEPS] [ROUNDS]
#
# Needs an interpreter `python3` with JAX for the GPU, ctfjax's other
# dependencies, torch with CUDA and diffusers (benchmarks/
# peer_diffusers_unet.py). Writes into OUT_DIR:
#
# * unet_peer.json / unet_peer.log: the diffusers-size U-Net's training
#   step and 50-level DDIM sampling (batch 64, whole batch per pass),
#   ctfjax beside diffusers on the same GPU, alternating in fresh
#   processes, ROUNDS (default 2) times (benchmarks.peer
#   --peer_device=cuda);
# * diffusion_train.log, diffusion_metrics.jsonl, benchmark_diffusion.json,
#   diffusion_grid.png: the diffusion NCM of
#   configs/ancm_ddpm_colored_mnist_frontdoor.py trained DIFFUSION_STEPS
#   (default 2000, twice its CPU budget) steps, then
#   benchmarks.diffusion (null edit against DDIM levels, the effect
#   of single-feature edits at guidance 3, a grid of edits);
# * unet_parts.md: its convolutions and 16x16 attention alone, the
#   attention's chunked implementation beside jax.nn's.
#
# Each stage has its own time limit (training: 90 s + 0.1 s a step), and a
# failed stage does not stop the next. README, "On an accelerator", gives
# the figures of two runs; benchmarks/results/h200_run1 and h200_run2 hold
# what they wrote (their training stages had a fixed 150 s limit then).
set -u
out=${1:?usage: accelerator.sh OUT_DIR [DIFFUSION_STEPS] [ROUNDS]}
steps=${2:-2000}
rounds=${3:-2}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
work=$(mktemp -d)

python3 -c "import jax, flax, torch; print('jax', jax.__version__, \
'flax', flax.__version__, 'torch', torch.__version__, jax.devices())"

echo "== U-Net beside diffusers"
timeout $(( 40 + 80 * rounds )) python3 -m benchmarks.peer \
  --peer_python="$(command -v python3)" --peer_device=cuda --microbatch=0 \
  --sample_steps=50 --rounds="$rounds" --repeats=10 --out="$out/unet_peer.json" \
  2>&1 | tee "$out/unet_peer.log" | grep -v "^W0\|^I0"

echo "== diffusion NCM, $steps steps"
start=$(date +%s)
timeout $(( 90 + steps / 10 )) python3 -m launch.train \
  --config=configs/ancm_ddpm_colored_mnist_frontdoor.py \
  --workdir="$work/diffusion" --config.train.steps="$steps" \
  --config.train.eval_every=1000 --config.ckpt.every=500 \
  > "$out/diffusion_train.log" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s"
grep -v "^[WI][0-9]" "$out/diffusion_train.log" | tail -3
cp "$work/diffusion/metrics.jsonl" "$out/diffusion_metrics.jsonl"
tail -1 "$out/diffusion_metrics.jsonl"

echo "== benchmark_diffusion"
timeout 90 python3 -m benchmarks.diffusion --workdir="$work/diffusion" \
  --out="$out/benchmark_diffusion.json" --guidance=3 --null_steps=10,50 \
  --grid="$out/diffusion_grid.png" 2>&1 | grep -v "^W0\|^I0" | tail -12

echo "== U-Net parts"
timeout 60 python3 benchmarks/unet_parts.py jax | tee "$out/unet_parts.md"
