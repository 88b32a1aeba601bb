"""What a client's SQL does to its session, found with PostgreSQL's own parser (pglast).

Transaction pooling has to know when a statement changes session state:
SET/RESET/set_config, SQL-level PREPARE/EXECUTE/DEALLOCATE, DISCARD, LISTEN/
UNLISTEN, and what pins a server connection (session advisory locks,
temporary tables, WITH HOLD cursors).  A cheap word search looks at every Query and
Parse text; only texts it flags are parsed (about 20 µs each), so ordinary
SELECT/INSERT/UPDATE traffic pays about a microsecond and nothing more.

:func:`scan` returns a :class:`Effects` (or None when nothing matters), plus the
query text rewritten when SQL-level prepared-statement names have to be mapped
(``rename`` maps a client's name to the name used on the server).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pglast
from pglast import ast
from pglast.enums import DiscardMode, VariableSetKind
from pglast.stream import RawStream

# Words that make a text worth parsing.  A statement starting with SET, or one after a ';'
# (an UPDATE's "SET" is not at a statement start), is checked separately.
_WORDS = ("set_config", "advisory", "temp", "hold", "listen", "prepare", "execute", "deallocate", "discard",
          "declare", "reset")
_SET_AFTER_SEMI = re.compile(r";\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*set\b", re.DOTALL)

CURSOR_OPT_HOLD = 0x0020
ALL = "*"
#: A client's SQL-level statement name -> the name used on the server (None: a protocol-level one).
Rename = Callable[[str], str | None]


@dataclass
class Effects:
    """Session effects of one query text."""

    sets: set[str] = field(default_factory=set)  # settings changed (names, lower case) -> read back after
    reset_all: bool = False  # RESET ALL / DISCARD ALL: settings back to session defaults
    discard_all: bool = False  # DISCARD ALL: also statements, temp tables, listens
    deallocate_all: bool = False
    prepares: list[str] = field(default_factory=list)  # SQL PREPARE names (client's)
    executes: list[str] = field(default_factory=list)
    deallocates: list[str] = field(default_factory=list)
    deallocates_protocol: list[str] = field(default_factory=list)  # names of protocol-level statements
    listens: list[str] = field(default_factory=list)
    unlistens: list[str] = field(default_factory=list)  # "*" = all
    pin_check: bool = False  # may have created state that pins the server (check after)
    pin_now: str | None = None  # state we cannot track: pin for the rest of the session


def quick_check(text: str) -> bool:
    """True if ``text`` might change session state (then call :func:`scan`); about 1 µs."""
    low = text.lower()
    if low.lstrip().startswith(("set", "--", "/*")):
        return True
    for w in _WORDS:
        if w in low:
            return True
    return ";" in low and _SET_AFTER_SEMI.search(low) is not None


def scan(text: str, rename: Rename | None = None) -> tuple[Effects | None, str]:
    """Analyse ``text``; return its effects and the text to send (renamed SQL prepared statements).

    A text pglast cannot parse is returned unchanged with no effects: the server will
    report the syntax error itself.
    """
    try:
        stmts = pglast.parse_sql(text)
    except pglast.parser.ParseError:
        return None, text
    eff = Effects()
    pieces: list[str] = []
    rewritten = False
    pos = 0
    for raw in stmts:
        s = raw.stmt
        if s is None:
            continue
        start = raw.stmt_location or 0
        length = raw.stmt_len or (len(text.encode()) - start)
        new = _effects_of(s, eff, rename)
        if new is not None:
            rewritten = True
            b = text.encode()
            pieces.append(b[pos:start].decode())
            pieces.append(new)
            pos = start + length
    if rewritten:
        pieces.append(text.encode()[pos:].decode())
        text = "".join(pieces)
    return eff, text


def _effects_of(s: ast.Node, eff: Effects, rename: Rename | None) -> str | None:
    """Record ``s``'s effects; return its replacement text when it has to be rewritten."""
    if isinstance(s, ast.VariableSetStmt):
        if s.is_local:
            return None
        if s.kind == VariableSetKind.VAR_RESET_ALL:
            eff.reset_all = True
        elif s.kind == VariableSetKind.VAR_SET_MULTI:
            if s.name == "SESSION CHARACTERISTICS":
                eff.sets.add("default_transaction_isolation")
                eff.sets.add("default_transaction_read_only")
                eff.sets.add("default_transaction_deferrable")
        elif s.name:
            eff.sets.add(s.name.lower())
        return None
    if isinstance(s, ast.DiscardStmt):
        if s.target == DiscardMode.DISCARD_ALL:
            eff.reset_all = eff.discard_all = eff.deallocate_all = True
            eff.unlistens.append(ALL)
        elif s.target == DiscardMode.DISCARD_TEMP:
            eff.pin_check = True
        return None
    if isinstance(s, ast.PrepareStmt):
        assert s.name is not None  # the grammar requires the name
        eff.prepares.append(s.name)
        return _renamed(s, s.name, rename)
    if isinstance(s, ast.ExecuteStmt):
        assert s.name is not None
        eff.executes.append(s.name)
        return _renamed(s, s.name, rename)
    if isinstance(s, ast.DeallocateStmt):
        if s.isall or s.name is None:
            eff.deallocate_all = True
            return None
        if rename is not None and rename(s.name) is None:
            # a protocol-level statement (psycopg evicting from its cache): on the server it is
            # shared, so the server forgets all of its statements and they are prepared again
            eff.deallocates_protocol.append(s.name)
            return "DEALLOCATE ALL"
        eff.deallocates.append(s.name)
        return _renamed(s, s.name, rename)
    if isinstance(s, ast.ListenStmt):
        assert s.conditionname is not None  # the grammar requires the channel
        eff.listens.append(s.conditionname)
        return None
    if isinstance(s, ast.UnlistenStmt):
        eff.unlistens.append(s.conditionname or ALL)
        return None
    if isinstance(s, ast.DeclareCursorStmt):
        if (s.options or 0) & CURSOR_OPT_HOLD:
            eff.pin_check = True
        return None
    if isinstance(s, ast.CreateStmt | ast.CreateTableAsStmt | ast.ViewStmt | ast.CreateSeqStmt):
        rel = getattr(s, "relation", None) or getattr(getattr(s, "into", None), "rel", None) or getattr(
            s, "view", None) or getattr(s, "sequence", None)
        if rel is not None and rel.relpersistence == "t":
            eff.pin_check = True
        return None
    # anything else: look for set_config(...) and advisory lock calls, and SELECT ... INTO TEMP
    for node in _walk(s):
        if isinstance(node, ast.FuncCall):
            fname = node.funcname[-1].sval.lower() if node.funcname else ""
            if fname == "set_config":
                args = node.args or ()
                local = _const(args[2]) if len(args) > 2 else None
                if local in ("t", "true", True, "on", "1", "yes"):
                    continue
                name = _const(args[0]) if args else None
                if isinstance(name, str) and local is not None:
                    eff.sets.add(name.lower())
                else:
                    eff.pin_now = "set_config() with arguments the pooler cannot see"
            elif fname.startswith("pg_advisory") or fname.startswith("pg_try_advisory"):
                if "_xact_" not in fname:
                    eff.pin_check = True
        elif isinstance(node, ast.IntoClause) and node.rel is not None and node.rel.relpersistence == "t":
            eff.pin_check = True
    return None


def _renamed(s: ast.PrepareStmt | ast.ExecuteStmt | ast.DeallocateStmt, name: str,
             rename: Rename | None) -> str | None:
    if rename is None:
        return None
    s.name = rename(name)
    return RawStream()(s)


def _const(node: ast.Node | None) -> str | bool | None:
    """The value of a constant argument (string, bool, number), or None."""
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.A_Const) and not node.isnull:
        v = node.val
        for attr in ("sval", "boolval", "ival", "fval"):
            if hasattr(v, attr):
                x = getattr(v, attr)
                return "t" if x is True else ("f" if x is False else str(x) if attr != "sval" else x)
    return None


def _walk(node: ast.Node) -> Iterator[ast.Node]:
    stack: list[object] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Node):
            yield n
            for attr in n:  # the node's attribute names (its __slots__)
                v = getattr(n, attr, None)
                if isinstance(v, (ast.Node, tuple, list)):
                    stack.append(v)
        elif isinstance(n, (tuple, list)):
            stack.extend(n)
