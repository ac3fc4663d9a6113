"""The models `benchmarks.speed` times, one function per row.

Each function builds one model at the size of its published peer, times its
jitted training step and its counterfactual edit with `benchmarks.timing`, and
returns a JSON-ready row. `microbatch` is `config.train.microbatch`: examples
per forward/backward pass (0 = the whole batch in one pass).

* `cvae`: the MorphoMNIST conditional VAE image mechanism of Melistas et
  al. (2024; Appendix A.2, Tables 7-8; 208k parameters), learned-sigma
  Gaussian likelihood, AdamW(1e-3, b1 = b2 = 0.9, wd = 0.01), train batch
  128, abduct + predict at batch 256, as the published PyTorch code is
  timed.
* `hvae`: their MorphoMNIST HVAE (`HVAE.accelerator_config()`, 2.04M
  parameters), the same optimizer and batches.
* `ancm`: the Colored MNIST VAE-ANCM of configs/ancm_vae_colored_mnist_backdoor
  .py, the very first-stage step `launch.train` runs (NCM likelihood, ELBO,
  reader, faithfulness) at batch 64, and `ANCM.edit` at batch 256.
* `gan`: the MorphoMNIST Deep-SCM GAN (configs/deepscm_gan_morpho_mnist.py)
  at Melistas et al.'s widths (Tables 11-13: `GAN.accelerator_config()`),
  its adversarial step (two parameter groups) at batch 128, `ANCM.edit` at
  256.
* `unet`: diffusers' `UNet2DModel` at the size of the peer of Sardesai's
  diffusion NCM (`nn.unet.DIFFUSERS_BENCHMARK`, 6.48M parameters):
  epsilon-MSE step with AdamW(1e-4) at batch 64, DDIM sampling at batch
  64.

`unet_programs` builds the U-Net row's two programs under any XLA CPU
options, and `xla_option_set` names the option sets
`benchmarks.xla_options` compares. `summarise` and `table` turn the
rounds into the benchmark's summary and a Markdown table.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import statistics
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ctfjax import mechanisms
from ctfjax import train
from ctfjax import compiler
from ctfjax.ancm import fit
from ctfjax.errors import UserError
from ctfjax.mechanisms import diffusion, gan, hvae, vae
from ctfjax.nn import unet
from ctfjax.train.config import microbatches_of
from benchmarks import timing

# Published PyTorch figures on the project's 2-core CPU (PyTorch 2.13, two
# threads), from the issues that asked for each model; images/s.
PEERS = {
    "cvae": {"train": (739, 832), "edit": (978, 978)},
    "hvae": {"train": (70, 72), "edit": (120, 124)},
    "unet": {"train": (13.7, 13.7), "edit": (0.91, 0.91)},
}
MORPHO_PARENTS = 12  # thickness, intensity, digit one-hot


def _count(params) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))


def _slices(batch: int, microbatch: int) -> int:
  """Slices per step on one device, as `launch.train` would cut them."""
  return microbatches_of(ml_collections.ConfigDict(
      {"batch_size": batch, "microbatch": microbatch}), 1)


def _row(name, params, train_b, edit_b, compile_train, train_s,
         compile_edit, edit_s, microbatch, train_gflop=None, edit_gflop=None,
         **extra):
  """One measurement as JSON. `train_gflop` / `edit_gflop`: XLA's count of
  one step's / one edit's work (`timing.gflop`), when known: the row then
  carries it per image and the rate it was done at (GFLOP/s)."""
  row = {"model": name, "params": _count(params), "microbatch": microbatch,
         "train_batch": train_b, "edit_batch": edit_b,
         "compile_train_s": compile_train, "train_step_s": train_s,
         "train_images_per_s": train_b / train_s,
         "compile_edit_s": compile_edit, "edit_s": edit_s,
         "edit_images_per_s": edit_b / edit_s,
         "load_average": os.getloadavg()[0], **extra}
  for what, work, batch, seconds in (("train", train_gflop, train_b, train_s),
                                     ("edit", edit_gflop, edit_b, edit_s)):
    if work is not None:
      row[f"{what}_gflop_per_image"] = work / batch
      row[f"{what}_gflop_per_s"] = work / seconds
  return row


def _mechanism(name, family, settings, repeats, microbatch, train_b=128,
               edit_b=256):
  """A Deep-SCM image mechanism of `family` (with `settings`) alone, on
  MorphoMNIST's shapes: its loss's step and abduct+predict, compiled with
  the family's XLA CPU options as training compiles them."""
  module = train.PureModule(lambda rngs: family.create(
      (32, 32, 1), MORPHO_PARENTS, settings, rngs=rngs))
  loss = lambda p, batch, rng: (module.apply(
      p, batch["x"], batch["pa"], rng, method="loss")[0]["loss"].mean(), {})
  optimizer = optax.adamw(1e-3, b1=0.9, b2=0.9, weight_decay=0.01)
  init = jax.jit(lambda key: train.create_train_state(key, module.init,
                                                      optimizer))
  state = init(jax.random.key(0))
  params = jax.tree.map(jnp.copy, state.params)  # the step donates state
  rng = np.random.default_rng(0)
  data = lambda n: {
      "x": jnp.asarray(rng.random((n, 32, 32, 1), np.float32)),
      "pa": jnp.asarray(rng.random((n, MORPHO_PARENTS), np.float32))}
  options = compiler.for_backend(mechanisms.compiler_options(family))
  step = train.make_train_step(loss, optimizer,
                               microbatches=_slices(train_b, microbatch),
                               compiler_options=options)
  batch = data(train_b)
  train_gflop = timing.gflop(step, state, batch)
  compile_train, train_s = timing.timed_train(step, state, batch, repeats)
  ebatch = data(edit_b)
  pa_new = jnp.roll(ebatch["pa"], 1, axis=0)
  edit = timing.abduct_predict(module)
  args = (params, ebatch["x"], ebatch["pa"], pa_new)
  compile_edit, edit_s = timing.timed(lambda: edit(*args), repeats)
  return _row(name, params, train_b, edit_b, compile_train, train_s,
              compile_edit, edit_s, microbatch, train_gflop=train_gflop,
              edit_gflop=timing.gflop(edit, *args))


