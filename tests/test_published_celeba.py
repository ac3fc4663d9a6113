"""CelebA beside Melistas et al. (2024): configs/benchmark_celeba.py and the
CelebA tables of `ctfjax.experiment.published`, built from a hand-made
report shaped like the attribute evaluator's (no data, no training)."""

import pathlib

import pytest

from ctfjax import train
from ctfjax.errors import UserError
from ctfjax.experiment import published
from configs import benchmark_celeba

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAMILIES = ("do(Smiling)", "do(Eyeglasses)")
NAMES = ("vae_fixed", "vae_learned", "hvae_cf", "gan_finetuned", "cgn",
         "dear")


def load(tmp_path, *overrides):
  """The benchmark config; `data.source` names a folder, which nothing
  here reads (the config checks only need the dataset entry)."""
  return train.load_config(ROOT / "configs" / "benchmark_celeba.py",
                           [f"data.source={tmp_path}", *overrides])


def entry(name, k):
  """A report entry of the attribute evaluator's shape; model k's numbers
  differ from every other model's and from cell to cell."""
  return {
      "dataset": "celeba/simple", "model": name,
      "graph": "Smiling; Eyeglasses",
      "train": {"steps": 100 + k, "seconds": 60.0 + k},
      # {family: {attribute: F1}}: 0.k1 .. 0.k4 in the paper's column
      # order (do(s), do(e) for Smiling, then for Eyeglasses).
      "effectiveness_f1": {"do(Smiling)": {"Smiling": 0.51 + k / 10,
                                        "Eyeglasses": 0.53 + k / 10},
                        "do(Eyeglasses)": {"Smiling": 0.52 + k / 10,
                                           "Eyeglasses": 0.54 + k / 10}},
      "ctf_consistency": [],
      "ground_truth_error": {f: None for f in FAMILIES},
      "composition": {"l1_1": 50.0 + k, "l1_10": 60.0 + k,
                      "embedding_l1_1": 0.1 + k, "embedding_l1_10": 0.2 + k,
                      "embedding_network": "attribute_predictors", "n": 8},
      "realism": {"metric": "FD[attribute_predictors]",
                  "per_intervention": {"do(Smiling)": 2.0 + k,
                                       "do(Eyeglasses)": 4.0 + k},
                  "real_test": 0.5},
      "realism_latent": {"metric": "FD[latent_vae]",
                         "per_intervention": {f: 7.0 for f in FAMILIES}},
      "minimality": {"metric": "CLD[latent_vae]", "per_intervention": {
          "do(Smiling)": {"cld": 0.2, "p1": 0.1, "p2": 0.6, "n": 8},
          "do(Eyeglasses)": {"cld": 0.4, "p1": 0.3, "p2": 0.8, "n": 8}}},
  }


def build(config, perceptual=None, usable=None):
  """(report, tables, benchmark.md) of `config`'s rows on hand-made
  entries; `perceptual` adds composition keys to the first model,
  `usable` ({model: section}) the bars' verdicts."""
  cfg = published.run_config(config)
  report = {"dataset": "celeba/simple", "graph": "Smiling; Eyeglasses",
            "models": [entry(n, k) for k, n in enumerate(cfg.run.models)],
            "notes": ["hand-made report"]}
  report["models"][0]["composition"].update(perceptual or {})
  for e in report["models"]:
    if e["model"] in (usable or {}):
      e["usable"] = usable[e["model"]]
  spec = published.paper(cfg)
  entries = {e["model"]: e for e in report["models"]}
  rows = {n: config.benchmark.rows[n] for n in cfg.run.models}
  built = published.tables_of(spec, rows, entries, cfg)
  return report, built, published.markdown(
      spec, report, built, "the paper", spec.command,
      published.flagged(rows, entries))


def cells(built, table, label, source):
  """The value cells of one row of a built table."""
  header, rows = built[table]
  (row,) = [r for r in rows if r[:2] == [label, source]]
  return row[2:]


