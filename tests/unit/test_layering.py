"""The code's shape: which top-level package may import which, no import circle, small modules.

Every import statement counts, also those inside functions or under TYPE_CHECKING: a circle
hidden in a function is still two modules that cannot be understood one without the other.
"""

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Bottom to top: a package may import those it lists, never one above it.
ALLOWED: dict[str, frozenset[str]] = {
    "events": frozenset(),
    "infra": frozenset({"events"}),
    "producers": frozenset({"events", "infra"}),
    "consumers": frozenset({"events", "infra"}),
    # auth follows events itself (the registration saga) and owns an outbox.
    "auth": frozenset({"events", "infra", "producers", "consumers"}),
    # An example publishes its answers through an outbox of its own (producers.outbox).
    "downstream_examples": frozenset({"events", "infra", "producers", "consumers"}),
    "userbus": frozenset({"events", "infra", "producers", "consumers", "auth",
                          "downstream_examples"}),
}  # fmt: skip
# The contract is what every service shares: it depends on pydantic and nothing else.
CONTRACT_THIRD_PARTY = frozenset({"pydantic"})
MAX_MODULE_LINES = 250


def _modules() -> dict[str, Path]:
    found = {}
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported_names(path: Path) -> Iterator[str]:
    """Every module name an import statement of the file names (absolute imports only)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _own_target(name: str) -> str | None:
    """The project module an imported name resolves to (the longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, path in MODULES.items():
        for name in _imported_names(path):
            target = _own_target(name)
            # `from pkg import sub` also names `pkg`: only the most precise target counts.
            if target is not None and target != module:
                graph[module].add(target)
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_module_imports_a_package_above_its_own() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in sorted(targets)
        if (own := module.split(".")[0]) != (other := target.split(".")[0])
        and other not in ALLOWED[own]
    ]
    assert wrong == []


def test_there_is_no_import_circle_between_modules() -> None:
    assert _cycles(_graph()) == []


def test_the_event_contract_depends_on_pydantic_only() -> None:
    foreign = sorted(
        f"{module} imports {name}"
        for module, path in MODULES.items()
        if module.split(".")[0] == "events"
        for name in _imported_names(path)
        if (top := name.split(".")[0]) not in sys.stdlib_module_names
        and top not in CONTRACT_THIRD_PARTY
        and top != "events"
    )
    assert foreign == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_production_module_stays_small(module: str) -> None:
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines"


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
