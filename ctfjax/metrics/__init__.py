"""Metrics of counterfactual image edits (docs/evaluation.md, "Metrics").

Every metric is a pure function of arrays; models enter as callables
(`edit_fn`, `embed_fn`, `feature_fn`, predictors' outputs), so nothing here
depends on model code.

* composition / reversibility: pixel and embedding L1 after m edit cycles;
* effectiveness: accuracy, macro-F1 or MAE of parents read from the edits;
* realism: Frechet distance on a named feature network (`fid`);
* perceptual: VGG-16 features, Melistas et al.'s VGG embedding distance
  (`vgg_l1`) and LPIPS (`lpips`), from weight files the user names;
* minimality: the Counterfactual Latent Divergence (`cld`);
* ctf-consistency: feature counterfactual estimates against optimal
  bounds, decided per row by exact tests with the family-wise error rate of
  the whole table controlled (weighted Holm; `decide`);
* ground-truth error: against the true counterfactuals of synthetic data.
"""

from ctfjax.metrics.composition import composition, cycle_summary
from ctfjax.metrics.composition import reversibility
from ctfjax.metrics.consistency import ALPHA, DECISIONS, POWER
from ctfjax.metrics.consistency import PairQuery, counterfactual_value
from ctfjax.metrics.consistency import agreement, bounds_p_value
from ctfjax.metrics.consistency import ctf_consistency, decide, detectable
from ctfjax.metrics.consistency import estimate, images_p_value
from ctfjax.metrics.consistency import protocol_interventions
from ctfjax.metrics.consistency import protocol_queries, structural_bounds
from ctfjax.metrics.consistency import wilson_interval
from ctfjax.metrics.distances import embedding_l1, pixel_l1
from ctfjax.metrics.effectiveness import classification_scores
from ctfjax.metrics.effectiveness import confusion_matrix, effectiveness
from ctfjax.metrics.effectiveness import regression_scores
from ctfjax.metrics.errors import MetricError
from ctfjax.metrics.ground_truth import ground_truth_error
from ctfjax.metrics.minimality import cld, gaussian_kl
from ctfjax.metrics.perceptual import VGGFeatures, load_lpips_weights
from ctfjax.metrics.perceptual import load_vgg16, lpips, vgg16_features
from ctfjax.metrics.perceptual import vgg_l1
from ctfjax.metrics.realism import INCEPTION, extract_features, fid
from ctfjax.metrics.realism import frechet_distance, gaussian_stats
