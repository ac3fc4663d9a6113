r"""The seed-004 peer's MorphoMNIST HVAE in PyTorch, timed as
`launch.benchmark_speed --rows=hvae` times ctfjax's.

Not part of the package or its tests: it needs torch, pytorch_lightning
and pandas, and a checkout of the peer (gulnazaki/counterfactual-benchmark,
whose HVAE is causal-gen's), none of which ctfjax depends on:

    python -m venv /tmp/peer
    /tmp/peer/bin/pip install torch==2.13.0 pytorch_lightning==2.6.6 pandas
    git clone https://github.com/gulnazaki/counterfactual-benchmark /tmp/cfb
    /tmp/peer/bin/python benchmarks/peer_deepscm_hvae.py \
        --peer_repo=/tmp/cfb/counterfactual_benchmark --out=/tmp/hvae.json

Builds `models.vaes.MmnistCondHVAE` from the peer's own
`methods/deepscm/configs/morphomnist/hvae.json` (2.04M parameters, the
count of ctfjax's `hvae.HVAE.accelerator_config()`). The peer's modules
that import torchvision (CelebA and ADNI classifiers) or read MorphoMNIST
files are replaced by empty modules: the MorphoMNIST HVAE uses none of
them.

Train step, as the peer's `training_step` without Lightning's logging:
the negative ELBO of a batch of 128 (images in [-1, 1], 12 parent values
broadcast over the image), backward, gradient norm clipped at 350, AdamW
(lr 1e-3, betas 0.9/0.9, weight decay 0.01). Edit: the peer's
`encode` (abduction at its temperature 0.1 and the pixel residual) then
`decode` under parents rolled by one example, batch 256, under
`torch.inference_mode`. Two threads. Rates are images/s from the median
step.
"""

import argparse
import json
import os
import statistics
import sys
import time
import types

import torch


def _stub(name: str, **attrs) -> None:
  module = types.ModuleType(name)
  module.__dict__.update(attrs)
  sys.modules[name] = module


def make_hvae(peer_repo: str):
  """The peer's MorphoMNIST HVAE with its published settings."""
  sys.path.insert(0, peer_repo)
  _stub("datasets.morphomnist.dataset", MorphoMNISTLike=None)
  for name in ("celeba_classifier", "celeba_complex_classifier"):
    _stub(f"models.classifiers.{name}", CelebaClassifier=None,
          CelebaComplexClassifier=None)
  from models.vaes import MmnistCondHVAE  # pylint: disable=g-import-not-at-top
  path = os.path.join(peer_repo, "methods", "deepscm", "configs",
                      "morphomnist", "hvae.json")
  with open(path, encoding="utf-8") as f:
    config = json.load(f)
  image = config["mechanism_models"]["image"]
  return MmnistCondHVAE(config["attribute_size"], image["params"])


def time_train(model, batch: int, warmup: int, repeats: int) -> list[float]:
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.9),
                          weight_decay=0.01)
  gen = torch.Generator().manual_seed(0)
  x = torch.rand(batch, 1, 32, 32, generator=gen) * 2 - 1
  pa = torch.rand(batch, 12, generator=gen)

  def step():
    opt.zero_grad()
    loss = model(x, model.expand_parents(pa), beta=1)["elbo"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 350)
    opt.step()

  times = []
  for i in range(warmup + repeats):
    t0 = time.perf_counter()
    step()
    if i >= warmup:
      times.append(time.perf_counter() - t0)
  return times


def time_edit(model, batch: int, warmup: int, repeats: int) -> list[float]:
  gen = torch.Generator().manual_seed(1)
  x = torch.rand(batch, 1, 32, 32, generator=gen) * 2 - 1
  pa = torch.rand(batch, 12, generator=gen)
  pa_new = torch.roll(pa, 1, dims=0)
  times = []
  with torch.inference_mode():
    for i in range(warmup + repeats):
      t0 = time.perf_counter()
      model.decode(model.encode(x, pa), pa_new)
      if i >= warmup:
        times.append(time.perf_counter() - t0)
  return times


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--peer_repo", required=True,
                      help="counterfactual_benchmark/ of the peer's clone")
  parser.add_argument("--out", default="peer_deepscm_hvae.json")
  parser.add_argument("--repeats", type=int, default=4)
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = make_hvae(args.peer_repo)
  model.train()
  params = sum(p.numel() for p in model.parameters() if p.requires_grad)
  train_s = time_train(model, 128, 2, args.repeats)
  model.eval()
  edit_s = time_edit(model, 256, 1, args.repeats)
  out = {"torch": torch.__version__, "threads": args.threads,
         "params": params, "train_batch": 128, "edit_batch": 256,
         "train_step_s": train_s,
         "train_images_per_s": 128 / statistics.median(train_s),
         "edit_s": edit_s,
         "edit_images_per_s": 256 / statistics.median(edit_s),
         "loadavg": list(os.getloadavg())}
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
  print(json.dumps({k: v for k, v in out.items()
                    if not k.endswith("_s")}))


if __name__ == "__main__":
  main()
