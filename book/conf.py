"""Sphinx configuration of the web book (`make book`; casn_lite/tooling/book.py stages the
sources next to book/index.md and builds it). The notebooks are shown as committed, never
executed, and MathJax is served from the site itself, so the book renders offline."""

from casn_lite.tooling.book import MATHJAX_CONFIG, copy_mathjax

project = "casn-lite"
author = "casn-lite contributors"
copyright = "casn-lite contributors"

extensions = ["myst_nb"]
root_doc = "index"
include_patterns = ["index.md", "notebooks/0*.ipynb", "docs/*.md", "docs/*/attention_study.md"]  # + the studies' reports
exclude_patterns = ["docs/architecture.md", "docs/reliability.md"]  # notes for developers

nb_execution_mode = "off"  # the committed notebooks are already executed (about 40 min)
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
suppress_warnings = ["myst.header"]  # notes that start at a level-2 heading

html_theme = "alabaster"
html_title = "casn-lite"
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
html_theme_options = {"font_family": "sans-serif", "head_font_family": "sans-serif",
                      "code_font_family": "monospace", "show_relbars": True}

# MathJax 2.7 from the jupyter-server-mathjax package, copied into _static/mathjax/ once the
# pages are written: a relative path, so no page loads it (or its fonts) from a CDN
mathjax_path = f"mathjax/MathJax.js?config={MATHJAX_CONFIG}"
myst_update_mathjax = False  # myst would add a MathJax 3 configuration
mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                               "processEscapes": True},
                   # the package ships the STIX-Web fonts only (as Jupyter's classic notebook set it)
                   "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web",
                                "imageFont": None}}


def setup(app):
    app.connect("build-finished", copy_mathjax)
