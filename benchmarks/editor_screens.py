r"""Drives the browser editor in headless Chromium and saves screenshots.

    python -m benchmarks.editor_screens --workdir=runs/quickstart \
        [--out=benchmarks/results/editor]

Serves the run (`ctfjax.editor`), opens the page in the distribution's
Chromium (Debian's `chromium` and `chromium-driver` packages, driven by
Selenium), and for each feature of the run: chooses test image 3, sets
do() on that feature to another value, edits, and saves the page as
`test_do_<feature>.png`; then uploads `--upload` (default: a hand-drawn
green 7 on a 160x120 canvas, which the page must crop and resize), sets a
factual feature by hand (`--own_label`, as a user corrects a misreading)
and saves the same as `own_do_<feature>.png`. What each page showed (the
bounds table, the share of edits that changed each feature) goes to
`screens.json`. tests/test_editor.py drives the page with the same
`Browser`.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil
import tempfile
import threading
from typing import Any

import numpy as np

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)
# Chromium on a machine without a network: no background connections, no
# sandbox (root in containers), a fresh profile.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-quic", "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")


def find(candidates) -> str | None:
  """The first existing path of `candidates`, or None."""
  return next((p for p in candidates if pathlib.Path(p).exists()), None)


def missing() -> str | None:
  """Why no browser can be driven here, or None when one can."""
  if importlib.util.find_spec("selenium") is None:
    return "selenium is not installed (pip install -e '.[test]')"
  if find(CHROMIUM) is None or find(CHROMEDRIVER) is None:
    return ("Chromium is not installed (Debian: apt-get install chromium "
            "chromium-driver)")
  return None


class Browser:
  """A headless Chromium on one editor page."""

  def __init__(self, url: str, timeout: float = 300):
    # pylint: disable=import-outside-toplevel
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait
    # pylint: enable=import-outside-toplevel
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
      options.add_argument(flag)
    self._profile = tempfile.mkdtemp(prefix="ctfjax-chromium-")
    options.add_argument(f"--user-data-dir={self._profile}")
    options.binary_location = find(CHROMIUM)
    self.driver = webdriver.Chrome(service=Service(find(CHROMEDRIVER)),
                                   options=options)
    self.wait = WebDriverWait(self.driver, timeout)
    self.driver.get(url)
    self.wait.until(lambda d: self._all("#test-grid img"))

  def close(self):
    self.driver.quit()
    shutil.rmtree(self._profile, ignore_errors=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def _all(self, css: str):
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    return self.driver.find_elements(By.CSS_SELECTOR, css)

  def _one(self, css: str):
    found = self._all(css)
    if not found:
      raise LookupError(f"no element {css!r} on the page")
    return found[0]

  def status(self) -> str:
    return self._one("#status").get_attribute("textContent").strip()

  def _await_edit(self, before: str) -> dict[str, Any]:
    """Waits for the answer to the edit just started; the page's state."""
    self.wait.until(lambda d: self.status() != before and
                    not self.status().startswith("editing"))
    if self._one("#status").get_attribute("class") == "error":
      raise RuntimeError(f"the page shows an error: {self.status()}")
    return self.read()

  def choose_test_image(self, index: int) -> dict[str, Any]:
    """Clicks test image `index` (on the first page) and waits for its
    null edit."""
    before = self.status()
    self._one(f"#test-grid img[data-index='{index}']").click()
    return self._await_edit(before)

  def clear(self) -> None:
    """Unchecks every do(): the next edit is the null edit."""
    for box in self._all("#controls input[type=checkbox]"):
      if box.is_selected():
        box.click()

  def upload(self, path: str) -> dict[str, Any]:
    """Uploads an image file; its edit under the current do() follows."""
    before = self.status()
    self._one("#upload").send_keys(str(pathlib.Path(path).resolve()))
    return self._await_edit(before)

  def set_label(self, feature: str, value) -> dict[str, Any]:
    """Corrects one factual feature of an uploaded image; the page edits
    again."""
    # pylint: disable=import-outside-toplevel
    from selenium.webdriver.support.ui import Select
    # pylint: enable=import-outside-toplevel
    before = self.status()
    Select(self._one(f"#label-{feature}")).select_by_value(str(value))
    return self._await_edit(before)

  def intervene(self, feature: str, value) -> dict[str, Any]:
    """Sets do(feature = value) alone and presses Edit."""
    # pylint: disable=import-outside-toplevel
    from selenium.webdriver.support.ui import Select
    # pylint: enable=import-outside-toplevel
    self.clear()
    control = self._one(f"#do-{feature}")
    if control.tag_name == "select":
      Select(control).select_by_value(str(value))
    else:
      self.driver.execute_script(
          "arguments[0].value = arguments[1];"
          "arguments[0].dispatchEvent(new Event('input'));", control,
          str(value))
    if not self._one(f"#on-{feature}").is_selected():
      self._one(f"#on-{feature}").click()
    before = self.status()
    self._one("#edit-btn").click()
    return self._await_edit(before)

  def read(self) -> dict[str, Any]:
    """What the output shows: edits, truth, the diagram's marks, and the
    bounds table's rows {feature: {role, bounds, share}}."""
    rows = {}
    for tr in self._all("#bounds-table tr[data-feature]"):
      cells = [td.get_attribute("textContent").strip()
               for td in tr.find_elements("css selector", "td")]
      rows[tr.get_attribute("data-feature")] = {
          "role": cells[1], "bounds": cells[2] if len(cells) > 2 else "",
          "share": cells[3] if len(cells) > 3 else ""}
    return {
        "status": self.status(),
        "edits": len(self._all("#edits img")),
        "edit_images_loaded": all(
            self.driver.execute_script(
                "return arguments[0].complete && "
                "arguments[0].naturalWidth > 0", img)
            for img in self._all("#edits img")),
        "truth": bool(self._all("#truth")),
        "diagram": {g.get_attribute("data-node"): g.get_attribute("data-role")
                    for g in self._all("#diagram g.node")},
        "rows": rows,
    }

  def screenshot(self, path: str | pathlib.Path) -> None:
    self.driver.save_screenshot(str(path))


