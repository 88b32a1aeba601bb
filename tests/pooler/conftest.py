"""Fixtures for the pooler's tests: poolers in front of the shared PostgreSQL 15 (``pg``), and a
``pgbundle server`` (the bundled server) for the tests that run against it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fix_server import PgbServer, running_server

from .helpers import base_args


@pytest.fixture
def tx_pooler(pg, pooler_factory):
    """Transaction mode, pool size 5, in front of the shared cluster."""
    return pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "5",
                                    "--admin-users", "postgres"))



@pytest.fixture(scope="module")
def pgb_server() -> Iterator[PgbServer]:
    """A ``pgbundle server`` for pooler tests that run against it."""
    with running_server(max_connections="100") as s:
        yield s
