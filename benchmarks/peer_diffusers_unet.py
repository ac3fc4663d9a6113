r"""The U-Net of the peer of Sardesai's diffusion NCM, in PyTorch + diffusers,
timed as `benchmarks.speed` times ctfjax's `unet.DIFFUSERS_BENCHMARK` row.

Not part of the package or its tests: it needs torch and diffusers, which
ctfjax does not depend on. Make an environment for it (on this project's
machines torch 2.13.0's CPU wheel lies on disk) and let
`benchmarks.peer` run it, alternating with ctfjax's row:

    python -m venv /tmp/peer
    /tmp/peer/bin/pip install torch==2.13.0 diffusers==0.42.1
    python -m benchmarks.peer --peer_python=/tmp/peer/bin/python

or alone: `/tmp/peer/bin/python benchmarks/peer_diffusers_unet.py`.

Train step: epsilon MSE on a linear 1000-level DDPM schedule, AdamW
(lr 1e-4), batch 64 of 32x32x3 images with 40 class labels, 2 threads.
Sampling: DDIM, 50 levels, batch 64, under `torch.inference_mode`.
`--device=cuda` runs both on a GPU (PyTorch's defaults: float32, cuDNN
picks its convolution algorithms), the clock stopped after
`torch.cuda.synchronize()`.
"""

import argparse
import json
import os
import statistics
import time

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel


def make_unet() -> UNet2DModel:
  return UNet2DModel(
      sample_size=32, in_channels=3, out_channels=3,
      block_out_channels=(64, 128, 128), layers_per_block=2,
      down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
      up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
      num_class_embeds=40)


def finish(device: torch.device) -> None:
  """Waits for the device's queued work (a GPU's kernels run
  asynchronously)."""
  if device.type == "cuda":
    torch.cuda.synchronize(device)


def time_train(net, batch: int, warmup: int, repeats: int,
               device: torch.device) -> list[float]:
  sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
  opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
  gen = torch.Generator().manual_seed(0)
  x0 = (torch.rand(batch, 3, 32, 32, generator=gen) * 2 - 1).to(device)
  labels = torch.randint(0, 40, (batch,), generator=gen).to(device)

  def step():
    t = torch.randint(0, 1000, (batch,), generator=gen).to(device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    x_t = sched.add_noise(x0, noise, t)
    loss = torch.nn.functional.mse_loss(
        net(x_t, t, class_labels=labels).sample, noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

  for _ in range(warmup):
    step()
  finish(device)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step()
    finish(device)
    times.append(time.perf_counter() - start)
  return times


@torch.inference_mode()
def time_sample(net, batch: int, steps: int, device: torch.device) -> float:
  sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")
  sched.set_timesteps(steps)
  gen = torch.Generator().manual_seed(1)
  x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
  labels = (torch.arange(batch) % 40).to(device)
  finish(device)
  start = time.perf_counter()
  for t in sched.timesteps:
    eps = net(x, t, class_labels=labels).sample
    x = sched.step(eps, t, x, eta=0.0).prev_sample
  finish(device)
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="runs/peer_unet.json")
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--device", default="cpu", help="cpu, or cuda")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=5,
                      help="timed train steps")
  parser.add_argument("--sample_steps", type=int, default=50)
  parser.add_argument("--skip_sample", action="store_true")
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  device = torch.device(args.device)
  net = make_unet().to(device)
  params = sum(p.numel() for p in net.parameters())
  net.train()
  train_s = time_train(net, args.batch, warmup=2, repeats=args.repeats,
                       device=device)
  row = {"torch": torch.__version__, "threads": args.threads,
         "device": (torch.cuda.get_device_name(device)
                    if device.type == "cuda" else "cpu"),
         "params": params, "batch": args.batch,
         "train_step_s": train_s,
         # The median, as benchmarks.timing takes ctfjax's.
         "train_images_per_s": args.batch / statistics.median(train_s),
         "loadavg": os.getloadavg()}
  if not args.skip_sample:
    net.eval()
    time_sample(net, args.batch, 1, device)  # warm-up
    sample_s = time_sample(net, args.batch, args.sample_steps, device)
    # Per 50 levels; the U-Net row's edit is DDIM sampling, as ctfjax's.
    row.update(sample_steps=args.sample_steps, sample_s=sample_s,
               edit_images_per_s=args.batch / sample_s
               * args.sample_steps / 50)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(row, f, indent=1)
  print(json.dumps(row))


if __name__ == "__main__":
  main()
