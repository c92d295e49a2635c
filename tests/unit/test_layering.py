"""The layering the README's Architecture section draws, checked by reading imports.

    services/cli  ->  services/<name>  ->  shared (I/O)  ->  shared/domain (pure)  ->  shared vocabulary

A package may import what is below it, never what is above or beside it: no service imports
another (only the command line, above them all, imports services), nothing in shared/ imports a
service, the pure domain imports only the domain and the vocabulary, and the pure modules load no
NATS, metrics, tracing or HTTP library even indirectly.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

COMMAND_LINE = "cli"
"""The one package under services/ that may import other services: it starts and measures them."""

VOCABULARY = frozenset(
    {
        "shared.errors",
        "shared.events",
        "shared.ids",
        "shared.nesting",
        "shared.projection_spec",
        "shared.recorded",
        "shared.subjects",
    }
)
"""The bottom of the stack: the event catalogue and the pure helpers it needs."""

IMPURE = ("nats", "prometheus_client", "opentelemetry", "litestar")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, absolute or relative."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from package import module` names a module too
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" else None


def test_no_service_imports_another_and_only_the_command_line_imports_services() -> None:
    crossings = []
    for path in python_files("services"):
        own = service_of(module_name(path))
        if own == COMMAND_LINE:
            continue
        for imported in imports_of(path):
            other = service_of(imported)
            if other is not None and other != own:
                crossings.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert crossings == []


def test_nothing_in_shared_imports_a_service() -> None:
    upward = [
        f"{path.relative_to(ROOT)} imports {imported}"
        for path in python_files("shared")
        for imported in imports_of(path)
        if is_within(imported, "services")
    ]
    assert upward == []


def test_the_pure_domain_imports_only_the_domain_and_the_vocabulary() -> None:
    outside = [
        f"{path.relative_to(ROOT)} imports {imported}"
        for path in python_files("shared/domain")
        for imported in imports_of(path)
        if is_within(imported, "shared")
        and not is_within(imported, "shared.domain")
        and imported not in VOCABULARY
        and imported.rpartition(".")[0] not in VOCABULARY  # `from shared.events import X`
    ]
    assert outside == []


def test_the_vocabulary_imports_nothing_above_it() -> None:
    outside = [
        f"{path.relative_to(ROOT)} imports {imported}"
        for path in (ROOT / (name.replace(".", "/") + ".py") for name in sorted(VOCABULARY))
        for imported in imports_of(path)
        if is_within(imported, "shared")
        and imported not in VOCABULARY
        and imported.rpartition(".")[0] not in VOCABULARY
    ]
    assert outside == []


def pure_modules() -> list[str]:
    """Every module the README calls pure: the domain, the vocabulary, each service's decide/view."""
    decisions = [
        path
        for path in python_files("services")
        if path.name in ("decide.py", "view.py") and service_of(module_name(path)) != COMMAND_LINE
    ]
    return sorted({*map(module_name, python_files("shared/domain") + decisions), *VOCABULARY})


def test_the_pure_modules_load_no_nats_metrics_tracing_or_http_library() -> None:
    # A fresh interpreter: what this test process already imported must not hide anything.
    script = f"""
import importlib, json, sys
impure = {IMPURE!r}
blame = {{}}
for name in {pure_modules()!r}:
    importlib.import_module(name)
    for loaded in list(sys.modules):
        root = loaded.partition(".")[0]
        if root in impure and root not in blame:
            blame[root] = name
print(json.dumps(blame))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    blame = json.loads(result.stdout)
    assert blame == {}, f"pure modules loaded {blame} (library: first module that pulled it in)"


def test_the_checks_see_the_modules_they_guard() -> None:
    pure = pure_modules()
    assert "shared.domain.routing.scoring" in pure
    assert "services.router.decide" in pure and "services.balancer.view" in pure
    assert imports_of(ROOT / "services" / "balancer" / "decide.py") >= {"shared.domain.routing.scoring"}
    assert "services.router.rerun" in imports_of(ROOT / "services" / "cli" / "replay.py")