def test_tables_place_the_papers_numbers_and_ours(tmp_path):
  config = load(tmp_path)
  assert published._check(config) is published.CELEBA
  report, built, md = build(config)
  # Tables 2, 4, the CelebA half of 5 and the budgets; no ground truth.
  assert list(built) == ["composition", "effectiveness", "realism",
                         "budget"]

  # Table 2 (seed text): l1 image, VGG-16 l1, LPIPS; 1 and 10 cycles.
  header, _ = built["composition"]
  assert header[2:] == [
      "l1 image 1 cycle", "l1 image 10 cycles",
      "l1 VGG-16 embeddings 1 cycle", "l1 VGG-16 embeddings 10 cycles",
      "LPIPS 1 cycle", "LPIPS 10 cycles",
      "l1 predictor embeddings 1 cycle", "l1 predictor embeddings 10 cycles"]
  assert cells(built, "composition", "VAE (fixed sigma)", "seed") == [
      126.8, 126.4, 0.536, 0.553, 0.332, 0.462, None, None]
  assert cells(built, "composition", "HVAE (cf)", "seed") == [
      129.4, 138.8, 0.498, 0.525, 0.063, 0.200, None, None]
  # Ours: pixel L1 and our predictors' embedding; no VGG-16 / LPIPS.
  assert cells(built, "composition", "GAN fine-tuned", "ours") == [
      53.0, 63.0, None, None, None, None, 3.1, 3.2]

  # Table 4 (seed text): F1 of smiling, then of eyeglasses, under do(s)
  # and do(e); ours the accuracy in the same cells, the column says so.
  header, _ = built["effectiveness"]
  assert header[2:] == ["Smiling F1 do(s)", "Smiling F1 do(e)",
                        "Eyeglasses F1 do(s)", "Eyeglasses F1 do(e)"]
  assert cells(built, "effectiveness", "VAE (learned sigma)", "seed") == [
      0.897, 0.987, 0.938, 0.810]
  assert cells(built, "effectiveness", "GAN fine-tuned", "seed") == [
      0.819, 0.873, 0.957, 0.891]
  assert cells(built, "effectiveness", "VAE (learned sigma)", "ours") == \
      pytest.approx([0.61, 0.62, 0.63, 0.64])
  # Without the generator there is no readers' floor row.
  assert len(built["effectiveness"][1]) == 2 * len(NAMES)

  # Table 5, CelebA (seed text): FID, then CLD, P(S_x* <= div),
  # P(S_x >= div); ours averaged over the two families.
  assert cells(built, "realism", "HVAE (cf)", "seed") == [
      22.047, 0.295, 0.003, 0.996, None, None]
  assert cells(built, "realism", "VAE (fixed sigma)", "seed") == [
      77.307, 0.310, 0.072, 0.925, None, None]
  assert cells(built, "realism", "HVAE (cf)", "ours") == pytest.approx(
      [5.0, 0.3, 0.2, 0.7, 0.5, 7.0])

  # The paper's budgets (Appendix A) and ours.
  assert cells(built, "budget", "HVAE (cf)", "seed") == [
      "2M iterations of batch 32, then 2K of counterfactual fine-tuning, "
      "on a GPU (A.3)"]
  assert cells(built, "budget", "VAE (fixed sigma)", "ours") == [
      "100 steps of batch 64 on CPU, 60 s"]

  # The markdown: "—" where a side has no number, and why VGG-16 / LPIPS
  # are missing.
  for title in ("Table 2: Composition", "Table 4: Effectiveness",
                "Table 5: Realism and minimality (CelebA)",
                "Training budgets"):
    assert f"## {title}" in md
  assert "Ground truth" not in md
  assert ("| VAE (fixed sigma) | ours | 50.000 | 60.000 | — | — | — | — "
          "| 0.100 | 0.200 |") in md
  assert ("| VAE (fixed sigma) | seed | 126.800 | 126.400 | 0.536 | 0.553 "
          "| 0.332 | 0.462 | — | — |") in md
  assert ("VGG-16 / LPIPS not computed: no weights given "
          "(eval.vgg16_weights, eval.lpips_weights)") in md
  assert "configs/benchmark_celeba.py --config.data.source=DIR" in md
  # Every cell in the CSV, the paper's on its own rows.
  assert {"table": "effectiveness", "model": "HVAE (cf)", "source": "seed",
          "column": "Eyeglasses F1 do(e)",
          "value": 0.981} in published.long_rows(built)


def test_perceptual_cells_are_ours_when_the_report_has_them(tmp_path):
  perceptual = {"vgg16_l1_1": 0.41, "vgg16_l1_10": 0.42, "lpips_1": 0.31,
                "lpips_10": 0.32}
  _, built, md = build(load(tmp_path), perceptual)
  assert cells(built, "composition", "VAE (fixed sigma)", "ours") == [
      50.0, 60.0, 0.41, 0.42, 0.31, 0.32, 0.1, 0.2]
  # Models without them keep "—"; the note goes, as the numbers are there.
  assert cells(built, "composition", "VAE (learned sigma)", "ours")[2:6] \
      == [None] * 4
  assert "not computed" not in md
  assert "| VAE (fixed sigma) | ours | 50.000 | 60.000 | 0.410 |" in md


