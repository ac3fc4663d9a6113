"""The front door and the manual: README.md and docs/ stay short where they
must, every relative link and anchor resolves, and the files the README's
examples use ship with the repository."""

import json
import pathlib
import re

import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def slug(heading: str) -> str:
  """GitHub's anchor of a Markdown heading: lower case, punctuation other
  than '-' and '_' dropped, spaces to '-'."""
  text = re.sub(r"`|\*|\[|\]\([^)]*\)", "", heading.strip().lower())
  return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: pathlib.Path) -> set[str]:
  text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
  return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def links(page: pathlib.Path) -> list[str]:
  """Targets of [text](target) links outside code blocks and spans."""
  text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
  text = re.sub(r"`[^`\n]*`(?!\])", "", text)
  return re.findall(r"\]\(([^)\s]+)\)", text)


def test_slug_follows_githubs_rule():
  assert slug("The exact causal core: `ctfjax.causal`") == \
      "the-exact-causal-core-ctfjaxcausal"
  assert slug("launch.show_data") == "launchshow_data"
  assert slug("On an accelerator (one NVIDIA H200)") == \
      "on-an-accelerator-one-nvidia-h200"


def test_readme_is_the_short_front_door():
  assert len((ROOT / "README.md").read_text().splitlines()) <= 250
  assert (ROOT / "docs" / "README.md").is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
  bad = []
  for target in links(page):
    if re.match(r"[a-z]+://|mailto:", target):
      continue
    path, _, fragment = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    if not dest.exists():
      bad.append(f"{target} (no such file)")
    elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
      bad.append(f"{target} (no such heading)")
  assert not bad, f"{page.relative_to(ROOT)}: {bad}"


def test_the_readmes_example_files_ship():
  image = Image.open(ROOT / "examples" / "digit.png")
  assert image.size == (32, 32) and image.mode == "RGB"  # Colored MNIST's
  spec = json.loads((ROOT / "examples" / "scm.json").read_text())
  assert set(spec) == {"exogenous", "endogenous"}
  readme = (ROOT / "README.md").read_text()
  for name in re.findall(r"examples/[\w.]+", readme):
    assert (ROOT / name).is_file(), name


def test_the_readmes_query_prints_what_the_readme_says():
  # The values quoted in "Ask an exact query", from the shipped spec.
  from ctfjax import causal as cc  # pylint: disable=import-outside-toplevel
  scm = cc.DiscreteSCM.from_json(ROOT / "examples" / "scm.json")
  query = "P(Y_{X=1}=1 | X=0, Y=0)"
  assert cc.query(scm, query) == pytest.approx(0.5)
  lo, hi = cc.bounds(scm.graph, scm.observational(), query)
  assert (lo, hi) == (pytest.approx(0.5), pytest.approx(0.75))
  readme = (ROOT / "README.md").read_text()
  assert "`0.5`" in readme and "`0.5 0.75`" in readme


def test_docs_cite_papers_not_seed_files():
  for page in PAGES:
    text = page.read_text()
    assert not re.search(r"\bseed[- ]00[0-4]\b", text, re.I), page
    assert "design.md" not in text and "science.md" not in text, page
