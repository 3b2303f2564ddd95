"""The web book: the executed notebooks and the method notes as a static HTML site.

``make book`` (``python -m casn_lite.tooling.book``) lays out the book's sources in
``book/_build/source/`` (``book/index.md``, which holds the table of contents, and copies of
``docs/`` and the executed notebooks, so relative links keep working) and builds them with
Sphinx and myst-nb into ``book/_build/html/``, with ``book/conf.py``. The notebooks are
shown as committed, with their outputs, and never executed. MathJax is copied from the
jupyter-server-mathjax package into the site's ``_static/mathjax/``, so the pages render
their equations with no network.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .notebooks import ROOT, notebooks

__all__ = ["BookError", "BOOK_DIR", "BUILD_DIR", "MATHJAX_CONFIG", "missing_notebooks", "check_builder", "stage",
           "build", "copy_mathjax", "main"]

BOOK_DIR = ROOT / "book"
BUILD_DIR = BOOK_DIR / "_build"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full"  # the one combined configuration the package ships


class BookError(RuntimeError):
    """A book that cannot be built: an executed notebook or the builder is missing."""


def missing_notebooks() -> list[str]:
    """The executed ``.ipynb`` of each notebook source that is not there."""
    return [s.with_suffix(".ipynb").name for s in notebooks().values() if not s.with_suffix(".ipynb").is_file()]


def stage(source: Path) -> Path:
    """Lay out the book's sources in ``source``: ``index.md``, a copy of ``docs/`` and the
    executed notebooks in ``notebooks/``. Copies, not symbolic links: myst resolves a page's
    relative links from its real path. They keep their times, so Sphinx rebuilds only the
    pages that changed. Returns ``source``."""
    if source.exists():
        shutil.rmtree(source)
    (source / "notebooks").mkdir(parents=True)
    shutil.copy2(BOOK_DIR / "index.md", source / "index.md")
    shutil.copytree(ROOT / "docs", source / "docs")
    for notebook in notebooks().values():
        shutil.copy2(notebook.with_suffix(".ipynb"), source / "notebooks")
    return source


def check_builder() -> None:
    """Refuse, in one line, an environment without the course extra."""
    try:
        import jupyter_server_mathjax  # noqa: F401
        import myst_nb  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError as err:
        raise BookError(f"the book needs the course extra ({err.name} is missing): run `make install`") from None


def mathjax_dir() -> Path:
    """MathJax's files as the jupyter-server-mathjax package ships them."""
    import jupyter_server_mathjax

    return Path(jupyter_server_mathjax.__file__).parent / "static"


def copy_mathjax(app, exception) -> None:
    """Sphinx's ``build-finished`` hook: MathJax into the site's ``_static/mathjax/``."""
    if exception is None and app.builder.format == "html":
        shutil.copytree(mathjax_dir(), Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def build(build_dir: Path = BUILD_DIR, quiet: bool = True) -> Path:
    """Build the book in ``build_dir`` (its sources in ``source/``, the site in ``html/``);
    returns the site's ``index.html``."""
    missing = missing_notebooks()
    if missing:
        raise BookError(f"the book shows the executed notebooks, and {', '.join(missing)} "
                        "is missing: run `make notebooks` first")
    check_builder()
    from sphinx.cmd.build import build_main

    source, out = stage(build_dir / "source"), build_dir / "html"
    args = ["-b", "html", "-c", str(BOOK_DIR), "-d", str(build_dir / "doctrees"), str(source), str(out)]
    if build_main([*args, *(["-q"] if quiet else [])]) != 0:
        raise BookError(f"Sphinx could not build the book (its messages are above); sources in {source}")
    return out / "index.html"


def main() -> int:
    """``make book``: build it, print where it is; a one-line error for a user's mistake."""
    try:
        index = build()
    except BookError as err:
        print(f"book: {err}", file=sys.stderr)
        return 2
    print(f"book: {index} (open it in a browser, or publish {index.parent} on any static host)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