def serve_in_thread(session, queue: int = 4):
  """An `EditorServer` on a free port of 127.0.0.1, serving in a daemon
  thread; call `.shutdown()` when done."""
  # pylint: disable=import-outside-toplevel
  from ctfjax.editor import server as editor_server
  # pylint: enable=import-outside-toplevel
  srv = editor_server.EditorServer(session, "127.0.0.1", 0, queue=queue,
                                   quiet=True)
  threading.Thread(target=srv.serve_forever, daemon=True).start()
  return srv


def hand_drawn_seven(shape) -> np.ndarray:
  """A user's own image: a thick green 7 drawn on a 160x120 black canvas
  (not square, not the model's size: the page crops and resizes it)."""
  # pylint: disable=import-outside-toplevel
  from PIL import Image, ImageDraw
  # pylint: enable=import-outside-toplevel
  img = Image.new("RGB", (160, 120))
  draw = ImageDraw.Draw(img)
  draw.line([(54, 26), (104, 26), (72, 100)], fill=(40, 230, 40), width=9)
  if shape[-1] == 1:
    img = img.convert("L")
  return np.asarray(img)


def intervention_values(session, index: int) -> dict[str, Any]:
  """Per feature, a value other than test image `index`'s: half the
  classes away for a categorical one, the 90% quantile of the test split
  for a continuous one."""
  # pylint: disable=import-outside-toplevel
  from ctfjax.editor.session import categories
  # pylint: enable=import-outside-toplevel
  out = {}
  for k, kind in session.kinds.items():
    size = categories(kind)
    out[k] = ((int(session.test[k][index]) + max(size // 2, 1)) % size
              if size else round(float(np.quantile(session.test[k], 0.9)), 2))
  return out


def tally(session, images: int = 100, samples: int = 64) -> dict[str, Any]:
  """Through the API: for the first `images` test images, each feature set
  to another value (`intervention_values` per image), `samples` edits each:
  per (intervention, feature) the mean share of edits whose read value
  changed, the mean exact bounds of P(changes), and the share of images
  whose share lies inside its bounds; non-descendants' drawn values must
  never change."""
  out = {}
  for k in session.kinds:
    rows = {}
    for i in range(images):
      value = intervention_values(session, i)[k]
      r = session.edit({"test_index": i, "do": {k: value},
                        "num_samples": samples})
      for f, share in r["changed"].items():
        row = rows.setdefault(f, {"share": [], "lo": [], "hi": [],
                                  "drawn_changed": 0})
        row["share"].append(share)
        if r["bounds"] and r["bounds"].get(f) is not None:
          row["lo"].append(r["bounds"][f][0])
          row["hi"].append(r["bounds"][f][1])
        row["drawn_changed"] += sum(s[f] != r["labels"][f] for s in r["drawn"])
    out[f"do({k})"] = {
        f: {"role": ("descendant" if f in session.graph.descendants(k)
                     else "non-descendant"),
            "mean_share_changed": float(np.mean(row["share"])),
            "mean_bounds": ([float(np.mean(row["lo"])),
                             float(np.mean(row["hi"]))] if row["lo"] else None),
            "inside_bounds": (float(np.mean(
                (np.array(row["share"]) >= np.array(row["lo"]) - 1e-9) &
                (np.array(row["share"]) <= np.array(row["hi"]) + 1e-9)))
                              if row["lo"] else None),
            "drawn_changes": int(row["drawn_changed"])}
        for f, row in rows.items()}
  return {"images": images, "samples": samples, "rows": out}


def main(argv):
  # pylint: disable=import-outside-toplevel
  from absl import flags
  from PIL import Image
  from ctfjax.editor.session import Session
  # pylint: enable=import-outside-toplevel
  del argv
  fl = flags.FLAGS
  reason = missing()
  if reason:
    raise SystemExit(f"error: {reason}")
  out = pathlib.Path(fl.out)
  out.mkdir(parents=True, exist_ok=True)
  session = Session.open(fl.workdir)
  session.warm()
  upload = fl.upload or str(out / "own_image.png")
  if not fl.upload:
    Image.fromarray(hand_drawn_seven(session.dataset.image_shape)).save(upload)
  values = intervention_values(session, fl.index)
  srv = serve_in_thread(session)
  shown = {}
  try:
    with Browser(srv.url) as b:
      for source in ("test", "own"):
        b.clear()
        shown[f"{source} null"] = (b.choose_test_image(fl.index)
                                   if source == "test" else b.upload(upload))
        if source == "own" and fl.own_label:
          name, _, value = fl.own_label.partition("=")
          shown["own corrected"] = b.set_label(name, value)
        for k, value in values.items():
          shown[f"{source} do({k}={value})"] = b.intervene(k, value)
          b.screenshot(out / f"{source}_do_{k}.png")
  finally:
    srv.shutdown()
  counts = tally(session)
  (out / "screens.json").write_text(json.dumps(
      {"workdir": fl.workdir, "test_index": fl.index, "upload": upload,
       "pages": shown, "tally": counts}, indent=1))
  for family, rows in counts["rows"].items():
    for f, row in rows.items():
      print(f"{family} {f} ({row['role']}): mean share changed "
            f"{row['mean_share_changed']:.3f}, mean bounds "
            f"{row['mean_bounds']}, share inside its bounds "
            f"{row['inside_bounds']}, drawn changes {row['drawn_changes']}")
  for name, page in shown.items():
    print(f"{name}: {page['edits']} edits; " + "; ".join(
        f"{k} {r['role']} bounds {r['bounds']} share {r['share']}"
        for k, r in page["rows"].items()))
  print(f"wrote {out}")


if __name__ == "__main__":
  # pylint: disable=g-import-not-at-top
  from absl import app
  from absl import flags as _flags
  _flags.DEFINE_string("workdir", "runs/quickstart", "A trained run.")
  _flags.DEFINE_string("out", "benchmarks/results/editor", "Output folder.")
  _flags.DEFINE_integer("index", 3, "The test image.")
  _flags.DEFINE_string("upload", "", "An image to upload (default: a "
                       "hand-drawn green 7).")
  _flags.DEFINE_string("own_label", "D=7", "A factual feature of the "
                       "uploaded image to set by hand (empty: the model's "
                       "reading).")
  app.run(main)
