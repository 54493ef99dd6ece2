"""The layout has no import cycles between its parts, and one composition root.

A part is a top-level package (signaling, recordings, agent_console) or a
module/package directly under vbranch (vbranch.api, vbranch.calls, vbranch.queue,
vbranch.evidence, vbranch.bootstrap, ...). The graph is read from the source
(every import, including ones inside functions), so a cycle cannot hide behind a
late import. The pure core must not import the rest: vbranch.domain imports
nothing of the branch but itself and the clock it is driven by (vbranch.clock).

The adapters and the live parts (WIRED) are constructed in vbranch/bootstrap.py
only; tests and benchmarks, which are not scanned, build their own (fakes, or
one part on its own).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vbranch", "signaling", "recordings", "agent_console")
COMPOSITION_ROOT = ROOT / "vbranch" / "bootstrap.py"
# what only the composition root constructs
WIRED = frozenset({
    "Runtime", "Database", "EvidenceJournal", "LocalDirStorage", "TokenService", "SigningKey", "FaceCheckPool",
    "MediaHub", "QueueDesk", "Registry", "DatabasePresence", "RedisPresence", "LocalBus", "SessionService", "CallMedia", "CallService", "Coordinator",
})


def part(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "vbranch" and len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    names = list(rel.parts)
    if names[-1] == "__init__":
        names = names[:-1]
    return ".".join(names)


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            mod = module_name(path)
            is_pkg = path.name == "__init__.py"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = mod.split(".")
                        base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                        targets = [".".join(base + ([node.module] if node.module else []))]
                    else:
                        targets = [node.module or ""]
                else:
                    continue
                graph[mod].update(t for t in targets if t.split(".")[0] in PACKAGES)
    return graph


def part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for src, targets in imports().items():
        for dst in targets:
            if part(src) != part(dst):
                graph[part(src)].add(part(dst))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_parts():
    graph = part_graph()
    assert cycles(graph) == [], {c[0]: sorted(graph[c[0]]) for c in cycles(graph)}


def test_the_functional_core_imports_nothing_of_the_rest():
    outside = {dst for src, targets in imports().items() if part(src) == "vbranch.domain"
               for dst in targets if part(dst) != "vbranch.domain"}
    assert outside <= {"vbranch.clock"}


def constructed(source: str) -> set[str]:
    """The names in WIRED that the source calls (``Database(...)`` or ``module.Database(...)``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in WIRED:
                found.add(name)
    return found


def test_only_the_composition_root_constructs_adapters_and_live_parts():
    outside = {str(path.relative_to(ROOT)): sorted(names) for package in PACKAGES
               for path in (ROOT / package).rglob("*.py") if path != COMPOSITION_ROOT
               if (names := constructed(path.read_text(encoding="utf-8")))}
    assert outside == {}
    assert constructed(COMPOSITION_ROOT.read_text(encoding="utf-8")) == WIRED


def test_the_checker_finds_a_construction():
    assert constructed("db = Database(url)\nhub = media.MediaHub(storage)\nx = Other()") == {"Database", "MediaHub"}


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
