"""Realism: the Frechet distance between real and generated feature sets.

    FD = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))

over features from a pluggable network (Heusel et al. 2017). It is "FID" only
when the features come from ImageNet Inception v3; on any other network (e.g.
this project's own classifiers) the number is not comparable with published
FIDs, and the result says so: `fid` carries the network's name into its
result.

Numerics: S_r S_g is not symmetric, so its square root is not taken directly.
With A = S_r^(1/2) (symmetric PSD), S_r S_g = A (A S_g A) A^-1 is similar to
the symmetric PSD matrix A S_g A, so Tr((S_r S_g)^(1/2)) is the sum of the
square roots of the eigenvalues of A S_g A. Both steps use `eigh` in float64
with tiny negative eigenvalues (rounding) clipped to zero, which stays stable
for singular covariances (fewer samples than feature dimensions).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ctfjax.metrics.errors import MetricError

# The name that makes a Frechet distance an FID in the usual sense.
INCEPTION = "inception_v3"


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean [D] and unbiased covariance [D, D] (float64) of features [N, D]."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2:
    raise MetricError(f"features must be [N, D], got shape {f.shape}")
  if f.shape[0] < 2:
    raise MetricError(f"a covariance needs at least 2 samples, got "
                      f"{f.shape[0]}")
  if not np.all(np.isfinite(f)):
    raise MetricError("features contain NaN or infinity")
  return f.mean(axis=0), np.cov(f, rowvar=False, ddof=1).reshape(
      f.shape[1], f.shape[1])


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
  """Frechet distance between N(mu1, cov1) and N(mu2, cov2).

  Args:
    mu1: mean [D].
    cov1: covariance [D, D] (symmetric PSD).
    mu2: mean [D].
    cov2: covariance [D, D].

  Returns:
    The squared 2-Wasserstein distance (>= 0; rounding below zero is
    clipped).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = _sym(cov1), _sym(cov2)
  d = mu1.shape[0] if mu1.ndim == 1 else -1
  if (mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d)
      or cov2.shape != (d, d)):
    raise MetricError(f"Gaussian statistics do not match: means "
                      f"{mu1.shape}, {mu2.shape}, covariances {cov1.shape}, "
                      f"{cov2.shape}")
  if not all(np.all(np.isfinite(a)) for a in (mu1, mu2, cov1, cov2)):
    raise MetricError("Gaussian statistics contain NaN or infinity")
  root1 = _psd_sqrt(cov1)
  inner = np.linalg.eigvalsh(_sym(root1 @ cov2 @ root1))
  tr_sqrt = np.sum(np.sqrt(np.clip(inner, 0.0, None)))
  diff = mu1 - mu2
  value = diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt
  return float(max(value, 0.0))


def extract_features(feature_fn: Callable[[object], object], images,
                     batch_size: int = 256) -> np.ndarray:
  """Runs `feature_fn(images[i:i + batch_size]) -> [B, D]` over all images.

  Returns:
    [N, D] float64 features.
  """
  n = np.shape(images)[0]
  if n == 0:
    raise MetricError("no images to extract features from")
  chunks = [np.asarray(feature_fn(images[i:i + batch_size]), np.float64)
            for i in range(0, n, int(batch_size))]
  return np.concatenate([c.reshape(c.shape[0], -1) for c in chunks])


def fid(real_images, generated_images, feature_fn: Callable[[object], object],
        *, feature_network: str, batch_size: int = 256) -> dict:
  """Frechet distance of generated to real images on a named feature network.

  Args:
    real_images: [N_r, ...] real images (Melistas et al.: the training set).
    generated_images: [N_g, ...] generated images (the test counterfactuals).
    feature_fn: images [B, ...] -> features [B, D].
    feature_network: the name of the network behind `feature_fn`, recorded
      in the result; only `INCEPTION` ("inception_v3") makes it an FID.
    batch_size: images per `feature_fn` call.

  Returns:
    {"value": float, "metric": "FID" or "FD[<network>]", "feature_network":
    str, "inception": bool, "n_real": int, "n_generated": int, "note": str}.
  """
  if not feature_network:
    raise MetricError("name the feature network behind feature_fn")
  real = gaussian_stats(extract_features(feature_fn, real_images, batch_size))
  gen = extract_features(feature_fn, generated_images, batch_size)
  value = frechet_distance(*real, *gaussian_stats(gen))
  inception = feature_network == INCEPTION
  return {
      "value": value,
      "metric": "FID" if inception else f"FD[{feature_network}]",
      "feature_network": feature_network,
      "inception": inception,
      "n_real": int(np.shape(real_images)[0]),
      "n_generated": int(gen.shape[0]),
      "note": ("Frechet Inception Distance" if inception else
               f"Frechet distance on {feature_network} features; not "
               "Inception-FID, not comparable with published FIDs"),
  }


def _sym(m) -> np.ndarray:
  m = np.asarray(m, np.float64)
  return 0.5 * (m + m.T) if m.ndim == 2 else m


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh(m)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
