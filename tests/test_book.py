"""The web book (`make book`): built from the committed notebooks without running them, its
pages in notebook order, and, in a headless Chromium on a local server with no network, each
notebook page shows its figures and its equations rendered by the MathJax the site serves."""

import functools
import http.server
import os
import threading

import pytest

from casn_lite.tooling import book
from casn_lite.tooling.notebooks import notebooks

from .headless_chromium import Chromium, chromium_path

NOTES = ["docs/method", "docs/attention_study", "docs/positive_control", "docs/decisions"]
CHAPTERS = [f"notebooks/{s.stem}" for s in notebooks().values()] + NOTES

# what a page shows once MathJax has typeset it: its images (loaded or not), the rendered
# equations, MathJax's errors, the resources it fetched (with their HTTP status), and the text a reader sees
# (scripts, which hold the TeX MathJax read, and code left out)
PAGE_REPORT = """(async () => {
  if (window.MathJax && MathJax.Hub) { await new Promise(done => MathJax.Hub.Queue(done)); }
  const text = document.querySelector('div.body').cloneNode(true);
  text.querySelectorAll('script, pre, code, .MathJax_Preview').forEach(e => e.remove());
  return {
    images: [...document.querySelectorAll('div.body img')].map(i => [i.getAttribute('src'), i.naturalWidth]),
    rendered: [...document.querySelectorAll('div.body .MathJax')].filter(
      e => !e.classList.contains('MathJax_Processing') && e.getBoundingClientRect().width > 0).length,
    errors: document.querySelectorAll('.MathJax_Error, merror').length,
    resources: performance.getEntriesByType('resource').map(r => [r.name, r.responseStatus]),
    text: text.textContent,
    next: (document.querySelector('link[rel=next]') || {}).href || null,
  };
})()"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        """No line per request."""


def serve(folder):
    """A local HTTP server of ``folder`` in a thread; returns (server, base URL)."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def browser_or_skip() -> str:
    """Chromium's path; without it, a skip here and a failure in CI (where .ci/run installs it)."""
    found = chromium_path()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it with apt-get")
        pytest.skip("no chromium to check the book in (apt-get install chromium)")
    return found


def test_the_book_shows_every_notebook_in_order_with_figures_and_rendered_equations(tmp_path):
    executable = browser_or_skip()
    index = book.build(tmp_path)
    server, base = serve(index.parent)
    problems, visited = [], []
    try:
        with Chromium(executable) as browser:
            url = browser.evaluate(base + "index.html", PAGE_REPORT)["next"]
            while url and len(visited) < 2 * len(CHAPTERS):  # the "next" links: the book's order
                page = url.removeprefix(base).removesuffix(".html")
                visited.append(page)
                report = browser.evaluate(url, PAGE_REPORT)
                problems += [f"{page} fetched {name} from elsewhere" for name, _ in report["resources"]
                             if not name.startswith(base)]
                problems += [f"{page}: {name} answered {status}" for name, status in report["resources"]
                             if status >= 400 and not name.endswith("/favicon.ico")]  # the browser asks
                if page.startswith("notebooks/"):
                    problems += notebook_page_problems(page, report)
                url = report["next"]
    finally:
        server.shutdown()
    assert visited[: len(CHAPTERS)] == CHAPTERS, "the notebooks in order, then the method notes"
    assert not problems, "\n".join(problems)


def notebook_page_problems(page: str, report: dict) -> list[str]:
    """What a notebook page lacks: loaded figures, rendered and error-free equations, no TeX
    left as text."""
    problems = []
    if not report["images"]:
        problems.append(f"{page} shows no figure")
    problems += [f"{page}: the figure {src} did not load" for src, width in report["images"] if width == 0]
    if report["rendered"] == 0:
        problems.append(f"{page}: no equation rendered by MathJax")
    if report["errors"]:
        problems.append(f"{page}: {report['errors']} MathJax errors")
    raw = [mark for mark in ("$$", "\\(", "\\[", "\\frac", "Math Processing Error") if mark in report["text"]]
    if raw:
        problems.append(f"{page}: TeX left as text ({', '.join(raw)})")
    return problems


def test_building_before_the_notebooks_ran_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    source = tmp_path / "notebooks" / "07_new.py"
    source.parent.mkdir()
    source.write_text("# %% [markdown]\n# # 07 · New\n")
    monkeypatch.setattr("casn_lite.tooling.notebooks.NOTEBOOK_DIR", source.parent)
    assert book.main() == 2
    assert capsys.readouterr().err.strip() == (
        "book: the book shows the executed notebooks, and 07_new.ipynb is missing: run `make notebooks` first")
