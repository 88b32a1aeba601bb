"""Tracked session parameters (pgbouncer's varcache.c).

A client's session settings must follow it from one server connection to the
next.  Each client keeps ``tracked``: the parameters it set (in the startup
packet, or later with SET, as the server reports them in ParameterStatus) whose
value differs from the pool's default; each server keeps the same for what was
set on it.  When a client is linked to a server whose ``varstate`` differs, one
query -- ``SELECT set_config(...)`` / ``RESET`` -- is sent ahead of the
client's own traffic, and its reply swallowed, so the switch costs no round trip.

Both are a :class:`ParamState` (``Client.vars``, ``Server.vars``), assigned only
in this module: the rest of the pooler reads them and calls :class:`VarCache`.

Values are normalised where PostgreSQL would (``client_encoding='utf-8'`` is
``UTF8``), so equal settings compare equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgbundle.shared.protocol import encode, messages as m
from pgbundle.shared.quoting import quote_literal

if TYPE_CHECKING:
    from .client import Client
    from .objects import Pool
    from .server import Server

# Parameters PostgreSQL reports with ParameterStatus (GUC_REPORT), in canonical spelling.
REPORTED = ("application_name", "client_encoding", "DateStyle", "default_transaction_read_only", "in_hot_standby",
            "integer_datetimes", "IntervalStyle", "is_superuser", "server_encoding", "server_version",
            "session_authorization", "standard_conforming_strings", "TimeZone")
_CANONICAL = {n.lower(): n for n in REPORTED}
#: Startup parameters that are not settings.
NOT_SETTINGS = frozenset(("user", "database", "replication", "options"))
_ENCODINGS = {"UTF-8": "UTF8", "UNICODE": "UTF8", "UTF8": "UTF8"}
#: A connection's tracked parameters as one hashable value, sorted by name (compared and cached).
VarState = tuple[tuple[str, str], ...]


def canonical(name: str) -> str:
    return _CANONICAL.get(name.lower(), name.lower())


def normalize(name: str, value: str) -> str:
    if name == "client_encoding":
        v = value.strip().strip("'").upper()
        return _ENCODINGS.get(v, v)
    return value


#: pgbouncer's refusal of anything else in ``options`` (a client's ``-d``, ``-c name`` without a value).
OPTIONS_REFUSED = "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed"


def parse_options(options: str, strict: bool = False) -> dict[str, str]:
    """``options='-c name=value --name=value'`` from a startup packet.  ``strict``: ValueError
    (:data:`OPTIONS_REFUSED`) for anything else, as pgbouncer refuses it; otherwise it is skipped."""
    out: dict[str, str] = {}
    toks = []
    cur = []
    i = 0
    while i < len(options):  # PostgreSQL: whitespace separates, backslash escapes
        ch = options[i]
        if ch == "\\" and i + 1 < len(options):
            cur.append(options[i + 1])
            i += 2
            continue
        if ch.isspace():
            if cur:
                toks.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
        i += 1
    if cur:
        toks.append("".join(cur))
    it = iter(toks)
    for tok in it:
        if tok == "-c":
            tok = next(it, "")
        elif tok.startswith("-c"):
            tok = tok[2:]
        elif tok.startswith("--"):
            tok = tok[2:]
        elif strict:
            raise ValueError(OPTIONS_REFUSED)
        else:
            continue
        if "=" in tok:
            k, v = tok.split("=", 1)
            out[k.replace("-", "_")] = v
        elif strict:
            raise ValueError(OPTIONS_REFUSED)
    return out


class ParamState:
    """The tracked parameters of one client or server connection (see the module docstring)."""

    __slots__ = ("tracked", "varstate", "startup")

    def __init__(self) -> None:
        self.tracked: dict[str, str] = {}  # tracked parameters that differ from the pool's defaults
        self.varstate: VarState = ()  # ``tracked`` as one hashable value
        self.startup: dict[str, str] = {}  # a client's: what its startup packet set (RESET ALL goes back there)

    def _replace(self, tracked: dict[str, str], varstate: VarState | None = None) -> None:
        """Track ``tracked`` from now on; ``varstate`` when the caller already has it."""
        self.tracked = tracked
        self.varstate = tuple(sorted(tracked.items())) if varstate is None else varstate

    def _set(self, name: str, value: str, default: str | None) -> None:
        """Record ``name = value``; values equal to the default are not kept."""
        tracked = self.tracked
        if value == default or (default is None and value == ""):
            if tracked.pop(name, None) is None:
                return
        elif tracked.get(name) == value:
            return
        else:
            tracked[name] = value
        self.varstate = tuple(sorted(tracked.items()))


class VarCache:
    """Keeps clients' and servers' tracked parameters and produces the SQL that aligns them."""

    def __init__(self, ignore: list[str]) -> None:
        self.ignore = {x.lower() for x in ignore}

    def client_startup(self, client: Client, params: dict[str, str], pool: Pool) -> None:
        """Record the settings a client asked for in its startup packet."""
        wanted: dict[str, str] = {}
        settings = dict(params)
        if "options" in params:
            settings.update(parse_options(params["options"]))
        for k, v in settings.items():
            if k in NOT_SETTINGS or k.lower() in self.ignore or k.startswith("_pq_."):
                continue
            name = canonical(k)
            wanted[name] = normalize(name, v)
        defaults = pool.welcome or {}
        cv = client.vars
        cv._replace({k: v for k, v in wanted.items() if defaults.get(k) != v})
        cv.startup = dict(cv.tracked)

    @staticmethod
    def add_startup(client: Client, name: str, value: str) -> None:
        """A setting the pooler gives the client as if its startup packet had asked for it."""
        cv = client.vars
        cv.startup[name] = value
        cv._replace({**cv.tracked, name: value})

    def client_changed(self, client: Client, server: Server, name: str, value: str) -> None:
        """The server reported a new value while linked to ``client``: the client changed it."""
        default = (server.pool.welcome or {}).get(name)
        client.vars._set(name, value, default)
        server.vars._set(name, value, default)

    def set_unreported(self, client: Client, server: Server, name: str, value: str, default: str | None) -> None:
        """A setting the server does not report, read back after the client's transaction."""
        client.vars._set(name, value, default)
        server.vars._set(name, value, default)

    def server_changed(self, server: Server, name: str, value: str) -> None:
        server.vars._set(name, value, (server.pool.welcome or {}).get(name))

    def server_reset(self, server: Server) -> None:
        """After DISCARD ALL / RESET ALL every setting is back at its default."""
        server.vars._replace({})

    @staticmethod
    def session_reset(client: Client, server: Server) -> None:
        """The client ran RESET ALL / DISCARD ALL: its session is back at its start, the server at its
        defaults (but for what it reports itself, which its ParameterStatus messages told)."""
        client.vars._replace(dict(client.vars.startup))
        sv = server.vars
        sv._replace({k: v for k, v in sv.tracked.items() if k in REPORTED})

    def sync_sql(self, client: Client, server: Server) -> str | None:
        """The query that gives ``server`` the client's settings, or None if they already match."""
        cv, sv = client.vars, server.vars
        if cv.varstate == sv.varstate:
            return None
        sets = []
        resets = []
        for name, value in cv.tracked.items():
            if sv.tracked.get(name) != value:
                sets.append(f"pg_catalog.set_config({quote_literal(name)}, {quote_literal(value)}, false)")
        for name in sv.tracked:
            if name not in cv.tracked:
                resets.append(f'RESET "{name}"' if name != name.lower() or not name.isidentifier() else f"RESET {name}")
        sv._replace(dict(cv.tracked), cv.varstate)
        parts = []
        if sets:
            parts.append("SELECT " + ", ".join(sets))
        parts.extend(resets)
        return ";".join(parts) if parts else None

    def welcome(self, pool: Pool, client: Client) -> bytes:
        """The ParameterStatus messages a newly logged-in client gets."""
        key = client.vars.varstate
        cache = pool.welcome_cache
        out = cache.get(key)
        if out is None:
            params = dict(pool.welcome or {})
            for k, v in client.vars.tracked.items():
                if k in params:
                    params[k] = v
            out = b"".join(encode(m.ParameterStatus(k, v)) for k, v in params.items())
            if len(cache) < 256:
                cache[key] = out
        return out

