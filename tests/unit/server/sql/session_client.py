"""A client for unit tests of the SQL layer: drives a real Session over the in-memory engine
(:mod:`.memengine`), decoding the answers."""

from __future__ import annotations

from pgbundle.server.tcop.session import Session
from pgbundle.shared.protocol import messages as M

from .memengine import MemEngine


class Client:
    """Drives a Session like a client would, decoding the answers."""

    def __init__(self) -> None:
        self.engine = MemEngine()
        self.s = Session(self.engine, database="postgres", user="postgres", settings=self.engine.settings)

    def q(self, sql: str) -> list:
        return self.s.simple_query(sql)

    def rows(self, sql: str) -> list[tuple]:
        """Text rows of the last result set; raises on ErrorResponse."""
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
        out = self.q(sql)
        err = [m for m in out if isinstance(m, M.ErrorResponse)]
        assert err, f"{sql!r} did not fail: {out}"
        return err[0].fields

    def tags(self, sql: str) -> list[str]:
        return [m.tag for m in self.q(sql) if isinstance(m, M.CommandComplete)]
