"""``pgbundle server``, ``pgbundle initdb`` and ``pgbundle stop`` (click commands).

``pgbundle server -D DIR [--port N] [--listen-addresses A] [--max-connections N]
[-c name=value ...]`` runs the postmaster in the foreground, initialising an empty DIR
first.  ``pgbundle stop -D DIR -m smart|fast|immediate`` signals the postmaster named in
DIR/postmaster.pid (SIGTERM / SIGINT / SIGQUIT) and waits until it is gone, like
``pg_ctl stop``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import click

from pgbundle.server.errors import PgError
from pgbundle.server.utils.guc import GucSettings


def _settings(port: int | None, listen: str | None, max_connections: int | None,
              options: tuple[str, ...]) -> GucSettings:
    s = GucSettings()
    cmdline: dict[str, str] = {}
    for opt in options:
        if "=" not in opt:
            raise click.BadParameter(f'-c {opt}: expected name=value', param_hint="-c")
        k, v = opt.split("=", 1)
        cmdline[k.strip().replace("-", "_")] = v.strip()
    if port is not None:
        cmdline["port"] = str(port)
    if listen is not None:
        cmdline["listen_addresses"] = listen
    if max_connections is not None:
        cmdline["max_connections"] = str(max_connections)
    try:
        s.apply_options(cmdline)
    except PgError as e:
        raise click.ClickException(e.message) from None
    s.cmdline = cmdline
    return s


@click.command("server")
@click.option("-D", "--data-dir", "datadir", required=True, type=click.Path(file_okay=False),
              help="data directory (initialised if empty)")
@click.option("-p", "--port", type=int, default=None, help="TCP port (default 5432)")
@click.option("--listen-addresses", "-h", "listen", default=None, help="addresses to listen on (default localhost)")
@click.option("-N", "--max-connections", type=int, default=None, help="max_connections (default 100)")
@click.option("-c", "options", multiple=True, metavar="NAME=VALUE", help="set a configuration parameter")
def server(datadir: str, port: int | None, listen: str | None, max_connections: int | None,
           options: tuple[str, ...]) -> None:
    """Run the PostgreSQL-compatible server in the foreground."""
    from pgbundle.server.postmaster.postmaster import Postmaster  # lazy: `pgbundle stop` needs no server

    settings = _settings(port, listen, max_connections, options)
    os.makedirs(datadir, exist_ok=True)
    try:
        code = Postmaster(datadir, settings).run()
    except PgError as e:
        click.echo(f"FATAL:  {e.message}", err=True)
        code = 1
    except RuntimeError as e:
        click.echo(f"FATAL:  {e}", err=True)
        code = 1
    sys.exit(code)


@click.command("initdb")
@click.option("-D", "--data-dir", "datadir", required=True, type=click.Path(file_okay=False))
@click.option("-U", "--username", default="postgres", help="database superuser name")
@click.option("--pwfile", type=click.Path(dir_okay=False, exists=True), default=None,
              help="read the superuser's password from this file")
@click.option("--wal-segsize", type=int, default=None, help="size of WAL segments, in megabytes (default 16)")
def initdb(datadir: str, username: str, pwfile: str | None, wal_segsize: int | None) -> None:
    """Create a new data directory."""
    from pgbundle.server.catalog.bootstrap import initdb as do_initdb  # lazy: `pgbundle stop` needs no server

    password = None
    if pwfile:
        with open(pwfile) as f:
            password = f.readline().rstrip("\n")
    try:
        do_initdb(datadir, superuser=username, password=password, echo=click.echo, wal_segsize_mb=wal_segsize)
    except RuntimeError as e:
        raise click.ClickException(str(e)) from None


@click.command("stop")
@click.option("-D", "--data-dir", "datadir", required=True, type=click.Path(file_okay=False))
@click.option("-m", "--mode", type=click.Choice(["smart", "fast", "immediate", "s", "f", "i"]), default="fast")
@click.option("-t", "--timeout", type=int, default=60, help="seconds to wait")
def stop(datadir: str, mode: str, timeout: int) -> None:
    """Shut down the server running on a data directory."""
    mode = {"s": "smart", "f": "fast", "i": "immediate"}.get(mode, mode)
    pidfile = os.path.join(datadir, "postmaster.pid")
    try:
        with open(pidfile) as f:
            pid = int(f.readline().strip())
    except (OSError, ValueError):
        raise click.ClickException(f'PID file "{pidfile}" does not exist\nIs server running?') from None
    sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise click.ClickException(f"could not send stop signal (PID: {pid}): No such process") from None
    click.echo("waiting for server to shut down...", nl=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(pidfile) and not _alive(pid):
            click.echo(" done\nserver stopped")
            return
        time.sleep(0.1)
        click.echo(".", nl=False)
    raise click.ClickException("server does not shut down")


def _alive(pid: int) -> bool:
    """Is the process there (a zombie waiting for its parent counts as gone)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
