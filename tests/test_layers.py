"""The package's modules form layers without cycles (the README's layout section names them).

The rule: a module imports only modules of its own layer or of layers below, and the imports between mi's
modules have no cycle, both counting imports at module level and inside functions. Imports inside functions
are allowed, for load time only (heavy stages, torch, pymatgen load when a command needs them, see
test_startup.py), never to hide an import that would run up the layers or close a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# lowest first; a module belongs to the layer of its longest listed prefix
LAYERS = [
    ["mi", "mi.errors", "mi.files"],  # the package version, errors, the atomic writer and file hash
    ["mi.config", "mi.data"],  # typed configs, packaged element tables
    ["mi.candidates"],  # readers, the candidate stream, generation
    ["mi.features"],
    ["mi.models", "mi.properties", "mi.ranking"],  # surrogates, exact properties, ranking
    ["mi.oracle"],  # CHGNet labels (uses models and properties)
    ["mi.execution", "mi.export"],  # chunks, shards and their merge; the run folder and report
    ["mi.pipeline", "mi.refine", "mi.active"],  # mi screen (and its refine step), mi loop
    ["mi.cli"],
]
# Imports that run up the layers and are allowed anyway: none. (Config once looked feature-set and prototype
# names up when a config loaded; the stages that know them check them now, mi.features.sets.check_names and
# mi.candidates.generate.prototypes.check_jobs.)
UPWARD_LOOKUPS: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "mi").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, dict[str, set[str]]]:
    """{"module": {a: {b}}, "function": {a: {b}}}: mi modules each module imports, at module level
    (``if TYPE_CHECKING`` blocks left out) and inside functions."""
    found: dict[str, dict[str, set[str]]] = {"module": {}, "function": {}}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]

        def visit(node: ast.AST, where: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                inner = "function" if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else where
                targets: list[str] = []
                if isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        up = package.split(".")[: len(package.split(".")) - child.level + 1]
                        base = ".".join(up + ([child.module] if child.module else []))
                    subs = [f"{base}.{a.name}" for a in child.names if f"{base}.{a.name}" in modules]
                    # `from <own package> import <submodule>`: the package is already loading
                    targets = subs if subs and name.startswith(base + ".") else [base, *subs]
                for target in targets:
                    if target in modules and target != name and not name.startswith(target + "."):
                        found[inner].setdefault(name, set()).add(target)
                visit(child, inner)

        visit(ast.parse(path.read_text(encoding="utf-8")), "module")
    return found


def _layer(module: str) -> int:
    best, level = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    assert level is not None, f"{module} is in no layer: add it to LAYERS (and to the README's layout)"
    return level


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_the_import_graph_sees_the_packages_imports():
    found = _imports(_modules())
    assert "mi.ranking.stats" in found["module"]["mi.execution.merge"]
    assert "mi.execution.merge" in found["function"]["mi.pipeline"]


def test_no_import_cycle_between_modules():
    found = _imports(_modules())
    assert _cycles(found["module"]) == []
    everything = {m: found["module"].get(m, set()) | found["function"].get(m, set()) for m in _modules()}
    assert _cycles(everything) == []


def test_no_import_runs_up_the_layers():
    found = _imports(_modules())
    upward = sorted(
        (where, a, b)
        for where, graph in found.items()
        for a, targets in graph.items()
        for b in targets
        if _layer(b) > _layer(a)
    )
    assert [u for u in upward if u[1:] not in UPWARD_LOOKUPS] == []
    assert {u[1:] for u in upward} == UPWARD_LOOKUPS  # an exception no longer needed is struck off


def test_a_cycle_is_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
