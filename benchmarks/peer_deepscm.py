r"""The MorphoMNIST image mechanisms of Melistas et al. (2024), the conditional
VAE and the HVAE, in their own PyTorch code, timed as `benchmarks.speed
--rows=cvae` and `--rows=hvae` time ctfjax's.

Not part of the package or its tests: it needs torch, pytorch_lightning
and pandas, and a checkout of the peer (gulnazaki/counterfactual-benchmark;
its HVAE is causal-gen's), none of which ctfjax depends on:

    python -m venv /tmp/peer
    /tmp/peer/bin/pip install torch==2.13.0 pytorch_lightning==2.6.6 pandas
    git clone https://github.com/gulnazaki/counterfactual-benchmark /tmp/cfb
    /tmp/peer/bin/python benchmarks/peer_deepscm.py --model=hvae \
        --peer_repo=/tmp/cfb/counterfactual_benchmark --out=/tmp/hvae.json

or let `benchmarks.peer --row=cvae|hvae` run it, alternating with
ctfjax's row. Builds `models.vaes.MmnistCondVAE` (208k parameters) or
`MmnistCondHVAE` (2.04M) from the peer's own
`methods/deepscm/configs/morphomnist/{vae,hvae}.json`. The peer's modules
that import torchvision (CelebA and ADNI classifiers) or read MorphoMNIST
files are replaced by empty modules: neither model uses them.

Train step, as the peer's `training_step` without Lightning's logging:
the model's loss on a batch of 128 (images in [-1, 1], 12 parent values:
the cVAE's negative ELBO with its conditional prior, the HVAE's with the
parents broadcast over the image), backward, gradient norm clipped at 350
(the configs' `gradient_clip_val`), AdamW (lr 1e-3, betas 0.9/0.9, weight
decay 0.01). Edit: the peer's `encode` (abduction and the pixel residual)
then `decode` under parents rolled by one example, batch 256, under
`torch.inference_mode`. Two threads; two untimed warm-up calls of each.
Rates are images/s of the median call.
"""

import argparse
import json
import os
import statistics
import sys
import time
import types

import torch

CONFIGS = {"cvae": "vae.json", "hvae": "hvae.json"}


def _stub(name: str, **attrs) -> None:
  module = types.ModuleType(name)
  module.__dict__.update(attrs)
  sys.modules[name] = module


def make_model(kind: str, peer_repo: str):
  """The peer's MorphoMNIST cVAE or HVAE with its published settings."""
  sys.path.insert(0, peer_repo)
  _stub("datasets.morphomnist.dataset", MorphoMNISTLike=None)
  for name in ("celeba_classifier", "celeba_complex_classifier"):
    _stub(f"models.classifiers.{name}", CelebaClassifier=None,
          CelebaComplexClassifier=None)
  from models import vaes  # pylint: disable=g-import-not-at-top
  path = os.path.join(peer_repo, "methods", "deepscm", "configs",
                      "morphomnist", CONFIGS[kind])
  with open(path, encoding="utf-8") as f:
    config = json.load(f)
  params = config["mechanism_models"]["image"]["params"]
  if kind == "cvae":
    return vaes.MmnistCondVAE(params, config["attribute_size"])
  return vaes.MmnistCondHVAE(config["attribute_size"], params)


def loss_fn(kind: str, model):
  """The peer's training loss of (x, pa)."""
  if kind == "cvae":
    def loss(x, pa):
      h, mu, logvar = model(x, pa)
      prior_mu, prior_var = model.decoder.prior(pa)
      return model._vae_loss(h, x, mu, logvar, prior_mu, prior_var,  # pylint: disable=protected-access
                             beta=model.beta)
    return loss
  return lambda x, pa: model(x, model.expand_parents(pa), beta=1)["elbo"]


def timed(fn, warmup: int, repeats: int) -> list[float]:
  times = []
  for i in range(warmup + repeats):
    t0 = time.perf_counter()
    fn()
    if i >= warmup:
      times.append(time.perf_counter() - t0)
  return times


def data(batch: int, seed: int):
  gen = torch.Generator().manual_seed(seed)
  return (torch.rand(batch, 1, 32, 32, generator=gen) * 2 - 1,
          torch.rand(batch, 12, generator=gen))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", choices=sorted(CONFIGS), required=True)
  parser.add_argument("--peer_repo", required=True,
                      help="counterfactual_benchmark/ of the peer's clone")
  parser.add_argument("--out", default="peer_deepscm.json")
  parser.add_argument("--repeats", type=int, default=4)
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = make_model(args.model, args.peer_repo)
  params = sum(p.numel() for p in model.parameters() if p.requires_grad)
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.9),
                          weight_decay=0.01)
  loss = loss_fn(args.model, model)
  x, pa = data(128, 0)

  def step():
    opt.zero_grad()
    loss(x, pa).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 350)
    opt.step()

  model.train()
  train_s = timed(step, 2, args.repeats)
  ex, epa = data(256, 1)
  pa_new = torch.roll(epa, 1, dims=0)
  model.eval()
  with torch.inference_mode():
    edit_s = timed(lambda: model.decode(model.encode(ex, epa), pa_new), 2,
                   args.repeats)
  out = {"model": args.model, "torch": torch.__version__,
         "threads": args.threads, "params": params, "train_batch": 128,
         "edit_batch": 256, "train_step_s": train_s,
         "train_images_per_s": 128 / statistics.median(train_s),
         "edit_s": edit_s,
         "edit_images_per_s": 256 / statistics.median(edit_s),
         "loadavg": list(os.getloadavg())}
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
  print(json.dumps({k: v for k, v in out.items() if not k.endswith("_s")}))


if __name__ == "__main__":
  main()
