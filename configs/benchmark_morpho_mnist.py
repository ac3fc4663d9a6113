r"""MorphoMNIST: our Deep-SCM rows beside Melistas et al.'s published numbers.

    python -m launch.benchmark --config=configs/benchmark_morpho_mnist.py

One main-job run on MorphoMNIST (configs/deepscm.py) with one model per
row of `ROWS`, then tables shaped like Tables 1 (composition), 3
(effectiveness) and 5 (realism and minimality) of Melistas et al.,
"Benchmarking Counterfactual Image Generation" (2024), each model's row
beside the paper's published numbers for the same model, a
ground-truth table (ours only) and both sides' training budgets:
markdown, CSV and JSON in benchmark.out
(`ctfjax.experiment.published`). Reruns reuse the trained models and, when
nothing changed, the report.

Adding a row is one entry of `ROWS`: the model's config overrides (a run
variant, `ctfjax.experiment.job`) and the paper's numbers for it
(`PUBLISHED`; None where the paper has none). A label the paper has no
row for (e.g. "Diffusion") prints "—" on the paper's side.

Budgets. The paper trains each VAE and HVAE about 1M iterations of batch
256 on a GPU. Here, on the CPU with batch 64, each VAE gets `STEPS`
steps, the HVAE `HVAE_STEPS` (a step costs about 6 VAE steps: about the
same seconds) and each GAN row `GAN_STEPS` adversarial steps
(+ `CYCLIC_STEPS` cyclic ones); each row's steps and seconds are in the
table. On top: the evaluators (three anti-causal predictors and CLD's
VAE, 600 steps each) train once per run, and each model's evaluation
takes a few minutes. The issue's ceiling is 15 minutes of training per
model on 2 cores (about 13,000 VAE steps). On an accelerator (15 minutes
per session here): --config.data.source=<MNIST IDX folder>
--config.train.batch_size=256 --config.train.steps=100000
--config.eval.reader_steps=10000.
"""

import ml_collections

from configs import ancm
from configs import deepscm
from ctfjax.train import base_eval_config

# CPU training steps of each VAE row (batch 64): six times the HVAE row's,
# as an HVAE step costs about six VAE steps, so that every row trains for
# about the same CPU seconds.
STEPS = 3000
HVAE_STEPS = 500  # The HVAE's (configs/deepscm_hvae_morpho_mnist.py).
# The HVAE's optimisation at this budget. Melistas et al. warm the rate up
# over 100 steps and clip gradients (A.3); the rate and the KL warm-up are
# ours. A rate of 3e-3 with the warm-up and clipping reconstructs far
# better after a few hundred steps than AdamW 1e-3, and the KL warm-up
# keeps the KL from pruning the latents before the decoder uses them. The
# VAE rows keep the plain AdamW 1e-3.
HVAE_TRAIN = {"learning_rate": 3e-3, "warmup_steps": 100, "grad_clip": 100.0}
HVAE_KL_WARMUP = 300
# Inner width of the residual blocks = width / HVAE_BOTTLENECK. The paper's
# 4 leaves the CPU network's 32x32 blocks 2 channels wide; 2 doubles that,
# and in the same CPU seconds leaves a smaller null edit. Cosine decay, a
# rate of 5e-3 and a shorter KL warm-up did worse.
HVAE_BOTTLENECK = 2
HVAE_CF_STEPS = 300  # Counterfactual fine-tuning steps of "hvae_cf".
GAN_STEPS = 1500  # Adversarial steps of both GAN rows.
CYCLIC_STEPS = 1500  # Cyclic fine-tuning steps of "GAN fine-tuned".
# As configs/deepscm_gan_morpho_mnist.py: Adam 5e-4 (paper: 1e-4), then the
# cyclic stage at 1e-3.
GAN = {"finetune_steps": 0, "learning_rate": 5e-4}

