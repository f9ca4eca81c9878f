"""The package's layout: no import loops inside `service`, and no module of a lower layer importing a higher one.

Every import counts, those under `if TYPE_CHECKING:` and inside functions included: a loop that only the type
checker sees is still a loop for whoever reads the code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "service"

# Lowest first. A module's layer is its folder's; the HTTP surface of a folder (its `api` and `middleware`
# modules) sits above the web layer, whichever folder it is in.
DOMAIN = frozenset(
    {"auth", "tasks", "annotations", "community", "geo", "ingest", "errorlog", "snapshots", "system_metrics", "reports",
     "export"}
)  # fmt: skip
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("core", frozenset({"core", ""})),  # "": the package's own __init__ (the version)
    ("observability", frozenset({"observability"})),
    ("storage", frozenset({"storage"})),
    ("live", frozenset({"live"})),
    ("domain", DOMAIN),
    ("web", frozenset({"web"})),
    ("http", frozenset()),
    ("tools", frozenset({"tools"})),
    ("entry", frozenset({"app", "cli", "__main__"})),
)
HTTP_MODULES = frozenset({"api", "middleware"})


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Every module of the package under `root` and the package's modules it imports (`from a import b` counts
    as importing `a.b` when that is a module, else `a`)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    found.add(child if child in modules else node.module)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import loops: each strongly connected group of more than one module (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def layer_of(module: str) -> int:
    parts = module.split(".")[1:]  # without "service"
    folder = parts[0] if parts else ""
    if len(parts) > 1 and parts[-1] in HTTP_MODULES:
        return next(i for i, (name, _) in enumerate(LAYERS) if name == "http")
    for i, (_, folders) in enumerate(LAYERS):
        if folder in folders:
            return i
    raise AssertionError(f"{module}: in no layer; add its folder to LAYERS")


def upward(graph: Mapping[str, set[str]]) -> Iterator[str]:
    """Each import of a higher layer's module by a lower layer's one."""
    for module, imported in sorted(graph.items()):
        for other in sorted(imported):
            if layer_of(other) > layer_of(module):
                yield f"{module} ({LAYERS[layer_of(module)][0]}) imports {other} ({LAYERS[layer_of(other)][0]})"


def test_no_import_loops() -> None:
    assert cycles(imports()) == []


def test_no_lower_layer_imports_a_higher_one() -> None:
    assert list(upward(imports())) == []


def test_the_package_root_holds_folders_and_the_entry_points_only() -> None:
    loose = {p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix == ".py"}
    assert loose == {"__init__.py", "__main__.py", "app.py", "cli.py"}


def test_every_folder_is_in_a_layer() -> None:
    for module in imports():
        layer_of(module)


@pytest.mark.parametrize(
    ("graph", "loops"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set(), "c": {"d"}, "d": {"c"}}, [["c", "d"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_cycles_finds_the_loops(graph: dict[str, set[str]], loops: list[list[str]]) -> None:
    assert cycles(graph) == loops


def test_the_checks_see_a_loop_through_a_type_checking_import(tmp_path: Path) -> None:
    package = tmp_path / "service"
    (package / "web").mkdir(parents=True)
    (package / "auth").mkdir()
    for init in ("__init__.py", "web/__init__.py", "auth/__init__.py"):
        (package / init).write_text("")
    (package / "web" / "resources.py").write_text("from service.auth.ratelimit import RateLimiter\n")
    (package / "auth" / "ratelimit.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from service.web.resources import Resources\n"
    )
    graph = imports(package)
    assert cycles(graph) == [["service.auth.ratelimit", "service.web.resources"]]
    assert list(upward(graph)) == ["service.auth.ratelimit (domain) imports service.web.resources (web)"]
