"""Product and lab apart: nothing in the ``mirg`` package imports the repository's ``lab/`` (the lab imports
``mirg``, never the other way round), so an installed wheel, which holds no lab, imports whole."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mirg"


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            names |= {
                a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)
            }
    return names


def test_no_module_of_the_package_imports_the_lab():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    offenders = {
        str(f.relative_to(SRC)): sorted(
            n
            for n in _imported(ast.parse(f.read_text(encoding="utf-8")))
            if n == "lab" or n.startswith("lab.")
        )
        for f in files
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_the_check_sees_every_form_of_import():
    code = (
        "import lab\nfrom lab.tinybase import cli\nimport importlib\nimportlib.import_module('lab.probes')\n"
    )
    assert {"lab", "lab.tinybase", "lab.probes"} <= _imported(ast.parse(code))
