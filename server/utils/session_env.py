"""The session environment: what analysis and compiled expressions ask the
session for (time zone, settings, user, transaction timestamp, relation and
type lookups, regclass/regtype input and output, sequences).

One :class:`SessionEnv` per Session; compiled plans keep a reference to it, so
values that change (TimeZone, search_path) are read at run time.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pgbundle.server.catalog.system_views import (
    SPECIAL,
    proc_name,
    proc_oid,
    split_qualified_name,
    virtual_name,
    virtual_oid,
    virtual_table,
)
from pgbundle.server.errors import PgError
from pgbundle.server.parser import coerce
from pgbundle.server.parser.coerce import TYPE_ALIASES, format_type
from pgbundle.server.utils.adt.enums import ENUM_ORDER, EnumLabel
from pgbundle.shared.quoting import quote_ident
from pgbundle.shared.types import oids as T
from pgbundle.shared.types.oids import TYPES
from pgbundle.shared.types.text import tz_from_text

if TYPE_CHECKING:
    from pgbundle.server.tcop.session import Session

UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=UTC)


def _from_ns(ns: int) -> _dt.datetime:
    """``datetime.now(UTC)`` for a ``time.time_ns()`` reading."""
    return _EPOCH + _dt.timedelta(microseconds=ns // 1000)
_tz_cache: dict[str, _dt.tzinfo] = {}


def tz_from_name(name: str) -> _dt.tzinfo:
    z = _tz_cache.get(name)
    if z is not None:
        return z
    if name.upper() in ("UTC", "ETC/UTC", "GMT", "Z", "UCT", "ETC/GMT"):
        z = UTC
    else:
        try:
            from zoneinfo import ZoneInfo
            z = ZoneInfo(name)
        except Exception:
            try:
                z = tz_from_text(name, name)
            except Exception:
                raise PgError("22023", f'invalid value for parameter "TimeZone": "{name}"') from None
    _tz_cache[name] = z
    return z


class SessionEnv:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.storage = session.storage
        self.engine = session.engine
        self.settings = session.settings
        self.user = session.user
        self.session_user = session.user
        self.database = session.database
        self.default_cache: dict = {}
        self._xact_ts: _dt.datetime | None = None
        self._stmt_ts: _dt.datetime | None = None
        self._xact_ns: int | None = None
        self._stmt_ns: int | None = None
        self._tzname = None
        self._tz: _dt.tzinfo = UTC
        self._user_types: dict[int, Any] | None = None
        self._user_types_stmt: Any = None

    # ------------------------------------------------------------------ time

    @property
    def tz(self) -> _dt.tzinfo:
        name = self.settings.get("TimeZone")
        if name != self._tzname:
            self._tz = tz_from_name(name)
            self._tzname = name
        return self._tz

    # The clock is read as integer nanoseconds at statement start and turned into a
    # datetime (floored to microseconds, as datetime.now) only when asked for.
    def xact_timestamp(self) -> _dt.datetime:
        if self._xact_ts is None:
            if self._xact_ns is None:
                self._xact_ns = time.time_ns()
            self._xact_ts = _from_ns(self._xact_ns)
        return self._xact_ts

    def statement_timestamp(self) -> _dt.datetime:
        if self._stmt_ns is None:
            return self.xact_timestamp()
        if self._stmt_ts is None:
            self._stmt_ts = self.xact_timestamp() if self._stmt_ns == self._xact_ns else _from_ns(self._stmt_ns)
        return self._stmt_ts

    def start_statement(self, new_xact: bool) -> None:
        now = time.time_ns()
        self._stmt_ns = now
        self._stmt_ts = None
        if new_xact or self._xact_ns is None:
            self._xact_ns = now
            self._xact_ts = None

    def end_xact(self) -> None:
        self._xact_ts = None
        self._xact_ns = None

    def sleep(self, secs: float) -> None:
        end = time.monotonic() + max(secs, 0)
        while True:
            self.session.check_interrupts()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    # ------------------------------------------------------------------ lookups

    def lookup_relation(self, schema: str | None, name: str) -> Any:
        return self.storage.lookup_relation(schema, name)

    def view_definition(self, rel: Any) -> str | None:
        f = getattr(self.engine, "view_definition", None)
        return f(rel.oid) if f is not None else None

    def virtual_table(self, schema: str | None, name: str) -> Any:
        return virtual_table(self, schema, name)

    def lookup_type(self, name: str, schema: str | None) -> int | None:
        for oid, v in self.user_types().items():
            if v[0] == name:
                return oid
            if "_" + v[0] == name:
                return v[2].get("_array") or None
        return None

    def special_function(self, name: str, schema: str | None) -> Any:
        return SPECIAL.get(name)

    def is_enum(self, oid: int) -> bool:
        return oid >= 16384 and oid in self.user_types()

    def enum_input(self, oid: int) -> Callable[[str], str]:
        labels = self.user_types()[oid][2]["labels"]

        def f(v: str) -> str:
            if v not in labels:
                raise PgError("22P02", f'invalid input value for enum {format_type(oid, -1, self.type_names())}: "{v}"')
            return EnumLabel(v, oid)
        return f

    def enum_output(self, oid: int) -> Callable[[Any], Any]:
        return lambda v: v

    def type_names(self) -> dict[int, str]:
        return {oid: v[0] for oid, v in self.user_types().items()}

    def user_types(self) -> dict[int, Any]:
        """oid -> (name, namespace oid, {"labels": [...], "_array": oid}) of user-defined
        (enum) types, read from pg_type/pg_enum once per statement."""
        if self._user_types is not None and self._user_types_stmt == self._stmt_ns:
            return self._user_types
        out: dict[int, Any] = {}
        eng = self.engine
        try:
            typ = eng.lookup_relation("pg_type", "pg_catalog")
            enum = eng.lookup_relation("pg_enum", "pg_catalog")
        except Exception:
            typ = enum = None
        if typ is not None and enum is not None:
            arrays = {}
            for _tid, r in eng.seq_scan(typ):
                if r[0] >= 16384:
                    if r[6] == "e":
                        out[r[0]] = (r[1], r[2], {"labels": [], "_array": r[14]})
                    elif r[13]:
                        arrays[r[13]] = r[0]
            labels: dict[int, list] = {}
            for _tid, r in eng.seq_scan(enum):
                labels.setdefault(r[1], []).append((r[2], r[3]))
            for oid, v in out.items():
                v[2]["labels"] = [lab for _o, lab in sorted(labels.get(oid, []))]
                ENUM_ORDER[oid] = {lab: o for o, lab in labels.get(oid, [])}
        self._user_types = out
        self._user_types_stmt = self._stmt_ns
        coerce.ENUM_TYPES.clear()
        coerce.ENUM_TYPES.update({oid: v[2]["labels"] for oid, v in out.items()})
        return out

    @property
    def enum_types(self) -> dict[int, Any]:
        if not self.user_types():
            return {}
        return {oid: v[2]["labels"] for oid, v in self.user_types().items()}

    def create_enum(self, name: str, schema: str | None, labels: list[str]) -> None:
        eng = self.engine
        for v in self.user_types().values():
            if v[0] == name:
                raise PgError("42710", f'type "{name}" already exists')
        if name in T.TYPES_BY_NAME or name in TYPE_ALIASES:
            raise PgError("42710", f'type "{name}" already exists')
        typ = eng.lookup_relation("pg_type", "pg_catalog")
        enum = eng.lookup_relation("pg_enum", "pg_catalog")
        ns = self.namespace_oid(schema or self.current_schema() or "public") or 2200
        oid = eng.allocate_oid()
        arr = eng.allocate_oid()
        base = [oid, name, ns, 10, 4, True, "e", "E", False, True, ",", 0, 0, 0, arr, 0, 0, 0, 0, 0, 0, 0, "i", "p",
                False, 0, -1, 0, 0, None, None, None]
        eng.insert(typ, tuple(base))
        arow = [arr, "_" + name, ns, 10, -1, False, "b", "A", False, True, ",", 0, 0, oid, 0, 0, 0, 0, 0, 0, 0, 0,
                "i", "x", False, 0, -1, 0, 0, None, None, None]
        eng.insert(typ, tuple(arow))
        for i, lab in enumerate(labels):
            eng.insert(enum, (eng.allocate_oid(), oid, float(i + 1), lab))
        eng.catalog_changed()
        self._user_types = None

    def drop_type(self, name: str, missing_ok: bool, cascade: bool) -> bool:
        eng = self.engine
        target = None
        for oid, v in self.user_types().items():
            if v[0] == name:
                target = oid
        if target is None:
            return False
        for rel in self.storage.relations("r"):
            if any(c.type_oid == target and not c.dropped for c in rel.columns):
                if not cascade:
                    raise PgError("2BP01", f"cannot drop type {name} because other objects depend on it",
                                  hint="Use DROP ... CASCADE to drop the dependent objects too.")
        typ = eng.lookup_relation("pg_type", "pg_catalog")
        enum = eng.lookup_relation("pg_enum", "pg_catalog")
        arr = self.user_types()[target][2].get("_array")
        for tid, r in list(eng.seq_scan(typ)):
            if r[0] in (target, arr):
                eng.delete(typ, tid)
        for tid, r in list(eng.seq_scan(enum)):
            if r[1] == target:
                eng.delete(enum, tid)
        eng.catalog_changed()
        self._user_types = None
        return True

    def type_display_name(self, oid: int) -> str:
        return format_type(oid, -1, self.type_names()) or str(oid)

    def current_schema(self) -> str | None:
        """current_schema(): the first schema of search_path that exists, NULL when none does."""
        sp = self.search_path()
        return sp[0] if sp else None

    def search_path(self) -> list[str]:
        """The explicit schemas of search_path that exist (PostgreSQL's current_schemas(false):
        ``"$user"`` counts only when a schema of that name exists)."""
        try:
            eng = self.engine
            return [s for s in eng.search_path if s != "pg_catalog" and eng.lookup_namespace(s) is not None]
        except Exception:
            raw = self.settings.get("search_path")
            out = []
            for part in raw.split(","):
                p = part.strip().strip('"')
                if p == "$user":
                    continue
                out.append(p)
            return out

    # ------------------------------------------------------------------ reg* types

    def reg_in(self, t: int, text: str) -> int:
        s = text.strip()
        if s.isdigit():
            return int(s)
        if t == T.REGCLASS:
            schema, name = split_qualified_name(s)
            rel = self.storage.lookup_relation(schema, name)
            if rel is None:
                vo = virtual_oid(schema, name)
                if vo:
                    return vo
                raise PgError("42P01", f'relation "{s}" does not exist')
            return rel.oid
        if t == T.REGTYPE:
            oid = self.type_oid(s)
            if oid is None:
                raise PgError("42704", f'type "{s}" does not exist')
            return oid
        if t == T.REGNAMESPACE:
            oid = self.namespace_oid(s)
            if oid is None:
                raise PgError("3F000", f'schema "{s}" does not exist')
            return oid
        if t == T.REGROLE:
            r = self.engine.role_by_name(s)
            if r is None:
                raise PgError("42704", f'role "{s}" does not exist')
            return r.oid
        if t in (T.REGPROC, T.REGPROCEDURE):
            return proc_oid(s)
        raise PgError("22P02", f'invalid input syntax for type {format_type(t)}: "{s}"')

    def reg_out(self, t: int, oid: int) -> str:
        if oid == 0:
            return "-"
        if t == T.REGCLASS:
            rel = self.storage.relation_by_oid(oid)
            if rel is None:
                return virtual_name(oid) or str(oid)
            if rel.schema not in self.search_path() and rel.schema != "pg_catalog":
                return f"{quote_ident(rel.schema)}.{quote_ident(rel.name)}"
            return quote_ident(rel.name)
        if t == T.REGTYPE:
            return format_type(oid, -1, self.type_names()) if oid in TYPES or oid in self.type_names() else str(oid)
        if t == T.REGNAMESPACE:
            for o, n, _own in self.namespaces():
                if o == oid:
                    return n
            return str(oid)
        if t == T.REGROLE:
            for r in self.engine.roles():
                if r.oid == oid:
                    return r.name
            return str(oid)
        if t in (T.REGPROC, T.REGPROCEDURE):
            return proc_name(oid) or str(oid)
        return str(oid)

    def type_oid(self, s: str) -> int | None:
        name = s.strip().lower()
        if name.startswith("pg_catalog."):
            name = name[11:]
        arr = name.endswith("[]")
        if arr:
            name = name[:-2]
        import re
        m = re.match(r"^(character varying|varchar|character|char|numeric|decimal|timestamp|bit varying)\s*\(.*\)$",
                     name)
        if m:
            name = m.group(1)
        oid = TYPE_ALIASES.get(name)
        if oid is None:
            ti = T.TYPES_BY_NAME.get(name)
            oid = ti.oid if ti else None
        if oid is None:
            names = {v: k for k, v in self.type_names().items()}
            oid = names.get(name)
        if oid is not None and arr:
            oid = T.array_of(oid) or None
        if oid is None and name in ("timestamp with time zone",):
            oid = T.TIMESTAMPTZ
        if oid is None and name in ("timestamp without time zone",):
            oid = T.TIMESTAMP
        return oid

    def namespaces(self) -> list[tuple[int, str, int]]:
        try:
            return list(self.engine.namespaces())
        except Exception:
            return [(11, "pg_catalog", 10), (2200, "public", 10), (99, "pg_toast", 10),
                    (13000, "information_schema", 10)]

    def namespace_oid(self, name: str) -> int | None:
        for o, n, _own in self.namespaces():
            if n == name:
                return o
        return None

    # ------------------------------------------------------------------ sequences

    def sequence_row(self, rel: Any) -> tuple:
        try:
            last = self.engine.sequence_state(rel.oid)
            return tuple(last)
        except Exception:
            return (None, 0, False)