def cvae(repeats: int, microbatch: int) -> dict:
  settings = vae.VAE.default_config()
  settings.learned_sigma = True
  settings.decoder_convs = ((32, 3), (32, 3), (16, 5))
  return _mechanism("cvae_seed004_morphomnist", vae.VAE, settings, repeats,
                    microbatch)


def hvae_row(repeats: int, microbatch: int) -> dict:
  return _mechanism("hvae_seed004_morphomnist", hvae.HVAE,
                    hvae.HVAE.accelerator_config(), repeats, microbatch)


def _config_row(name, config, repeats, microbatch, train_b, edit_b, do):
  """The first training stage of an ANCM-family config, as `launch.train`
  runs it (without a mesh), and `ANCM.edit` under `do(labels)`."""
  with config.unlocked():
    config.train.batch_size = train_b
    config.train.microbatch = microbatch
  model = fit.model_of(config)
  ds = fit.load_split(config, "train", max(train_b, edit_b))
  batch = {k: jnp.asarray(ds[k][:train_b]) for k in ds}
  task = fit.make_task(config, model, ds)
  step = train.make_train_step(
      task.loss, task.optimizer, grads_fn=task.grads,
      microbatches=microbatches_of(config.train, 1))
  state = train.create_train_state(jax.random.key(0), task.init,
                                   task.optimizer)
  params = jax.tree.map(jnp.copy, state.params)  # the step donates state
  train_gflop = timing.gflop(step, state, batch)
  compile_train, train_s = timing.timed_train(step, state, batch, repeats)
  images = ds["image"][:edit_b]
  labels = {k: ds[k][:edit_b] for k in model.order}
  edit = lambda: model.edit(params, images, do(labels), jax.random.key(1),
                            num_samples=1, labels=labels)["image"]
  compile_edit, edit_s = timing.timed(edit, repeats)
  return _row(name, params, train_b, edit_b, compile_train, train_s,
              compile_edit, edit_s, microbatch, train_gflop=train_gflop,
              image_shape=list(model.image_shape))


