"""The dependency rules of the tree (issue 2.1), checked on the source with ``ast``.

* no runtime import cycle among pgbundle's modules (a function-local import counts:
  it is the same cycle, only later);
* nothing imports ``pgbundle.pooler.main`` (the pooler's composition root), not even
  for type hints — only the command line that starts it;
* a pooler connection's ``.state`` is assigned in ``pooler/objects.py`` only (as
  pgbouncer's objects.c is the only file with ``->state =``);
* the state grouped by owner is written only by its owner: a server connection's
  request accounting (``Server.conv``) in ``pooler/conversation.py``, a client's
  transaction-mode emulation (``Client.emu``) in ``pooler/emulate.py``, tracked
  parameters (``Client.vars``, ``Server.vars``) in ``pooler/varcache.py``;
* no module imports another module's private (``_``-prefixed) names;
* ``shared/protocol`` stays sans-IO: no sockets, no trio.
"""

from __future__ import annotations

import ast

import pytest

from pgbundle.pooler.conversation import Conversation
from pgbundle.pooler.emulate import EmulationState
from pgbundle.pooler.varcache import ParamState
from tests.unit.importgraph import REPO, cycles, load_modules

MODS = load_modules()



@pytest.mark.parametrize("prefix", [
    "pgbundle.shared",
    "pgbundle.pooler",
    "pgbundle.server",
])
def test_no_runtime_import_cycles(prefix: str) -> None:
    found = cycles(MODS, prefix)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_nothing_imports_the_pooler_composition_root() -> None:
    allowed = {"pgbundle.pooler.cli"}
    importers = sorted(n for n, m in MODS.items()
                       if n not in allowed and ("pgbundle.pooler.main" in m.imports
                                                or "pgbundle.pooler.main" in m.typing_imports))
    assert not importers, f"modules importing pgbundle.pooler.main: {importers}"


def test_connection_state_is_written_only_in_objects() -> None:
    writers = []
    for name, m in MODS.items():
        if not name.startswith("pgbundle.pooler.") or name == "pgbundle.pooler.objects":
            continue
        for node in ast.walk(m.tree):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Attribute) and sub.attr == "state" and isinstance(sub.ctx, ast.Store):
                        writers.append(f"{m.path.relative_to(REPO)}:{node.lineno}")
    assert not writers, f".state assigned outside pooler/objects.py: {writers}"


#: holder attribute -> (the only module that writes its fields, the fields)
_GROUPS = {
    "conv": ("pgbundle.pooler.conversation", frozenset(Conversation.__slots__)),
    "emu": ("pgbundle.pooler.emulate", frozenset(EmulationState.__slots__)),
    "vars": ("pgbundle.pooler.varcache", frozenset(ParamState.__slots__)),
}
#: Field names other objects use too (Sink.status, Batch.ops, sqlscan's Effects.reset_all ...):
#: a write counts only when it goes through the holder (``server.conv.status = ...``).
#: Every other field name counts on any object (``client.pinned = ...`` is the old spelling).
_SHARED_NAMES = frozenset(("status", "ops", "tracked", "prepared", "reset_all", "pin_check", "after", "startup"))
_MUTATORS = frozenset(("append", "appendleft", "extend", "extendleft", "insert", "pop", "popleft", "remove",
                       "clear", "add", "discard", "update", "setdefault", "sort", "reverse", "popitem",
                       "difference_update", "intersection_update", "symmetric_difference_update"))


def _grouped_field(node: ast.expr) -> str | None:
    """The group (holder name) of a grouped field that ``node`` denotes, or None."""
    while isinstance(node, ast.Subscript):
        node = node.value
    if not isinstance(node, ast.Attribute):
        return None
    holder = node.value
    holder_name = holder.id if isinstance(holder, ast.Name) else holder.attr if isinstance(holder, ast.Attribute) \
        else None
    for group, (_owner, fields) in _GROUPS.items():
        if node.attr in fields and (holder_name == group or node.attr not in _SHARED_NAMES):
            return group
    return None


def _writes(tree: ast.Module) -> list[tuple[int, str, ast.expr, str]]:
    """(line, kind, target, enclosing function) of every store, delete and mutating call."""
    out: list[tuple[int, str, ast.expr, str]] = []

    def visit(node: ast.AST, func: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = node.name
        targets: list[ast.expr] = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            for sub in ast.walk(t):  # tuple targets: a, b.c = ...
                if isinstance(sub, (ast.Attribute, ast.Subscript)) and not isinstance(sub.ctx, ast.Load):
                    out.append((node.lineno, "store", sub, func))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS:
            out.append((node.lineno, "call", node.func.value, func))
        for child in ast.iter_child_nodes(node):
            visit(child, func)

    visit(tree, "")
    return out


def test_grouped_state_is_written_only_by_its_owner() -> None:
    """Issue 2.1, state grouped by owner: see the module docstring.

    What is seen is a write through the field's name (``x.conv.ops.popleft()``), not one through
    a local that holds the field.
    """
    bad = []
    for name, m in MODS.items():
        if not name.startswith("pgbundle.pooler."):
            continue
        for line, kind, target, func in _writes(m.tree):
            where = f"{m.path.relative_to(REPO)}:{line}"
            group = _grouped_field(target)
            if group is not None and _GROUPS[group][0] != name:
                bad.append(f"{where} writes {group}.{ast.unparse(target)} ({kind})")
            elif kind == "store" and isinstance(target, ast.Attribute) and target.attr in _GROUPS \
                    and func != "__init__":
                bad.append(f"{where} replaces .{target.attr} outside __init__")
    assert not bad, "grouped state written outside its owner:\n" + "\n".join(bad)


@pytest.mark.parametrize("prefix", [
    "pgbundle.shared",
    "pgbundle.pooler",
    "pgbundle.server",
])
def test_no_private_names_imported_across_modules(prefix: str) -> None:
    found = []
    for name, m in MODS.items():
        if not name.startswith(prefix + "."):
            continue
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("pgbundle")):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        found.append(f"{m.path.relative_to(REPO)}:{node.lineno} {a.name}")
    assert not found, "private names imported from other modules:\n" + "\n".join(found)


def test_protocol_package_is_sans_io() -> None:
    bad = []
    for name, m in MODS.items():
        if not name.startswith("pgbundle.shared.protocol"):
            continue
        for node in ast.walk(m.tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                mods = [node.module or ""]
            bad += [f"{name}: {x}" for x in mods if x.split(".")[0] in ("trio", "socket", "asyncio", "selectors")]
    assert not bad, bad


def test_class_names_are_unique() -> None:
    """One name per thing: no two classes in shared/, pooler/ and server/ share a name."""
    seen: dict[str, list[str]] = {}
    for m in MODS.values():
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ClassDef):
                seen.setdefault(node.name, []).append(f"{m.path.relative_to(REPO)}:{node.lineno}")
    dups = {k: v for k, v in seen.items() if len(v) > 1}
    assert not dups, dups


def test_no_modules_named_more() -> None:
    """No ``*_more`` / ``misc`` grab-bag modules: a module is named for what it does."""
    bad = [str(m.path.relative_to(REPO)) for m in MODS.values()
           if m.path.stem.endswith(("_more", "_misc", "_extra")) or m.path.stem in ("misc", "more", "util", "utils")]
    assert not bad, bad
