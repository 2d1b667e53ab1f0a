"""The layers hold: pipeline/ (the library) imports neither serve/ nor cluster/, cluster/ does not
import serve/, and no modules of the three import each other in a circle. Read from the source
with `ast` (nothing is imported); an import inside a function counts like one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "serve", "cluster")
FORBIDDEN = {"pipeline": ("serve", "cluster"), "cluster": ("serve",)}  # layer -> layers it must not import


def _module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = _module_files()


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported module of the three packages, line) for every import statement in the file.
    `from a import b` is the module a.b when b is one, else a."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            for alias in node.names:
                found.append((f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] in PACKAGES]


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(REPO)}:{line}"


def test_layers_import_only_downwards():
    broken = [
        f"{_where(module, line)} imports {name}"
        for module, imports in GRAPH.items()
        for name, line in sorted(imports, key=lambda found: found[1])
        if name.split(".")[0] in FORBIDDEN.get(module.split(".")[0], ())
    ]
    assert not broken, "layer violations:\n" + "\n".join(broken)


def _cycles() -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    edges = {module: sorted({name for name, _ in imports if name in MODULES}) for module, imports in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for name in edges[module]:
            if name not in index:
                visit(name)
                low[module] = min(low[module], low[name])
            elif name in stack:
                low[module] = min(low[module], index[name])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                components.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return components


def _circle(component: list[str]) -> str:
    """The shortest way from the component's first module back to it, each step with its file:line."""
    members, start = set(component), component[0]
    came_from: dict[str, tuple[str, int]] = {}  # module -> (the module importing it, line)
    frontier = [start]
    while start not in came_from:  # breadth first; a strongly connected component leads back
        reached = []
        for module in frontier:
            for name, line in GRAPH[module]:
                if name in members and name not in came_from:
                    came_from[name] = (module, line)
                    reached.append(name)
        frontier = reached
    steps, module = [], start
    while not steps or module != start:
        importer, line = came_from[module]
        steps.append(f"{module} ({_where(importer, line)})")
        module = importer
    return " -> ".join([start, *reversed(steps)])


def test_no_import_cycles():
    cycles = list(_cycles())
    assert not cycles, "import cycles:\n" + "\n".join(_circle(c) for c in cycles)


def test_the_checker_sees_function_level_and_package_imports():
    # pipeline/models.py imports `from pipeline import bundled` inside functions: the module pipeline.bundled
    assert "pipeline.bundled" in {name for name, _ in GRAPH["pipeline.models"]}
