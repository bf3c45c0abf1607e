"""The package imports one way: no cycle between its modules and subpackages, and never a study."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "attnet"


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, package: Path, modules: set[str] = frozenset()) -> set[str]:
    """Every module `path` imports, at the top or inside a function, relative imports resolved.
    `from a import b` imports a.b where that is one of `modules`, else a."""
    name = module_name(path, package)
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            found |= {f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names}
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports. The package's own __init__ (the public API that
    re-exports the layers) is left out: importing `attnet.x` runs it, but nothing inside imports it."""
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    root = package.name
    graph = {}
    for name, path in files.items():
        if name == root:
            continue
        targets = set()
        for target in imports_of(path, package, set(files)):
            while target and target not in files:        # `from attnet.models import X`: the module attnet.models
                target = target.rpartition(".")[0]
            if target and target != root and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def unit(name: str, root: str) -> str:
    """The layer a module belongs to: a top-level module, or a subpackage as a whole."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else root


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def layer_graph(graph: dict[str, set[str]], root: str) -> dict[str, set[str]]:
    """The same imports between top-level modules and subpackages (attnet.data, attnet.engine, ...)."""
    layers: dict[str, set[str]] = {}
    for name, targets in graph.items():
        layers.setdefault(unit(name, root), set()).update(unit(t, root) for t in targets)
    return {k: v - {k} for k, v in layers.items()}


def cycles(package: Path) -> list[list[str]]:
    graph = import_graph(package)
    return [c for c in (find_cycle(graph), find_cycle(layer_graph(graph, package.name))) if c]


def test_no_import_cycle_between_modules_or_subpackages():
    assert cycles(PACKAGE) == []


def test_the_package_never_imports_a_study():
    studies = {p.name for p in (PACKAGE.parent / "studies").iterdir() if p.is_dir()} | {"studies"}
    offenders = {str(path.relative_to(PACKAGE.parent)): sorted(t for t in imports_of(path, PACKAGE)
                                                                if t.split(".")[0] in studies)
                 for path in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def write(tree: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    return tree / "pkg"


@pytest.mark.parametrize("files, cycle", [
    # a function-level import closing a loop between two modules
    ({"pkg/__init__.py": "", "pkg/a.py": "from pkg.b import f\n",
      "pkg/b.py": "def f():\n    from pkg import a\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
    # a relative import from inside a subpackage up to a module that imports the subpackage
    ({"pkg/__init__.py": "", "pkg/top.py": "from pkg.sub import x\n", "pkg/sub/__init__.py": "from .x import y\n",
      "pkg/sub/x.py": "from ..top import z\ny = 1\n"}, ["pkg.sub", "pkg.top", "pkg.sub"]),
])
def test_a_planted_cycle_is_found(tmp_path, files, cycle):
    assert cycle in cycles(write(tmp_path, files))


def test_one_way_imports_pass(tmp_path):
    package = write(tmp_path, {"pkg/__init__.py": "from pkg.top import z\n", "pkg/top.py": "from pkg.low import y\nz = y\n",
                               "pkg/low.py": "import os\ny = 1\n"})
    assert cycles(package) == []
    assert import_graph(package) == {"pkg.top": {"pkg.low"}, "pkg.low": set()}
