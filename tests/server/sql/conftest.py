"""Fixtures for the SQL layer's unit tests: a Session over the in-memory engine."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

_spec = importlib.util.spec_from_file_location("pgbundle_test_memengine", pathlib.Path(__file__).with_name("memengine.py"))
memengine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(memengine)


class Client:
    """Drives a Session like a client would, decoding the answers."""

    def __init__(self) -> None:
        from pgbundle.server.sql.session import Session
        self.engine = memengine.MemEngine()
        self.s = Session(self.engine, database="postgres", user="postgres", settings=self.engine.settings)

    def q(self, sql: str) -> list:
        return self.s.simple_query(sql)

    def rows(self, sql: str) -> list[tuple]:
        """Text rows of the last result set; raises on ErrorResponse."""
        from pgbundle.shared.protocol import messages as M
        out = self.q(sql)
        err = [m for m in out if isinstance(m, M.ErrorResponse)]
        if err:
            raise AssertionError(f"{sql!r} failed: {err[0].fields}")
        rows = []
        for m in out:
            if isinstance(m, M.RowDescription):
                rows = []
            if isinstance(m, M.DataRow):
                rows.append(tuple(None if v is None else v.decode() for v in m.values))
        return rows

    def error(self, sql: str) -> dict:
        from pgbundle.shared.protocol import messages as M
        out = self.q(sql)
        err = [m for m in out if isinstance(m, M.ErrorResponse)]
        assert err, f"{sql!r} did not fail: {out}"
        return err[0].fields

    def tags(self, sql: str) -> list[str]:
        from pgbundle.shared.protocol import messages as M
        return [m.tag for m in self.q(sql) if isinstance(m, M.CommandComplete)]


@pytest.fixture
def db() -> Client:
    return Client()


@pytest.fixture(scope="session")
def client_cls() -> type:
    return Client
