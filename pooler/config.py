"""Pooler configuration: settings, databases, users; pgbundle.toml and pgbouncer.ini.

One typed model (:class:`Config`) fed by three sources, later ones winning:

1. a config file -- ``pgbundle.toml`` (msgspec-typed: an unknown key or a bad
   value is a :class:`ConfigError` naming it) or pgbouncer's own
   ``pgbouncer.ini`` read as pgbouncer reads it (``[databases]`` connection
   strings with the ``*`` fallback, ``[pgbouncer]``, ``[users]``, ``%include``);
2. ``--upstream postgresql://user[:password]@host:port[/db]``;
3. command-line flags.

Setting names and defaults are pgbouncer's (doc/config.md).  Durations are
seconds (floats); pgbouncer's unit suffixes (``ms``, ``s``, ``min``, ``h``,
``d``) are accepted in both file formats.  ``auth_file`` is read by
:func:`load_auth_file` in pgbouncer's userlist.txt format.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

from pgbundle.shared import quoting

PoolMode = Literal["session", "transaction", "statement"]
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
AuthType = Literal["trust", "any", "plain", "md5", "scram-sha-256", "hba", "cert", "peer"]
#: auth_type values pgbouncer knows and pgbundle refuses at startup (not accepted, then failing every login).
REFUSED_AUTH_TYPES = {"pam": "PAM", "ldap": "LDAP"}

# Keys of a [databases] connection string that are not server-connection parameters.
_DB_POOL_KEYS = {
    "pool_size": int,
    "min_pool_size": int,
    "reserve_pool": int,
    "reserve_pool_size": int,
    "max_db_connections": int,
    "max_db_client_connections": int,
    "pool_mode": str,
    "connect_query": str,
    "auth_user": str,
    "auth_query": str,
    "auth_dbname": str,
    "client_encoding": str,
    "datestyle": str,
    "timezone": str,
    "application_name": str,
    "server_lifetime": float,
    "query_wait_timeout": float,
    "load_balance_hosts": str,
    "target_session_attrs": str,
}
#: pgbouncer's aliases: the ini name -> the field it sets.
_ALIASES = {"service_name": "job_name"}


class ConfigError(Exception):
    """A configuration value is missing, unknown or invalid; the message names it."""


class DatabaseConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One ``[databases]`` entry: where a client-visible database name leads."""

    host: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1"])
    port: int = 5432
    dbname: str | None = None  # None: the client's database name
    user: str | None = None  # a forced server user
    password: str | None = None
    pool_size: int | None = None
    min_pool_size: int | None = None
    reserve_pool_size: int | None = None
    max_db_connections: int | None = None
    max_db_client_connections: int | None = None
    pool_mode: PoolMode | None = None
    connect_query: str | None = None
    auth_user: str | None = None
    auth_query: str | None = None  # overrides the global auth_query for this database
    auth_dbname: str | None = None  # the [databases] entry auth_query runs in (default: this one)
    client_encoding: str | None = None
    datestyle: str | None = None
    timezone: str | None = None
    application_name: str | None = None
    server_lifetime: float | None = None
    query_wait_timeout: float | None = None
    load_balance_hosts: Literal["round-robin", "disable"] = "round-robin"
    target_session_attrs: Literal["any", "read-write", "read-only", "primary", "standby"] = "any"


class UserConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One ``[users]`` entry: per-user overrides."""

    pool_mode: PoolMode | None = None
    pool_size: int | None = None
    reserve_pool_size: int | None = None
    max_user_connections: int | None = None
    max_user_client_connections: int | None = None
    query_timeout: float | None = None
    query_wait_timeout: float | None = None
    idle_transaction_timeout: float | None = None
    transaction_timeout: float | None = None
    client_idle_timeout: float | None = None


class PeerConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One ``[peers]`` entry (pgbouncer >= 1.21): where cancel requests for that peer_id go."""

    host: str
    port: int = 6432
    pool_size: int | None = None  # cancel requests in flight to it at once; default_pool_size


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The ``[pgbouncer]`` section.  Defaults are pgbouncer's unless noted."""

    # where to listen
    listen_addr: str = "127.0.0.1"  # pgbouncer: unset (Unix socket only)
    listen_port: int = 6432
    listen_backlog: int = 128
    unix_socket_dir: str = "/tmp"
    unix_socket_mode: int = 0o777
    unix_socket_group: str | None = None
    so_reuseport: bool = False
    # the process
    user: str | None = None  # the Unix user to switch to after binding (when started as root)
    conffile: str | None = None  # the file RELOAD reads; default: the one given at startup
    job_name: str = "pgbouncer"  # pgbouncer's win32 service name (alias service_name)
    peer_id: int = 0  # this process in a [peers] group; 0 = no peering
    # auth
    auth_type: AuthType | None = None  # None: md5 with an auth_file, else upstream-verified
    auth_file: str | None = None
    auth_hba_file: str | None = None
    auth_ident_file: str | None = None
    auth_user: str | None = None
    auth_query: str = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1"
    auth_dbname: str | None = None  # the [databases] entry auth_query runs in (default: the client's)
    auth_ldap_options: str | None = None  # accepted; auth_type = ldap is refused (no LDAP here)
    scram_iterations: int = 4096
    admin_users: list[str] = msgspec.field(default_factory=list)
    stats_users: list[str] = msgspec.field(default_factory=list)
    # TLS (pgbouncer's names and defaults; server_tls_sslmode = prefer as pgbouncer >= 1.20)
    client_tls_sslmode: SslMode = "disable"
    client_tls_key_file: str | None = None
    client_tls_cert_file: str | None = None
    client_tls_ca_file: str | None = None
    client_tls_protocols: str = "secure"
    client_tls_ciphers: str = "fast"
    client_tls13_ciphers: str = "default"
    client_tls_ecdhcurve: str = "auto"
    client_tls_dheparams: str = "auto"
    server_tls_sslmode: SslMode = "prefer"
    server_tls_ca_file: str | None = None
    server_tls_key_file: str | None = None
    server_tls_cert_file: str | None = None
    server_tls_protocols: str = "secure"
    server_tls_ciphers: str = "fast"
    server_tls13_ciphers: str = "default"
    # pooling
    pool_mode: PoolMode = "session"
    max_client_conn: int = 100
    default_pool_size: int = 20
    min_pool_size: int = 0
    reserve_pool_size: int = 0
    reserve_pool_timeout: float = 5.0
    max_db_connections: int = 0
    max_db_client_connections: int = 0
    max_user_connections: int = 0
    max_user_client_connections: int = 0
    server_round_robin: bool = False
    max_prepared_statements: int = 200
    track_extra_parameters: list[str] = msgspec.field(default_factory=lambda: ["IntervalStyle", "search_path"])
    ignore_startup_parameters: list[str] = msgspec.field(default_factory=list)
    disable_pqexec: bool = False
    autodb_idle_timeout: float = 3600.0
    pool_idle_timeout: float = 0.0
    # server connections
    server_reset_query: str = "DISCARD ALL"
    server_reset_query_always: bool = False
    server_check_query: str = "select 1"
    server_check_delay: float = 30.0
    server_fast_close: bool = False
    server_lifetime: float = 3600.0
    server_idle_timeout: float = 600.0
    server_connect_timeout: float = 15.0
    server_login_retry: float = 15.0
    application_name_add_host: bool = False
    # DNS (pgbouncer's names; dns_zone_check_period and resolv_conf are c-ares/evdns features)
    dns_max_ttl: float = 15.0
    dns_nxdomain_ttl: float = 15.0
    dns_zone_check_period: float = 0.0
    resolv_conf: str | None = None
    # client side
    client_login_timeout: float = 60.0
    client_idle_timeout: float = 0.0
    idle_transaction_timeout: float = 0.0
    query_timeout: float = 0.0
    query_wait_timeout: float = 120.0
    query_wait_notify: float = 5.0
    cancel_wait_timeout: float = 10.0
    transaction_timeout: float = 0.0
    login_notify_message: str | None = None
    suspend_timeout: float = 10.0
    max_packet_size: int = 2147483647
    pkt_buf: int = 4096
    sbuf_loopcnt: int = 5
    # TCP (0 = the operating system's default; tcp_defer_accept is a boolean as in pgbouncer)
    tcp_keepalive: bool = True
    tcp_keepcnt: int = 0
    tcp_keepidle: int = 0
    tcp_keepintvl: int = 0
    tcp_user_timeout: int = 0  # milliseconds
    tcp_socket_buffer: int = 0
    tcp_defer_accept: bool = True  # pgbouncer: 1 on Linux (the kernel is given 45 s)
    # logging
    logfile: str | None = None
    pidfile: str | None = None
    syslog: bool = False
    syslog_ident: str = "pgbouncer"
    syslog_facility: str = "daemon"
    log_format: Literal["text", "json"] = "text"  # pgbundle: json = one JSON object per line
    metrics_listen: str | None = None  # pgbundle: host:port serving Prometheus /metrics
    log_connections: bool = True
    log_disconnections: bool = True
    log_pooler_errors: bool = True
    log_stats: bool = True
    stats_period: float = 60.0
    verbose: int = 0

    def __post_init__(self) -> None:
        if self.scram_iterations < 4096:  # scramp enforces RFC 7677's minimum
            raise ValueError(f"scram_iterations must be at least 4096, not {self.scram_iterations}")


