"""The one exception type a client sees as an ErrorResponse.

Anything in the server (engine or SQL layer) that should reach the client as an
ErrorResponse raises :class:`PgError` with a SQLSTATE from
:mod:`pgbundle.shared.sqlstate` and PostgreSQL's message text.  The protocol loop
turns it into ErrorResponse fields with :meth:`PgError.fields`; any *other*
exception escaping a statement is a bug and is reported as XX000 (internal error)
after being logged with its traceback in the server log, never to the client.

``severity`` is ``ERROR`` by default; ``FATAL`` ends the session after the
message is sent (authentication failures, administrator shutdown, crash
shutdown).  ``PANIC`` is never used: the postmaster's crash handling covers it.
"""

from __future__ import annotations

from pgbundle.shared import sqlstate as _s


class PgError(Exception):
    """An error with a SQLSTATE, reported to the client as ErrorResponse.

    Arguments follow PostgreSQL's ereport fields: ``sqlstate`` (five characters),
    ``message`` (primary message), ``detail``, ``hint``, ``position`` (1-based
    character position in the query string).  Extra keyword fields:
    ``severity`` (ERROR/FATAL), ``schema``, ``table``, ``column``, ``datatype``,
    ``constraint`` (sent as the s/t/c/d/n fields).
    """

    def __init__(
        self,
        sqlstate: str,
        message: str,
        detail: str | None = None,
        hint: str | None = None,
        position: int | None = None,
        *,
        severity: str = "ERROR",
        schema: str | None = None,
        table: str | None = None,
        column: str | None = None,
        datatype: str | None = None,
        constraint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.detail = detail
        self.hint = hint
        self.position = position
        self.severity = severity
        self.schema = schema
        self.table = table
        self.column = column
        self.datatype = datatype
        self.constraint = constraint

    def fields(self) -> dict[str, str]:
        """ErrorResponse/NoticeResponse fields in PostgreSQL's order."""
        f = _s.error_fields(self.sqlstate, self.message, self.severity, detail=self.detail, hint=self.hint,
                            position=self.position)
        for code, value in ((_s.FIELD_SCHEMA, self.schema), (_s.FIELD_TABLE, self.table),
                            (_s.FIELD_COLUMN, self.column), (_s.FIELD_DATATYPE, self.datatype),
                            (_s.FIELD_CONSTRAINT, self.constraint)):
            if value is not None:
                f[code] = value
        return f

    def __repr__(self) -> str:
        return f"PgError({self.sqlstate!r}, {self.message!r})"


class FatalError(PgError):
    """A PgError with severity FATAL: the session ends after it is reported."""

    def __init__(self, sqlstate: str, message: str, detail: str | None = None, hint: str | None = None) -> None:
        super().__init__(sqlstate, message, detail, hint, severity="FATAL")


class QueryCanceled(PgError):
    """57014, raised at a cancellation check point when a cancel request arrived."""

    def __init__(self, message: str = "canceling statement due to user request") -> None:
        super().__init__(_s.QUERY_CANCELED, message)


def invalid_byte_sequence(data: bytes, start: int) -> PgError:
    """22021 for bytes that are not UTF-8, naming the bytes of the character that starts at
    ``start`` as PostgreSQL's report_invalid_encoding does ("0xc3 0x28")."""
    lead = data[start]
    n = 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if 0xF0 <= lead < 0xF8 else 1
    return PgError("22021", 'invalid byte sequence for encoding "UTF8": '
                   + " ".join(f"0x{b:02x}" for b in data[start:start + n]))
