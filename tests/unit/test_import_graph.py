"""The application's import graph, read from the source: market/ has no import cycle, and the
privacy library imports nothing of the application or of the web and database stack.

Every ``import`` and ``from ... import`` counts, those inside functions too (a lazy import
still ties two modules together), except those under ``if TYPE_CHECKING:``, which never run.
Relative imports are resolved; ``from market.x import y`` where ``y`` is a submodule is an
edge to ``market.x.y``. Importing a submodule is not counted as importing its parent package
(``market/__init__.py`` builds the application out of every domain; each module would
otherwise depend on all of them).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_PRIVACY = ("market", "flask", "sqlmodel", "sqlalchemy", "alembic")


def module_names(package: str) -> dict[str, Path]:
    """Every module of ``package`` (a folder under the repository root) by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


@dataclass
class _Imports(ast.NodeVisitor):
    """The dotted names one module imports: ``import a.b`` yields ``a.b``; ``from a import b``
    yields ``a.b`` if that is a module, else ``a`` (``resolve`` decides, knowing the modules)."""

    module: str
    is_package: bool
    skip_type_checking: bool = True
    names: set[str] = field(default_factory=set)

    def visit_If(self, node: ast.If) -> None:
        if self.skip_type_checking and _is_type_checking(node.test):
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            package = self.module.split(".")
            if not self.is_package:
                package.pop()
            if node.level > 1:
                package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            self.names.add(f"{base}:{alias.name}")


def resolve(name: str, modules: Iterable[str]) -> str:
    """The module an imported name stands for: ``a:b`` (``from a import b``) is ``a.b`` where
    that is a module, else ``a``; a plain dotted name stands for itself."""
    base, colon, member = name.partition(":")
    if not colon:
        return name
    return f"{base}.{member}" if f"{base}.{member}" in modules else base


def imported_names(module: str, path: Path, *, skip_type_checking: bool = True) -> set[str]:
    visitor = _Imports(module, path.name == "__init__.py", skip_type_checking)
    visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    return visitor.names


def build_graph(package: str = "market") -> dict[str, set[str]]:
    """module -> the modules of ``package`` it imports."""
    modules = module_names(package)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {resolve(name, modules) for name in imported_names(module, path)}
        graph[module] = {target for target in targets if target in modules} - {module}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with a cycle, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    components.append(sorted(component))
    return sorted(components, key=lambda c: (-len(c), c))


def shortest_cycle(graph: dict[str, set[str]], component: Iterable[str]) -> list[str]:
    """One shortest cycle through the component's first module (breadth-first)."""
    members = set(component)
    start = min(members)
    parents: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for successor in sorted(graph[node] & members):
                if successor == start:
                    path = [node]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])  # type: ignore[arg-type]
                    return [*reversed(path), start]
                if successor not in parents:
                    parents[successor] = node
                    following.append(successor)
        frontier = following
    return [start, start]


def cycle_report(graph: dict[str, set[str]]) -> str:
    components = strongly_connected(graph)
    lines = [
        f"{len(graph)} modules, {sum(map(len, graph.values()))} edges, "
        f"{len(components)} cycle(s) (strongly connected components of sizes "
        f"{[len(c) for c in components]})"
    ]
    for component in components:
        lines.append(f"- {len(component)} modules: {', '.join(component)}")
        lines.append(f"  e.g. {' -> '.join(shortest_cycle(graph, component))}")
    return "\n".join(lines)


def test_the_graph_reader_sees_lazy_relative_and_submodule_imports(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..other import thing\n"
        "if TYPE_CHECKING:\n"
        "    from market.hidden import Hidden\n"
        "def f():\n"
        "    import market.lazy.deep\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    modules = {"market.pkg.sibling", "market.other", "market.lazy.deep", "market.hidden"}
    names = {resolve(name, modules) for name in imported_names("market.pkg.mod", path)}
    assert names == {"typing", "market.pkg.sibling", "market.other", "market.lazy.deep"}


def test_tarjan_finds_every_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert strongly_connected(graph) == [["a", "b", "c"], ["e"]]
    assert shortest_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_market_has_no_import_cycle() -> None:
    graph = build_graph("market")
    assert len(graph) > 50  # the reader found the application
    components = strongly_connected(graph)
    assert not components, "market/ has import cycles:\n" + cycle_report(graph)


def test_the_layers_point_one_way() -> None:
    """The shared services and the queue know no domain; the catalog reads no trading (the
    budget it shows comes from the provider market.trading registers).

    market.visibility (who may see what, across domains) imports tables only: the catalog
    asks it about datasets, and its run rules name trading's tables but no trading code, so
    the catalog's walk does not follow it (its own imports are checked here instead)."""
    graph = build_graph("market")
    domains = ("accounts", "audit", "catalog", "costing", "ledgers_web", "ops", "trading")
    models_only = {"market.accounts.models", "market.catalog.models", "market.trading.models"}
    market_imports = {m for m in graph["market.visibility"] if m.startswith("market")}
    assert market_imports <= models_only, f"market.visibility imports {market_imports}"

    def reaches(module: str) -> set[str]:
        seen: set[str] = set()
        todo = [module]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                if target != "market.visibility":
                    todo.append(target)
        return seen

    for shared in ("market.interfaces", "market.services", "market.jobs", "market.api"):
        into_domains = sorted(
            m for m in graph[shared] if m.split(".")[1:2] and m.split(".")[1] in domains
        )
        assert not into_domains, f"{shared} imports {into_domains}"
    assert not graph["market.interfaces"], "market.interfaces is a leaf"
    for module in (m for m in graph if m.startswith("market.catalog")):
        into_trading = sorted(m for m in reaches(module) if m.startswith("market.trading"))
        assert not into_trading, f"{module} reaches {into_trading}"


def test_privacy_imports_nothing_of_the_application_or_the_web_and_database_stack() -> None:
    offending = []
    for module, path in module_names("privacy").items():
        for name in sorted(imported_names(module, path, skip_type_checking=False)):
            if name.split(".")[0].split(":")[0] in FORBIDDEN_IN_PRIVACY:
                offending.append(f"{module} imports {name}")
    assert not offending, "\n".join(offending)