class Config(msgspec.Struct, kw_only=True):
    """Everything the pooler runs from."""

    settings: Settings = msgspec.field(default_factory=Settings)
    databases: dict[str, DatabaseConfig] = msgspec.field(default_factory=dict)
    users: dict[str, UserConfig] = msgspec.field(default_factory=dict)
    peers: dict[int, PeerConfig] = msgspec.field(default_factory=dict)
    source: str | None = None  # the file it came from, for RELOAD
    #: whether the file had a [databases] section (an empty one means: no databases, no bundled server)
    has_databases_section: bool = False


def tcp_options(s: Settings) -> dict[str, Any]:
    """The keyword arguments of :func:`pgbundle.shared.netio.set_tcp_options` from the settings."""
    return {"keepalive": s.tcp_keepalive, "keepidle": s.tcp_keepidle, "keepintvl": s.tcp_keepintvl,
            "keepcnt": s.tcp_keepcnt, "user_timeout_ms": s.tcp_user_timeout, "buffer": s.tcp_socket_buffer}


# ----------------------------------------------------------------------------- values

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(us|ms|s|sec|min|h|d)?\s*$")
_UNITS = {None: 1.0, "us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_BOOL = {"1": True, "0": False, "on": True, "off": False, "true": True, "false": False, "yes": True, "no": False}


def parse_duration(text: str | float | int, key: str = "value") -> float:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(f"invalid value for {key}: {text!r} (expected seconds, or a number with ms/s/min/h/d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


#: integer settings refused below 0.  pgbouncer 1.25 validates max_prepared_statements this way (its
#: test_prepared.py); for the other counts and sizes pgbouncer 1.18 takes any value (checked:
#: ``SET default_pool_size='-1'`` is accepted, and '3147483648' wraps to -1147483648), which pgbundle
#: refuses on purpose: a negative pool size or limit has no meaning.
_NON_NEGATIVE = frozenset({"max_prepared_statements", "max_client_conn", "default_pool_size", "min_pool_size",
                           "reserve_pool_size", "max_db_connections", "max_user_connections",
                           "max_db_client_connections", "max_user_client_connections", "pkt_buf",
                           "sbuf_loopcnt", "scram_iterations"})


def _coerce(key: str, raw: str, target: Any) -> Any:
    """Turn an ini string into the type ``target`` (a Settings field type)."""
    raw = raw.strip()
    origin = getattr(target, "__origin__", None)
    if target is bool:
        v = _BOOL.get(raw.lower())
        if v is None:
            raise ConfigError(f"invalid value for {key}: {raw!r} (expected a boolean)")
        return v
    if target is int:
        try:
            n = int(raw, 0) if raw.startswith("0") and len(raw) > 1 else int(raw)
        except ValueError:
            raise ConfigError(f"invalid value for {key}: {raw!r} (expected an integer)") from None
        if not -2**31 <= n < 2**31:  # pgbouncer keeps them in a C int
            raise ConfigError(f"invalid value for {key}: {raw!r} (out of range)")
        if n < 0 and key in _NON_NEGATIVE:
            raise ConfigError(f"invalid value for {key}: {raw!r} (must not be negative)")
        if key == "peer_id" and not 0 <= n <= 16383:  # it must fit the cancel key (see .cancel)
            raise ConfigError(f"invalid value for {key}: {raw!r} (expected 0..16383)")
        return n
    if target is float:
        return parse_duration(raw, key)
    if origin is list:
        return [x.strip() for x in raw.split(",") if x.strip()]
    return raw or None if "None" in str(target) else raw


def _field_type(struct: type, key: str) -> Any:
    for f in msgspec.structs.fields(struct):
        if f.name == key:
            t = f.type
            args = [a for a in getattr(t, "__args__", ()) if a is not type(None)]
            if type(None) in getattr(t, "__args__", ()) and len(args) == 1:
                return args[0]
            return t
    raise ConfigError(f"unknown setting: {key}")


def _nullable(struct: type, key: str) -> bool:
    """Whether ``key`` of ``struct`` may be None (pgbouncer's "not set", written as an empty value)."""
    return any(f.name == key and type(None) in getattr(f.type, "__args__", ()) for f in msgspec.structs.fields(struct))


_S = TypeVar("_S", bound=msgspec.Struct)


def _convert(struct: type[_S], data: dict[str, Any], where: str) -> _S:
    refused = REFUSED_AUTH_TYPES.get(data.get("auth_type", "")) if struct is Settings else None
    if refused:
        raise ConfigError(f"{where}: auth_type = {data['auth_type']} is not supported: pgbundle has no {refused} "
                          "authentication (use hba, scram-sha-256, md5, cert or peer)")
    try:
        return msgspec.convert(data, struct)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None


# ----------------------------------------------------------------------------- connection strings


def parse_connstring(text: str, where: str = "[databases]") -> dict[str, str]:
    """Parse libpq-style ``key=value key='quoted value'`` pairs."""
    out: dict[str, str] = {}
    lex = shlex.shlex(text, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    lex.quotes = "'"
    lex.escape = "\\"
    lex.escapedquotes = "'"
    try:
        tokens = list(lex)
    except ValueError as exc:
        raise ConfigError(f"{where}: bad connection string {text!r}: {exc}") from None
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if "=" not in tok:
            raise ConfigError(f"{where}: bad connection string element {tok!r} (expected key=value)")
        k, v = tok.split("=", 1)
        if v == "" and i + 1 < len(tokens) and "=" not in tokens[i + 1]:
            v = tokens[i + 1]
            i += 1
        out[k.strip().lower()] = v
        i += 1
    return out


def database_from_connstring(name: str, text: str) -> DatabaseConfig:
    """A [databases] entry from its connection string, pgbouncer's keys."""
    where = f"[databases] {name}"
    kv = parse_connstring(text, where)
    data: dict[str, Any] = {}
    for k, v in kv.items():
        if k == "host":
            data["host"] = [h.strip() for h in v.split(",") if h.strip()] or ["127.0.0.1"]
        elif k == "port":
            try:
                data["port"] = int(v.split(",")[0])
            except ValueError:
                raise ConfigError(f"{where}: invalid port {v!r}") from None
        elif k in ("dbname", "user", "password"):
            data[k] = v
        elif k in _DB_POOL_KEYS:
            key = "reserve_pool_size" if k == "reserve_pool" else k
            typ = _DB_POOL_KEYS[k]
            try:
                data[key] = parse_duration(v, k) if typ is float else typ(v)
            except ValueError:
                raise ConfigError(f"{where}: invalid value for {k}: {v!r}") from None
        else:
            raise ConfigError(f"{where}: unknown parameter {k!r}")
    return _convert(DatabaseConfig, data, where)


def user_from_connstring(name: str, text: str) -> UserConfig:
    where = f"[users] {name}"
    data: dict[str, Any] = {}
    for k, v in parse_connstring(text, where).items():
        typ = _field_type(UserConfig, k) if k in UserConfig.__struct_fields__ else None
        if typ is None:
            raise ConfigError(f"{where}: unknown parameter {k!r}")
        data[k] = _coerce(k, v, typ)
    return _convert(UserConfig, data, where)


def parse_upstream(url: str) -> tuple[str, DatabaseConfig]:
    """``postgresql://user[:password]@host[:port][,host2...][/db][?k=v]`` -> (db name or "*", entry).

    Without ``/db`` the entry is the ``*`` fallback: every database name goes to
    the same name upstream.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"--upstream: expected a postgresql:// URL, got {url!r}")
    netloc = parts.netloc
    userinfo, _, hostinfo = netloc.rpartition("@")
    user = password = None
    if userinfo:
        user, _, pw = userinfo.partition(":")
        user = unquote(user) or None
        password = unquote(pw) if pw else None
    hosts: list[str] = []
    port = 5432
    for hp in hostinfo.split(","):
        if not hp:
            continue
        if hp.startswith("["):
            h, _, rest = hp[1:].partition("]")
            p = rest.lstrip(":")
        else:
            h, _, p = hp.partition(":")
        hosts.append(unquote(h))
        if p:
            try:
                port = int(p)
            except ValueError:
                raise ConfigError(f"--upstream: invalid port {p!r}") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if "host" in query:  # libpq: ?host=/path/to/socket
        hosts = [query.pop("host")]
    if "port" in query:
        port = int(query.pop("port"))
    db = unquote(parts.path.lstrip("/")) or None
    entry = DatabaseConfig(host=hosts or ["127.0.0.1"], port=port, dbname=db, user=user, password=password)
    if query:
        raise ConfigError(f"--upstream: unsupported URL parameters {sorted(query)}")
    return (db or "*"), entry


# ----------------------------------------------------------------------------- pgbouncer.ini


def _read_ini_lines(path: Path, depth: int = 0) -> list[tuple[str, int, str]]:
    if depth > 10:
        raise ConfigError(f"{path}: %include nested too deeply")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("%include"):
            inc = s[len("%include") :].strip()
            # pgbouncer: relative to the current working directory
            out.extend(_read_ini_lines(Path(inc), depth + 1))
            continue
        out.append((str(path), no, line))
    return out


#: File settings a relative path in the config file is resolved against the file's directory for.
_RELATIVE_PATHS = ("auth_file", "auth_hba_file", "auth_ident_file", "client_tls_key_file", "client_tls_cert_file",
                   "client_tls_ca_file", "server_tls_ca_file", "server_tls_key_file", "server_tls_cert_file")


def load_ini(path: str | os.PathLike[str]) -> Config:
    """Read a pgbouncer.ini as pgbouncer does."""
    settings: dict[str, Any] = {}
    databases: dict[str, DatabaseConfig] = {}
    users: dict[str, UserConfig] = {}
    peers: dict[int, PeerConfig] = {}
    section = None
    has_databases = False
    for fname, no, line in _read_ini_lines(Path(path)):
        s = line.strip()
        if not s or s[0] in ";#":
            continue
        where = f"{fname}:{no}"
        if s.startswith("["):
            if not s.endswith("]"):
                raise ConfigError(f"{where}: bad section header {s!r}")
            section = s[1:-1].strip().lower()
            if section not in ("databases", "pgbouncer", "pgbundle", "users", "peers"):
                raise ConfigError(f"{where}: unknown section [{section}]")
            has_databases = has_databases or section == "databases"
            continue
        if "=" not in s:
            raise ConfigError(f"{where}: expected key = value, got {s!r}")
        key, _, value = s.partition("=")
        key, value = key.strip(), value.strip()
        if section is None:
            raise ConfigError(f"{where}: {key} is outside any section")
        if section == "databases":
            name = quoting.unquote(key)  # "my db" = ...
            databases[name] = database_from_connstring(name, value)
        elif section == "users":
            name = quoting.unquote(key)
            users[name] = user_from_connstring(name, value)
        elif section == "peers":
            pid, peer = peer_from_connstring(key, value, where)
            peers[pid] = peer
        else:
            key = key.lower()
            key = _ALIASES.get(key, key)
            settings[key] = _setting_value(key, value, where)
    base = Path(path).resolve().parent
    for key in _RELATIVE_PATHS:
        if settings.get(key) and not os.path.isabs(settings[key]):
            settings[key] = str(base / settings[key])
    settings.setdefault("conffile", str(path))
    return Config(settings=_convert(Settings, settings, str(path)), databases=databases, users=users, peers=peers,
                  source=str(path), has_databases_section=has_databases)


def _setting_value(key: str, value: str, where: str) -> Any:
    """One ``key = value`` line of [pgbouncer], typed and checked; a bad one is a ConfigError naming ``where``."""
    if key not in Settings.__struct_fields__:
        raise ConfigError(f"{where}: unknown setting {key!r}")
    if key == "unix_socket_mode":
        try:
            out: Any = int(value, 8)
        except ValueError:
            raise ConfigError(f"{where}: invalid value for unix_socket_mode: {value!r} "
                              "(expected an octal file mode such as 0777)") from None
    elif value == "" and _nullable(Settings, key):  # "not set"
        out = None
    else:
        try:
            out = _coerce(key, value, _field_type(Settings, key))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    _convert(Settings, {key: out}, where)  # the field's own checks (Literal values, types), at this line
    return out


def peer_from_connstring(key: str, text: str, where: str) -> tuple[int, PeerConfig]:
    """One ``[peers]`` line: ``peer_id = host=... port=... pool_size=...``."""
    try:
        pid = int(key)
    except ValueError:
        raise ConfigError(f"{where}: invalid peer id {key!r} (expected an integer 1..16383)") from None
    if not 1 <= pid <= 16383:
        raise ConfigError(f"{where}: invalid peer id {pid} (expected 1..16383)")
    data: dict[str, Any] = {}
    for k, v in parse_connstring(text, where).items():
        if k == "host":
            data["host"] = v
        elif k in ("port", "pool_size"):
            try:
                data[k] = int(v)
            except ValueError:
                raise ConfigError(f"{where}: invalid value for {k}: {v!r} (expected an integer)") from None
        else:
            raise ConfigError(f"{where}: unknown parameter {k!r} for peer {pid}")
    if "host" not in data:
        raise ConfigError(f"{where}: peer {pid} has no host")
    return pid, _convert(PeerConfig, data, where)


# ----------------------------------------------------------------------------- pgbundle.toml


def load_toml(path: str | os.PathLike[str]) -> Config:
    """Read pgbundle.toml: top-level ``[pgbundle]`` settings, ``[databases]``, ``[users]``.

    A ``[databases]`` value is a connection string (as in pgbouncer.ini) or a table
    of DatabaseConfig fields.
    """
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = set(raw) - {"pgbundle", "pgbouncer", "databases", "users"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; expected pgbundle, databases, users")
    sdata = {_ALIASES.get(k, k): v for k, v in raw.get("pgbundle", {}).items()}
    sdata.update({_ALIASES.get(k, k): v for k, v in raw.get("pgbouncer", {}).items()})
    for key, value in list(sdata.items()):
        if key not in Settings.__struct_fields__:
            raise ConfigError(f"{path}: unknown setting {key!r} in [pgbundle]")
        typ = _field_type(Settings, key)
        if typ is float and isinstance(value, str):
            sdata[key] = parse_duration(value, key)
        elif typ is float and isinstance(value, int):
            sdata[key] = float(value)
    settings = _convert(Settings, sdata, f"{path} [pgbundle]")
    databases = {}
    for name, v in raw.get("databases", {}).items():
        if isinstance(v, str):
            databases[name] = database_from_connstring(name, v)
        elif isinstance(v, dict):
            d = dict(v)
            if isinstance(d.get("host"), str):
                d["host"] = [h.strip() for h in d["host"].split(",")]
            databases[name] = _convert(DatabaseConfig, d, f"{path} [databases] {name}")
        else:
            raise ConfigError(f"{path} [databases] {name}: expected a connection string or a table")
    users = {}
    for name, v in raw.get("users", {}).items():
        if isinstance(v, str):
            users[name] = user_from_connstring(name, v)
        else:
            users[name] = _convert(UserConfig, v, f"{path} [users] {name}")
    rel = {k: str(Path(path).resolve().parent / v) for k in _RELATIVE_PATHS
           if (v := getattr(settings, k)) and not os.path.isabs(v)}
    if rel:
        settings = msgspec.structs.replace(settings, **rel)
    return Config(settings=settings, databases=databases, users=users, source=str(path),
                  has_databases_section="databases" in raw)


def load_file(path: str | os.PathLike[str]) -> Config:
    """pgbundle.toml or pgbouncer.ini, by extension."""
    p = str(path)
    if p.endswith(".toml"):
        return load_toml(p)
    return load_ini(p)


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Settings from the command line (already typed, None = not given) win over the file."""
    given = {k: v for k, v in overrides.items() if v is not None}
    for k in given:
        if k not in Settings.__struct_fields__:
            raise ConfigError(f"unknown setting: {k}")
    data = msgspec.to_builtins(config.settings)
    data.update(given)
    settings = _convert(Settings, data, "command line")
    return msgspec.structs.replace(config, settings=settings)


def set_setting(settings: Settings, key: str, raw: str) -> Settings:
    """``-s key=value`` / admin SET: parse ``raw`` for ``key`` as the ini reader would."""
    key = key.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in Settings.__struct_fields__:
        raise ConfigError(f"unknown setting: {key}")
    typ = _field_type(Settings, key)
    value: Any = raw if key == "auth_type" else _coerce(key, raw, typ)
    data = msgspec.to_builtins(settings)
    data[key] = value
    return _convert(Settings, data, key)


# ----------------------------------------------------------------------------- auth_file


def load_auth_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read pgbouncer's userlist.txt: ``"user" "secret"`` per line.

    The secret is a plain password, an md5 secret (``md5...``) or a SCRAM secret
    (``SCRAM-SHA-256$...``).  Lines starting with ``;`` or ``#`` are comments;
    ``""`` inside quotes is a literal quote.
    """
    users: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read auth_file {path}: {exc.strerror}") from None
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s[0] in ";#":
            continue
        fields: list[str] = []
        i = 0
        while i < len(s) and len(fields) < 2:
            while i < len(s) and s[i] in " \t":
                i += 1
            if i >= len(s):
                break
            if s[i] != '"':
                raise ConfigError(f"{path}:{no}: expected a quoted string")
            i += 1
            buf = []
            while True:
                if i >= len(s):
                    raise ConfigError(f"{path}:{no}: unterminated quoted string")
                if s[i] == '"':
                    if i + 1 < len(s) and s[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(s[i])
                i += 1
            fields.append("".join(buf))
        if len(fields) < 2:
            raise ConfigError(f"{path}:{no}: expected \"user\" \"password\"")
        users[fields[0]] = fields[1]
    return users
