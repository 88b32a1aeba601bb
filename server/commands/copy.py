"""COPY table [(cols)] FROM STDIN / TO STDOUT, and COPY (query) TO STDOUT.

Text format (tab separated, ``\\N`` for NULL, backslash escapes) and CSV
(``HEADER``, ``DELIMITER``, ``NULL``, ``QUOTE``) are supported; ``FREEZE`` is
accepted.  COPY FROM hands the session a :class:`~pgbundle.server.tcop.dest.CopyIn` whose
``feed`` parses complete lines as they arrive and inserts them in batches;
``finish`` flushes and returns the row count.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pgbundle.server.errors import PgError, invalid_byte_sequence
from pgbundle.server.executor.constraints import default_fns, for_relation
from pgbundle.server.executor.expr import ExecState
from pgbundle.server.parser.coerce import typmod_fn
from pgbundle.server.parser.parse import RawStmt, const_value, names
from pgbundle.server.tcop.dest import CopyIn, StatementResult
from pgbundle.shared.protocol import messages as M
from pgbundle.shared.types import InvalidValue, binary_decoder, binary_encoder, text_decoder, text_encoder

if TYPE_CHECKING:
    from pgbundle.server.tcop.session import Session

BATCH = 1000
CHUNK = 65536  # COPY text data parsed per this many bytes

_UNESCAPE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _text(data: bytes) -> str:
    """COPY data as text; bytes that are not UTF-8 are 22021, as in PostgreSQL."""
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise invalid_byte_sequence(data, e.start) from None


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out = []
    i = 0
    n = len(field)
    while i < n:
        c = field[i]
        if c == "\\" and i + 1 < n:
            d = field[i + 1]
            if d in _UNESCAPE:
                out.append(_UNESCAPE[d])
                i += 2
                continue
            if d.isdigit():
                j = i + 1
                while j < n and j < i + 4 and field[j] in "01234567":
                    j += 1
                out.append(chr(int(field[i + 1:j], 8)))
                i = j
                continue
            out.append(d)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _then(d: Any, tm: Any) -> Any:
    def conv(f: str) -> Any:
        return tm(d(f))
    return conv


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _options(n: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for o in n.get("options", []) or []:
        d = o["DefElem"]
        arg = d.get("arg")
        v: Any = True
        if arg is not None:
            k, val = next(iter(arg.items()))
            if k == "String":
                v = val.get("sval", "")
            elif k == "A_Const":
                v = const_value(val)
            elif k == "Boolean":
                v = val.get("boolval", False)
            elif k == "Integer":
                v = val.get("ival", 0)
            elif k == "List":
                v = names(val.get("items"))
        if isinstance(v, str) and d["defname"] in ("freeze", "header") and v.lower() in ("on", "true", "off",
                                                                                         "false"):
            v = v.lower() in ("on", "true")
        out[d["defname"]] = v
    return out


def run_copy(s: Session, n: dict, raw: Any) -> Any:
    opts = _options(n)
    fmt = str(opts.get("format", "text")).lower()
    if opts.get("binary") is True:
        fmt = "binary"
    if opts.get("csv") is True:
        fmt = "csv"
    if fmt not in ("text", "csv", "binary"):
        raise PgError("22023", f'COPY format "{fmt}" not recognized')
    binary = fmt == "binary"
    csv_mode = fmt == "csv"
    delim = opts.get("delimiter", "," if csv_mode else "\t")
    null = opts.get("null", "" if csv_mode else "\\N")
    header = bool(opts.get("header", False))
    if n.get("filename") is not None:
        raise PgError("42501", "must be superuser or have privileges of the pg_read_server_files role to COPY "
                               "from a file", hint="Anyone can COPY to stdout or from stdin. psql's \\copy "
                                                   "command also works for anyone.")
    if n.get("is_from"):
        rv = n["relation"]
        rel = s.storage.lookup_relation(rv.get("schemaname"), rv["relname"])
        if rel is None:
            raise PgError("42P01", f'relation "{rv["relname"]}" does not exist')
        cols = _columns(rel, n)
        if opts.get("freeze"):
            is_new = getattr(s.engine, "relation_is_new", None)
            if is_new is not None and not is_new(rel.oid):
                # reported once the data arrives, as PostgreSQL does (the client is in COPY mode)
                err = PgError("55000", "cannot perform COPY FREEZE because the table was not created or truncated "
                                       "in the current subtransaction")

                def fail(_data: bytes = b"") -> int:
                    raise err
                return CopyIn(M.CopyInResponse(1 if binary else 0, tuple(1 if binary else 0 for _ in cols)),
                              fail, fail)
        if binary:
            return CopyIn(M.CopyInResponse(1, tuple(1 for _ in cols)), *_copy_in_binary(s, rel, cols))
        return CopyIn(M.CopyInResponse(0, tuple(0 for _ in cols)),
                      *_copy_in(s, rel, cols, csv_mode, delim, null, header))
    # COPY TO STDOUT
    if n.get("query") is not None:
        k, q = next(iter(n["query"].items()))
        prep = s._prepare(raw.text, RawStmt(k, q, raw.text, raw.location), ())
        if prep.columns is None:           # INSERT / UPDATE / DELETE without RETURNING
            raise PgError("0A000", "COPY query must have a RETURNING clause")
        res = s._run(prep, [])
        types = [c.type_oid for c in prep.columns]
        rows = res.rows
        colnames = [c.name for c in prep.columns]
    else:
        rv = n["relation"]
        rel = s.storage.lookup_relation(rv.get("schemaname"), rv["relname"])
        if rel is None:
            raise PgError("42P01", f'relation "{rv["relname"]}" does not exist')
        cols = _columns(rel, n)
        types = [rel.columns[i].type_oid for i in cols]
        colnames = [rel.columns[i].name for i in cols]
        rows = ((tuple(r[i] for i in cols)) for _tid, r in s.storage.scan(rel))
    tz = s.env.tz
    if binary:
        return _copy_out_binary(types, rows)
    encs = [text_encoder(t, tz) for t in types]
    out: list = [M.CopyOutResponse(0, tuple(0 for _ in types))]
    count = 0
    quote = opts.get("quote", '"')
    fq = opts.get("force_quote")
    forced = set(range(len(types))) if fq is True or fq == ["*"] or fq == "*" else \
        {colnames.index(c) for c in (fq or []) if c in colnames}
    if header:
        if csv_mode:
            out.append(M.CopyData((delim.join(_csv_field(c, delim, quote, null, False) for c in colnames)
                                   + "\n").encode()))
        else:
            out.append(M.CopyData((delim.join(colnames) + "\n").encode()))
    for r in rows:
        if csv_mode:
            line = delim.join(null if v is None else _csv_field(e(v), delim, quote, null, i in forced)
                              for i, (e, v) in enumerate(zip(encs, r))) + "\n"
        else:
            line = delim.join(null if v is None else _escape(e(v)) for e, v in zip(encs, r)) + "\n"
        out.append(M.CopyData(line.encode()))
        count += 1
    out.append(M.CopyDone())
    return StatementResult(f"COPY {count}", None, out)


def _csv_field(s: str, delim: str, quote: str, null: str, force: bool) -> str:
    if force or s == null or any(c in s for c in (delim, quote, "\n", "\r")) or s.startswith("\\."):
        return quote + s.replace(quote, quote + quote) + quote
    return s


_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _copy_out_binary(types: list[int], rows: Any) -> Any:
    import struct

    encs = [binary_encoder(t) for t in types]
    out: list = [M.CopyOutResponse(1, tuple(1 for _ in types))]
    header = _SIGNATURE + struct.pack(">ii", 0, 0)  # sent with the first row, as PostgreSQL does
    count = 0
    nf = struct.pack(">h", len(types))
    for r in rows:
        parts = [header, nf] if count == 0 else [nf]
        for e, v in zip(encs, r):
            if v is None:
                parts.append(b"\xff\xff\xff\xff")
            else:
                b = e(v)
                parts.append(struct.pack(">i", len(b)))
                parts.append(b)
        out.append(M.CopyData(b"".join(parts)))
        count += 1
    out.append(M.CopyData(b"\xff\xff" if count else header + b"\xff\xff"))
    out.append(M.CopyDone())
    return StatementResult(f"COPY {count}", None, out)


def _copy_in_binary(s: Session, rel: Any, cols: list[int]) -> tuple[Callable[[bytes], None], Callable[[], int]]:
    """COPY FROM STDIN (FORMAT binary): header, then tuples of length-prefixed fields."""
    import struct

    build, st = _row_builder(s, rel, cols, binary_decoder)
    cons = for_relation(s.env, rel) if rel.constraints else None
    state: dict[str, Any] = {"buf": b"", "header": False, "n": 0, "batch": [], "done": False}

    def flush() -> None:
        if state["batch"]:
            s.storage.insert_many(rel, state["batch"])
            if cons is not None and cons.has_new_checks:
                for r in state["batch"]:
                    cons.check_new(st, r)
            state["n"] += len(state["batch"])
            state["batch"] = []

    def parse() -> None:
        buf = state["buf"]
        pos = 0
        if not state["header"]:
            if len(buf) < 19:
                return
            if buf[:11] != _SIGNATURE:
                raise PgError("22P04", "COPY file signature not recognized")
            ext = struct.unpack_from(">i", buf, 15)[0]
            if len(buf) < 19 + ext:
                return
            pos = 19 + ext
            state["header"] = True
        while not state["done"]:
            if len(buf) - pos < 2:
                break
            nf = struct.unpack_from(">h", buf, pos)[0]
            if nf == -1:
                state["done"] = True
                pos += 2
                break
            if nf != len(cols):
                raise PgError("22P04", f"row field count is {nf}, expected {len(cols)}")
            p = pos + 2
            vals: list[bytes | None] = []
            complete = True
            for _ in range(nf):
                if len(buf) - p < 4:
                    complete = False
                    break
                ln = struct.unpack_from(">i", buf, p)[0]
                p += 4
                if ln == -1:
                    vals.append(None)
                    continue
                if len(buf) - p < ln:
                    complete = False
                    break
                vals.append(buf[p:p + ln])
                p += ln
            if not complete:
                break
            state["batch"].append(build(vals))
            pos = p
            if len(state["batch"]) >= BATCH:
                flush()
        state["buf"] = buf[pos:]

    def feed(data: bytes) -> None:
        state["buf"] += bytes(data)
        parse()
        s.check_interrupts()

    def finish() -> int:
        parse()
        flush()
        return state["n"]

    return feed, finish


def _columns(rel: Any, n: dict) -> list[int]:
    att = n.get("attlist")
    if not att:
        return [i for i, c in enumerate(rel.columns) if not c.dropped]
    out = []
    for a in att:
        name = a["String"]["sval"]
        i = rel.column_index(name)
        if i < 0:
            raise PgError("42703", f'column "{name}" of relation "{rel.name}" does not exist')
        out.append(i)
    return out


def _row_builder(s: Session, rel: Any, cols: list[int], decoder: Any) -> tuple[Any, Any]:
    """(build, exec state): ``build(fields)`` turns the fields of one data row (for
    ``cols``; None for NULL) into the table row: each converted by its type's
    ``decoder(oid)`` and typmod, defaults for the other columns, NOT NULL checked."""
    decs = [(decoder(rel.columns[i].type_oid), typmod_fn(rel.columns[i].type_oid, rel.columns[i].typmod, False))
            for i in cols]
    ncols = len(rel.columns)
    defaults = default_fns(s.env, rel)
    missing = [(i, d) for i, d in enumerate(defaults) if i not in cols and d is not None]
    notnull = [i for i, c in enumerate(rel.columns) if c.not_null]
    st = ExecState([], s.env, s.storage, s)
    # every column, in order: a row is the converted fields as they are
    plain = cols == list(range(ncols))
    plain_decs = [d if tm is None else _then(d, tm) for d, tm in decs]  # (typmods raise PgError only)

    def build(fields: list) -> tuple:
        if plain:
            try:
                row = [None if f is None else d(f) for d, f in zip(plain_decs, fields)]
            except InvalidValue as e:
                raise PgError(e.sqlstate, e.message) from None
        else:
            row = [None] * ncols
            for (d, tm), i, f in zip(decs, cols, fields):
                if f is None:
                    continue
                try:
                    v = d(f)
                except InvalidValue as e:
                    raise PgError(e.sqlstate, e.message) from None
                row[i] = tm(v) if tm is not None else v
            for i, d in missing:
                row[i] = d((), st)
        for i in notnull:
            if row[i] is None:
                raise PgError("23502", f'null value in column "{rel.columns[i].name}" of relation "{rel.name}" '
                                       f'violates not-null constraint')
        return tuple(row)
    return build, st


def _copy_in(s: Session, rel: Any, cols: list[int], csv_mode: bool, delim: str, null: str, header: bool
             ) -> tuple[Callable[[bytes], None], Callable[[], int]]:
    tz = s.env.tz
    build, st = _row_builder(s, rel, cols, lambda oid: text_decoder(oid, tz))
    state: dict[str, Any] = {"parts": [], "size": 0, "next": CHUNK, "n": 0, "batch": [], "header": header,
                             "ended": False}

    def convert(fields: Sequence[str | None]) -> tuple:
        if len(fields) != len(cols):
            if len(fields) < len(cols):
                raise PgError("22P04", f"missing data for column \"{rel.columns[cols[len(fields)]].name}\"")
            raise PgError("22P04", "extra data after last expected column")
        return build(fields)

    cons = for_relation(s.env, rel) if rel.constraints else None
    if cons is not None and not cons.has_new_checks:
        cons = None

    def flush() -> None:
        if state["batch"]:
            s.storage.insert_many(rel, state["batch"])
            if cons is not None:
                for r in state["batch"]:
                    cons.check_new(st, r)
            state["n"] += len(state["batch"])
            state["batch"] = []

    def handle_lines(text: str) -> None:
        if state["ended"]:
            return
        lines = text.split("\n")
        batch = state["batch"]
        if csv_mode:
            reader = csv.reader(lines, delimiter=delim)
            for rec in reader:
                if state["header"]:
                    state["header"] = False
                    continue
                if not rec:
                    continue
                if rec == ["\\."]:
                    state["ended"] = True
                    break
                batch.append(convert([None if f == null else f for f in rec]))
        else:
            escaped = "\\" in text
            no_nulls = not escaped and "\\" in null  # (the NULL marker, \N by default, cannot occur)
            for line in lines:
                if state["header"]:
                    state["header"] = False
                    continue
                if line == "\\.":
                    state["ended"] = True  # the end-of-data marker: what follows is ignored
                    break
                if line.endswith("\r"):
                    line = line[:-1]
                fields = line.split(delim)
                if no_nulls:
                    batch.append(convert(fields))
                elif escaped:
                    batch.append(convert([None if f == null else _unescape(f) for f in fields]))
                else:
                    batch.append(convert([None if f == null else f for f in fields]))
                if len(batch) >= BATCH:
                    flush()
                    batch = state["batch"]
        if len(state["batch"]) >= BATCH:
            flush()

    def process() -> None:
        """Parse the complete lines buffered so far (text format: data arrive in pieces of
        any size, often one row per CopyData; they are parsed some 64 KB at a time)."""
        buf = b"".join(state["parts"])
        cut = buf.rfind(b"\n")
        if cut < 0:
            state["parts"] = [buf]
            state["size"] = len(buf)
            state["next"] = max(CHUNK, 2 * len(buf))  # one long line: do not re-join it for every piece
            return
        rest = buf[cut + 1:]
        state["parts"] = [rest]
        state["size"] = len(rest)
        state["next"] = CHUNK
        handle_lines(_text(buf[:cut]))
        s.check_interrupts()

    def feed(data: bytes) -> None:
        state["parts"].append(bytes(data))
        state["size"] += len(data)
        # CSV: a quoted value may hold a newline, so every piece is parsed as it comes
        if csv_mode or state["size"] >= state["next"]:
            process()

    def finish() -> int:
        process()
        rest = b"".join(state["parts"])
        state["parts"] = []
        if rest.strip():
            handle_lines(_text(rest).rstrip("\n"))
        flush()
        return state["n"]

    return feed, finish