# Melistas et al.'s published numbers on MorphoMNIST, by the paper's row
# label.
# composition (Table 1): (1 cycle, 10 cycles) of l1 in image space, l1 of
# embeddings and LPIPS. effectiveness (Table 3): (do(t), do(i), do(y)) of
# thickness MAE, intensity MAE and digit accuracy. realism (Table 5): FID.
# minimality (Table 5): (CLD, P(S_x* <= div), P(S_x >= div)). budget: the
# paper's training (Appendix A). Standard deviations are left out.
PUBLISHED = {
    "VAE (fixed sigma)": {
        "composition": {"l1": (4.244, 9.855),
                        "embedding_l1": (0.095, 0.158),
                        "lpips": (0.039, 0.098)},
        "effectiveness": {"thickness_mae": (0.125, 0.346, 0.138),
                          "intensity_mae": (9.382, 20.642, 11.279),
                          "digit_acc": (0.988, 0.989, 0.933)},
        "realism": {"fid": 17.096},
        "minimality": (0.276, 0.065, 0.843),
        "budget": "about 1M iterations of batch 256 on a GPU (A.2)",
    },
    "VAE (learned sigma)": {
        "composition": {"l1": (2.600, 7.698),
                        "embedding_l1": (0.064, 0.135),
                        "lpips": (0.026, 0.075)},
        "effectiveness": {"thickness_mae": (0.109, 0.333, 0.139),
                          "intensity_mae": (3.149, 5.326, 4.64),
                          "digit_acc": (0.989, 0.988, 0.775)},
        "realism": {"fid": 10.124},
        "minimality": (0.268, 0.055, 0.839),
        "budget": "about 1M iterations of batch 256 on a GPU (A.2)",
    },
    "HVAE": {
        "composition": {"l1": (0.438, 1.550),
                        "embedding_l1": (0.009, 0.038),
                        "lpips": (0.006, 0.024)},
        "effectiveness": {"thickness_mae": (0.086, 0.224, 0.117),
                          "intensity_mae": (1.991, 3.517, 2.098),
                          "digit_acc": (0.985, 0.935, 0.972)},
        "realism": {"fid": 5.362},
        "minimality": (0.272, 0.112, 0.736),
        "budget": "about 1M iterations of batch 256 on a GPU (A.3)",
    },
    "GAN": {
        "composition": {"l1": (16.779, 16.780),
                        "embedding_l1": (0.193, 0.193),
                        "lpips": (0.154, 0.154)},
        "effectiveness": {"thickness_mae": (0.227, 0.631, 0.214),
                          "intensity_mae": (6.680, 9.795, 6.632),
                          "digit_acc": (0.810, 0.811, 0.813)},
        "realism": {"fid": 72.766},
        "minimality": (0.390, 0.339, 0.570),
        "budget": "batch 128 until early stopping (patience 10 epochs) on "
                  "a GPU; iterations not stated (A.4)",
    },
    "GAN fine-tuned": {
        "composition": {"l1": (3.807, 11.697),
                        "embedding_l1": (0.089, 0.272),
                        "lpips": (0.049, 0.184)},
        "effectiveness": {"thickness_mae": (0.228, 0.680, 0.393),
                          "intensity_mae": (9.436, 15.137, 12.388),
                          "digit_acc": (0.961, 0.966, 0.451)},
        "realism": {"fid": 35.568},
        "minimality": (0.286, 0.119, 0.764),
        "budget": "GAN training, then cyclic fine-tuning, batch 128 until "
                  "early stopping on a GPU; iterations not stated (A.4)",
    },
}


def row(label: str, overrides: dict, diagram: str = "ancm_vae") -> dict:
  """One benchmark row: a run variant and the paper's numbers for `label`
  (all None when the paper has no such row)."""
  published = dict(PUBLISHED.get(label, {}))
  budget = published.pop("budget", None)
  return {"label": label, "diagram": diagram, "overrides": overrides,
          "published": published or None, "budget": budget}


