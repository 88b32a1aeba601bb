"""The runtime import graph of pgbundle's own modules, read from the source with ``ast``.

Every ``import`` / ``from ... import`` of a ``pgbundle`` module counts as a runtime edge,
at module level or inside a function (a function-local import is still an import cycle,
only a later one), except those under ``if TYPE_CHECKING:``.  Used by test_layering.py
and, as ``python tests/unit/importgraph.py [--layers] [prefix]``, to print the graph's cycles
(and with ``--layers`` the modules in dependency order, each with what it imports).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
ROOTS = {"shared": "pgbundle.shared", "pooler": "pgbundle.pooler", "server": "pgbundle.server"}


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    imports: dict[str, list[int]] = field(default_factory=dict)  # runtime: module -> line numbers
    local_imports: dict[str, list[int]] = field(default_factory=dict)  # the subset inside functions
    typing_imports: set[str] = field(default_factory=set)  # under TYPE_CHECKING


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(REPO)
    parts = list(rel.with_suffix("").parts)
    base = ROOTS[parts[0]]
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join([base, *parts[1:]]), is_pkg


def load_modules() -> dict[str, Module]:
    mods: dict[str, Module] = {}
    for d in ROOTS:
        for path in sorted((REPO / d).rglob("*.py")):
            if any(p.startswith(".") for p in path.relative_to(REPO).parts):
                continue
            name, is_pkg = _module_name(path)
            mods[name] = Module(name, path, is_pkg, ast.parse(path.read_text(), str(path)))
    for m in mods.values():
        _collect(m, mods)
    return mods


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(m: Module, node: ast.ImportFrom | ast.Import, mods: dict[str, Module]) -> list[str]:
    out: list[str] = []
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.name.startswith("pgbundle."):
                out.append(_existing(a.name, mods))
        return [o for o in out if o]
    if node.level:
        pkg = m.name if m.is_package else m.name.rsplit(".", 1)[0]
        for _ in range(node.level - 1):
            pkg = pkg.rsplit(".", 1)[0]
        base = pkg + ("." + node.module if node.module else "")
    else:
        base = node.module or ""
        if not base.startswith("pgbundle."):
            return []
    for a in node.names:
        sub = f"{base}.{a.name}"
        if sub in mods:
            out.append(sub)
        else:
            e = _existing(base, mods)
            if e:
                out.append(e)
    return sorted(set(out))


def _existing(name: str, mods: dict[str, Module]) -> str:
    while name and name not in mods:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def _collect(m: Module, mods: dict[str, Module]) -> None:
    def visit(node: ast.AST, in_func: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for c in child.body:
                    visit_stmt(c, in_func, True)
                for c in child.orelse:
                    visit_stmt(c, in_func, typing_only)
                continue
            visit_stmt(child, in_func, typing_only)

    def visit_stmt(child: ast.AST, in_func: bool, typing_only: bool) -> None:
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            for target in _resolve(m, child, mods):
                if target == m.name:
                    continue
                if typing_only:
                    m.typing_imports.add(target)
                else:
                    m.imports.setdefault(target, []).append(child.lineno)
                    if in_func:
                        m.local_imports.setdefault(target, []).append(child.lineno)
            return
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            visit(ast.Module(body=child.body, type_ignores=[]), in_func, True)
            visit(ast.Module(body=child.orelse, type_ignores=[]), in_func, typing_only)
            return
        visit(child, in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)),
              typing_only)

    visit(m.tree, False, False)


def cycles(mods: dict[str, Module], prefix: str) -> list[list[str]]:
    """Strongly connected components (size > 1) of the runtime graph among modules under ``prefix``."""
    names = [n for n in mods if n == prefix or n.startswith(prefix + ".")]
    inside = set(names)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in mods[v].imports:
            if w not in inside:
                continue
            if w not in index:
                strong(w)
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
                out.append(sorted(comp))

    for n in names:
        if n not in index:
            strong(n)
    return out


def layers(mods: dict[str, Module], prefix: str) -> list[list[str]]:
    """Modules under ``prefix`` by depth in the runtime graph: layer 0 imports none of them,
    layer n only modules of layers below n (meaningful only when :func:`cycles` finds none)."""
    names = [n for n in mods if n.startswith(prefix + ".") and not mods[n].is_package]
    inside = set(names)
    depth: dict[str, int] = {}

    def d(n: str, seen: frozenset[str] = frozenset()) -> int:
        if n not in depth:
            below = [d(t, seen | {n}) for t in mods[n].imports if t in inside and t not in seen]
            depth[n] = 1 + max(below) if below else 0
        return depth[n]

    for n in names:
        d(n)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for n in sorted(names):
        out[depth[n]].append(n)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    show_layers = "--layers" in args
    args = [a for a in args if a != "--layers"]
    prefix = args[0] if args else "pgbundle"
    mods = load_modules()
    if show_layers:
        for i, layer in enumerate(layers(mods, prefix)):
            print(f"layer {i}:")
            for n in layer:
                own = sorted(t.removeprefix(prefix + ".") for t in mods[n].imports if t.startswith(prefix + "."))
                print(f"  {n.removeprefix(prefix + '.')}" + (f" <- {', '.join(own)}" if own else ""))
    for comp in cycles(mods, prefix):
        print(f"cycle of {len(comp)} modules:")
        for n in comp:
            edges = [f"{t}{' (local)' if t in mods[n].local_imports else ''}" for t in mods[n].imports if t in comp]
            print(f"  {n} -> {', '.join(sorted(edges))}")
    nlocal = sum(len(v) for n, m in mods.items() if n.startswith(prefix) for v in m.local_imports.values())
    print(f"function-local imports of pgbundle modules under {prefix}: {nlocal}")
