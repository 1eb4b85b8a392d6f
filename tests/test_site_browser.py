"""The documentation site as a reader sees it: built, served, and rendered in headless Chromium.

The site is built with ``mkdocs build --strict`` into a temporary folder, served
on a free localhost port, and two pages are loaded in Chromium: the home page and
the ``trainbus_torch`` API page. Each page's DOM (after its scripts ran) must
have the navigation, the search box and code blocks, and its screenshot must not
be blank; the screenshots' folder is printed (``pytest -s`` shows it).

Without Chromium on the machine the tests skip, saying so, unless
``TRAINBUS_REQUIRE_BROWSER=1`` (``.ci/run`` sets it after installing Debian's
``chromium``): then a missing browser fails them.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser")
# A guard against a hung browser, not a speed check.
BROWSER_TIMEOUT_S = 120


def find_browser() -> str:
    """The Chromium executable; skips (or fails, when one is required) without it."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path is not None:
            return path
    reason = f"no Chromium on this machine (looked for {', '.join(BROWSERS)} on PATH)"
    if os.environ.get("TRAINBUS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and TRAINBUS_REQUIRE_BROWSER=1 requires one")
    pytest.skip(f"{reason}; `apt-get install chromium` to run the site's browser check")


class QuietHandler(SimpleHTTPRequestHandler):
    """Serve files without a log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def browser() -> str:
    return find_browser()


@pytest.fixture(scope="module")
def site(browser: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built with --strict as `make docs` builds it, into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr}"
    return out


@pytest.fixture(scope="module")
def url(site: Path) -> Iterator[str]:
    """The site served on a free localhost port, for as long as the module's tests run."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots of the documentation site: {folder}")
    return folder


def chromium(browser: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once with a fresh profile and no network beyond localhost."""
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
        check=False,
    )


def render(browser: str, page_url: str, screenshot: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran; its screenshot is written to ``screenshot``."""
    dom = chromium(browser, profile, "--dump-dom", page_url)
    assert dom.returncode == 0, f"chromium --dump-dom failed: {dom.stderr}"
    assert "<html" in dom.stdout, f"chromium --dump-dom printed no page: {dom.stderr}"
    size = "--window-size=1280,900"
    shot = chromium(browser, profile, f"--screenshot={screenshot}", size, page_url)
    assert shot.returncode == 0, f"chromium --screenshot failed: {shot.stderr}"
    assert screenshot.is_file(), f"chromium --screenshot wrote nothing: {shot.stderr}"
    return dom.stdout


def text_of(markup: str) -> str:
    """The visible text of some HTML, tags dropped and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def assert_not_blank(screenshot: Path) -> None:
    image = pytest.importorskip("PIL.Image").open(screenshot).convert("RGB")
    assert image.size == (1280, 900)
    colours = image.getcolors(maxcolors=1_000_000) or []
    lightest, darkest = max(image.convert("L").getextrema()), min(image.convert("L").getextrema())
    assert len(colours) > 50, f"{screenshot} has {len(colours)} colours: a blank page?"
    assert lightest - darkest > 128, f"{screenshot} has no contrast: a blank page?"


def assert_the_frame_is_there(dom: str) -> None:
    """The navigation (every guide and the API reference) and the search box."""
    assert '<nav class="md-nav md-nav--primary"' in dom, "no primary navigation in the page"
    links = re.findall(r'<(a|label)\b[^>]*class="md-nav__link[^"]*"[^>]*>(.*?)</\1>', dom, re.S)
    labels = {" ".join(text_of(link).split()) for _, link in links}
    for label in ("Quickstart", "Concepts", "PyTorch", "JAX", "API reference", "trainbus_torch"):
        assert label in labels, f"the navigation lacks {label!r}"
    assert re.search(r'<input[^>]*class="md-search__input"[^>]*name="query"', dom), "no search box"


def code_blocks(dom: str) -> list[str]:
    return [text_of(block) for block in re.findall(r"<pre[^>]*>.*?</pre>", dom, re.S)]


def test_the_home_page_has_navigation_search_example_and_curves(
    browser: str, url: str, screenshots: Path, tmp_path: Path
) -> None:
    dom = render(browser, url, screenshots / "home.png", tmp_path / "profile")
    assert_the_frame_is_there(dom)
    blocks = code_blocks(dom)
    assert any("make demo" in block and "make test" in block for block in blocks)
    assert any("emitter.training(epochs=100)" in block for block in blocks)
    assert re.search(r'<img[^>]*src="images/curves\.png"', dom), "no training-curves picture"
    assert_not_blank(screenshots / "home.png")


def test_an_api_page_shows_signatures_and_examples_as_code(
    browser: str, url: str, screenshots: Path, tmp_path: Path
) -> None:
    dom = render(browser, f"{url}api/torch/", screenshots / "api-torch.png", tmp_path / "profile")
    assert_the_frame_is_there(dom)
    assert 'id="trainbus_torch.fit"' in dom
    signatures = [text_of(s) for s in re.findall(r'<div class="doc-signature.*?</div>', dom, re.S)]
    fit = next((s for s in signatures if s.lstrip().startswith("fit(")), None)
    assert fit is not None, "no signature of trainbus_torch.fit"
    assert "epochs: int" in fit
    assert "validation_data" in fit
    # A docstring's `Example:` doctests are rendered as Python code, not as prose.
    assert any(">>> micro_batches(5, 3)" in block for block in code_blocks(dom))
    assert_not_blank(screenshots / "api-torch.png")


def test_the_search_index_holds_guides_and_api_names(site: Path) -> None:
    index = json.loads((site / "search" / "search_index.json").read_text())
    locations = {doc["location"].split("#")[0] for doc in index["docs"]}
    assert {"", "quickstart/", "api/trainbus/", "api/callbacks/"} <= locations
    assert any(
        doc["location"].endswith("#trainbus.callbacks.EarlyStopping") for doc in index["docs"]
    )


def test_no_api_page_turns_a_docstring_line_into_a_quote(site: Path) -> None:
    """A docstring line starting with ``>`` would render as a block quote in Markdown."""
    quoted = sorted(
        str(page.relative_to(site))
        for page in (site / "api").glob("*/index.html")
        if "<blockquote" in page.read_text()
    )
    assert not quoted, (
        f"block quotes in the API reference (a docstring line starts with '>'): {quoted}"
    )
