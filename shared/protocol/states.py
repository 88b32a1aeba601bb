"""Named protocol states shared by both sides of a connection.

:class:`TransactionStatus` is the status byte of ReadyForQuery (``Z``).  It is an
``IntEnum`` whose values are the bytes themselves, so code that scans raw frames
compares ``frame[5] == TransactionStatus.IDLE`` without decoding, and
``TransactionStatus.IDLE.char`` is the ``"I"`` that :class:`~.messages.ReadyForQuery`
carries.
"""

from __future__ import annotations

import enum


class TransactionStatus(enum.IntEnum):
    """ReadyForQuery's transaction status (PostgreSQL's ``TransactionBlockStatusCode``)."""

    IDLE = ord("I")  # not in a transaction block
    IN_BLOCK = ord("T")  # in a transaction block
    FAILED = ord("E")  # in a failed transaction block: queries are refused until it ends

    @property
    def char(self) -> str:
        """The status as the one-character string ReadyForQuery carries."""
        return chr(self.value)

    @classmethod
    def from_char(cls, c: str) -> TransactionStatus:
        """``"I"`` -> IDLE; ValueError for anything else."""
        return cls(ord(c))
