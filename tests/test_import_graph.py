"""The import graph of sareval: no cycle, no project module imported inside a function to hide
one, and the layer contracts of pyproject.toml ([tool.importlinter]) kept.

The graph comes from :mod:`benchmarks.import_graph` (``ast``: every import at any depth); an
import inside a function is allowed only where its target loads a heavy or optional third-party
package (torch, onnx, rasterio, ...: :data:`benchmarks.import_graph.HEAVY`), so that ``import
sareval`` and the CLI stay light. Run: ``python -m benchmarks.import_graph`` prints the graph.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.import_graph import (
    HEAVY,
    Import,
    all_imports,
    cycles,
    deferred_light_imports,
    heavy_modules,
    module_names,
    package_cycles,
)

REPO = Path(__file__).resolve().parent.parent

#: (importer, imported) -> why the import stays inside a function; keep this short (empty:
#: every project import is at the top of its file)
ALLOWED_IN_FUNCTION: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def graph() -> tuple[list[Import], dict[str, Path]]:
    return all_imports(), module_names()


def test_no_import_cycle(graph: tuple[list[Import], dict[str, Path]]) -> None:
    imports, _ = graph
    assert cycles(imports) == []
    # nor between the rooms of the package (sareval.evaluator.* as one)
    assert package_cycles(imports) == []


def test_no_project_module_imported_inside_a_function_without_need(
    graph: tuple[list[Import], dict[str, Path]],
) -> None:
    imports, modules = graph
    found = sorted(
        {
            (i.source, i.target, f"{modules[i.source].relative_to(REPO)}:{i.line}")
            for i in deferred_light_imports(imports, modules)
            if (i.source, i.target) not in ALLOWED_IN_FUNCTION
        }
    )
    assert found == [], "import these at the top of the file:\n" + "\n".join(map(str, found))
    for source, target in ALLOWED_IN_FUNCTION:  # the allow-list names imports that exist
        assert any(i.source == source and i.target == target and i.in_function for i in imports)


def test_heavy_dependencies_are_classified(graph: tuple[list[Import], dict[str, Path]]) -> None:
    imports, modules = graph
    heavy = heavy_modules(imports, modules)
    # the model architectures load torch; a submodule loads its package's __init__ too
    assert "torch" in heavy["sareval.models.resnet"] and "torch" in heavy["sareval.models.pt2"]
    # the library's entry points and the contracts stay light (torch only where it runs)
    for light in ("sareval", "sareval.cli", "sareval.api", "sareval.card", "sareval.store"):
        assert heavy[light] == set(), (light, heavy[light])
    assert "rasterio" not in heavy["sareval.commands.preprocess"]


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "sareval" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "sareval"


def test_walker_finds_hidden_cycles_and_deferred_imports(tmp_path: Path) -> None:
    """An independent small package with one cycle hidden in a function, one relative import,
    one type-only import and one deferred import of a heavy module."""
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from sareval import b\n",
            "b.py": "def f():\n    from .c import x\n    return x\n",
            "c.py": "import numpy\n\ndef g():\n    import sareval.a\n",
            "d.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sareval.e import y\n"
            ),
            "e.py": "import sareval.d\n\ndef h():\n    from sareval.sub import t\n",
            "sub/__init__.py": "import torch\n",
            "sub/t.py": "X = 1\n",
        },
    )
    imports = all_imports(root)
    modules = module_names(root)
    assert cycles(imports) == [["sareval.a", "sareval.b", "sareval.c"]]
    deferred = {(i.source, i.target) for i in deferred_light_imports(imports, modules)}
    # e -> sub.t loads sub/__init__ (torch): allowed; d -> e is type-only (never runs)
    assert deferred == {("sareval.b", "sareval.c"), ("sareval.c", "sareval.a")}
    assert heavy_modules(imports, modules)["sareval.sub.t"] == {"torch"} <= HEAVY
    tc = [i for i in imports if i.source == "sareval.d"]
    assert [(i.target, i.type_checking) for i in tc] == [("sareval.e", True)]


@pytest.mark.skipif(
    shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
    reason="import-linter is not installed (the dev extra)",
)
def test_import_linter_contracts_are_kept() -> None:
    exe = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run(
        [str(exe), "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout
