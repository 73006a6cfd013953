"""The built documentation checked in a real browser (headless Chromium), with no network.

The docs are built once into a temporary folder (or taken from ``SKLEARN_SSSE_DOCS_HTML``, a
folder a previous ``sphinx-build -b html`` wrote), then:

* Chromium opens the user guide, the API page of ``UnlearnableClassifier`` and the gallery,
  runs their JavaScript, and reports whether the formulas were typeset (MathJax is served from
  the site itself, so no raw ``\\theta`` may be left in the page's text) and whether every image
  loaded; it also takes a screenshot of each page (kept in ``SKLEARN_SSSE_DOCS_SCREENSHOTS``
  when that is set);
* every internal link and image of every page points at a file that exists, and at an anchor
  that exists in it;
* no page shows a path of the build machine.

Skipped, with the reason, where Chromium or the docs tool chain (``pip install -e '.[docs]'``)
is not installed. ``.ci/run`` installs Debian's ``chromium``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = {  # page -> does it hold formulas
    "user_guide.html": True,
    "generated/sklearn_ssse.UnlearnableClassifier.html": False,
    "auto_examples/index.html": False,
}
RAW_LATEX = re.compile(r"\\(theta|lambda|varepsilon|frac|sum|nabla|log|mid)\b")


def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _chromium_args(exe: str, profile: Path) -> list[str]:
    # the flags that keep headless Chromium off the network and quiet in a container
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--hide-scrollbars",
            f"--user-data-dir={profile}"]


@pytest.fixture(scope="module")
def chromium():
    exe = _chromium()
    if exe is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); "
                    "the browser checks of the docs need it")
    return exe


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory) -> Path:
    """The built HTML docs: ``SKLEARN_SSSE_DOCS_HTML`` or a fresh build."""
    given = os.environ.get("SKLEARN_SSSE_DOCS_HTML")
    if given:
        out = Path(given)
        if not (out / "index.html").is_file():
            pytest.fail(f"SKLEARN_SSSE_DOCS_HTML={given} holds no built docs (no index.html)")
        return out
    for module in ("sphinx", "numpydoc", "sphinx_gallery", "matplotlib"):
        pytest.importorskip(module, reason=f"building the docs needs {module} "
                                           "(pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("docs_html")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-b", "html", str(DOCS),
                           str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    return out


# ------------------------------------------------------------------ in the browser
HARNESS = """<!DOCTYPE html>
<html><head><meta charset="utf-8"></head><body><pre id="result">pending</pre>
<script>
const pages = %(pages)s;
const wait = (ms) => new Promise((r) => setTimeout(r, ms));
async function check(path) {
  const frame = document.createElement("iframe");
  frame.style.width = "1200px"; frame.style.height = "1600px";
  document.body.appendChild(frame);
  await new Promise((r) => { frame.onload = r; frame.src = path; });
  const w = frame.contentWindow, d = frame.contentDocument;
  if (w.MathJax && w.MathJax.startup && w.MathJax.startup.promise) {
    await Promise.race([w.MathJax.startup.promise, wait(20000)]);
  }
  const images = Array.from(d.images);
  await Promise.race([Promise.all(images.map((i) => i.complete ? null : new Promise((r) => {
    i.addEventListener("load", r); i.addEventListener("error", r); }))), wait(20000)]);
  return {
    path: path,
    mathjax: Boolean(w.MathJax && w.MathJax.version),
    math_blocks: d.querySelectorAll("div.math, span.math").length,
    typeset: d.querySelectorAll("mjx-container").length,
    text: d.body.innerText,
    images: images.map((i) => ({src: i.getAttribute("src"),
                                ok: i.complete && i.naturalWidth > 0})),
  };
}
(async () => {
  const out = [];
  for (const p of pages) { out.push(await check(p)); }
  document.getElementById("result").textContent = JSON.stringify(out);
})().catch((e) => { document.getElementById("result").textContent = "ERROR " + e; });
</script></body></html>
"""


@pytest.fixture(scope="module")
def browser_report(chromium, html_dir, tmp_path_factory) -> dict:
    """What Chromium saw on each page of ``PAGES`` after running its JavaScript."""
    work = tmp_path_factory.mktemp("browser")
    # next to the pages, so that the iframes load them from the same (file://) folder
    harness = html_dir / "_browser_check.html"
    harness.write_text(HARNESS % {"pages": json.dumps(list(PAGES))})
    try:
        proc = subprocess.run(
            _chromium_args(chromium, work / "profile")
            + ["--allow-file-access-from-files", "--virtual-time-budget=60000",
               "--dump-dom", harness.as_uri()],
            capture_output=True, text=True, timeout=300)
    finally:
        harness.unlink()
    match = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"no result from Chromium:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    result = _unescape(match.group(1))
    assert not result.startswith(("pending", "ERROR")), result
    return {page["path"]: page for page in json.loads(result)}


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


@pytest.mark.parametrize("page", list(PAGES))
def test_formulas_are_typeset(browser_report, page):
    seen = browser_report[page]
    raw = RAW_LATEX.findall(seen["text"])
    assert not raw, f"{page}: raw LaTeX left in the page's text: {sorted(set(raw))}"
    if PAGES[page]:  # Sphinx loads MathJax only on pages with maths
        assert seen["mathjax"], f"{page}: MathJax did not load (served from _static/mathjax)"
        assert seen["math_blocks"] > 0, f"{page}: no formula found"
        assert seen["typeset"] >= seen["math_blocks"], f"{page}: formulas left untypeset"


@pytest.mark.parametrize("page", list(PAGES))
def test_images_load(browser_report, html_dir, page):
    images = browser_report[page]["images"]
    assert images, f"{page}: no image at all"
    broken = [i["src"] for i in images if not i["ok"]]
    assert not broken, f"{page}: images that did not load: {broken}"
    for image in images:  # and the files behind them are real, non-empty files
        target = (html_dir / page).parent / unquote(urlsplit(image["src"]).path)
        assert target.is_file() and target.stat().st_size > 0, image["src"]


@pytest.mark.parametrize("page", list(PAGES))
def test_screenshot(chromium, html_dir, tmp_path, page):
    """A screenshot of each page; set SKLEARN_SSSE_DOCS_SCREENSHOTS=DIR to keep them."""
    keep = os.environ.get("SKLEARN_SSSE_DOCS_SCREENSHOTS")
    folder = Path(keep) if keep else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / (page.replace("/", "_").removesuffix(".html") + ".png")
    subprocess.run(_chromium_args(chromium, tmp_path / "profile")
                   + ["--window-size=1280,1800", "--virtual-time-budget=10000",
                      f"--screenshot={png}", (html_dir / page).as_uri()],
                   capture_output=True, text=True, timeout=300)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000, f"{png}: {len(data)} bytes, an empty page?"


# ------------------------------------------------------------------ static checks
class _Links(HTMLParser):
    """The ids of a page and the targets of its links, images, scripts and style sheets."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag in ("a", "span", "div", "section", "dt") else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        attr = {"a": "href", "link": "href", "img": "src", "script": "src"}.get(tag)
        if attr and attrs.get(attr):
            self.targets.append(attrs[attr])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _pages(html_dir: Path) -> list[Path]:
    return sorted(p for p in html_dir.rglob("*.html")
                  if not p.relative_to(html_dir).parts[0].startswith("_"))


def test_no_broken_internal_link(html_dir):
    parsed = {page: _parse(page) for page in _pages(html_dir)}
    broken = []
    for page, links in parsed.items():
        for target in links.targets:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or target.startswith("//"):
                continue  # external (intersphinx, arXiv): not checked offline
            path = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                broken.append(f"{page.relative_to(html_dir)} -> {target} (no such file)")
                continue
            if parts.fragment and path.suffix == ".html":
                ids = parsed[path].ids if path in parsed else _parse(path).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(html_dir)} -> {target} (no such anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_no_build_machine_path(html_dir):
    """Rendered pages never show where the docs were built (checkout, venv, temp folders)."""
    home = str(Path.home())
    needles = {str(ROOT), sys.prefix, os.path.realpath(sys.prefix), "site-packages",
               tempfile.gettempdir().rstrip("/") + "/", "/usr/lib/", "/usr/local/", "/usr/bin/",
               *([home + "/"] if home not in ("/", "") else [])}
    found = []
    for page in _pages(html_dir):
        text = page.read_text(encoding="utf-8")
        found += [f"{page.relative_to(html_dir)}: {n}" for n in sorted(needles) if n in text]
    assert not found, "build-machine paths in the rendered pages:\n" + "\n".join(found)
