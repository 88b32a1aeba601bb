"""Fixtures for the examples' tests: a real ``pgbundle server`` shared by the session, and web
apps started per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fix_server import PgbServer, running_server

from .helpers import WebApp


@pytest.fixture(scope="session")
def pgb_server() -> Iterator[PgbServer]:
    with running_server(max_connections="100", shared_buffers="8MB") as s:
        yield s


@pytest.fixture
def webapp_factory() -> Iterator:
    started: list[WebApp] = []

    def make(database_url: str) -> WebApp:
        app = WebApp(database_url)
        started.append(app)
        return app

    yield make
    for app in started:
        app.close()
