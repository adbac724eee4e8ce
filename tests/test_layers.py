"""The import graph is the architecture (docs/architecture.md): dependencies point down, and
no module imports one that imports it back. Read from the source with ``ast``, so an import
inside a function counts as much as one at the top; only imports under ``if TYPE_CHECKING:``
are left out (annotations, never executed — a helper module may name the class it serves)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# lower numbers are lower layers; a package may import its own modules and lower layers only
LAYERS = {
    "domain": 0,  # the shared vocabulary: imports nothing of ours
    "geofence": 1,  # geometry and indexes
    "ingest": 2, "rules": 2, "store": 2, "alerts": 2, "gateway": 2,  # the stages
    "permits": 2,  # approval checks of permit applications: pure geometry over domain's city
    "simulator": 3,  # talks to the broker like a terminal (wire schema, JT/T 808 codec)
    "api": 3,  # the HTTP API: people acting on violations (store, alerts' signatures)
    "devservices": 3,  # private Mosquitto / PostgreSQL / TimescaleDB for the demo and tests
    "muckwatch": 4,  # the composition root: wires everything, imported by nothing
}


def _modules() -> dict[str, Path]:
    out = {}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (``from a import b`` counts ``a.b`` when that is
    a module, else ``a``)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def test_dependencies_point_down():
    wrong = []
    for module, targets in _graph().items():
        layer = LAYERS[module.split(".")[0]]
        for target in targets:
            top = target.split(".")[0]
            if top != module.split(".")[0] and LAYERS[top] >= layer:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports that do not point down:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle_between_modules():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, "modules that import each other: " + "; ".join(map(str, cycles))


def test_the_graph_is_read_at_all():
    """Guards the two tests above against passing on an empty graph."""
    graph = _graph()
    assert "rules.engine" in graph["muckwatch.pipeline"]
    assert "domain.batches" in graph["ingest.wire"]
    assert len(graph) > 60
