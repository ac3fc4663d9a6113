"""VGG-16 features, the VGG embedding distance and LPIPS against numpy.

The weights are random (seeded), narrow and saved with torchvision's and
LPIPS's key names and PyTorch layouts; the reference below reads them in
those layouts (NCHW, OIHW, fc6 on torch's (C, 7, 7) flattening) and
computes in float64 with an explicit im2col, max pooling by reshape,
torch's adaptive average pooling by its index formula and the LPIPS v0.1
formula written out, sharing no code with ctfjax.
"""

import jax
import ml_collections
import numpy as np
import pytest

from ctfjax import metrics
from ctfjax.errors import UserError
from ctfjax.evaluate import core
from ctfjax.metrics import perceptual

# Narrow VGG-16: channels per block and the two hidden widths (published:
# 64, 128, 256, 512, 512 and 4096, 4096). fc6 and fc7 differ so a swapped
# transpose cannot pass.
WIDTHS = (4, 6, 8, 8, 8)
HIDDEN = (16, 12)
CONVS = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
# Not multiples of 32: the 4th and 5th pools drop a row / column, and
# pool5 is 2 x 1 before the adaptive pool to 7 x 7.
H, W = 72, 56


def _vgg_state(seed=0) -> dict[str, np.ndarray]:
  """Random weights under torchvision's keys and layouts (He-scaled, so
  activations stay O(1) through 13 layers)."""
  rng = np.random.default_rng(seed)
  state, c_in = {}, 3
  for block, c_out in zip(CONVS, WIDTHS):
    for i in block:
      state[f"features.{i}.weight"] = rng.normal(
          0, np.sqrt(2 / (9 * c_in)), (c_out, c_in, 3, 3))
      state[f"features.{i}.bias"] = rng.normal(0, 0.1, c_out)
      c_in = c_out
  width = 49 * c_in
  for i, out in zip((0, 3, 6), HIDDEN + (5,)):  # fc8 (6) is ignored
    state[f"classifier.{i}.weight"] = rng.normal(0, np.sqrt(2 / width),
                                                 (out, width))
    state[f"classifier.{i}.bias"] = rng.normal(0, 0.1, out)
    width = out
  return {k: v.astype(np.float32) for k, v in state.items()}


def _lin_state(seed=1) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  # The published weights are non-negative.
  return {f"lin{k}.model.1.weight":
          rng.uniform(0, 1, (1, c, 1, 1)).astype(np.float32)
          for k, c in enumerate(WIDTHS)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  folder = tmp_path_factory.mktemp("weights")
  vgg, lin = _vgg_state(), _lin_state()
  np.savez(folder / "vgg16.npz", **vgg)
  np.savez(folder / "lpips_vgg.npz", **lin)
  return {"vgg": vgg, "lin": lin, "folder": folder,
          "vgg_params": metrics.load_vgg16(folder / "vgg16.npz"),
          "lin_params": metrics.load_lpips_weights(
              folder / "lpips_vgg.npz")}


def _images(seed, channels=3):  # [2, H, W, C] uint8
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (2, H, W, channels), dtype=np.uint8)


# The reference (NCHW, float64) ---------------------------------------------


def _conv_relu(x, w, b):  # [N, C, H, W], [O, C, 3, 3] -> [N, O, H, W]
  n, c, h, wd = x.shape
  p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  cols = np.stack([p[:, :, i:i + h, j:j + wd]
                   for i in range(3) for j in range(3)], axis=2)
  y = np.einsum("ncshw,ocs->nohw", cols, w.reshape(w.shape[0], c, 9))
  return np.maximum(y + b[None, :, None, None], 0.0)


