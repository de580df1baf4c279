"""The layout rules of the code base, checked from the imports themselves (AST, nothing runs):
no import cycles among tierd's modules, dependencies only downward (tierd -> protocol ->
engine), and no module importing another module's private (`_name`) definitions.

Every import counts: at module level, inside functions, and under `if TYPE_CHECKING:`, since
a cycle that only type checkers follow still makes the two modules one unit to read."""
from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("engine", "protocol", "tierd")
LAYERS = {"tierd": 3, "protocol": 2, "engine": 1}  # a package imports only lower layers


def _modules() -> dict[str, str]:
    """Dotted module name -> file path, for every module of the three packages."""
    out = {}
    for pkg in PACKAGES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    out[rel.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return module
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _imports(name: str, path: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import in a module."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_package = path.endswith("__init__.py")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, name, is_package)
            for a in node.names:
                sub = f"{base}.{a.name}"
                # `from pkg import module` imports the module; `from module import name` the module
                out.append((sub, None, node.lineno) if sub in MODULES else (base, a.name, node.lineno))
    return [(m, n, line) for m, n, line in out if m.split(".")[0] in PACKAGES]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in _imports(name, path):
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != name and not name.startswith(target + "."):
                graph[name].add(target)  # a package's own __init__ is not a cycle of its children
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "modules importing each other in a circle: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_dependencies_run_one_way():
    wrong = []
    for name, path in MODULES.items():
        layer = LAYERS[name.split(".")[0]]
        for target, _, line in _imports(name, path):
            if LAYERS[target.split(".")[0]] > layer:
                wrong.append(f"{path}:{line} {name} imports {target}")
    assert not wrong, "tierd -> protocol -> engine only:\n" + "\n".join(wrong)


def test_no_private_names_imported_across_modules():
    wrong = []
    for name, path in MODULES.items():
        for target, imported, line in _imports(name, path):
            if imported and imported.startswith("_") and not imported.startswith("__"):
                wrong.append(f"{os.path.relpath(path, ROOT)}:{line} imports {target}.{imported}")
    assert not wrong, "private names used outside their module:\n" + "\n".join(wrong)
