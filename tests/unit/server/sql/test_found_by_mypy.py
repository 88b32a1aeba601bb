"""Faults the type checker found in the SQL layer, each pinned by PostgreSQL's answer."""

from __future__ import annotations


def test_nullif_of_two_rows_compares_the_rows(db):
    # NULLIF(ROW(..), ROW(..)) returned the first column comparison (a boolean), not the row
    assert db.rows("select nullif(row(1, 2), row(1, 3))") == [("(1,2)",)]
    assert db.rows("select nullif(row(1, 2), row(1, 2)) is null") == [("t",)]


def test_copy_of_dml_without_returning_is_refused(db):
    # COPY (INSERT ...) TO STDOUT with no RETURNING failed with an internal TypeError
    db.q("create table t (id int)")
    err = db.error("copy (insert into t values (1)) to stdout")
    assert (err["C"], err["M"]) == ("0A000", "COPY query must have a RETURNING clause")
    assert db.rows("select count(*) from t") == [("0",)]
    out = db.q("copy (insert into t values (2) returning id) to stdout")
    assert [m.data for m in out if type(m).__name__ == "CopyData"] == [b"2\n"]
