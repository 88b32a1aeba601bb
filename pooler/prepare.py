"""Prepared statements in transaction mode (pgbouncer's prepare.c, and SQL-level ones too).

Protocol level: every client names its statements as it likes (every pgbench
client calls its first one ``P_0``).  The pooler keeps, per client, name ->
:class:`Statement`; a statement is identified by its query text and parameter
types and has one server-side name shared by all clients (``pgbundle_<n>``).
Each server connection keeps an LRU of the statements it holds
(``max_prepared_statements``).  A client's Parse is sent only when its server
lacks the statement (otherwise the pooler answers ParseComplete itself); a
Bind or Describe of a statement the server lacks is preceded by the pooler's
own Parse; Close only forgets the client's name.

SQL level (PREPARE / EXECUTE / DEALLOCATE): a client's statement ``foo`` is
``pgbundle_<client id>_foo`` on the server; before EXECUTE or DEALLOCATE on a
server that lacks it, the pooler runs the client's PREPARE there first.
"""

from __future__ import annotations

import itertools
import struct
from collections import OrderedDict

from pgbundle.shared.protocol import encode, messages as m
from pgbundle.shared.protocol.codec import frame

_ids = itertools.count(1)


class Statement:
    """One statement text (+ parameter types) and its shared server-side name."""

    __slots__ = ("server_name", "query", "param_types", "parse_bytes", "validated")

    def __init__(self, server_name: str, query: str, param_types: tuple[int, ...], parse_bytes: bytes) -> None:
        self.server_name = server_name
        self.query = query
        self.param_types = param_types
        self.parse_bytes = parse_bytes  # the Parse message that creates it under its server name
        self.validated = False  # some server answered ParseComplete for it


class StatementCache:
    """query text + parameter types -> Statement, shared by all clients of the pooler."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, tuple[int, ...]], Statement] = {}

    def get(self, query: str, param_types: tuple[int, ...]) -> Statement:
        key = (query, param_types)
        st = self._by_key.get(key)
        if st is None:
            name = f"pgbundle_{next(_ids)}"
            st = Statement(name, query, param_types, encode(m.Parse(name, query, param_types)))
            if len(self._by_key) < 100_000:
                self._by_key[key] = st
        return st

    def renew(self, st: Statement) -> None:
        """``st`` went stale on a server (see :mod:`.replan`): from now on it is prepared under a new
        server-side name everywhere, so no server's stale copy is used again."""
        st.server_name = f"pgbundle_{next(_ids)}"
        st.parse_bytes = encode(m.Parse(st.server_name, st.query, st.param_types))

    def peek(self, query: str, param_types: tuple[int, ...]) -> Statement | None:
        return self._by_key.get((query, param_types))

    def __len__(self) -> int:
        return len(self._by_key)


class ServerStatements:
    """The statements one server connection holds (LRU, protocol and SQL level)."""

    __slots__ = ("lru", "sql")

    def __init__(self) -> None:
        self.lru: OrderedDict[str, None] = OrderedDict()
        self.sql: OrderedDict[str, None] = OrderedDict()  # SQL-level names on this server

    def has(self, st: Statement) -> bool:
        if st.server_name in self.lru:
            self.lru.move_to_end(st.server_name)
            return True
        return False

    def add(self, st: Statement, limit: int) -> list[str]:
        """Record ``st``; return the server names of statements evicted to stay within ``limit``
        (``max_prepared_statements`` as it is now: ``SET`` on the admin console applies at the
        next insertion, as in pgbouncer).  The caller sends a Close for each."""
        self.lru[st.server_name] = None
        out = []
        while limit and len(self.lru) > limit:
            old, _ = self.lru.popitem(last=False)
            out.append(old)
        return out

    def forget(self, st: Statement) -> None:
        self.lru.pop(st.server_name, None)

    def kept(self, server_name: str) -> None:
        """An eviction's Close was skipped (an error earlier in its pipeline): the server still holds
        the statement.  It goes back as the oldest entry, to be evicted again at the next insertion."""
        self.lru[server_name] = None
        self.lru.move_to_end(server_name, last=False)

    def clear(self) -> None:
        self.lru.clear()
        self.sql.clear()


def read_cstr(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode("utf-8", "surrogateescape"), end + 1


def parse_parse(p: bytes) -> tuple[str, str, tuple[int, ...]]:
    """Name, query and parameter types of a whole Parse message."""
    name, pos = read_cstr(p, 5)
    query, pos = read_cstr(p, pos)
    (n,) = struct.unpack_from("!h", p, pos)
    types = struct.unpack_from(f"!{n}I", p, pos + 2) if n > 0 else ()
    return name, query, tuple(types)


def rename_bind(p: bytes, new_stmt: str) -> tuple[str, bytes]:
    """A Bind message (whole) with its statement name replaced; returns (old name, new message)."""
    portal_end = p.index(b"\0", 5)
    stmt_end = p.index(b"\0", portal_end + 1)
    old = p[portal_end + 1:stmt_end].decode("utf-8", "surrogateescape")
    body = p[5:portal_end + 1] + new_stmt.encode() + p[stmt_end:]
    return old, frame(b"B", body)


def bind_statement(p: bytes) -> str:
    portal_end = p.index(b"\0", 5)
    stmt_end = p.index(b"\0", portal_end + 1)
    return p[portal_end + 1:stmt_end].decode("utf-8", "surrogateescape")


def kind_and_name(p: bytes) -> tuple[str, str]:
    """Describe/Close: ('S' or 'P', name)."""
    end = p.index(b"\0", 6)
    return chr(p[5]), p[6:end].decode("utf-8", "surrogateescape")
