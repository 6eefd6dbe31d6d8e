"""model/ never imports service/ (nor FastAPI): the predictor is usable without the product around it. Neither
package has an import cycle, not even one hidden inside a function."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_model_loads_no_service_code() -> None:
    code = ("import sys, model, model.cli, model.train, model.evaluate; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('service', 'fastapi', 'uvicorn', 'starlette')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_model_sources_do_not_mention_service_imports() -> None:
    for path in (ROOT / "model").glob("*.py"):
        text = path.read_text()
        assert "import service" not in text and "from service" not in text, path


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(packages: tuple[str, ...] = ("model", "service")) -> dict[str, set[str]]:
    """Package-internal imports of every module, function-level and TYPE_CHECKING ones included:
    module -> the internal modules it names (`from pkg import sub` names pkg.sub when that is a module)."""
    paths = {_module_name(p): p for pkg in packages for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}

    def internal(target: str, names: list[str]) -> set[str]:
        subs = {f"{target}.{n}" for n in names if f"{target}.{n}" in paths}
        return subs if len(subs) == len(names) else subs | ({target} if target in paths else set())

    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in paths}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                graph[name] |= internal(target, [a.name for a in node.names])
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle_and_accepts_a_dag() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_model_and_service_have_no_import_cycle() -> None:
    graph = import_graph()
    # the parser sees relative, absolute and function-level imports
    assert "model.checkpoint" in graph["model.flownet"] and "model.predictor" in graph["model.cli"]
    assert "model" in graph["service.inference"] and "service.api.cameras" in graph["service.api.app"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_service_uses_only_what_model_exports() -> None:
    graph = import_graph()
    deep = {(m, t) for m, targets in graph.items() if m.startswith("service")
            for t in targets if t.startswith("model.")}
    assert not deep, f"service imports model internals (export them from model/__init__.py): {sorted(deep)}"
