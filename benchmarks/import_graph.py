"""The import graph of the `sareval` package, measured with `ast`.

Every `import` / `from ... import` of every module, at any depth (inside functions, classes,
`if TYPE_CHECKING:` blocks), resolved to the project module it names. Prints the cycles
(strongly connected components of more than one module) and the imports of project modules
made inside functions. `python -m benchmarks.import_graph [package dir]`.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "sareval"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
#: third-party packages heavy or optional enough to import only where needed: a project module
#: that imports one of these at its top (itself or through the modules it imports at their
#: tops) may be imported inside a function
HEAVY = frozenset(
    {
        "torch",
        "torchvision",
        "onnx",
        "onnxruntime",
        "onnxscript",
        "rasterio",
        "pyarrow",
        "matplotlib",
        "shapiq",
        "lightning",
        "pytorch_lightning",
        "torchgeo",
        "s2cloudless",
    }
)


@dataclass(frozen=True)
class Import:
    """One import of a project module: where it is and whether it is inside a function."""

    source: str  # importing module, dotted
    target: str  # imported project module, dotted
    line: int
    in_function: bool
    type_checking: bool  # under `if TYPE_CHECKING:` (never executed)


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every `.py` under the package directory."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is a project module."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, modules: dict[str, Path]) -> list[Import]:
    """The project imports of one module, in source order."""
    tree = ast.parse(modules[name].read_text(), filename=str(modules[name]))
    package = name if _is_package(name, modules) else name.rpartition(".")[0]
    found: list[Import] = []

    def add(target: str | None, node: ast.stmt, in_function: bool, tc: bool) -> None:
        if target is not None and target != name:
            found.append(Import(name, target, node.lineno, in_function, tc))

    def visit(node: ast.AST, in_function: bool, tc: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    add(_resolve(alias.name, modules), node, in_function, tc)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != PACKAGE:
                return
            for alias in node.names:
                # `from pkg import submodule` imports the submodule
                sub = f"{mod}.{alias.name}"
                add(sub if sub in modules else _resolve(mod, modules), node, in_function, tc)
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            child_tc = tc or (
                isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body
            )
            visit(child, inner, child_tc)

    visit(tree, False, False)
    return found


def third_party_at_top(name: str, modules: dict[str, Path]) -> set[str]:
    """Top-level names of the packages other than the project's that a module imports when it
    is imported (outside functions and ``if TYPE_CHECKING:``)."""
    tree = ast.parse(modules[name].read_text(), filename=str(modules[name]))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.orelse:
                visit(stmt)
            return
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(PACKAGE)
    return found


def heavy_modules(imports: list[Import], modules: dict[str, Path]) -> dict[str, set[str]]:
    """Project module -> the :data:`HEAVY` packages that importing it loads (its own top-level
    imports, those of the project modules it imports at its top, and of its parent packages)."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if not imp.in_function and not imp.type_checking:
            edges[imp.source].add(imp.target)
    for m in modules:  # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = m.split(".")
        edges[m].update(
            ".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in modules
        )
    own = {m: third_party_at_top(m, modules) & HEAVY for m in modules}
    heavy: dict[str, set[str]] = {}
    for m in modules:
        seen, todo, found = {m}, [m], set()
        while todo:
            v = todo.pop()
            found |= own[v]
            for w in edges[v] - seen:
                seen.add(w)
                todo.append(w)
        heavy[m] = found
    return heavy


def deferred_light_imports(imports: list[Import], modules: dict[str, Path]) -> list[Import]:
    """Imports of project modules inside functions whose target loads no :data:`HEAVY` package:
    nothing is saved by deferring them, so they belong at the top of the file."""
    heavy = heavy_modules(imports, modules)
    return [i for i in imports if i.in_function and not heavy[i.target]]


def all_imports(root: Path = ROOT) -> list[Import]:
    """Every project import of every module of the package."""
    modules = module_names(root)
    return [imp for name in modules for imp in imports_of(name, modules)]


def cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted.

    Imports under `if TYPE_CHECKING:` are left out (they never run); a package's import of
    its own submodules counts like any other import.
    """
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.type_checking:
            graph.setdefault(imp.source, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def strongconnect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return sorted(found)


def package_cycles(imports: list[Import]) -> list[list[str]]:
    """Cycles between the package's rooms: `sareval.x.y` counted as `sareval.x`.

    A package's `__init__` importing its own submodules is not an edge between rooms.
    """

    def room(name: str) -> str:
        return ".".join(name.split(".")[:2])

    collapsed = [
        Import(room(i.source), room(i.target), i.line, i.in_function, i.type_checking)
        for i in imports
        if room(i.source) != room(i.target) and i.source != PACKAGE
    ]
    return cycles(collapsed)


def main(argv: list[str] | None = None) -> int:
    """Print the cycles and the function-level project imports (those that defer a heavy
    package, and those that defer nothing); exit 1 when a cycle or a light one exists."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    imports = all_imports(args.root)
    modules = module_names(args.root)
    heavy = heavy_modules(imports, modules)
    # one line per import statement and target (``from m import a, b`` counts once)
    inner = sorted({(i.source, i.line, i.target) for i in imports if i.in_function})
    light = [(s, n, t) for s, n, t in inner if not heavy[t]]
    found = cycles(imports)
    rooms = package_cycles(imports)
    print(f"{len(modules)} modules, {len(imports)} project imports, {len(inner)} inside functions")
    print(f"module cycles: {len(found)}")
    for c in found:
        print("  " + " <-> ".join(c))
    print(f"cycles between rooms (sareval.<room>): {len(rooms)}")
    for c in rooms:
        print("  " + " <-> ".join(c))
    print(f"project imports inside functions that defer nothing heavy: {len(light)}")
    for source, line, target in light:
        print(f"  {modules[source].relative_to(args.root.parent)}:{line}: {target}")
    print(f"project imports inside functions that defer {', '.join(sorted(HEAVY))}:")
    for source, line, target in inner:
        if heavy[target]:
            where = modules[source].relative_to(args.root.parent)
            print(f"  {where}:{line}: {target} ({', '.join(sorted(heavy[target]))})")
    return 1 if found or light else 0


if __name__ == "__main__":
    raise SystemExit(main())