# Variant name -> row. Each trains in <workdir>/models/<name>/.
ROWS = {
    "vae_fixed": row("VAE (fixed sigma)",
                     {"model": {"image": {"vae": {"learned_sigma": False}}}}),
    "vae_learned": row("VAE (learned sigma)",
                       {"model": {"image": {"vae": {"learned_sigma": True}}}}),
    # Fixed sigma: at this budget the learned-sigma HVAE explains the digits
    # by variance first and reconstructs near-black images. About 6x a VAE
    # step on 2 cores, hence fewer steps. `HVAE_TRAIN`, `HVAE_BOTTLENECK`:
    # see there.
    "hvae": row("HVAE", {"model": {"image": {
        "kind": "hvae", "hvae": {"learned_sigma": False,
                                 "kl_warmup_steps": HVAE_KL_WARMUP,
                                 "bottleneck": HVAE_BOTTLENECK}}},
                         "train": {"steps": HVAE_STEPS, **HVAE_TRAIN}}),
    # The same HVAE (same settings and seed), then `HVAE_CF_STEPS` steps of
    # Melistas et al.'s counterfactual fine-tuning (A.3; the paper tunes its
    # CelebA HVAE only, so it has no such MorphoMNIST row).
    "hvae_cf": row("HVAE + cf fine-tuning", {"model": {"image": {
        "kind": "hvae", "hvae": {"learned_sigma": False,
                                 "kl_warmup_steps": HVAE_KL_WARMUP,
                                 "bottleneck": HVAE_BOTTLENECK,
                                 "cf_steps": HVAE_CF_STEPS}}},
                   "train": {"steps": HVAE_STEPS, **HVAE_TRAIN}}),
    # The same seed and settings: "gan" trains what "gan_finetuned" then
    # fine-tunes.
    "gan": row("GAN", {"model": {"image": {"kind": "gan", "gan": GAN}},
                       "train": {"steps": GAN_STEPS}}),
    "gan_finetuned": row("GAN fine-tuned", {
        "model": {"image": {"kind": "gan", "gan": {
            **GAN, "finetune_steps": CYCLIC_STEPS,
            "finetune_learning_rate": 1e-3}}},
        "train": {"steps": GAN_STEPS}}),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = deepscm.get_config()
  config.train.steps = STEPS
  config.train.log_every = 100
  config.train.eval_every = 0  # In-training eval at the end only.
  config.ckpt.every = 500
  config.eval.num_examples = 250
  config.eval.update(base_eval_config())
  with_rows(config, ROWS, "Melistas et al. 2024 (MorphoMNIST, GPU)",
            "runs/benchmark_morpho_mnist")
  return ancm.sized(config, arg)


def with_rows(config: ml_collections.ConfigDict, rows: dict[str, dict],
              reference: str, workdir: str) -> None:
  """Sets the `run` (one variant per row) and `benchmark` sections of a
  published-table benchmark (`ctfjax.experiment.published`): `rows` as
  `row()` writes them, the paper's numbers labelled `reference`, and the
  one run's `workdir`, which also holds the tables."""
  config.run = ml_collections.ConfigDict()
  config.run.variants = ml_collections.ConfigDict()
  for name, spec in rows.items():
    config.run.variants[name] = ml_collections.ConfigDict(
        {"diagram": spec["diagram"], "overrides": spec["overrides"]})
  config.run.models = tuple(rows)

  config.benchmark = b = ml_collections.ConfigDict()
  b.rows = ml_collections.ConfigDict()
  for name, spec in rows.items():
    b.rows[name] = ml_collections.ConfigDict(
        {"label": spec["label"], "published": spec["published"],
         "budget": spec["budget"]})
  b.reference = reference
  b.workdir = workdir  # The run's workdir (models, report).
  b.out = workdir  # Folder of benchmark.md / .csv / .json.
  # Take the workdir's report.json as it is when it matches this config;
  # False re-evaluates.
  b.reuse_reports = True
