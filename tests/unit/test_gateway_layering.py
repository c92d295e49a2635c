"""The gateway's modules import each other without a circle: routes take desks, desks take the core,
and only the entry point knows the service that assembles them."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "services" / "gateway"


def module_name(path: Path) -> str:
    parts = path.relative_to(GATEWAY.parents[1]).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def gateway_imports() -> dict[str, set[str]]:
    """Every import of a gateway module by a gateway module, wherever it stands in the file."""
    modules = {module_name(path): path for path in GATEWAY.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {target for target in found if target in modules and target != name}
    return graph


def test_no_gateway_module_imports_itself_back_through_others() -> None:
    graph = gateway_imports()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_only_the_entry_point_imports_the_service() -> None:
    importers = {name for name, targets in gateway_imports().items() if "services.gateway.service" in targets}
    assert importers == {"services.gateway.__main__"}
