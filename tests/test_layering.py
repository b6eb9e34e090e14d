"""The package layout, checked from the source: who may import whom, no cycles, small modules.

engine/ is cut by thread and process, so each real-time rule binds in one folder:

- score/    the graph, the music vocabulary, YAML marks: pure data, imports no other layer
- audio/    the mixer, the ring and the sinks: the audio thread's code, never waits on the others
- making/   model, rules, synth, pools, worker supervision: loops, made in a worker process
- control/  OSC, the Conductor, the daemon: the control thread; ui/ is its web view
- train/    training, export and evaluation of the model (offline)
- tools/    the CLI and its commands: may use everything

Every import counts, also one inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "engine"

# package -> the packages its modules may import (besides the standard library and third parties)
MAY_IMPORT: dict[str, set[str]] = {
    "score": {"score"},
    "audio": {"audio", "score"},
    "making": {"making", "score"},
    "control": {"control", "ui", "audio", "making", "score"},
    "ui": {"ui", "control", "score"},
    "train": {"train", "making", "score"},
    "tools": {"tools", "control", "ui", "audio", "making", "score", "train"},
    "": {"tools"},  # engine/__init__.py, engine/__main__.py
}

MAX_LINES = 450
# Modules still over the limit, at their size when the limit came in: none may grow, and an
# entry goes when its module is split (the test fails on an entry that fits).
OVERSIZE: dict[str, int] = {}


def module_name(path: Path) -> str:
    parts = ["engine", *path.relative_to(ENGINE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(ENGINE.rglob("*.py"))}


def package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 2 and (ENGINE / f"{parts[1]}.py").exists():
        return ""  # a module directly in engine/
    return parts[1] if len(parts) > 1 else ""


def imports_of(module: str, path: Path) -> dict[str, int]:
    """The engine modules `module` imports, each with the line of its first import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from engine.x import y` imports the module engine.x.y when there is one
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # engine.x.Y -> engine.x
                name = name.rpartition(".")[0]
            if name.startswith("engine.") and name != module:
                found.setdefault(name, node.lineno)
    return found


GRAPH = {m: imports_of(m, p) for m, p in MODULES.items()}


def test_every_package_is_in_the_table() -> None:
    assert {package_of(m) for m in MODULES} <= set(MAY_IMPORT)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str) -> None:
    package = package_of(module)
    wrong = [
        f"{MODULES[module].relative_to(ENGINE.parent)}:{line}: {module} imports {target}"
        for target, line in GRAPH[module].items()
        if package_of(target) not in MAY_IMPORT[package]
    ]
    assert not wrong, (
        f"{package or 'engine'}/ may import only {sorted(MAY_IMPORT[package])}: {wrong}"
    )


def test_audio_imports_nothing_from_control_or_making() -> None:
    assert not MAY_IMPORT["audio"] & {"control", "ui", "making", "tools", "train"}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str]:
    """One import cycle as a path [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_no_import_cycles() -> None:
    cycle = find_cycle(GRAPH)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1}}) == []


def test_modules_fit_in_one_sitting() -> None:
    sizes = {
        p.relative_to(ENGINE).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
        for p in MODULES.values()
    }
    too_long = {
        name: lines
        for name, lines in sizes.items()
        if lines > max(MAX_LINES, OVERSIZE.get(name, 0))
    }
    assert not too_long, f"over {MAX_LINES} lines (or grown past their recorded size): {too_long}"
    fits = sorted(name for name in OVERSIZE if sizes.get(name, 0) <= MAX_LINES)
    assert not fits, f"split or gone: remove from OVERSIZE: {fits}"
