"""Faults the type checker found in the SQL layer, each pinned by PostgreSQL's answer."""

from __future__ import annotations


def test_nullif_of_two_rows_compares_the_rows(db):
    # NULLIF(ROW(..), ROW(..)) returned the first column comparison (a boolean), not the row
    assert db.rows("select nullif(row(1, 2), row(1, 3))") == [("(1,2)",)]
    assert db.rows("select nullif(row(1, 2), row(1, 2)) is null") == [("t",)]