def ancm(repeats: int, microbatch: int) -> dict:
  from configs import ancm_vae_colored_mnist_backdoor  # pylint: disable=g-import-not-at-top
  return _config_row("ancm_colored_mnist",
                     ancm_vae_colored_mnist_backdoor.get_config(), repeats,
                     microbatch, 64, 256, lambda v: {"C": 1 - v["C"]})


def gan_row(repeats: int, microbatch: int) -> dict:
  from configs import deepscm_gan_morpho_mnist  # pylint: disable=g-import-not-at-top
  config = deepscm_gan_morpho_mnist.get_config()
  with config.unlocked():
    config.model.image.gan.update(gan.GAN.accelerator_config())
  return _config_row("gan_seed004_morphomnist", config, repeats, microbatch,
                     128, 256, lambda v: {"thickness": v["thickness"] + 1.0})


YNN_KINDS = ("INDIVIDUAL_DOT", "DOT", "ELTWISE", "REDUCE")
FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"


def xla_option_set(name: str) -> dict | None:
  """The compiler options a `benchmarks.xla_options --sets` entry
  names (None: XLA's defaults).

  Raises UserError naming the entry if it names no set."""
  if name == "default":
    return None
  if name == "diffusion":
    return compiler.for_backend(diffusion.Diffusion.COMPILER_OPTIONS)
  if name == "none":
    return {FUSION_TYPE: ""}
  kinds = name.split("+")
  unknown = [k for k in kinds if k not in YNN_KINDS]
  if unknown:
    raise UserError(f"--sets: {name!r} is not default, diffusion, none or "
                    f"YNNPACK fusion kinds joined by '+' (unknown "
                    f"{unknown}; kinds: {', '.join(YNN_KINDS)})")
  return {FUSION_TYPE: ",".join(f"LIBRARY_FUSION_TYPE_{k}" for k in kinds)}


@dataclasses.dataclass
class UNetPrograms:
  """The diffusers-size U-Net's two timed programs, compiled with one set of
  XLA CPU options: `step(state, batch)` (donates `state`) and `sample()`
  (DDIM from fixed noise; each call one `lax.scan` of `sample_steps`
  levels)."""
  step: Callable
  state: train.TrainState
  batch: dict
  sample: Callable[[], jax.Array]
  params: dict
  one_pass_gflop: Callable[[], float | None]


