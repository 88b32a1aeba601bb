"""PostgreSQL's formatting.c in the common cases: ``to_char`` of dates, times,
intervals and numbers, ``to_date`` / ``to_timestamp(text, text)`` /
``to_number``, and ``age`` (timestamp_age: field-wise difference with borrows, so
months stay months).
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.utils.adt.functions import fn
from pgbundle.shared.types import Interval

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

# longest first, so "HH24" wins over "HH" and "MONTH" over "MON"
_DT_PATTERNS = sorted([
    "A.D.", "a.d.", "B.C.", "b.c.", "AD", "ad", "BC", "bc", "A.M.", "a.m.", "P.M.", "p.m.", "AM", "am", "PM",
    "pm", "YYYY", "Y,YYY", "YYY", "YY", "Y", "IYYY", "IYY", "IY", "I", "MONTH", "Month", "month", "MON", "Mon",
    "mon", "MM", "DAY", "Day", "day", "DY", "Dy", "dy", "DDD", "DD", "D", "IDDD", "ID", "HH24", "HH12", "HH",
    "MI", "SSSSS", "SSSS", "SS", "MS", "US", "FF1", "FF2", "FF3", "FF4", "FF5", "FF6", "TZH", "TZM", "TZ", "tz",
    "OF", "Q", "WW", "IW", "W", "J", "CC", "RM", "rm",
], key=len, reverse=True)

_ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"]


def _ordinal_suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _tokens(fmt: str, patterns: list[str]) -> list[tuple[str, str, bool, str]]:
    """(kind 'p'|'l', text, fill mode, suffix 'TH'|'th'|'') items of a format string."""
    out: list[tuple[str, str, bool, str]] = []
    i = 0
    n = len(fmt)
    while i < n:
        fm = False
        if fmt.startswith("FM", i) or fmt.startswith("fm", i):
            fm = True
            i += 2
        if i < n and fmt[i] == '"':
            j = i + 1
            buf = []
            while j < n and fmt[j] != '"':
                if fmt[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(fmt[j])
                j += 1
            out.append(("l", "".join(buf), False, ""))
            i = j + 1
            continue
        if i < n and fmt[i] == "\\" and i + 1 < n:
            out.append(("l", fmt[i + 1], False, ""))
            i += 2
            continue
        for p in patterns:
            if fmt.startswith(p, i):
                i += len(p)
                suffix = ""
                if fmt.startswith("TH", i) or fmt.startswith("th", i):
                    suffix = fmt[i: i + 2]
                    i += 2
                out.append(("p", p, fm, suffix))
                break
        else:
            if i < n:
                out.append(("l", fmt[i], False, ""))
                i += 1
    return out


def _case(word: str, pattern: str) -> str:
    if pattern.isupper():
        return word.upper()
    if pattern[0].isupper():
        return word.capitalize()
    return word.lower()


def to_char_datetime(v: Any, fmt: str, tzname: str = "UTC") -> str | None:
    if v is None or fmt is None:
        return None
    if isinstance(v, _dt.date) and not isinstance(v, _dt.datetime):
        v = _dt.datetime(v.year, v.month, v.day)
    out = []
    for kind, p, fm, suffix in _tokens(fmt, _DT_PATTERNS):
        if kind == "l":
            out.append(p)
            continue
        num: int | None = None
        width = 0
        text = ""
        up = p.upper()
        if up in ("YYYY",):
            num, width = v.year, 4
        elif up == "Y,YYY":
            text = f"{v.year // 1000},{v.year % 1000:03d}"
        elif up == "YYY":
            num, width = v.year % 1000, 3
        elif up == "YY":
            num, width = v.year % 100, 2
        elif up == "Y":
            num, width = v.year % 10, 1
        elif up in ("IYYY", "IYY", "IY", "I"):
            iy = v.isocalendar()[0]
            width = len(up)
            num = iy % (10 ** width) if width < 4 else iy
        elif up == "MONTH":
            text = _case(_MONTHS[v.month - 1], p)
            if not fm:
                text = text.ljust(9)
        elif up == "MON":
            text = _case(_MONTHS[v.month - 1][:3], p)
        elif up == "MM":
            num, width = v.month, 2
        elif up == "DAY":
            text = _case(_DAYS[v.isoweekday() % 7], p)
            if not fm:
                text = text.ljust(9)
        elif up == "DY":
            text = _case(_DAYS[v.isoweekday() % 7][:3], p)
        elif up == "DDD":
            num, width = v.timetuple().tm_yday, 3
        elif up == "IDDD":
            iso = v.isocalendar()
            num, width = (iso[1] - 1) * 7 + iso[2], 3
        elif up == "DD":
            num, width = v.day, 2
        elif up == "D":
            num, width = v.isoweekday() % 7 + 1, 1
        elif up == "ID":
            num, width = v.isoweekday(), 1
        elif up == "HH24":
            num, width = v.hour, 2
        elif up in ("HH12", "HH"):
            num, width = (v.hour % 12) or 12, 2
        elif up == "MI":
            num, width = v.minute, 2
        elif up == "SS":
            num, width = v.second, 2
        elif up in ("SSSS", "SSSSS"):
            num, width = v.hour * 3600 + v.minute * 60 + v.second, 1
        elif up == "MS":
            num, width = v.microsecond // 1000, 3
        elif up == "US":
            num, width = v.microsecond, 6
        elif up.startswith("FF"):
            d = int(up[2])
            num, width = v.microsecond // (10 ** (6 - d)), d
        elif up in ("AM", "PM"):
            text = ("AM" if v.hour < 12 else "PM")
            text = text if p.isupper() else text.lower()
        elif up in ("A.M.", "P.M."):
            text = ("A.M." if v.hour < 12 else "P.M.")
            text = text if p[0].isupper() else text.lower()
        elif up in ("AD", "BC"):
            text = "AD" if p.isupper() else "ad"
        elif up in ("A.D.", "B.C."):
            text = "A.D." if p[0].isupper() else "a.d."
        elif up == "TZ":
            off = v.utcoffset() if v.tzinfo is not None else None
            text = "" if off is None else (tzname if tzname.isalpha() else _offset_text(off))
            text = text.upper() if p == "TZ" else text.lower()
        elif up == "OF":
            off = v.utcoffset() if v.tzinfo is not None else None
            text = "" if off is None else _offset_text(off)
        elif up == "TZH":
            off = v.utcoffset() or _dt.timedelta(0)
            secs = int(off.total_seconds())
            text = ("-" if secs < 0 else "+") + f"{abs(secs) // 3600:02d}"
        elif up == "TZM":
            off = v.utcoffset() or _dt.timedelta(0)
            text = f"{abs(int(off.total_seconds())) // 60 % 60:02d}"
        elif up == "Q":
            num, width = (v.month - 1) // 3 + 1, 1
        elif up == "WW":
            num, width = (v.timetuple().tm_yday - 1) // 7 + 1, 2
        elif up == "IW":
            num, width = v.isocalendar()[1], 2
        elif up == "W":
            num, width = (v.day - 1) // 7 + 1, 1
        elif up == "J":
            num, width = v.toordinal() + 1721425, 1
        elif up == "CC":
            num, width = (v.year - 1) // 100 + 1, 2
        elif up == "RM":
            text = _ROMAN[v.month - 1]
            text = (text if p.isupper() else text.lower())
            if not fm:
                text = text.ljust(4)
        if num is not None:
            text = str(num) if fm else str(num).zfill(width)
            if suffix:
                s = _ordinal_suffix(num)
                text += s.upper() if suffix == "TH" else s
        out.append(text)
    return "".join(out)


def _offset_text(off: _dt.timedelta) -> str:
    secs = int(off.total_seconds())
    sign = "-" if secs < 0 else "+"
    secs = abs(secs)
    h, m = divmod(secs // 60, 60)
    return f"{sign}{h:02d}" + (f":{m:02d}" if m else "")


def to_char_interval(v: Interval, fmt: str) -> str | None:
    if v is None or fmt is None:
        return None
    us = v.microseconds
    sign = -1 if us < 0 else 1
    us = abs(us)
    hours, rem = divmod(us, 3_600_000_000)
    minutes, rem = divmod(rem, 60_000_000)
    seconds, micro = divmod(rem, 1_000_000)
    years, months = divmod(v.months, 12)
    out = []
    for kind, p, fm, _suffix in _tokens(fmt, _DT_PATTERNS):
        if kind == "l":
            out.append(p)
            continue
        up = p.upper()
        num: int | None = None
        width = 2
        text = ""
        if up == "YYYY":
            num, width = years, 4
        elif up == "MM":
            num = months
        elif up == "DD":
            num = v.days
        elif up in ("HH24", "HH", "HH12"):
            num = sign * hours if up == "HH24" else (hours % 12 or 12)
        elif up == "MI":
            num = minutes
        elif up == "SS":
            num = seconds
        elif up == "MS":
            num, width = micro // 1000, 3
        elif up == "US":
            num, width = micro, 6
        elif up == "MON":
            text = _case(_MONTHS[months - 1][:3], p) if months else ""
        if num is not None:
            text = str(num) if fm else (("-" if num < 0 else "") + str(abs(num)).zfill(width))
        out.append(text)
    return "".join(out)


# ----------------------------------------------------------------------------- numbers

_NUM_RE = re.compile(r"FM|fm|9|0|\.|,|D|G|S|MI|PL|SG|PR|L|V|EEEE|TH|th|\"[^\"]*\"|.", re.S)


def to_char_number(v: Any, fmt: str) -> str | None:
    if v is None or fmt is None:
        return None
    toks = _NUM_RE.findall(fmt)
    fm = any(t.upper() == "FM" for t in toks)
    toks = [t for t in toks if t.upper() != "FM"]
    point = next((i for i, t in enumerate(toks) if t in (".", "D")), None)
    int_digits = sum(1 for i, t in enumerate(toks) if t in ("9", "0") and (point is None or i < point))
    frac_digits = sum(1 for i, t in enumerate(toks) if t in ("9", "0") and point is not None and i > point)
    if any(t == "EEEE" for t in toks):
        d = Decimal(str(v)) if not isinstance(v, Decimal) else v
        return f"{d:.{frac_digits}e}".replace("e", "e")
    multiplier = sum(1 for t in toks if t == "V")
    if isinstance(v, float):
        if v != v:
            return " NaN" if not fm else "NaN"
        d = Decimal(repr(v))
    else:
        d = Decimal(v)
    if multiplier:
        vcount = sum(1 for t in toks if t in ("9", "0") and toks.index("V") < toks.index(t)) if False else 0
        d = d.scaleb(frac_digits)
        del vcount
    neg = d < 0
    d = abs(d).quantize(Decimal(1).scaleb(-frac_digits), rounding=ROUND_HALF_UP)
    digits = format(d, "f")
    ip, _, fp = digits.partition(".")
    fp = fp.ljust(frac_digits, "0")
    if ip == "0" and int_digits:
        ip = ""
    overflow = len(ip) > int_digits
    explicit_sign = any(t in ("S", "MI", "PL", "SG", "PR") for t in toks)
    # integer part: right-align the digits under the 9/0 positions
    ipos = [i for i, t in enumerate(toks) if t in ("9", "0") and (point is None or i < point)]
    first_zero = next((k for k, i in enumerate(ipos) if toks[i] == "0"), len(ipos))
    ipad = ip.rjust(int_digits) if not overflow else "#" * int_digits
    started = False
    out: list[str] = []
    k = 0
    sign_done = False

    def sign_text() -> str:
        return "-" if neg else ("" if fm else " ")

    frac_iter = iter(fp if not overflow else "#" * frac_digits)
    for i, t in enumerate(toks):
        if point is None or i < point:
            if t in ("9", "0"):
                ch = ipad[k]
                if ch == " " and (t == "0" or k >= first_zero):
                    ch = "0"
                if ch != " " and not started:
                    started = True
                    if not explicit_sign and not sign_done:
                        out.append(sign_text())
                        sign_done = True
                if ch == " ":
                    if not fm:
                        out.append(" ")
                else:
                    out.append(ch)
                k += 1
                continue
            if t in (",", "G"):
                if started:
                    out.append(",")
                elif not fm:
                    out.append(" ")
                continue
        if t in (".", "D"):
            if not started and not explicit_sign and not sign_done:
                out.append(sign_text())
                sign_done = True
                started = True
            out.append(".")
            continue
        if t in ("9", "0"):
            out.append(next(frac_iter, "0"))
            continue
        if t == "S":
            out.append("-" if neg else "+")
        elif t == "MI":
            out.append("-" if neg else ("" if fm else " "))
        elif t == "PL":
            out.append("+" if not neg else ("" if fm else " "))
        elif t == "SG":
            out.append("-" if neg else "+")
        elif t == "PR":
            pass
        elif t == "L":
            out.append("$" if fm else "$".rjust(1))
        elif t in ("TH", "th"):
            n = int(d)
            s = _ordinal_suffix(n)
            out.append(s.upper() if t == "TH" else s)
        elif t == "V":
            pass
        elif t.startswith('"'):
            out.append(t[1:-1])
        else:
            out.append(t)
    if not started and not explicit_sign and not sign_done:
        out.insert(0, sign_text())
    text = "".join(out)
    if fm and point is not None:
        # FM: trailing zeros of '9' fraction positions go
        frac_nines = [toks[i] for i in range(point + 1, len(toks)) if toks[i] in ("9", "0")]
        if frac_nines and all(c == "9" for c in frac_nines) and not overflow:
            head, _, tail = text.partition(".")
            text = head + "." + tail.rstrip("0") if tail else text
    if any(t == "PR" for t in toks):
        text = f"<{text.strip()}>" if neg else (text if fm else f" {text} ")
    return text


def to_number(s: str, fmt: str) -> Decimal | None:
    if s is None or fmt is None:
        return None
    neg = "-" in s or ("<" in s and ">" in s)
    cleaned = re.sub(r"[^0-9.]", "", s)
    if not cleaned or cleaned == ".":
        raise PgError("22P02", 'invalid input syntax for type numeric: " "')
    d = Decimal(cleaned)
    toks = _NUM_RE.findall(fmt)
    point = next((i for i, t in enumerate(toks) if t in (".", "D")), None)
    if point is not None:
        frac = sum(1 for t in toks[point + 1:] if t in ("9", "0"))
        d = d.quantize(Decimal(1).scaleb(-frac)) if "." in cleaned else d
    return -d if neg else d


# ----------------------------------------------------------------------------- parsing


def _parse_fields(s: str, fmt: str) -> dict[str, Any]:
    toks = _tokens(fmt, _DT_PATTERNS)
    f: dict[str, Any] = {}
    i = 0
    n = len(s)

    def skip_space() -> None:
        nonlocal i
        while i < n and s[i].isspace():
            i += 1

    def read_int(maxlen: int) -> int:
        nonlocal i
        skip_space()
        j = i
        if j < n and s[j] in "+-":
            j += 1
        while j < n and s[j].isdigit() and (j - i) < maxlen:
            j += 1
        if j == i:
            raise PgError("22007", f'invalid value "{s[i:i + maxlen]}" for "{cur}"',
                          detail="Value must be an integer.")
        v = int(s[i:j])
        i = j
        return v

    cur = ""
    for kind, p, fm, _suffix in toks:
        cur = p
        if kind == "l":
            if p.isspace():
                skip_space()
            elif i < n and s[i] == p:
                i += 1
            elif i < n and not s[i].isalnum():
                i += 1
            continue
        up = p.upper()
        if up in ("YYYY", "IYYY"):
            f["year"] = read_int(4 if not fm else 9)
        elif up == "YY":
            y = read_int(2)
            f["year"] = y + (2000 if y < 70 else 1900)
        elif up == "MM":
            f["month"] = read_int(2)
        elif up == "DD":
            f["day"] = read_int(2)
        elif up == "DDD":
            f["doy"] = read_int(3)
        elif up == "HH24":
            f["hour"] = read_int(2)
        elif up in ("HH", "HH12"):
            f["hour12"] = read_int(2)
        elif up == "MI":
            f["minute"] = read_int(2)
        elif up == "SS":
            f["second"] = read_int(2)
        elif up == "MS":
            f["us"] = read_int(3) * 1000
        elif up == "US":
            f["us"] = read_int(6)
        elif up in ("MON", "MONTH"):
            skip_space()
            word = re.match(r"[A-Za-z]+", s[i:])
            w = word.group(0) if word else ""
            for k, name in enumerate(_MONTHS):
                if name.lower().startswith(w.lower()[:3]) and w:
                    f["month"] = k + 1
                    break
            else:
                raise PgError("22007", f'invalid value "{w}" for "{p}"',
                              detail="The given value did not match any of the allowed values for this field.")
            i += len(w)
        elif up in ("DY", "DAY"):
            skip_space()
            word = re.match(r"[A-Za-z]+", s[i:])
            i += len(word.group(0)) if word else 0
        elif up in ("AM", "PM", "A.M.", "P.M."):
            skip_space()
            chunk = s[i: i + len(p)].upper()
            f["pm"] = chunk.startswith("P")
            i += len(p)
        elif up in ("TZH",):
            f["tzh"] = read_int(3)
        elif up == "TZM":
            f["tzm"] = read_int(2)
        elif up == "J":
            f["julian"] = read_int(9)
    return f


def _fields_to_datetime(f: dict[str, Any]) -> _dt.datetime:
    if "julian" in f:
        d = _dt.date.fromordinal(f["julian"] - 1721425)
        return _dt.datetime(d.year, d.month, d.day)
    year = f.get("year", 1)
    if "doy" in f and "month" not in f:
        d = _dt.date(year, 1, 1) + _dt.timedelta(days=f["doy"] - 1)
        month, day = d.month, d.day
    else:
        month, day = f.get("month", 1), f.get("day", 1)
    hour = f.get("hour", 0)
    if "hour12" in f:
        hour = f["hour12"] % 12 + (12 if f.get("pm") else 0)
    try:
        return _dt.datetime(year, month, day, hour, f.get("minute", 0), f.get("second", 0), f.get("us", 0))
    except ValueError:
        raise PgError("22008", "date/time field value out of range") from None


def to_date(s: str, fmt: str) -> _dt.date | None:
    if s is None or fmt is None:
        return None
    return _fields_to_datetime(_parse_fields(s, fmt)).date()


def to_timestamp(s: str, fmt: str, tz: _dt.tzinfo) -> _dt.datetime | None:
    if s is None or fmt is None:
        return None
    f = _parse_fields(s, fmt)
    v = _fields_to_datetime(f)
    if "tzh" in f:
        off = _dt.timedelta(hours=abs(f["tzh"]), minutes=f.get("tzm", 0))
        zone = _dt.timezone(-off if f["tzh"] < 0 else off)
        return v.replace(tzinfo=zone).astimezone(_dt.timezone.utc)
    return v.replace(tzinfo=tz).astimezone(_dt.timezone.utc) if hasattr(tz, "utcoffset") else v


# ----------------------------------------------------------------------------- age

def age(a: _dt.datetime, b: _dt.datetime) -> Interval:
    """timestamp_age: the symbolic difference a - b in years, months, days and time."""
    neg = a < b
    usec = a.microsecond - b.microsecond
    sec = a.second - b.second
    mins = a.minute - b.minute
    hour = a.hour - b.hour
    mday = a.day - b.day
    mon = a.month - b.month
    year = a.year - b.year
    if neg:
        usec, sec, mins, hour, mday, mon, year = -usec, -sec, -mins, -hour, -mday, -mon, -year
    while usec < 0:
        usec += 1_000_000
        sec -= 1
    while sec < 0:
        sec += 60
        mins -= 1
    while mins < 0:
        mins += 60
        hour -= 1
    while hour < 0:
        hour += 24
        mday -= 1
    while mday < 0:
        ref = a if neg else b
        mday += calendar.monthrange(ref.year, ref.month)[1]
        mon -= 1
    while mon < 0:
        mon += 12
        year -= 1
    if neg:
        usec, sec, mins, hour, mday, mon, year = -usec, -sec, -mins, -hour, -mday, -mon, -year
    return Interval(year * 12 + mon, mday, ((hour * 60 + mins) * 60 + sec) * 1_000_000 + usec)


# ----------------------------------------------------------------------------- SQL-callable (registered at import)


@fn("to_char", "timestamp,text", "text")
def _to_char_ts(v: _dt.datetime, f: str) -> str | None:
    return to_char_datetime(v, f)


@fn("to_char", "timestamptz,text", "text", env=True)
def _to_char_tstz(env: Any, v: _dt.datetime, f: str) -> str | None:
    return to_char_datetime(v.astimezone(env.tz), f, str(env.settings.get("TimeZone")))


@fn("to_char", "interval,text", "text")
def _to_char_iv(v: Interval, f: str) -> str | None:
    return to_char_interval(v, f)


for _t in ("int4", "int8", "numeric", "float8", "float4"):
    fn("to_char", f"{_t},text", "text")(to_char_number)


@fn("to_date", "text,text", "date")
def _to_date(s: str, f: str) -> _dt.date | None:
    return to_date(s, f)


@fn("to_timestamp", "text,text", "timestamptz", env=True)
def _to_timestamp2(env: Any, s: str, f: str) -> _dt.datetime | None:
    return to_timestamp(s, f, env.tz)


@fn("to_number", "text,text", "numeric")
def _to_number(s: str, f: str) -> Decimal | None:
    return to_number(s, f)
