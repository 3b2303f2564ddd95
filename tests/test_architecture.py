"""The method never imports the tooling: ``casn_lite/tooling/`` (command line, runner, profiles,
hand-outs, smoke runs, budget, locks) runs the method, and the method (data, models, attention,
losses, engine, evaluation, ...) must stand without it, so a notebook or a reader of the method
needs none of the machinery.

Caught: an import of the tooling added to a method module, at its top or inside a function,
absolute or relative, e.g. ``from .tooling.locks import lock_folder`` in ``engine.py``,
``from ..tooling import signals`` in ``data/loaders.py`` or ``import casn_lite.tooling.runner``
in a function of ``ablation.py``.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "casn_lite"
TOOLING = PACKAGE / "tooling"
METHOD = sorted(p for p in PACKAGE.rglob("*.py")
                if TOOLING not in p.parents and p != PACKAGE / "__main__.py")


def tooling_imports(path: Path, package_dir: Path = PACKAGE) -> list[str]:
    """Each import of ``casn_lite.tooling`` in the module at ``path`` (in the package folder
    ``package_dir``), anywhere in it, as "line N: <statement>"."""
    package = ["casn_lite", *path.relative_to(package_dir).parent.parts]  # what `from . import` means here
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]  # `from casn_lite import tooling`
        else:
            continue
        if any(t == "casn_lite.tooling" or t.startswith("casn_lite.tooling.") for t in targets):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_method_modules_are_found():
    names = {p.relative_to(PACKAGE).as_posix() for p in METHOD}
    assert {"engine.py", "models.py", "saving.py", "data/loaders.py"} <= names
    assert not any(n.startswith("tooling/") for n in names) and "__main__.py" not in names


@pytest.mark.parametrize("path", METHOD, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_the_method_imports_nothing_from_the_tooling(path):
    assert tooling_imports(path) == [], f"{path.relative_to(PACKAGE)} imports the tooling"


# imports a method module may have, which the check must leave alone
ALLOWED = {"engine.py": "import torch\nfrom . import saving\nfrom .saving import write_text\nimport tooling_elsewhere\n",
           "data/loaders.py": "from ..models import ARCHS\nfrom .synth import generate\nfrom .. import saving\n"}


@pytest.mark.parametrize("statement, where", [
    ("from .tooling.locks import lock_folder", "engine.py"),
    ("from .tooling import signals", "engine.py"),
    ("from . import tooling", "engine.py"),
    ("import casn_lite.tooling.runner", "engine.py"),
    ("from casn_lite.tooling import budget", "engine.py"),
    ("from casn_lite import tooling", "engine.py"),
    ("def f():\n    from .tooling.pairs import check_pair", "engine.py"),
    ("from ..tooling import signals", "data/loaders.py"),
    ("from ..tooling.runner import run", "data/loaders.py"),
    ("def f():\n    import casn_lite.tooling", "data/loaders.py"),
])
def test_the_check_sees_each_form_of_import(tmp_path, statement, where):
    """The check itself, on a planted module: each form of a tooling import is found, and a
    method module's own imports are not."""
    planted = tmp_path / "casn_lite" / where  # at the same depth: relative imports mean the same
    planted.parent.mkdir(parents=True)
    planted.write_text(ALLOWED[where])
    assert tooling_imports(planted, tmp_path / "casn_lite") == []
    planted.write_text(ALLOWED[where] + statement + "\n")
    found = tooling_imports(planted, tmp_path / "casn_lite")
    assert len(found) == 1 and "tooling" in found[0], (where, statement, found)
