"""Date and time functions beyond the core ones of :mod:`.functions`, as PostgreSQL's
utils/adt/timestamp.c and date.c: ``age``, ``make_interval``, ``make_timestamp``,
``make_time``, ``justify_hours`` / ``justify_interval``, ``interval + date``.
Registered into the function registry at import (:mod:`pgbundle.server.utils.adt`).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.utils.adt import formatting as FMT
from pgbundle.server.utils.adt.functions import fn, op, ts_plus_interval
from pgbundle.shared.types import Interval


@fn("age", "timestamp,timestamp", "interval")
def _age_ts(a: _dt.datetime, b: _dt.datetime) -> Interval:
    return FMT.age(a, b)


@fn("age", "timestamptz,timestamptz", "interval", env=True)
def _age_tstz(env: Any, a: _dt.datetime, b: _dt.datetime) -> Interval:
    tz = env.tz
    return FMT.age(a.astimezone(tz).replace(tzinfo=None), b.astimezone(tz).replace(tzinfo=None))


@fn("age", "timestamp", "interval", env=True)
def _age1(env: Any, b: _dt.datetime) -> Interval:
    today = env.xact_timestamp().astimezone(env.tz).date()
    return FMT.age(_dt.datetime(today.year, today.month, today.day), b)


@fn("age", "timestamptz", "interval", env=True)
def _age1tz(env: Any, b: _dt.datetime) -> Interval:
    today = env.xact_timestamp().astimezone(env.tz).date()
    return FMT.age(_dt.datetime(today.year, today.month, today.day), b.astimezone(env.tz).replace(tzinfo=None))


@fn("make_interval", "int4,int4,int4,int4,int4,int4,float8", "interval")
def _make_interval(years: int, months: int, weeks: int, days: int, hours: int, mins: int, secs: float) -> Interval:
    us = round(((hours * 60 + mins) * 60) * 1_000_000 + secs * 1_000_000)
    return Interval(years * 12 + months, weeks * 7 + days, us)


MAKE_INTERVAL_ARGS = ("years", "months", "weeks", "days", "hours", "mins", "secs")


@fn("make_timestamp", "int4,int4,int4,int4,int4,float8", "timestamp")
def _make_timestamp(y: int, mo: int, d: int, h: int, mi: int, s: float) -> _dt.datetime:
    sec = int(s)
    try:
        return _dt.datetime(y, mo, d, h, mi, sec, round((s - sec) * 1_000_000))
    except ValueError:
        raise PgError("22008", f"date field value out of range: {y}-{mo:02d}-{d:02d}") from None


@fn("make_time", "int4,int4,float8", "time")
def _make_time(h: int, mi: int, s: float) -> _dt.time:
    sec = int(s)
    return _dt.time(h, mi, sec, round((s - sec) * 1_000_000))


@fn("justify_hours", "interval", "interval")
def _justify_hours(iv: Interval) -> Interval:
    d, us = divmod(iv.microseconds, 86_400_000_000)
    return Interval(iv.months, iv.days + d, us)


@fn("justify_interval", "interval", "interval")
def _justify_interval(iv: Interval) -> Interval:
    iv = _justify_hours(iv)
    m, d = divmod(iv.days, 30)
    return Interval(iv.months + m, d, iv.microseconds)


op("+", "interval,date", "timestamp",
   lambda iv, d: _date_plus(d, iv))


def _date_plus(d: _dt.date, iv: Interval) -> _dt.datetime:
    return ts_plus_interval(_dt.datetime(d.year, d.month, d.day), iv)
