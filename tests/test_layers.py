"""The package's imports point down and never go round in a circle.

Layers: core (pure logic) imports only core; services (the outside world; bot/config.py belongs here: it reads
the file, the environment and the keychain) import core; render (turning results into text) imports core; the
interfaces (bot/discord, bot/cli*.py, bot/__main__.py) import any of them. Every `import` is read with `ast`, those
inside functions included; imports under `if TYPE_CHECKING:` are left out, since they never run.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import bot

PACKAGE_DIR = Path(bot.__file__).resolve().parent
ROOT = "bot"  # the package itself holds only __version__: anyone may import it

# Which layers each layer may import (its own included).
ALLOWED = {
    "core": {"core"},
    "services": {"services", "core"},
    "render": {"render", "core"},
    "interface": {"interface", "services", "render", "core"},
}

@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    where: str  # path:line, for the failure message

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} ({self.where})"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    if module == ROOT:
        return ROOT
    if parts[1] in ("core", "services", "render"):
        return parts[1]
    if module == "bot.config":
        return "services"
    if parts[1] == "discord" or parts[1].startswith("cli") or parts[1] == "__main__":
        return "interface"
    raise AssertionError(f"{module} is in no layer: add it to tests/test_layers.py")


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except the body of `if TYPE_CHECKING:` (its `else:` runs)."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        children = node.orelse if _type_checking_only(node) else ast.iter_child_nodes(node)
        stack.extend(children)
    return found


def _project_module(name: str) -> str | None:
    """The project's module that `name` (a dotted import target) loads, or None when it is not the project's."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def edges_of(module: str) -> list[Edge]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges = []
    for node in _imports(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from a import b` loads module a.b when there is one, else takes a name from a.
            targets = [f"{base}.{alias.name}" for alias in node.names]
        where = f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno}"
        for target in targets:
            imported = _project_module(target)
            if imported is not None and imported != module:
                edges.append(Edge(module, imported, where))
    return edges


EDGES = [edge for module in MODULES for edge in edges_of(module)]

# What the pure core must never import (DESIGN: no discord, no database, no network; nor processes or MLX).
IMPURE = {"discord", "aiosqlite", "sqlite3", "aiohttp", "yarl", "huggingface_hub", "urllib.request", "http", "socket",
          "subprocess", "mlx", "mlx_lm", "keyring"}


def outside_imports(module: str) -> list[tuple[str, int]]:
    """The top-level names of what a module imports from outside the project, with their line."""
    found = []
    for node in _imports(ast.parse(MODULES[module].read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [] if node.level else [node.module or ""]
        found += [(name, node.lineno) for name in names if _project_module(name) is None]
    return found


def graph(edges: list[Edge]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {module: set() for module in MODULES}
    for edge in edges:
        out[edge.importer].add(edge.imported)
    return out


def circles(out: dict[str, set[str]]) -> list[list[str]]:
    """One circle (a path that comes back to its start) per strongly connected component of more than one module
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(out):
        if start in index:
            continue
        work = [(start, iter(sorted(out[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(out[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)
    return [_circle_through(sorted(c), out) for c in components]


def _circle_through(component: list[str], out: dict[str, set[str]]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(out[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no circle through {component}")


def test_every_module_has_a_layer():
    assert {module: layer(module) for module in MODULES}


def test_imports_point_down():
    upward = [str(e) for e in EDGES
              if layer(e.imported) != ROOT and layer(e.imported) not in ALLOWED[layer(e.importer)]]
    assert not upward, "imports that point up or sideways (" + ", ".join(
        f"{low} imports only {' and '.join(sorted(ok))}" for low, ok in ALLOWED.items() if low != "interface"
    ) + "):\n  " + "\n  ".join(upward)


def test_core_is_pure():
    impure = [f"{module} imports {name} ({MODULES[module].relative_to(PACKAGE_DIR.parent)}:{line})"
              for module in MODULES if layer(module) == "core"
              for name, line in outside_imports(module)
              if any(name == bad or name.startswith(f"{bad}.") for bad in IMPURE)]
    assert not impure, "the core must stay pure:\n  " + "\n  ".join(impure)


def test_no_import_circles():
    where = {(e.importer, e.imported): e.where for e in EDGES}
    found = [" -> ".join(circle) + "  (" + ", ".join(where[hop] for hop in pairwise(circle)) + ")"
             for circle in circles(graph(EDGES))]
    assert not found, "import circles:\n  " + "\n  ".join(found)


def test_the_walk_sees_what_it_must():
    """The checks above are only as good as the walk: imports inside functions, relative imports and
    `from package import module` are all edges; TYPE_CHECKING imports are not."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from bot.services import hub\n"
        "from . import units\n"
        "if TYPE_CHECKING:\n"
        "    from bot.render.text import render_verdict\n"
        "def later():\n"
        "    import bot.discord.safe\n"
    )
    imports = _imports(ast.parse(source))
    names = [(type(i).__name__, i.module if isinstance(i, ast.ImportFrom) else i.names[0].name) for i in imports]
    expected = [("ImportFrom", "typing"), ("ImportFrom", "bot.services"), ("ImportFrom", None),
                ("Import", "bot.discord.safe")]
    assert sorted(names, key=str) == sorted(expected, key=str)
    assert _project_module("bot.services.hub") == "bot.services.hub"
    assert _project_module("bot.services.hub.HubService") == "bot.services.hub"
    assert _project_module("json") is None
    cycle = circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycle == [["a", "b", "c", "a"]]