def unet_programs(microbatch: int, options: dict | None, train_b: int = 64,
                  sample_b: int = 64, sample_steps: int = 50,
                  size: dict | None = None) -> UNetPrograms:
  """`UNetPrograms` of a U-Net of `size` (`unet.UNet` keywords; None:
  `unet.DIFFUSERS_BENCHMARK`, 40 classes): an epsilon-MSE AdamW(1e-4)
  step over `train_b` examples in slices of `microbatch`, and a DDIM
  sampler over `sample_b` whose U-Net passes take `microbatch` examples at
  a time (0 = the whole batch), both jitted with `compiler_options=options`
  (None: XLA's defaults)."""
  size = unet.DIFFUSERS_BENCHMARK if size is None else size
  module = train.PureModule(lambda rngs: unet.UNet(3, 3, rngs=rngs, **size))
  abar = jnp.asarray(diffusion.alpha_bars("linear", 1000), jnp.float32)

  def loss(params, batch, rng):
    k_t, k_eps = jax.random.split(rng)
    x0 = batch["x"]
    t = jax.random.randint(k_t, x0.shape[:1], 0, 1000)
    noise = jax.random.normal(k_eps, x0.shape)
    x_t = diffusion.q_sample(x0, t, noise, abar)
    pred = module.apply(params, x_t, t, labels=batch["label"])
    return jnp.mean(jnp.square(noise - pred)), {}

  optimizer = optax.adamw(1e-4)
  init = jax.jit(lambda key: train.create_train_state(key, module.init,
                                                      optimizer))
  state = init(jax.random.key(0))
  params = jax.tree.map(jnp.copy, state.params)  # the step donates state
  rng = np.random.default_rng(0)
  batch = {"x": jnp.asarray(rng.uniform(-1, 1, (train_b, 32, 32, 3)),
                            jnp.float32),
           "label": jnp.asarray(rng.integers(0, 40, train_b))}
  step = train.make_train_step(loss, optimizer,
                               microbatches=_slices(train_b, microbatch),
                               compiler_options=options)

  @functools.partial(jax.jit, compiler_options=options)
  def sample(params, x_t, labels):
    net = module.merge(params)
    # The same examples per U-Net pass as the train step's slices.
    eps = lambda x, t: diffusion.in_slices(
        lambda x, labels: net(x, t, labels=labels), microbatch, x, labels)
    return diffusion.ddim_sample(eps, x_t, abar, sample_steps)

  x_t = jax.random.normal(jax.random.key(1), (sample_b, 32, 32, 3))
  labels = jnp.arange(sample_b) % 40
  # `timing.gflop` counts a scan's body once: count one U-Net pass.
  one_pass = jax.jit(lambda params, x, t: module.apply(params, x, t,
                                                       labels=labels),
                     compiler_options=options)
  return UNetPrograms(
      step=step, state=state, batch=batch, params=params,
      sample=lambda: sample(params, x_t, labels),
      one_pass_gflop=lambda: timing.gflop(
          one_pass, params, x_t, jnp.zeros((sample_b,), jnp.int32)))


def unet_size(attention: bool = True) -> dict:
  """`unet.UNet` keywords of the diffusers-size U-Net, with or without its
  self-attention layers (two per 16x16 level going down, three coming up,
  one in the middle)."""
  size = dict(unet.DIFFUSERS_BENCHMARK)
  if not attention:
    size.update(attention=(False,) * len(size["channels"]),
                mid_attention=False)
  return size


def unet_row(repeats: int, microbatch: int, train_b: int = 64,
             sample_b: int = 64, sample_steps: int = 50,
             sample_repeats: int = 1, attention: bool = True) -> dict:
  """The diffusers-size U-Net (`unet_programs`, compiled as the diffusion
  mechanisms' steps are: `ctfjax.compiler`): train step, and DDIM sampling
  as the edit (`sample_steps` levels, the median of `sample_repeats` calls;
  the rate is scaled to the peer's 50 levels, since each level is one U-Net
  pass). `attention=False` removes its six self-attention layers (the
  model is then "..._no_attention"): the ceiling that any implementation
  of the attention could lift the row to."""
  options = compiler.for_backend(diffusion.Diffusion.COMPILER_OPTIONS)
  p = unet_programs(microbatch, options, train_b, sample_b, sample_steps,
                    size=unet_size(attention))
  train_gflop = timing.gflop(p.step, p.state, p.batch)
  compile_train, train_s = timing.timed_train(p.step, p.state, p.batch,
                                              repeats)
  compile_edit, edit_s = timing.timed(p.sample, sample_repeats)
  # Seconds and work for the peer's 50 levels: one U-Net pass per level.
  scale = 50 / sample_steps
  one_pass = p.one_pass_gflop()
  name = "unet_diffusers_UNet2DModel_64_128_128"
  return _row(name if attention else name + "_no_attention", p.params, train_b,
              sample_b, compile_train, train_s, compile_edit, edit_s * scale,
              microbatch, train_gflop=train_gflop,
              edit_gflop=None if one_pass is None else one_pass * 50,
              sample_steps_timed=sample_steps,
              edit="DDIM sampling, 50 levels")