def _max_pool(x):  # torch MaxPool2d(2, 2): odd rows / columns dropped
  n, c, h, w = x.shape
  x = x[:, :, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _adaptive_avg_pool(x, out=7):  # torch AdaptiveAvgPool2d((out, out))
  n, c, h, w = x.shape
  y = np.zeros((n, c, out, out))
  for i in range(out):
    r0, r1 = int(np.floor(i * h / out)), int(np.ceil((i + 1) * h / out))
    for j in range(out):
      c0, c1 = int(np.floor(j * w / out)), int(np.ceil((j + 1) * w / out))
      y[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
  return y


def _ref_taps(state, x):  # x [N, 3, H, W] already normalised
  taps = []
  for k, block in enumerate(CONVS):
    if k:
      x = _max_pool(x)
    for i in block:
      x = _conv_relu(x, state[f"features.{i}.weight"].astype(np.float64),
                     state[f"features.{i}.bias"].astype(np.float64))
    taps.append(x)
  return taps


def _ref_embedding(state, relu5_3):
  x = _adaptive_avg_pool(_max_pool(relu5_3)).reshape(relu5_3.shape[0], -1)
  for i in (0, 3):
    x = np.maximum(x @ state[f"classifier.{i}.weight"].T.astype(np.float64)
                   + state[f"classifier.{i}.bias"], 0.0)
  return x


def _unit_nchw(images, lo, hi):  # -> [N, 3, H, W] float64 on [0, 1]
  x = (np.clip(np.asarray(images, np.float64), lo, hi) - lo) / (hi - lo)
  x = np.broadcast_to(x, x.shape[:3] + (3,))
  return x.transpose(0, 3, 1, 2)


def _ref_features(state, images, lo=0.0, hi=255.0):
  mean = np.array([0.485, 0.456, 0.406])[None, :, None, None]
  std = np.array([0.229, 0.224, 0.225])[None, :, None, None]
  taps = _ref_taps(state, (_unit_nchw(images, lo, hi) - mean) / std)
  return taps, _ref_embedding(state, taps[-1])


def _ref_lpips(state, lin, x, y):
  shift = np.array([-0.030, -0.088, -0.188])[None, :, None, None]
  scale = np.array([0.458, 0.448, 0.450])[None, :, None, None]
  feats = [_ref_taps(state, (2 * _unit_nchw(im, 0, 255) - 1 - shift) / scale)
           for im in (x, y)]
  total = 0.0
  for k, (a, b) in enumerate(zip(*feats)):
    a = a / (np.sqrt((a ** 2).sum(axis=1, keepdims=True)) + 1e-10)
    b = b / (np.sqrt((b ** 2).sum(axis=1, keepdims=True)) + 1e-10)
    w = lin[f"lin{k}.model.1.weight"].astype(np.float64)  # [1, C, 1, 1]
    total = total + (w * (a - b) ** 2).sum(axis=1).mean(axis=(1, 2))
  return total


def _assert_close(got, want, rtol=1e-4):
  """Max error relative to the reference's largest magnitude."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape
  assert np.max(np.abs(want)) > 0
  err = np.max(np.abs(got - want)) / np.max(np.abs(want))
  assert err < rtol, err


# Features and distances -----------------------------------------------------


@pytest.mark.parametrize("case", ["uint8", "minus1_1_grey", "unit_clipped"])
def test_features_match_reference(files, case):
  """Taps and embedding for 8-bit RGB, [-1, 1] grey and [0, 1] RGB with
  values outside the range (clipped)."""
  images = _images(0, channels=1 if case == "minus1_1_grey" else 3)
  lo, hi = {"uint8": (0.0, 255.0), "minus1_1_grey": (-1.0, 1.0),
            "unit_clipped": (0.0, 1.0)}[case]
  if case != "uint8":
    images = images / 255.0 * (hi - lo) + lo
  if case == "unit_clipped":
    images = images * 1.4 - 0.2
  got = metrics.vgg16_features(files["vgg_params"], images,
                               pixel_range=(lo, hi))
  taps, embedding = _ref_features(files["vgg"], images, lo, hi)
  assert len(got.taps) == 5
  for g, want in zip(got.taps, taps):
    _assert_close(g, want.transpose(0, 2, 3, 1))
  assert got.embedding.shape == (2, HIDDEN[-1])
  _assert_close(got.embedding, embedding)


def test_vgg_l1_matches_reference(files):
  x, y = _images(0), _images(1)
  got = metrics.vgg_l1(files["vgg_params"], x, y)
  want = np.abs(_ref_features(files["vgg"], x)[1]
                - _ref_features(files["vgg"], y)[1]).mean(axis=1)
  assert got.shape == (2,)
  _assert_close(got, want)


def test_lpips_matches_reference_and_jits(files):
  x, y = _images(0), _images(1)
  want = _ref_lpips(files["vgg"], files["lin"], x, y)
  got = metrics.lpips(files["vgg_params"], files["lin_params"], x, y)
  assert got.shape == (2,)
  np.testing.assert_allclose(got, want, rtol=1e-4)
  jitted = jax.jit(metrics.lpips)(files["vgg_params"], files["lin_params"],
                                  x, y)
  np.testing.assert_allclose(jitted, got, rtol=1e-6)


def test_lpips_is_zero_on_identical_images_and_symmetric(files):
  x, y = _images(0), _images(1)
  args = (files["vgg_params"], files["lin_params"])
  np.testing.assert_allclose(metrics.lpips(*args, x, x.copy()), 0.0,
                             atol=1e-7)
  xy, yx = metrics.lpips(*args, x, y), metrics.lpips(*args, y, x)
  assert np.all(np.asarray(xy) > 1e-3)
  np.testing.assert_allclose(xy, yx, rtol=1e-6)


def test_unusable_inputs_are_metric_errors(files):
  args = (files["vgg_params"], files["lin_params"])
  small = np.zeros((2, 16, 64, 3), np.uint8)
  with pytest.raises(metrics.MetricError, match="H, W >= 32"):
    metrics.vgg16_features(files["vgg_params"], small)
  with pytest.raises(metrics.MetricError, match="different shapes"):
    metrics.lpips(*args, _images(0), _images(1)[:1])
  with pytest.raises(metrics.MetricError, match="hi > lo"):
    metrics.vgg_l1(files["vgg_params"], _images(0), _images(1),
                   pixel_range=(1.0, 1.0))
  narrow = files["lin_params"][:4] + (files["lin_params"][4][:3],)
  with pytest.raises(metrics.MetricError, match="widths"):
    metrics.lpips(files["vgg_params"], narrow, _images(0), _images(1))


# Bad weight files -----------------------------------------------------------


def _bad_vgg(state):
  return {k: v for k, v in state.items() if k != "features.10.weight"}


def _wrong_in_channels(state):  # block 2's first conv reads 5, not 4
  state = dict(state)
  state["features.5.weight"] = state["features.5.weight"][:, :3].repeat(
      2, axis=1)[:, :5]
  return state


def _wrong_fc6(state):
  state = dict(state)
  state["classifier.0.weight"] = state["classifier.0.weight"][:, :-1]
  return state


def _bad_lin(state):
  state = dict(state)
  state["lin3.model.1.weight"] = state["lin3.model.1.weight"].reshape(1, -1)
  return state


@pytest.mark.parametrize("which, corrupt, key", [
    ("vgg", _bad_vgg, "features.10.weight"),
    ("vgg", _wrong_in_channels, "features.5.weight"),
    ("vgg", _wrong_fc6, "classifier.0.weight"),
    ("lin", lambda s: {k: v for k, v in s.items() if "lin4" not in k},
     "lin4.model.1.weight"),
    ("lin", _bad_lin, "lin3.model.1.weight"),
])
def test_bad_weight_file_names_file_and_key(files, tmp_path, which, corrupt,
                                            key):
  path = tmp_path / f"bad_{which}.npz"
  np.savez(path, **corrupt(files[which]))
  load = {"vgg": metrics.load_vgg16, "lin": metrics.load_lpips_weights}
  with pytest.raises(UserError) as e:
    load[which](path)
  message = str(e.value)
  assert str(path) in message and key in message
  assert "\n" not in message


def test_unreadable_weight_files(tmp_path):
  pth = tmp_path / "vgg16-397923af.pth"
  pth.write_bytes(b"PK\x03\x04")
  garbage = tmp_path / "garbage.npz"
  garbage.write_bytes(b"not a zip at all")
  single = tmp_path / "single.npy"
  np.save(single, np.zeros(3))
  for path, why in [(pth, "convert it to .npz"), (garbage, "cannot be read"),
                    (single, "single array"),
                    (tmp_path / "absent.npz", "does not exist")]:
    with pytest.raises(UserError, match=why) as e:
      metrics.load_vgg16(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_the_evaluation_adds_vgg16_and_lpips_to_composition(files):
  vgg_path = files["folder"] / "vgg16.npz"
  lin_path = files["folder"] / "lpips_vgg.npz"
  config = ml_collections.ConfigDict({"eval": {
      "vgg16_weights": str(vgg_path), "lpips_weights": str(lin_path)}})
  config = core.with_eval_defaults(config)
  fns = core.perceptual_distances(config)
  assert set(fns) == {"vgg16_l1", "lpips"}
  x, y = _images(0), _images(1)
  vgg = perceptual.load_vgg16(vgg_path)
  lin = perceptual.load_lpips_weights(lin_path)
  np.testing.assert_allclose(fns["lpips"](x, y),
                             perceptual.lpips(vgg, lin, x, y))
  # composition: each named distance of the edits to the originals.
  edits = [y, x]
  dist = metrics.composition(
      lambda images, labels, do: (edits.pop(0), labels), x,
      {"A": np.zeros(2, np.int32)}, cycles=2, pair_fns=fns)
  np.testing.assert_allclose(dist["vgg16_l1"][0],
                             perceptual.vgg_l1(vgg, x, y), rtol=1e-6)
  np.testing.assert_allclose(dist["lpips"][1], 0.0, atol=1e-6)
  # None given: nothing computed; a bad setting is one line before any work.
  assert core.perceptual_distances(core.with_eval_defaults(
      ml_collections.ConfigDict({"eval": {}}))) == {}
  for bad, message in (({"vgg16_weights": "/no/such.npz"}, "no such file"),
                       ({"lpips_weights": str(lin_path)},
                        "needs 'eval.vgg16_weights'")):
    with pytest.raises(UserError, match=message):
      core.with_eval_defaults(ml_collections.ConfigDict({"eval": bad}))