def test_models_that_failed_their_bars_are_flagged(tmp_path):
  usable = {"vae_learned": {"ok": False,
                            "reasons": ["reader agreement 0.41 < 0.6"]},
            "hvae_cf": {"ok": True, "reasons": []}}
  _, built, md = build(load(tmp_path), usable=usable)
  # Our row of the failed model, in every table; not the paper's row, not
  # a model that passed.
  assert md.count("| VAE (learned sigma) † | ours |") == 4
  assert "| VAE (learned sigma) | seed |" in md
  assert "| HVAE (cf) | ours |" in md and "HVAE (cf) †" not in md
  assert ("† VAE (learned sigma): training far from converged, do not "
          "read its scores: reader agreement 0.41 < 0.6.") in md
  # The CSV and JSON keep the plain labels.
  assert {r["model"] for r in published.long_rows(built)} == {
      "VAE (fixed sigma)", "VAE (learned sigma)", "HVAE (cf)",
      "GAN fine-tuned", "CGN", "DEAR"}


def test_published_numbers_follow_the_seed_text():
  # Every CelebA row of Tables 2, 4 and 5, standard deviations left out.
  p = benchmark_celeba.PUBLISHED
  assert set(p) == {"VAE (fixed sigma)", "VAE (learned sigma)", "HVAE",
                    "HVAE (cf)", "GAN", "GAN fine-tuned"}
  assert p["GAN"]["composition"] == {"l1": (118.9, 126.1),
                                     "embedding_l1": (0.548, 0.660),
                                     "lpips": (0.403, 0.506)}
  assert p["VAE (fixed sigma)"]["effectiveness"] == {
      "smiling_f1": (0.981, 0.996), "eyeglasses_f1": (0.929, 0.771)}
  # The plain HVAE is in Table 5 only (footnote 10).
  assert p["HVAE"]["effectiveness"] is None
  assert p["HVAE"]["realism"] == {"fid": 12.667}
  assert p["HVAE"]["minimality"] == (0.295, 0.0001, 0.999)
  assert p["GAN fine-tuned"]["minimality"] == (0.304, 0.046, 0.953)
  # The rows are run variants with the paper's labels (CGN and DEAR, not
  # in the paper, with no published numbers).
  rows = benchmark_celeba.ROWS
  assert tuple(rows) == NAMES
  assert [r["label"] for r in rows.values()] == [
      "VAE (fixed sigma)", "VAE (learned sigma)", "HVAE (cf)",
      "GAN fine-tuned", "CGN", "DEAR"]
  assert rows["cgn"]["published"] is None and rows["dear"]["budget"] is None
  config = benchmark_celeba.get_config()
  assert config.data.name == "celeba/simple" and config.data.source == ""
  assert set(config.run.variants) == set(config.benchmark.rows) == set(
      NAMES)


@pytest.mark.parametrize("change, message", [
    # A MorphoMNIST key in a CelebA row would print in no cell.
    (lambda c: c.benchmark.rows.vae_fixed.published.effectiveness.update(
        {"digit_acc": (0.9, 0.9)}), "unknown key 'digit_acc'"),
    # Three families' numbers where CelebA has two.
    (lambda c: c.benchmark.rows.hvae_cf.published.effectiveness.update(
        {"smiling_f1": (0.9, 0.9, 0.9)}), "must list 2 numbers"),
    (lambda c: c.benchmark.rows.gan_finetuned.published.update(
        {"minimality": (0.3, 0.1)}), "must list 3 numbers"),
    (lambda c: c.benchmark.rows.vae_learned.update({"speed": 1.0}),
     "unknown key 'speed'"),
    (lambda c: setattr(c.run, "models", ("vae_fixed",)),
     "must list the benchmark rows"),
    (lambda c: setattr(c.data, "name", "colored_mnist_bars/backdoor"),
     "no published tables for dataset"),
], ids=["morpho_key", "three_families", "two_minimality", "row_key",
        "models", "dataset"])
def test_config_check_rejects_a_bad_row(tmp_path, change, message):
  config = load(tmp_path)
  change(config)
  with pytest.raises(UserError, match=message):
    published.benchmark(config)

