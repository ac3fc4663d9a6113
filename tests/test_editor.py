"""The browser editor's JSON API (ctfjax/editor) against a tiny trained run.

Every test here shares one trained run (about 30 s to build), so the module
is in the slow tier; tests/test_editor_units.py covers the parts that need
no model in the fast tier.
"""

import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from PIL import Image

from ctfjax.ancm import fit
from ctfjax.editor import session as editor
from benchmarks import editor_screens
from configs import ancm
from configs import ancm_vae_colored_mnist_backdoor


pytestmark = pytest.mark.slow


def tiny_config():
  config = ancm.sized(ancm_vae_colored_mnist_backdoor.get_config(), "tiny")
  config.train.progress = False
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A launch.run-shaped folder holding one tiny trained ANCM, served."""
  root = tmp_path_factory.mktemp("editor") / "run"
  fit.train_and_evaluate(tiny_config(), root / "models" / "ancm_vae")
  session = editor.Session.open(str(root))
  srv = editor_screens.serve_in_thread(session, queue=2)
  yield session, srv
  srv.shutdown()


def request(srv, method, path, body=None, raw=None, headers=None):
  """(status, decoded JSON) of one request."""
  conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=300)
  data = raw if raw is not None else (
      None if body is None else json.dumps(body).encode())
  conn.request(method, path, body=data, headers=headers or {})
  resp = conn.getresponse()
  out = resp.status, json.loads(resp.read())
  conn.close()
  return out


def png_bytes(image: np.ndarray, fmt="PNG") -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format=fmt)
  return buf.getvalue()


def decode(b64: str) -> np.ndarray:
  with Image.open(io.BytesIO(base64.b64decode(b64))) as img:
    return np.asarray(img)


def closed_form_change(table, d, c, c2, b):
  """Frechet bounds of P(B_{C=c2} != b | D=d, C=c, B=b) (science.md):
  B has no bidirected edge and D is a non-descendant of C."""
  assert table.variables == ("D", "C", "B")
  p_v = table.probs
  p = p_v[d, c, 1] / p_v[d, c].sum()
  q = p_v[d, c2, 1] / p_v[d, c2].sum()
  if b == 0:
    return max(0, q - p) / (1 - p), min(q, 1 - p) / (1 - p)
  return max(0, p - q) / p, min(1 - q, p) / p


def test_model_endpoint_lists_features_diagram_and_models(run):
  session, srv = run
  status, m = request(srv, "GET", "/api/model")
  assert status == 200
  assert m["features"]["C"] == {"kind": "categorical", "values": [0, 1],
                                "names": ["Green", "Red"]}
  assert m["features"]["D"]["values"] == list(range(10))
  assert m["graph"] == "D <-> C; D -> B; C -> B"
  assert m["models"] == ["ancm_vae"] and m["default_model"] == "ancm_vae"
  assert m["test_size"] == len(session.test["image"])
  assert m["diagram"]["directed"] == [["C", "B"], ["D", "B"]]
  assert m["diagram"]["bidirected"] == [["C", "D"]]
  x = {n["name"]: n["x"] for n in m["diagram"]["nodes"]}
  assert x["B"] > x["C"] == x["D"]  # B drawn right of its parents.
  status, page = request(srv, "GET", "/api/test?start=2&count=3")
  assert status == 200 and len(page["images"]) == 3
  np.testing.assert_array_equal(decode(page["images"][1]),
                                session.test["image"][3])
  assert page["labels"][1] == {k: int(session.test[k][3]) for k in "DCB"}


def test_edit_of_a_test_image_keeps_non_descendants_and_shows_the_truth(run):
  session, srv = run
  i = 5
  d, c, b = (int(session.test[k][i]) for k in "DCB")
  status, r = request(srv, "POST", "/api/edit",
                      {"test_index": i, "do": {"C": 1 - c},
                       "num_samples": 6, "seed": 3})
  assert status == 200, r
  assert len(r["edits"]) == len(r["drawn"]) == len(r["edit_features"]) == 6
  assert all(decode(e).shape == (32, 32, 3) for e in r["edits"])
  np.testing.assert_array_equal(decode(r["factual"]), session.test["image"][i])
  assert r["labels"] == {"D": d, "C": c, "B": b}
  # The intervened value is drawn, the non-descendant D kept in every draw.
  assert all(s["C"] == 1 - c and s["D"] == d for s in r["drawn"])
  # The generator's true counterfactual of this image's own noise.
  batch = {"exogenous": {u: v[i:i + 1] for u, v in
                         session.test["exogenous"].items()}}
  true = session.dataset.counterfactual(batch, {"C": 1 - c}, split="test")
  np.testing.assert_array_equal(decode(r["truth"]), true["image"][0])
  # Bounds of P(B changes): the closed form, computed independently of the
  # exact core's LP; the non-descendant D must not change.
  table = session.dataset.feature_scm().observational()
  assert r["bounds"]["D"] == [0.0, 0.0] and "C" not in r["bounds"]
  np.testing.assert_allclose(r["bounds"]["B"],
                             closed_form_change(table, d, c, 1 - c, b),
                             atol=1e-9)
  lo, hi = r["bounds"]["B"]
  assert lo - 1e-9 <= r["bounds_truth"]["B"] <= hi + 1e-9
  assert set(r["changed"]) == {"D", "B"}
  seen = [f["C"] == 1 - c for f in r["edit_features"]]
  assert r["effect"] == {"C": sum(seen) / len(seen)}


def test_null_edit_bounds_are_zero(run):
  _, srv = run
  status, r = request(srv, "POST", "/api/edit",
                      {"test_index": 0, "do": {}, "num_samples": 2})
  assert status == 200
  assert r["bounds"] == {"D": [0.0, 0.0], "C": [0.0, 0.0], "B": [0.0, 0.0]}
  np.testing.assert_array_equal(decode(r["truth"]), decode(r["factual"]))


def test_an_uploaded_image_is_cropped_and_resized_as_the_dataset_is(run):
  session, srv = run
  image = session.test["image"][7]
  exact = base64.b64encode(png_bytes(image)).decode()
  status, r = request(srv, "POST", "/api/edit",
                      {"image": exact, "do": {"D": 4}, "num_samples": 2})
  assert status == 200, r
  np.testing.assert_array_equal(decode(r["factual"]), image)
  assert r["truth"] is None  # No exogenous noise for a user's image.
  model, params = session.model(None)
  read = model.read_labels(params, image[None])
  assert r["labels"] == {k: int(read[k][0]) for k in "DCB"}
  # Factual features given with the image replace the reader's.
  given = {"D": 2, "C": 1, "B": 0}
  status, r = request(srv, "POST", "/api/edit", {
      "image": exact, "labels": given, "do": {"B": 1}, "num_samples": 3})
  assert status == 200 and r["labels"] == given, r
  assert r["labels_from"] == "the request"
  assert all(s == {**given, "B": 1} for s in r["drawn"])
  # A wider image is centre-cropped: the test image padded left and right
  # comes back exactly.
  wide = np.zeros((32, 48, 3), np.uint8)
  wide[:, 8:40] = image
  status, r = request(srv, "POST", "/api/edit", {
      "image": _b64(png_bytes(wide)), "do": {"D": 4}, "num_samples": 1})
  assert status == 200, r
  np.testing.assert_array_equal(decode(r["factual"]), image)
  # A larger grayscale JPEG with a data: prefix: converted and resized.
  gray = np.repeat(np.repeat(image[..., 1], 3, 0), 3, 1)
  text = "data:image/jpeg;base64," + _b64(png_bytes(gray, "JPEG"))
  status, r = request(srv, "POST", "/api/edit",
                      {"image": text, "do": {"D": 4}, "num_samples": 1})
  assert status == 200, r
  assert decode(r["factual"]).shape == (32, 32, 3)


def test_an_intervention_set_is_compiled_once(run):
  """Another value of the same do() set, or another seed or image, reuses
  the compiled edit; only a new set compiles."""
  _, srv = run
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, *a, **k: compiles.append(name)
      if name == "/jax/core/compile/backend_compile_duration" else None)
  body = {"test_index": 1, "do": {"D": 2}, "num_samples": 3}
  assert request(srv, "POST", "/api/edit", body)[0] == 200
  compiles.clear()
  for i, v in ((2, 5), (3, 9), (4, 0)):
    again = {**body, "test_index": i, "do": {"D": v}, "seed": v}
    assert request(srv, "POST", "/api/edit", again)[0] == 200
  assert not compiles
  assert request(srv, "POST", "/api/edit",
                 {**body, "do": {"D": 2, "C": 0}})[0] == 200
  assert compiles


def _b64(raw: bytes) -> str:
  return base64.b64encode(raw).decode()


BIG = np.zeros((10, 10), np.uint8)
SMALL = _b64(png_bytes(np.zeros((32, 32, 3), np.uint8)))


@pytest.mark.parametrize("body, status, message", [
    ({"image": _b64(b"not an image at all"), "do": {}}, 415,
     "not a PNG or JPEG"),
    ({"image": "%%%", "do": {}}, 400, "not valid base64"),
    ({"image": _b64(png_bytes(BIG, "GIF")), "do": {}}, 415, "GIF file"),
    ({"test_index": 0, "do": {"Q": 1}}, 400, "unknown feature 'Q'"),
    ({"test_index": 0, "do": {"C": 2}}, 400, "C=2 is outside its domain 0..1"),
    ({"test_index": 0, "do": {"C": 0.5}}, 400, "C=0.5 is not an integer"),
    ({"test_index": 0, "do": {"C": True}}, 400, "C=True is not an integer"),
    ({"test_index": 0, "do": [1]}, 400, "do must be an object"),
    ({"test_index": 10**6, "do": {}}, 400, "test_index=1000000 is outside"),
    ({"test_index": "3", "do": {}}, 400, "test_index must be an integer"),
    ({"test_index": 0, "image": "x"}, 400, "exactly one of test_index or"),
    ({"do": {}}, 400, "exactly one of test_index or image"),
    ({"test_index": 0, "num_samples": 0}, 400, "num_samples=0 is outside"),
    ({"test_index": 0, "num_samples": 65}, 400, "num_samples=65 is outside"),
    ({"test_index": 0, "seed": -1}, 400, "seed=-1 is outside"),
    ({"test_index": 0, "model": "gan"}, 400, "model 'gan' is not one"),
    ({"test_index": 0, "dos": {}}, 400, "unknown field 'dos'"),
    ({"image": SMALL, "labels": {"D": 1}}, 400,
     "labels must give exactly D, C, B"),
    ({"image": SMALL, "labels": {"D": 1, "C": 5, "B": 0}}, 400,
     "labels: C=5 is outside its domain"),
    ({"test_index": 0, "labels": {"D": 1, "C": 0, "B": 0}}, 400,
     "labels are for an uploaded image"),
    ([1, 2], 400, "must be a JSON object"),
])
def test_bad_requests_get_a_4xx_line_and_the_server_keeps_serving(
    run, body, status, message):
  _, srv = run
  got, answer = request(srv, "POST", "/api/edit", body)
  assert got == status and message in answer["error"], answer
  assert "\n" not in answer["error"]
  assert request(srv, "GET", "/api/model")[0] == 200


def test_bad_requests_at_the_http_level(run):
  _, srv = run
  assert request(srv, "POST", "/api/edit", raw=b"{not json")[0] == 400
  status, answer = request(srv, "GET", "/api/nothing")
  assert status == 404 and "no such page" in answer["error"]
  assert request(srv, "POST", "/api/model", {})[0] == 404
  status, answer = request(srv, "GET", "/api/test?start=-1")
  assert status == 400 and "start=-1" in answer["error"]
  status, answer = request(srv, "GET", "/api/test?count=x")
  assert status == 400 and "count='x'" in answer["error"]
  # A declared size above the limit is refused before the body is read.
  status, answer = request(srv, "POST", "/api/edit", raw=b"{}", headers={
      "Content-Length": str(100 * 2**20)})
  assert status == 413 and "at most" in answer["error"]
  # An image whose header declares too many pixels (a decompression bomb).
  bomb = io.BytesIO()
  Image.new("1", (7000, 7000)).save(bomb, format="PNG")
  status, answer = request(srv, "POST", "/api/edit", {
      "image": _b64(bomb.getvalue()), "do": {}})
  assert status == 413 and "7000x7000" in answer["error"], answer
  assert request(srv, "GET", "/api/model")[0] == 200


def test_a_client_that_disconnects_costs_only_its_own_request(run):
  _, srv = run
  host, port = srv.server_address[:2]
  # Mid-body: the declared body never arrives.
  with socket.create_connection((host, port)) as s:
    s.sendall(b"POST /api/edit HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 1000\r\n\r\n{\"test_")
  # A full request whose client leaves before the answer.
  with socket.create_connection((host, port)) as s:
    body = json.dumps({"test_index": 0, "do": {"C": 1},
                       "num_samples": 2}).encode()
    s.sendall(b"POST /api/edit HTTP/1.1\r\nHost: x\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
  status, _ = request(srv, "POST", "/api/edit",
                      {"test_index": 0, "do": {"C": 1}, "num_samples": 2})
  assert status == 200


def test_requests_beyond_the_queue_are_refused_and_never_block_the_page(run):
  """With the device busy, two edits wait (queue=2), a third is refused
  at once with 503, and the model endpoint still answers; when the device
  is free the waiting edits complete."""
  _, srv = run
  results = []
  body = {"test_index": 0, "do": {"C": 0}, "num_samples": 1}
  srv.device.acquire()
  try:
    waiting = [threading.Thread(target=lambda: results.append(
        request(srv, "POST", "/api/edit", body)[0])) for _ in range(2)]
    for t in waiting:
      t.start()
    deadline = time.time() + 60
    while srv.slots._value > 0 and time.time() < deadline:  # pylint: disable=protected-access
      time.sleep(0.05)
    t0 = time.time()
    status, answer = request(srv, "POST", "/api/edit", body)
    assert status == 503 and "busy" in answer["error"]
    assert request(srv, "GET", "/api/model")[0] == 200
    assert time.time() - t0 < 30 and results == []
  finally:
    srv.device.release()
  for t in waiting:
    t.join(300)
  assert results == [200, 200]


def test_the_page_is_served_and_fetches_nothing_from_outside(run):
  _, srv = run
  conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=60)
  conn.request("GET", "/")
  resp = conn.getresponse()
  page = resp.read().decode()
  assert resp.status == 200 and "text/html" in resp.getheader("Content-Type")
  assert "/api/edit" in page and "/api/model" in page
  assert "http://" not in page and "https://" not in page


def test_edits_are_bit_identical_to_launch_edit(run, tmp_path):
  session, srv = run
  i = 9
  image = tmp_path / "in.png"
  Image.fromarray(session.test["image"][i]).save(image)
  out = tmp_path / "out.png"
  labels = ",".join(f"{k}={int(session.test[k][i])}" for k in "DCB")
  res = subprocess.run(
      [sys.executable, "-m", "launch.edit",
       f"--workdir={session.models['ancm_vae']}", f"--image={image}",
       "--do=B=1", f"--labels={labels}", "--num_samples=3", "--seed=11",
       "--scale=1", f"--out={out}"],
      capture_output=True, text=True, timeout=600,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert res.returncode == 0, res.stderr
  with Image.open(out) as img:
    strip = np.asarray(img)
  status, r = request(srv, "POST", "/api/edit", {
      "test_index": i, "do": {"B": 1}, "num_samples": 3, "seed": 11})
  assert status == 200
  for s, b64 in enumerate(r["edits"]):
    col = (s + 1) * 33
    np.testing.assert_array_equal(decode(b64), strip[:, col:col + 32])


@pytest.mark.parametrize("args, message", [
    (["--workdir=/nonexistent/run"], "does not exist"),
    (["--port=70000", "--workdir=."], "--port=70000 is outside 0..65535"),
])
def test_serve_command_bad_input(args, message):
  res = subprocess.run([sys.executable, "-m", "launch.serve", *args],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert res.returncode == 2
  lines = res.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], res.stderr


def test_a_folder_without_a_trained_model_is_one_error_line(tmp_path):
  with pytest.raises(editor.UserError, match="is not a trained run"):
    editor.Session.open(str(tmp_path))
  (tmp_path / "models" / "ancm_vae").mkdir(parents=True)
  tiny = tiny_config()
  (tmp_path / "models" / "ancm_vae" / fit.CONFIG_FILE).write_text(
      tiny.to_json())
  with pytest.raises(editor.UserError, match="has no trained model yet"):
    editor.Session.open(str(tmp_path))


@pytest.mark.skipif(editor_screens.missing() is not None,
                    reason=str(editor_screens.missing()))
def test_the_page_in_a_real_browser(run, tmp_path):
  """Headless Chromium opens the page, chooses a test image, sets do(C) and
  sees the edits, the diagram's marks and the bounds the API gives."""
  session, srv = run
  i = 3
  c = 1 - int(session.test["C"][i])
  with editor_screens.Browser(srv.url) as browser:
    null = browser.choose_test_image(i)
    assert null["edits"] == 8 and null["truth"]
    page = browser.intervene("C", c)
    browser.screenshot(tmp_path / "page.png")
  assert page["edits"] == 8 and page["edit_images_loaded"]
  assert page["diagram"] == {"C": "intervened", "B": "descendant",
                             "D": "kept"}
  status, api = request(srv, "POST", "/api/edit",
                        {"test_index": i, "do": {"C": c}})
  assert status == 200
  lo, hi = api["bounds"]["B"]
  assert page["rows"]["B"]["bounds"] == f"[{lo:.3f}, {hi:.3f}]"
  assert page["rows"]["B"]["share"] == f"{api['changed']['B']:.3f}"
  assert page["rows"]["D"]["bounds"] == "[0.000, 0.000]"
  assert page["rows"]["C"]["role"].startswith("intervened")
  with Image.open(tmp_path / "page.png") as shot:
    assert shot.size[0] >= 1000
