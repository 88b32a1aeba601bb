"""``pgbundle pooler``: parse flags, load the config, run the pooler under trio."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
import msgspec
import trio

from .config import Config, ConfigError, Settings, apply_overrides, load_file, parse_upstream, set_setting

if TYPE_CHECKING:
    from .embedded import EmbeddedServer


def _daemonize() -> None:
    """pgbouncer's -d: the classic double fork; the first process exits 0 at once."""
    import os

    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(fd, target)
    os.close(fd)


def setup_logging(settings: Settings, verbose: int, quiet: bool = False) -> None:
    """pgbouncer's log lines (or JSON with log_format = json) on stderr, the logfile and syslog."""
    from .logs import setup_logging as setup

    setup(settings, verbose, quiet)


@click.command("pooler")
@click.argument("config_file", required=False, type=click.Path(dir_okay=False))
@click.option("-c", "--config", "config_opt", type=click.Path(dir_okay=False),
              help="pgbundle.toml or pgbouncer.ini.")
@click.option("--upstream", multiple=True, metavar="URL",
              help="postgresql://user[:password]@host[:port][/db]; without /db every database name "
                   "goes to the same name upstream.")
@click.option("--listen-addr", help="Addresses to listen on (comma list, * = all). Default 127.0.0.1.")
@click.option("-p", "--listen-port", type=int, help="Port to listen on. Default 6432.")
@click.option("--unix-socket-dir", help="Directory for the Unix socket; empty disables it. Default /tmp.")
@click.option("--max-connections", "max_client_conn", type=int, help="max_client_conn (default 100).")
@click.option("--pool-size", "default_pool_size", type=int, help="default_pool_size (default 20).")
@click.option("--min-pool-size", type=int, help="min_pool_size (default 0).")
@click.option("--reserve-pool-size", type=int, help="reserve_pool_size (default 0).")
@click.option("--pool-mode", type=click.Choice(["session", "transaction", "statement"]),
              help="pool_mode (default session).")
@click.option("--auth-type", type=click.Choice(["trust", "any", "plain", "md5", "scram-sha-256", "hba", "cert",
                                               "peer"]))
@click.option("--auth-file", type=click.Path(dir_okay=False), help="pgbouncer userlist.txt.")
@click.option("--admin-users", help="Comma list of users allowed to run admin commands.")
@click.option("--stats-users", help="Comma list of users allowed to run SHOW commands.")
@click.option("--pidfile", type=click.Path(dir_okay=False))
@click.option("--logfile", type=click.Path(dir_okay=False))
@click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any pgbouncer setting, e.g. -s query_wait_timeout=5 (repeatable).")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Without an upstream: the bundled server's data directory (default ./pgbundle-data).")
@click.option("--metrics-listen", metavar="HOST:PORT",
              help="Serve Prometheus metrics on http://HOST:PORT/metrics (e.g. 127.0.0.1:9127).")
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Log lines as pgbouncer writes them (text, the default) or one JSON object per line.")
@click.option("-q", "--quiet", is_flag=True, help="Do not log to stderr (the logfile and syslog still get it).")
@click.option("-v", "--verbose", count=True, help="More log detail (repeatable, as pgbouncer's -v).")
@click.option("-d", "--daemon", is_flag=True, help="Run in the background (needs pidfile; logs go to logfile/syslog).")
@click.option("-u", "--user", "run_as", metavar="USER", help="Switch to this Unix user after binding (as root).")
@click.option("-R", "--reboot", is_flag=True,
              help="pgbouncer's online restart; deprecated there since 1.23: use so_reuseport and SIGTERM the old one.")
@click.option("-V", "--version", "show_version", is_flag=True, help="Print the version and exit.")
def pooler(config_file: str | None, config_opt: str | None, upstream: tuple[str, ...], sets: tuple[str, ...],
           verbose: int, data_dir: str | None, quiet: bool, daemon: bool, run_as: str | None, reboot: bool,
           show_version: bool, **flags: Any) -> None:
    """Run the connection pooler (pgbouncer's semantics, on trio)."""
    from .main import Pooler

    if show_version:
        from .admin import version_text

        click.echo(version_text())
        return
    if reboot:
        raise click.ClickException("-R (online restart) is not supported, as in pgbouncer >= 1.23 where it is "
                                   "deprecated: start the new pooler with so_reuseport = 1 on the same port, then "
                                   "send the old one SIGTERM (it finishes its clients and exits)")

    path = config_opt or config_file
    try:
        config = load_file(path) if path else Config()
        overrides = {k: v for k, v in flags.items() if v is not None}
        for key in ("admin_users", "stats_users"):
            if key in overrides:
                overrides[key] = [x.strip() for x in overrides[key].split(",") if x.strip()]
        settings = apply_overrides(config, overrides).settings
        for item in sets:
            if "=" not in item:
                raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
            k, v = item.split("=", 1)
            settings = set_setting(settings, k, v)
            overrides[k.strip().lower()] = getattr(settings, k.strip().lower())
        dbs = dict(config.databases)
        extra = {}
        for url in upstream:
            name, entry = parse_upstream(url)
            dbs[name] = entry
            extra[name] = entry
        if extra:
            overrides["_databases"] = extra
        if run_as:
            settings = msgspec.structs.replace(settings, user=run_as)
            overrides["user"] = run_as
        config = msgspec.structs.replace(config, settings=settings, databases=dbs)
        if daemon and not config.settings.pidfile:
            raise ConfigError("pidfile is not set: cannot daemonize (-d needs a pidfile, as pgbouncer's)")
        if daemon and not (config.settings.logfile or config.settings.syslog):
            raise ConfigError("neither logfile nor syslog is set: cannot daemonize (-d logs there)")
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if daemon:
        _daemonize()
        quiet = True
    embedded: EmbeddedServer | None = None
    if not config.databases and not config.has_databases_section:
        # Neither --upstream nor a [databases] section (an empty one means: no databases, as
        # pgbouncer): run the bundled server ourselves.
        from .embedded import EmbeddedServer

        embedded = EmbeddedServer(data_dir or "pgbundle-data")
        try:
            embedded.initialise()
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
        config.databases["*"] = embedded.database()
        overrides["_databases"] = {"*": config.databases["*"]}
    try:
        setup_logging(config.settings, verbose, quiet)
    except OSError as exc:
        raise click.ClickException(f"cannot open the log: {exc}") from None
    try:
        app = Pooler(config, {k: v for k, v in overrides.items()}, embedded=embedded)
        trio.run(app.run)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:  # from inside the pooler's nursery: startup errors stay one line
        leaves = _leaves(group)
        if leaves and all(isinstance(e, (ConfigError, RuntimeError)) for e in leaves):
            raise click.ClickException("; ".join(str(e) for e in leaves)) from None
        raise
    except RuntimeError as exc:  # the bundled server failed to start
        raise click.ClickException(str(exc)) from None


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out