def summarise(runs: list[dict]) -> dict:
  """Median and range over rounds of one row's measurements under one
  setting (the rows' dicts above), and the median compile seconds."""
  out = {"rounds": len(runs)}
  for what in ("train", "edit"):
    rates = [r[f"{what}_images_per_s"] for r in runs]
    out[f"{what}_images_per_s"] = statistics.median(rates)
    out[f"{what}_images_per_s_range"] = [min(rates), max(rates)]
    out[f"compile_{what}_s"] = statistics.median(
        r[f"compile_{what}_s"] for r in runs)
  return out


def paired_round(peer: dict, ours: dict) -> dict:
  """One round's rates and the ratios of ctfjax's (a row's dict) to the
  peer's (its peer script's JSON, with the same `train_images_per_s` and
  `edit_images_per_s`), measured in the same round. For the U-Net the edit
  is DDIM sampling, per 50 levels."""
  row = {"peer_train": peer["train_images_per_s"],
         "ctfjax_train": ours["train_images_per_s"],
         "peer_edit": peer["edit_images_per_s"],
         "ctfjax_edit": ours["edit_images_per_s"]}
  row["train_ratio"] = row["ctfjax_train"] / row["peer_train"]
  row["edit_ratio"] = row["ctfjax_edit"] / row["peer_edit"]
  return row


def paired(rounds: list[dict]) -> dict:
  """`paired_round` of each round ({"peer": ..., "ctfjax": ...}), and the
  median and range over rounds of every figure (the ratios' median is of
  the per-round ratios, not a ratio of medians)."""
  rows = [paired_round(r["peer"], r["ctfjax"]) for r in rounds]
  summary = {k: {"median": statistics.median(r[k] for r in rows),
                 "range": [min(r[k] for r in rows), max(r[k] for r in rows)]}
             for k in rows[0]}
  return {"rounds": rows, "summary": summary}


def paired_table(paired_out: dict, edit: str = "edit") -> str:
  """`paired`'s output as a Markdown table; `edit` names the
  edit column (the U-Net's: "DDIM-50")."""
  lines = [f"| round | peer train img/s | ctfjax train img/s | ratio "
           f"| peer {edit} img/s | ctfjax {edit} img/s | ratio |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  rows = paired_out["rounds"] + [
      {k: v["median"] for k, v in paired_out["summary"].items()}]
  for i, r in enumerate(rows):
    name = str(i) if i < len(paired_out["rounds"]) else "median"
    lines.append(f"| {name} | {r['peer_train']:.1f} | {r['ctfjax_train']:.1f} "
                 f"| {r['train_ratio']:.2f}x | {r['peer_edit']:.2f} "
                 f"| {r['ctfjax_edit']:.2f} | {r['edit_ratio']:.2f}x |")
  return "\n".join(lines)


def table(summary: list[dict]) -> str:
  """The summary as a Markdown table."""
  lines = ["| model | microbatch | train img/s (range) | edit img/s (range) "
           "| vs peer (train / edit) |", "| --- | --- | --- | --- | --- |"]
  for s in summary:
    rng = lambda w, s=s: "{:.1f} ({:.1f}-{:.1f})".format(
        s[f"{w}_images_per_s"], *s[f"{w}_images_per_s_range"])
    vs = (f"{s['train_vs_peer']:.2f}x / {s['edit_vs_peer']:.2f}x"
          if "train_vs_peer" in s else "-")
    lines.append(f"| {s['row']} | {s['microbatch'] or 'whole'} | "
                 f"{rng('train')} | {rng('edit')} | {vs} |")
  return "\n".join(lines)


ROWS = {"cvae": cvae, "ancm": ancm, "hvae": hvae_row, "gan": gan_row,
        "unet": unet_row}
