"""The service's shape, checked: importing the API neither imports Celery nor builds an app; the
project's import graph (every import, also those inside functions) has no cycle; and the
packages depend one way (core <- service <- api, worker; the client on the job states only);
routes never import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("hm2bp_core", "hm2bp_service", "hm2bp_client", "api", "worker")
# package -> the project packages it may import
ALLOWED = {
    "hm2bp_core": set(),
    "hm2bp_service": {"hm2bp_core"},
    "hm2bp_client": {"hm2bp_service.states"},  # the job states, one enum on every side
    "worker": {"hm2bp_core", "hm2bp_service"},
    "api": {"hm2bp_core", "hm2bp_service", "hm2bp_client"},
}
COMPOSITION_ROOT = {"api.cli": {"worker.celery_app"}}  # `hm2bp worker` starts the workers' app


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (depth-first search), as the list of its modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for target in sorted(graph.get(name, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if state.get(target) is None and (found := visit(target, path + [target])):
                return found
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name, [name])):
            return found
    return None


def test_import_graph_has_no_cycle_and_respects_the_layers():
    modules = project_modules()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    for name, targets in graph.items():
        package = name.split(".")[0]
        for target in targets:
            top = target.split(".")[0]
            if top == package or target in COMPOSITION_ROOT.get(name, set()):
                continue
            assert any(target == a or target.startswith(a + ".") for a in ALLOWED[package]), \
                f"{name} imports {target}: {package} may import only {sorted(ALLOWED[package])}"
        if name.startswith("api.routes."):
            others = {t for t in targets if t.startswith("api.routes.")}
            assert not others, f"{name} imports the routes {sorted(others)}: shared logic goes in hm2bp_service"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
    assert len(graph) > 40  # the walk saw the project


def test_the_graph_walk_finds_a_cycle(tmp_path):
    """The checker itself: two modules that import each other (one lazily) are reported."""
    for name, other in (("a", "b"), ("b", "a")):
        (tmp_path / f"{name}.py").write_text(f"def f():\n    from . import {other}\n")
    modules = {"pkg.a": tmp_path / "a.py", "pkg.b": tmp_path / "b.py"}
    assert imports_of("pkg.a", modules["pkg.a"], modules) == {"pkg.b"}
    assert imports_of("pkg.b", modules["pkg.b"], modules) == {"pkg.a"}
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


def test_importing_and_creating_the_api_builds_no_celery_app(tmp_path):
    code = (
        "import sys\n"
        "import api.app\n"
        "assert 'celery' not in sys.modules and 'worker' not in sys.modules, 'import api.app imported Celery'\n"
        "from hm2bp_service.settings import Settings\n"
        f"api.app.create_app(Settings(data_dir={str(tmp_path)!r}))\n"
        "assert 'celery' not in sys.modules, 'create_app() built a Celery app'\n"
        "print('clean')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "clean", done.stderr
