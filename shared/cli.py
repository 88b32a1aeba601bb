"""The ``pgbundle`` command: one click group, one subcommand per program.

``pgbundle pooler`` is in :mod:`pgbundle.pooler.cli`; the server's commands
(``server``, ``initdb``, ``stop``) in :mod:`pgbundle.server.cli`.  Subcommands are
imported lazily so ``pgbundle --help`` stays fast and one side's import error
does not break the other.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

import click

_SUBCOMMANDS = {
    "pooler": ("pgbundle.pooler.cli", "pooler"),
    "server": ("pgbundle.server.cli", "server"),
    "initdb": ("pgbundle.server.cli", "initdb"),
    "stop": ("pgbundle.server.cli", "stop"),
    "top": ("pgbundle.pooler.top", "top"),
}


def _version() -> str:
    try:
        return version("pgbundle")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        names = []
        for name, (mod, attr) in _SUBCOMMANDS.items():
            try:
                getattr(importlib.import_module(mod), attr)
            except (ImportError, AttributeError):
                continue
            names.append(name)
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = _SUBCOMMANDS.get(name)
        if target is None:
            return None
        try:
            cmd: click.Command = getattr(importlib.import_module(target[0]), target[1])
            return cmd
        except (ImportError, AttributeError):
            return None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="pgbundle")
def main() -> None:
    """pgbundle: a PostgreSQL connection pooler and a PostgreSQL-compatible server."""


if __name__ == "__main__":
    main()
