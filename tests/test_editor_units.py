"""The browser editor's parts that need no trained model (fast tier)."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from ctfjax import causal as cc
from ctfjax.editor import session as editor


def encoded(image: np.ndarray, fmt: str = "PNG") -> str:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format=fmt)
  return base64.b64encode(buf.getvalue()).decode()


def test_png_round_trip_keeps_every_pixel():
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  gray = rng.integers(0, 256, (28, 28, 1), dtype=np.uint8)
  np.testing.assert_array_equal(
      editor.decode_image(editor.png_base64(rgb), (32, 32, 3)), rgb)
  np.testing.assert_array_equal(
      editor.decode_image(editor.png_base64(gray), (28, 28, 1)), gray)


def test_a_user_image_is_centre_cropped_then_resized():
  """A 40x80 image: the centre 40x40 square, resized to 20x20 bilinearly
  - computed here with PIL directly."""
  rng = np.random.default_rng(1)
  wide = rng.integers(0, 256, (40, 80, 3), dtype=np.uint8)
  want = np.asarray(Image.fromarray(wide[:, 20:60]).resize(
      (20, 20), Image.BILINEAR))
  got = editor.decode_image("data:image/png;base64," + encoded(wide),
                            (20, 20, 3))
  np.testing.assert_array_equal(got, want)
  # RGB to the model's grayscale.
  got = editor.decode_image(encoded(wide[:, 20:60]), (40, 40, 1))
  want = np.asarray(Image.fromarray(wide[:, 20:60]).convert("L"))
  np.testing.assert_array_equal(got[..., 0], want)


@pytest.mark.parametrize("text, status, message", [
    (None, 400, "must be a base64-encoded PNG or JPEG"),
    ("", 400, "must be a base64-encoded PNG or JPEG"),
    ("abc$", 400, "not valid base64"),
    (base64.b64encode(b"hello").decode(), 415, "not a PNG or JPEG"),
    ("A" * (editor.MAX_IMAGE_BYTES * 2), 413, "larger than 8 MB"),
])
def test_bad_images_are_one_line_with_their_status(text, status, message):
  with pytest.raises(editor.EditorError, match=message) as e:
    editor.decode_image(text, (32, 32, 3))
  assert e.value.status == status


def test_layout_puts_parents_left_of_children():
  g = cc.Graph.parse("A -> B; B -> C; A -> C; D <-> A")
  out = editor.layout(g)
  x = {n["name"]: n["x"] for n in out["nodes"]}
  assert x["A"] == x["D"] < x["B"] < x["C"]
  assert out["directed"] == [["A", "B"], ["A", "C"], ["B", "C"]]
  assert out["bidirected"] == [["A", "D"]]
  assert all(0 < n["y"] < 1 for n in out["nodes"])


def test_categories_of_each_kind():
  assert editor.categories(10) == 10
  assert editor.categories(cc.kinds.Categorical(3)) == 3
  assert editor.categories(True) is None
  assert editor.categories(cc.kinds.resolve("continuous")) is None
