"""Layering: the domain core, the ingest plumbing and the schemas never import the stagewatch package.

Walks every module under processors/, ingest/ and schemas/ with ast (imports inside functions and
``importlib.import_module("stagewatch...")`` calls included), so an import added anywhere fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("processors", "ingest", "schemas")


def stagewatch_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of stagewatch (or a submodule) in ``source``."""
    found: list[tuple[int, str]] = []

    def hit(name: str | None) -> bool:
        return bool(name) and (name == "stagewatch" or name.startswith("stagewatch."))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if hit(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and hit(node.module):
            found.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            arg = node.args[0].value
            if name in ("import_module", "__import__") and isinstance(arg, str) and hit(arg):
                found.append((node.lineno, arg))
    return found


def _modules() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))


def test_the_walker_sees_every_form_of_import() -> None:
    src = ("import os\nimport stagewatch.sink as s\nfrom stagewatch import metrics\n"
           "def f():\n    from stagewatch.store import open_store\n    importlib.import_module('stagewatch.cli')\n"
           "from stagewatchers import x\nfrom . import stagewatch\n")
    assert [line for line, _ in stagewatch_imports(src)] == [2, 3, 5, 6]


def test_the_faust_worker_package_is_walked() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _modules()}
    assert {"processors/faust/app.py", "processors/faust/tables.py", "processors/faust/fetch_loop.py",
            "processors/faust/batch_reader.py", "processors/faust/config.py", "ingest/publish.py",
            "processors/faust/recovery_report.py", "schemas/queries.py"} <= names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_below_stagewatch_imports_it(path: Path) -> None:
    bad = stagewatch_imports(path.read_text(encoding="utf-8"))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: inject it from the stagewatch edge instead"
