"""Fixtures for the SQL layer's tests against real processes: statements run by the in-memory
Session (``client_cls``) and by PostgreSQL 15 side by side, and a real ``pgbundle server``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fix_server import PgbServer, running_server
from tests.unit.server.sql.session_client import Client


@pytest.fixture(scope="session")
def client_cls() -> type[Client]:
    return Client


@pytest.fixture(scope="module")
def server() -> Iterator[PgbServer]:
    """A real ``pgbundle server`` shared by the module's client tests."""
    with running_server(synchronous_commit="off") as s:
        yield s
