"""Utility statements: transaction control, SET/SHOW/RESET, DDL, VACUUM,
CHECKPOINT, COPY, DEALLOCATE, ... — each a call into the engine.

:func:`describe_utility` gives the result columns a utility statement will
return (SHOW, EXPLAIN) or None; :func:`run_utility` runs it and returns a
:class:`~pgbundle.server.tcop.dest.StatementResult` (or a :class:`~pgbundle.server.tcop.dest.CopyIn` for COPY FROM
STDIN).  Command tags are PostgreSQL's.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING, Any

from pglast.stream import RawStream

from pgbundle.server.access import api
from pgbundle.server.catalog import session_views
from pgbundle.server.catalog.session_views import listen, notify, temp_schema, unlisten
from pgbundle.server.commands.copy import run_copy
from pgbundle.server.errors import PgError
from pgbundle.server.executor.constraints import RelConstraints
from pgbundle.server.executor.execute import instrument
from pgbundle.server.executor.expr import ExecState, Layout, compile_expr, is_constant
from pgbundle.server.parser.analyze import Analyzer, ParamTypes, PState, QueryTree, output_columns
from pgbundle.server.parser.coerce import SERIAL_TYPES, resolve_type
from pgbundle.server.parser.parse import RawStmt, const_value, names, parse
from pgbundle.server.tcop.dest import Column, StatementResult
from pgbundle.server.utils import guc
from pgbundle.server.utils.adt.ruleutils import deparse_expr, expression_text, to_ast
from pgbundle.server.utils.session_env import tz_from_name
from pgbundle.shared.protocol import messages as M
from pgbundle.shared.quoting import quote_ident
from pgbundle.shared.types import oids as T

if TYPE_CHECKING:
    from pgbundle.server.tcop.session import Session

# ----------------------------------------------------------------------------- describe


def describe_utility(session: Session, raw: RawStmt) -> list | None:
    k, n = raw.kind, raw.node
    if k == "VariableShowStmt":
        name = n["name"]
        if name.lower() == "all":
            return [Column("name", T.TEXT), Column("setting", T.TEXT), Column("description", T.TEXT)]
        return [Column(_show_name(session, name), T.TEXT)]
    if k == "ExplainStmt":
        return [Column("QUERY PLAN", T.TEXT)]
    if k == "ExecuteStmt":
        prep = session.sql_prepared.get(n["name"])
        return prep.columns if prep is not None else None
    if k == "FetchStmt":
        cur = session.cursors.get(n["portalname"])
        return cur.prep.columns if cur is not None else None
    return None


def _show_name(session: Session, name: str) -> str:
    low = name.lower()
    if low in ("transaction_isolation", "transaction isolation level"):
        return "transaction_isolation"
    if low == "timezone":
        return "TimeZone"
    try:
        return session.settings.definition(name).name
    except Exception:
        return low


# ----------------------------------------------------------------------------- run


def run_utility(session: Session, raw: RawStmt, prep: Any, params: list) -> Any:
    fn = _HANDLERS.get(raw.kind)
    if fn is None:
        raise PgError("0A000", f"{_stmt_name(raw.kind)} is not supported")
    return fn(session, raw.node, raw, params)


def _stmt_name(kind: str) -> str:
    return kind[:-4] if kind.endswith("Stmt") else kind


def _R(tag: str, columns: list | None = None, rows: Any = None) -> StatementResult:
    return StatementResult(tag, columns, rows)


# ---------------------------------------------------------------- transactions


def _opts(n: dict) -> dict[str, Any]:
    out = {}
    for o in n.get("options", []) or []:
        d = o.get("DefElem", {})
        arg = d.get("arg")
        if arg is not None and "A_Const" in arg:
            out[d["defname"]] = const_value(arg["A_Const"])
        elif arg is not None and "String" in arg:
            out[d["defname"]] = arg["String"]["sval"]
        elif arg is not None and "Integer" in arg:
            out[d["defname"]] = arg["Integer"].get("ival", 0)
        elif arg is not None and "Boolean" in arg:
            out[d["defname"]] = arg["Boolean"].get("boolval", False)
        elif arg is not None and "TypeName" in arg:
            out[d["defname"]] = arg["TypeName"]
        elif arg is not None and "List" in arg:
            out[d["defname"]] = arg["List"]
        else:
            out[d["defname"]] = True if arg is None else arg
    return out


def _transaction(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    kind = n["kind"]
    eng = s.engine
    in_block = eng.in_transaction_block
    if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
        if in_block:
            s.notice("there is already a transaction in progress", "25001", "WARNING")
            return _R("BEGIN" if kind == "TRANS_STMT_BEGIN" else "START TRANSACTION")
        o = _opts(n)
        iso = o.get("transaction_isolation")
        ro = o.get("transaction_read_only")
        s.storage.begin(iso if iso is None else str(iso), None if ro is None else bool(ro))
        s.env.start_statement(True)
        return _R("BEGIN" if kind == "TRANS_STMT_BEGIN" else "START TRANSACTION")
    if kind == "TRANS_STMT_COMMIT":
        if not in_block:
            s.notice("there is no transaction in progress", "25P01", "WARNING")
            if eng.in_transaction:
                eng.commit()
            s._end_xact()
            return _R("COMMIT")
        if s.failed:
            eng.rollback()
            s.failed = False
            s._end_xact()
            return _R("ROLLBACK")
        eng.commit()
        s._end_xact()
        return _R("COMMIT")
    if kind == "TRANS_STMT_ROLLBACK":
        if not in_block:
            s.notice("there is no transaction in progress", "25P01", "WARNING")
        eng.rollback()
        s.failed = False
        s._end_xact()
        return _R("ROLLBACK")
    name = n.get("savepoint_name")
    if kind == "TRANS_STMT_SAVEPOINT":
        if not in_block:
            raise PgError("25P01", "SAVEPOINT can only be used in transaction blocks")
        eng.savepoint(name)
        return _R("SAVEPOINT")
    if kind == "TRANS_STMT_RELEASE":
        if not in_block:
            raise PgError("25P01", "RELEASE SAVEPOINT can only be used in transaction blocks")
        eng.release_savepoint(name)
        return _R("RELEASE")
    if kind == "TRANS_STMT_ROLLBACK_TO":
        if not in_block:
            raise PgError("25P01", "ROLLBACK TO SAVEPOINT can only be used in transaction blocks")
        eng.rollback_to_savepoint(name)
        s.failed = False
        return _R("ROLLBACK")
    raise PgError("0A000", "prepared transactions are not supported")


# ---------------------------------------------------------------- SET / SHOW


def _set_value(args: list[dict] | None) -> str | None:
    if not args:
        return None
    parts = []
    for a in args:
        k, v = next(iter(a.items()))
        if k == "A_Const":
            x = const_value(v)
            parts.append("" if x is None else str(x).lower() if isinstance(x, bool) else str(x))
        elif k == "TypeCast":
            x = const_value(v["arg"].get("A_Const", {}))
            parts.append(str(x))
        else:
            parts.append(str(v))
    return ", ".join(parts)


def _set(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    kind = n["kind"]
    name = n.get("name", "")
    local = bool(n.get("is_local"))
    st = s.settings
    if kind == "VAR_RESET_ALL":
        st.reset_all()
        return _R("RESET")
    if kind == "VAR_RESET":
        if name.lower() in ("transaction_isolation",):
            return _R("RESET")
        st.reset(name)
        return _R("RESET")
    if kind == "VAR_SET_MULTI":
        if name in ("TRANSACTION", "SESSION CHARACTERISTICS"):
            o = _opts({"options": n.get("args", [])})
            iso = o.get("transaction_isolation")
            if iso is not None:
                if name == "TRANSACTION":
                    _set_isolation(s, str(iso))
                else:
                    st.set("default_transaction_isolation", str(iso), local)
            ro = o.get("transaction_read_only")
            if ro is not None and name != "TRANSACTION":
                st.set("default_transaction_read_only", "on" if ro else "off", local)
            return _R("SET")
        return _R("SET")
    if kind == "VAR_SET_DEFAULT":
        st.set(name, None, local)
        return _R("SET")
    if kind == "VAR_SET_CURRENT":
        return _R("SET")
    value = _set_value(n.get("args"))
    low = name.lower()
    if low == "transaction_isolation":
        _set_isolation(s, value or "read committed")
        return _R("SET")
    if low == "client_encoding" and value is not None:
        v = value.strip("'\"")
        if v.lower().replace("-", "").replace("_", "") not in ("utf8", "unicode", "sqlascii"):
            raise PgError("0A000", f'conversion between {v} and UTF8 is not supported')
        value = "UTF8" if v.lower().replace("-", "") in ("utf8", "unicode") else v
    if low == "timezone" and value is not None:
        tz_from_name(value)
    if low == "search_path" and value is not None:
        # quote-preserving list
        vals = []
        for a in n.get("args", []):
            x = const_value(a.get("A_Const", {}))
            vals.append(str(x))
        value = ", ".join(vals)
    st.set(name, value, local)
    return _R("SET")


def _set_isolation(s: Session, iso: str) -> None:
    try:
        s.engine.set_isolation(api.Isolation(iso.lower()))
    except ValueError:
        raise PgError("22023", f'invalid value for parameter "transaction_isolation": "{iso}"') from None


def _show(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    name = n["name"]
    low = name.lower()
    if low == "all":
        rows = [tuple(r) for r in s.settings.show_all()]
        return _R("SHOW", [Column("name", T.TEXT), Column("setting", T.TEXT), Column("description", T.TEXT)], rows)
    if low in ("transaction_isolation", "transaction isolation level"):
        try:
            iso = s.engine.isolation.value
        except Exception:
            iso = s.settings.get("default_transaction_isolation")
        return _R("SHOW", [Column("transaction_isolation", T.TEXT)], [(iso,)])
    if low == "is_superuser":
        val = s.settings.get("is_superuser") if s.settings.exists("is_superuser") else "on"
        return _R("SHOW", [Column("is_superuser", T.TEXT)], [(val,)])
    val = s.settings.get(name)
    if low == "server_version":
        val = getattr(guc, "SERVER_VERSION", val)
    return _R("SHOW", [Column(_show_name(s, name), T.TEXT)], [(val,)])


# ---------------------------------------------------------------- DDL


def _rangevar(rv: dict) -> tuple[str | None, str]:
    return rv.get("schemaname"), rv["relname"]


def _create_table(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    schema, name = _rangevar(n["relation"])
    eng = s.engine
    if n.get("if_not_exists") and s.storage.lookup_relation(schema, name) is not None:
        s.notice(f'relation "{name}" already exists, skipping', "42P07")
        return _R("CREATE TABLE")
    if n.get("inhRelations") or n.get("partspec"):
        raise PgError("0A000", "table inheritance and partitioning are not supported")
    cols: list[Any] = []
    pk: list[str] | None = None
    uniques: list[list[str]] = []
    cnames: dict[tuple[str, ...], str] = {}
    serials: list[tuple[str, int]] = []
    checks: list = []
    fks: list = []
    seen = set()
    for elt in n.get("tableElts", []) or []:
        k, e = next(iter(elt.items()))
        if k == "ColumnDef":
            cname = e["colname"]
            if cname in seen:
                raise PgError("42701", f'column "{cname}" specified more than once')
            seen.add(cname)
            tn = e["typeName"]
            written = names(tn.get("names"))[-1]
            oid, typmod, _ = resolve_type(tn, s.env.lookup_type)
            not_null = False
            default = None
            if written in SERIAL_TYPES and len(names(tn.get("names"))) == 1:
                serials.append((cname, oid))
                not_null = True
                seqname = f"{name}_{cname}_seq"
                default = f"nextval('{seqname}'::regclass)"
            for c in e.get("constraints", []) or []:
                con = c["Constraint"]
                ct = con["contype"]
                if ct == "CONSTR_NOTNULL":
                    not_null = True
                elif ct == "CONSTR_NULL":
                    not_null = False
                elif ct == "CONSTR_DEFAULT":
                    default = _default_text(s, con["raw_expr"], oid, typmod, cname)
                elif ct == "CONSTR_PRIMARY":
                    if pk is not None:
                        raise PgError("42P16", f'multiple primary keys for table "{name}" are not allowed')
                    pk = [cname]
                    not_null = True
                    if con.get("conname"):
                        cnames[(cname,)] = con["conname"]
                elif ct == "CONSTR_UNIQUE":
                    uniques.append([cname])
                    if con.get("conname"):
                        cnames[(cname,)] = con["conname"]
                elif ct == "CONSTR_CHECK":
                    checks.append((con.get("conname") or f"{name}_{cname}_check", con["raw_expr"]))
                elif ct == "CONSTR_IDENTITY":
                    not_null = True
                elif ct == "CONSTR_FOREIGN":
                    fks.append((con.get("conname"), [cname], con))
            cols.append(api.ColumnDef(cname, oid, typmod, not_null, default))
        elif k == "Constraint":
            ct = e["contype"]
            keys = names(e.get("keys"))
            if ct == "CONSTR_PRIMARY":
                if pk is not None:
                    raise PgError("42P16", f'multiple primary keys for table "{name}" are not allowed')
                pk = keys
            elif ct == "CONSTR_UNIQUE":
                uniques.append(keys)
            elif ct == "CONSTR_CHECK":
                checks.append((e.get("conname"), e["raw_expr"]))
            elif ct == "CONSTR_FOREIGN":
                fks.append((e.get("conname"), names(e.get("fk_attrs")), e))
                keys = []
            if e.get("conname") and keys:
                cnames[tuple(keys)] = e["conname"]
        else:
            raise PgError("0A000", f"CREATE TABLE element {k} is not supported")
    if pk:
        for kcol in pk:
            if kcol not in seen:
                raise PgError("42703", f'column "{kcol}" named in key does not exist')
        cols = [api.ColumnDef(c.name, c.type_oid, c.typmod, True if c.name in pk else c.not_null, c.default)
                for c in cols]
    options = []
    for o in n.get("options", []) or []:
        d = o["DefElem"]
        arg = d.get("arg")
        v = const_value(arg["A_Const"]) if arg and "A_Const" in arg else (
            arg.get("Integer", {}).get("ival") if arg and "Integer" in arg else arg)
        options.append(f"{d['defname']}={v}")
    persistence = {"RELPERSISTENCE_TEMP": "t", "RELPERSISTENCE_UNLOGGED": "u"}.get(
        n["relation"].get("relpersistence", "p"), "p")
    if n["relation"].get("relpersistence") == "t":
        persistence = "t"
    if persistence == "t":
        schema = temp_schema(s, schema)
    seqs = []
    for cname, oid in serials:
        seq = eng.create_sequence(f"{name}_{cname}_seq", schema=schema, type_oid=oid)
        seqs.append((seq, cname))
    rel = eng.create_table(name, cols, schema=schema, primary_key=pk, unique=uniques,
                           constraint_names=cnames or None, if_not_exists=bool(n.get("if_not_exists")),
                           persistence=persistence, options=options)
    if rel is not None:
        for seq, cname in seqs:
            col = rel.column(cname)
            eng.set_sequence_owner(seq.oid, rel.oid, col.attnum)
        for cname_, expr in checks:
            text = _check_text(s, expr, schema, name)
            eng.add_constraint(rel.oid, api.ConstraintInfo(0, cname_ or f"{name}_check", "c", rel.oid, (), 0, text))
        for cname_, fcols, con in fks:
            _add_fk(s, rel, cname_, fcols, con)
    return _R("CREATE TABLE")


_DROP_KIND = {"OBJECT_TABLE": ("table", "DROP TABLE"), "OBJECT_INDEX": ("index", "DROP INDEX"),
              "OBJECT_SEQUENCE": ("sequence", "DROP SEQUENCE"), "OBJECT_VIEW": ("view", "DROP VIEW"),
              "OBJECT_TYPE": ("type", "DROP TYPE"), "OBJECT_SCHEMA": ("schema", "DROP SCHEMA"),
              "OBJECT_MATVIEW": ("materialized view", "DROP MATERIALIZED VIEW")}
_KIND_LETTER = {"table": "r", "index": "i", "sequence": "S", "view": "v"}


def _add_fk(s: Session, rel: Any, cname: str | None, fcols: list[str], con: dict) -> None:
    """Record a FOREIGN KEY constraint (catalog only: not enforced yet)."""
    pk = con["pktable"]
    ref = s.storage.lookup_relation(pk.get("schemaname"), pk["relname"])
    if ref is None:
        raise PgError("42P01", f'relation "{pk["relname"]}" does not exist')
    rcols = names(con.get("pk_attrs"))
    if not rcols:
        pki = next((i for i in ref.indexes if i.primary), None)
        if pki is None:
            raise PgError("42830", f'there is no primary key for referenced table "{ref.name}"')
        rcols = [ref.columns[i].name for i in pki.columns]
    attnums = tuple(rel.column(c).attnum for c in fcols)
    rattnums = tuple(ref.columns[ref.column_index(c)].attnum for c in rcols)
    name = cname or f"{rel.name}_{'_'.join(fcols)}_fkey"
    acts = {"a": "a", "r": "r", "c": "c", "n": "n", "d": "d"}
    upd = acts.get(con.get("fk_upd_action") or "a", "a")
    dele = acts.get(con.get("fk_del_action") or "a", "a")
    if len(rcols) != len(fcols):
        raise PgError("42830", "number of referencing and referenced columns for foreign key disagree")
    s.engine.add_constraint(rel.oid, api.ConstraintInfo(0, name, "f", rel.oid, attnums, 0, None, ref.oid, rattnums,
                                                        upd, dele))


def _drop(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    rt = n["removeType"]
    kind = _DROP_KIND.get(rt)
    if kind is None:
        raise PgError("0A000", f"DROP {rt[7:]} is not supported")
    what, tag = kind
    missing_ok = bool(n.get("missing_ok"))
    cascade = n.get("behavior") == "DROP_CASCADE"
    eng = s.engine
    if what == "schema":
        for obj in n.get("objects", []):
            nm = obj["String"]["sval"] if "String" in obj else names(obj["List"]["items"])[-1]
            eng.drop_namespace(nm, cascade=cascade, missing_ok=missing_ok)
        return _R(tag)
    if what == "type":
        for obj in n.get("objects", []):
            tn = obj.get("TypeName", obj)
            nm = names(tn.get("names"))[-1]
            drop_type = getattr(s.env, "drop_type", None)
            if drop_type is None or not drop_type(nm, missing_ok, cascade):
                if missing_ok:
                    s.notice(f'type "{nm}" does not exist, skipping')
                else:
                    raise PgError("42704", f'type "{nm}" does not exist')
        return _R(tag)
    targets = []
    for obj in n.get("objects", []):
        parts = names(obj["List"]["items"]) if "List" in obj else [obj["String"]["sval"]]
        schema = parts[-2] if len(parts) > 1 else None
        nm = parts[-1]
        rel = s.storage.lookup_relation(schema, nm)
        full = ".".join(parts)
        if rel is None:
            if missing_ok:
                s.notice(f'{what} "{full}" does not exist, skipping')
                continue
            raise PgError("42P01" if what != "index" or True else "42704", f'{what} "{full}" does not exist')
        if rel.kind != _KIND_LETTER[what]:
            kindname = {"r": "table", "i": "index", "S": "sequence", "v": "view"}.get(rel.kind, "relation")
            raise PgError("42809", f'"{full}" is not a{"n" if what[0] in "aeiou" else ""} {what}',
                          hint=f"Use DROP {kindname.upper()} to remove a {kindname}.")
        targets.append(rel)
    for rel in targets:
        eng.drop_relation(rel.oid, cascade=cascade)
    return _R(tag)


def _index(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    schema, tname = _rangevar(n["relation"])
    rel = s.storage.lookup_relation(schema, tname)
    if rel is None:
        raise PgError("42P01", f'relation "{tname}" does not exist')
    cols = []
    options = []
    for p in n.get("indexParams", []):
        ie = p["IndexElem"]
        cname = ie.get("name")
        if cname is None:
            raise PgError("0A000", "indexes on expressions are not supported")
        i = rel.column_index(cname)
        if i < 0:
            raise PgError("42703", f'column "{cname}" does not exist')
        cols.append(rel.columns[i].attnum)
        desc = ie.get("ordering") == "SORTBY_DESC"
        nulls = ie.get("nulls_ordering", "SORTBY_NULLS_DEFAULT")
        nulls_first = desc if nulls == "SORTBY_NULLS_DEFAULT" else nulls == "SORTBY_NULLS_FIRST"
        options.append((1 if desc else 0) | (2 if nulls_first else 0))
    if n.get("whereClause") is not None:
        raise PgError("0A000", "partial indexes are not supported")
    if n.get("accessMethod", "btree") not in ("btree",):
        s.notice(f'access method "{n["accessMethod"]}" is not supported; a B-tree index is built instead')
    s.engine.create_index(rel.oid, n.get("idxname"), cols, unique=bool(n.get("unique")),
                          primary=bool(n.get("primary")), if_not_exists=bool(n.get("if_not_exists")),
                          options=options if any(options) else None)
    return _R("CREATE INDEX")


def _alter_table(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    schema, tname = _rangevar(n["relation"])
    rel = s.storage.lookup_relation(schema, tname)
    eng = s.engine
    if rel is None:
        if n.get("missing_ok"):
            s.notice(f'relation "{tname}" does not exist, skipping')
            return _R("ALTER TABLE")
        raise PgError("42P01", f'relation "{tname}" does not exist')
    for c in n.get("cmds", []):
        cmd = c["AlterTableCmd"]
        st = cmd["subtype"]
        if st == "AT_AddConstraint":
            con = cmd["def"]["Constraint"]
            ct = con["contype"]
            keys = names(con.get("keys"))
            attnums = []
            for k in keys:
                i = rel.column_index(k)
                if i < 0:
                    raise PgError("42703", f'column "{k}" of relation "{tname}" does not exist')
                attnums.append(rel.columns[i].attnum)
            if ct == "CONSTR_PRIMARY":
                if any(i.primary for i in rel.indexes):
                    raise PgError("42P16", f'multiple primary keys for table "{tname}" are not allowed')
                for a in attnums:
                    eng.set_column_not_null(rel.oid, a, True)
                eng.create_index(rel.oid, con.get("conname") or f"{tname}_pkey", attnums, unique=True,
                                 primary=True, constraint=True)
            elif ct == "CONSTR_UNIQUE":
                eng.create_index(rel.oid, con.get("conname") or f"{tname}_{'_'.join(keys)}_key", attnums,
                                 unique=True, constraint=True)
            elif ct == "CONSTR_CHECK":
                cname = con.get("conname") or f"{tname}_check"
                eng.add_constraint(rel.oid, api.ConstraintInfo(0, cname, "c", rel.oid, (), 0,
                                                               _check_text(s, con["raw_expr"], schema, tname)))
                _validate_constraint(s, schema, tname, cname)
            elif ct == "CONSTR_FOREIGN":
                fcols = names(con.get("fk_attrs"))
                _add_fk(s, s.engine.relation(rel.oid), con.get("conname"), fcols, con)
                _validate_constraint(s, schema, tname, con.get("conname") or f"{tname}_{'_'.join(fcols)}_fkey")
            else:
                raise PgError("0A000", f"ALTER TABLE ADD {ct[7:]} is not supported")
        elif st == "AT_AddColumn":
            cd = cmd["def"]["ColumnDef"]
            oid, typmod, _ = resolve_type(cd["typeName"], s.env.lookup_type)
            not_null = False
            default = None
            for cc in cd.get("constraints", []) or []:
                con = cc["Constraint"]
                if con["contype"] == "CONSTR_NOTNULL":
                    not_null = True
                elif con["contype"] == "CONSTR_DEFAULT":
                    default = _default_text(s, con["raw_expr"], oid, typmod, cd["colname"])
            if rel.column_index(cd["colname"]) >= 0:
                if cmd.get("missing_ok"):
                    s.notice(f'column "{cd["colname"]}" of relation "{tname}" already exists, skipping', "42701")
                    continue
                raise PgError("42701", f'column "{cd["colname"]}" of relation "{tname}" already exists')
            missing = None
            if default is not None:
                missing = _eval_default(s, default, oid, typmod, cd["colname"])
            eng.add_column(rel.oid, api.ColumnDef(cd["colname"], oid, typmod, not_null, default),
                           missing_value=missing)
        elif st == "AT_DropColumn":
            i = rel.column_index(cmd["name"])
            if i < 0:
                if cmd.get("missing_ok"):
                    s.notice(f'column "{cmd["name"]}" of relation "{tname}" does not exist, skipping')
                    continue
                raise PgError("42703", f'column "{cmd["name"]}" of relation "{tname}" does not exist')
            eng.drop_column(rel.oid, rel.columns[i].attnum)
        elif st in ("AT_SetNotNull", "AT_DropNotNull"):
            i = rel.column_index(cmd["name"])
            if i < 0:
                raise PgError("42703", f'column "{cmd["name"]}" of relation "{tname}" does not exist')
            eng.set_column_not_null(rel.oid, rel.columns[i].attnum, st == "AT_SetNotNull")
        elif st == "AT_ColumnDefault":
            i = rel.column_index(cmd["name"])
            if i < 0:
                raise PgError("42703", f'column "{cmd["name"]}" of relation "{tname}" does not exist')
            d = cmd.get("def")
            c = rel.columns[i]
            eng.set_column_default(rel.oid, c.attnum, _default_text(s, d, c.type_oid, c.typmod, c.name) if d
                                   else None)
        elif st == "AT_DropConstraint":
            if cmd.get("missing_ok") and not any(c.name == cmd["name"] for c in rel.constraints):
                s.notice(f'constraint "{cmd["name"]}" of relation "{tname}" does not exist, skipping')
                continue
            eng.drop_constraint(rel.oid, cmd["name"])
        elif st == "AT_AlterColumnType":
            _alter_column_type(s, rel, cmd)
        else:
            raise PgError("0A000", f"ALTER TABLE {st[3:]} is not supported")
        current = s.storage.lookup_relation(schema, tname)
        assert current is not None, "ALTER TABLE subcommands keep the table and its name"
        rel = current
    return _R("ALTER TABLE")


def _default_text(s: Session, node: dict, oid: int, typmod: int, cname: str) -> str:
    """A column default as PostgreSQL stores it (pg_get_expr shows it)."""
    return expression_text(s.env, node, oid, typmod, colname=cname) or deparse_expr(node)


def _check_text(s: Session, node: dict, schema: str | None, tname: str) -> str:
    rel = s.storage.lookup_relation(schema, tname)
    text = expression_text(s.env, node, rel=rel) if rel is not None else None
    return text or deparse_expr(node)


def _validate_constraint(s: Session, schema: str | None, tname: str, cname: str) -> None:
    """Existing rows must satisfy a CHECK / FOREIGN KEY added by ALTER TABLE."""
    rel = s.storage.lookup_relation(schema, tname)
    assert rel is not None, "the constraint was just added to it"
    rc = RelConstraints(s.env, rel)
    rc.checks = [(n, f) for n, f in rc.checks if n == cname]
    rc.fks_out = [x for x in rc.fks_out if x[0].name == cname]
    if not rc.checks and not rc.fks_out:
        return
    st = ExecState([], s.env, s.storage, s)
    for _tid, row in s.storage.scan(rel):
        try:
            rc.check_new(st, row)
        except PgError as e:
            if e.sqlstate == "23514":
                raise PgError("23514", f'check constraint "{cname}" of relation "{tname}" is violated by some row',
                              schema=rel.schema, table=tname, constraint=cname) from None
            raise


def _alter_column_type(s: Session, rel: Any, cmd: dict) -> None:
    """ALTER COLUMN ... TYPE ... [USING expr]: rewrite the table with converted values."""
    cname = cmd["name"]
    i = rel.column_index(cname)
    if i < 0:
        raise PgError("42703", f'column "{cname}" of relation "{rel.name}" does not exist')
    cd = cmd["def"]["ColumnDef"]
    oid, typmod, _ = resolve_type(cd["typeName"], s.env.lookup_type)
    using = cd.get("raw_default")
    text = deparse_expr(using) if using is not None else quote_ident(cname)
    raw = parse(f"SELECT ({text}) FROM {quote_ident(rel.schema)}.{quote_ident(rel.name)}")[0]
    an = Analyzer(s.env, ParamTypes())
    q = an.analyze(raw.kind, raw.node)
    e = q.targets[0].expr
    try:
        e = an.coerce(e, oid, typmod, "a", cname)
    except PgError:
        raise PgError("42804", f'column "{cname}" cannot be cast automatically to type '
                               f'{s.env.type_display_name(oid)}',
                      hint=f'You might need to specify "USING {quote_ident(cname)}::'
                           f'{s.env.type_display_name(oid)}".') from None
    f = compile_expr(e, Layout({q.from_[0].rt: 0}))
    st = ExecState([], s.env, s.storage, s)
    attnum = rel.columns[i].attnum
    default = rel.columns[i].default

    def convert(row: tuple) -> tuple:
        r = list(row)
        r[attnum - 1] = f(row, st)
        return tuple(r)
    s.engine.rewrite_table(rel.oid, {attnum: (oid, typmod)}, convert)
    if default is not None:
        s.engine.set_column_default(rel.oid, attnum, default)


def _eval_default(s: Session, text: str, oid: int, typmod: int, cname: str) -> Any:
    node = parse(f"SELECT {text}")[0].node["targetList"][0]["ResTarget"]["val"]
    an = Analyzer(s.env, ParamTypes())
    e = an.coerce_assign(an.expr(node, PState(None, QueryTree("select"))), oid, typmod, cname, None)
    if not is_constant(e):
        # volatile defaults (nextval, clock_timestamp) are evaluated once for existing rows too
        pass
    return compile_expr(e, Layout())((), ExecState([], s.env, s.storage, s))


def _rename(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    if n.get("renameType") in ("OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_SEQUENCE"):
        schema, tname = _rangevar(n["relation"])
        rel = s.storage.lookup_relation(schema, tname)
        if rel is None:
            raise PgError("42P01", f'relation "{tname}" does not exist')
        s.engine.rename_relation(rel.oid, n["newname"])
        return _R({"OBJECT_TABLE": "ALTER TABLE", "OBJECT_INDEX": "ALTER INDEX"}.get(n["renameType"],
                                                                                    "ALTER SEQUENCE"))
    if n.get("renameType") == "OBJECT_COLUMN":
        schema, tname = _rangevar(n["relation"])
        rel = s.storage.lookup_relation(schema, tname)
        if rel is None:
            raise PgError("42P01", f'relation "{tname}" does not exist')
        i = rel.column_index(n["subname"])
        if i < 0:
            raise PgError("42703", f'column "{n["subname"]}" does not exist')
        s.engine.rename_column(rel.oid, rel.columns[i].attnum, n["newname"])
        return _R("ALTER TABLE")
    if n.get("renameType") == "OBJECT_TABCONSTRAINT":
        raise PgError("0A000", "ALTER TABLE RENAME CONSTRAINT is not supported")
    raise PgError("0A000", "this kind of RENAME is not supported")


def _truncate(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    rels = []
    for r in n.get("relations", []):
        schema, tname = _rangevar(r["RangeVar"])
        rel = s.storage.lookup_relation(schema, tname)
        if rel is None:
            raise PgError("42P01", f'relation "{tname}" does not exist')
        rels.append(rel)
    s.storage.truncate(rels)
    return _R("TRUNCATE TABLE")


def _create_seq(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    schema, name = _rangevar(n["sequence"])
    o = _opts(n)
    typ = T.INT8
    if "as" in o and isinstance(o["as"], dict):
        typ = resolve_type(o["as"])[0]
    s.engine.create_sequence(name, schema=schema, type_oid=typ, start=o.get("start"),
                             increment=o.get("increment", 1), min_value=o.get("minvalue"),
                             max_value=o.get("maxvalue"), cache=o.get("cache", 1), cycle=bool(o.get("cycle")),
                             if_not_exists=bool(n.get("if_not_exists")))
    return _R("CREATE SEQUENCE")


def _create_schema(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    s.engine.create_namespace(n["schemaname"], if_not_exists=bool(n.get("if_not_exists")))
    return _R("CREATE SCHEMA")


# ---------------------------------------------------------------- maintenance


def _no_block(s: Session, what: str) -> None:
    if s.engine.in_transaction_block:
        raise PgError("25001", f"{what} cannot run inside a transaction block")
    if s.engine.in_transaction:
        s.engine.commit()
        s._end_xact()


def _vacuum(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    is_vacuum = n.get("is_vacuumcmd", False)
    o = _opts(n)
    analyze = bool(o.get("analyze")) or not is_vacuum
    tag = "VACUUM" if is_vacuum else "ANALYZE"
    if is_vacuum:
        _no_block(s, "VACUUM")
    rels = []
    for r in n.get("rels", []) or []:
        rv = r["VacuumRelation"]["relation"]
        schema, tname = _rangevar(rv)
        rel = s.storage.lookup_relation(schema, tname)
        if rel is None:
            raise PgError("42P01", f'relation "{tname}" does not exist')
        rels.append(rel)
    eng = s.engine
    targets = [getattr(r, "engine_rel", None) for r in rels] or [None]
    for er in targets:
        if is_vacuum:
            eng.vacuum(er, full=bool(o.get("full")), freeze=bool(o.get("freeze")), analyze=analyze,
                       verbose=bool(o.get("verbose")))
        else:
            eng.analyze(er)
    return _R(tag)


def _checkpoint(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    _no_block_ok = True
    del _no_block_ok
    s.engine.checkpoint()
    return _R("CHECKPOINT")


# ---------------------------------------------------------------- session housekeeping


def _deallocate(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    name = n.get("name")
    if name is None or n.get("isall"):
        s.sql_prepared.clear()
        return _R("DEALLOCATE ALL")
    if name not in s.sql_prepared:
        raise PgError("26000", f'prepared statement "{name}" does not exist')
    del s.sql_prepared[name]
    return _R("DEALLOCATE")


def _close(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    name = n.get("portalname")
    if name is None:
        s.cursors.clear()
        return _R("CLOSE CURSOR ALL")
    if s.cursors.pop(name, None) is None:
        raise PgError("34000", f'cursor "{name}" does not exist')
    return _R("CLOSE CURSOR")


def _listen(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    listen(s, n["conditionname"])
    return _R("LISTEN")


def _unlisten(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    unlisten(s, n.get("conditionname"))
    return _R("UNLISTEN")


def _notify(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    notify(s, n.get("conditionname"), n.get("payload"))
    return _R("NOTIFY")


def _discard(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    t: str = n["target"]
    if t == "DISCARD_ALL":
        if s.engine.in_transaction_block:
            raise PgError("25001", "DISCARD ALL cannot run inside a transaction block")
        s.settings.reset_all()
        s.sql_prepared.clear()
        s.cursors.clear()
        s.listening.clear()
        session_views.discard(s, t)
        return _R("DISCARD ALL")
    if t == "DISCARD_PLANS":
        s.plan_cache.clear()
        return _R("DISCARD PLANS")
    session_views.discard(s, t)
    return _R("DISCARD " + {"DISCARD_SEQUENCES": "SEQUENCES", "DISCARD_TEMP": "TEMP"}.get(t, "ALL"))


def _lock(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    if not s.engine.in_transaction_block:
        raise PgError("25P01", "LOCK TABLE can only be used in transaction blocks")
    return _R("LOCK TABLE")


def _comment(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    setter = getattr(s.engine, "set_description", None)
    if setter is None:
        return _R("COMMENT")
    ot = n["objtype"]
    obj = n.get("object") or {}
    parts = names(obj["List"]["items"]) if "List" in obj else ([obj["String"]["sval"]] if "String" in obj else [])
    text = n.get("comment")
    if ot in ("OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_SEQUENCE", "OBJECT_VIEW", "OBJECT_MATVIEW"):
        rel = s.storage.lookup_relation(parts[-2] if len(parts) > 1 else None, parts[-1])
        if rel is None:
            raise PgError("42P01", f'relation "{parts[-1]}" does not exist')
        setter(rel.oid, 1259, 0, text)
    elif ot == "OBJECT_COLUMN":
        if len(parts) < 2:
            raise PgError("42601", "column name must be qualified")
        rel = s.storage.lookup_relation(parts[-3] if len(parts) > 2 else None, parts[-2])
        if rel is None:
            raise PgError("42P01", f'relation "{parts[-2]}" does not exist')
        i = rel.column_index(parts[-1])
        if i < 0:
            raise PgError("42703", f'column "{parts[-1]}" of relation "{rel.name}" does not exist')
        setter(rel.oid, 1259, rel.columns[i].attnum, text)
    elif ot == "OBJECT_SCHEMA":
        ns = s.env.namespace_oid(parts[-1])
        if ns is None:
            raise PgError("3F000", f'schema "{parts[-1]}" does not exist')
        setter(ns, 2615, 0, text)
    elif ot == "OBJECT_TABCONSTRAINT":
        rel = s.storage.lookup_relation(parts[-3] if len(parts) > 2 else None, parts[-2])
        con = next((c for c in rel.constraints if c.name == parts[-1]), None) if rel is not None else None
        if con is None:
            raise PgError("42704", f'constraint "{parts[-1]}" does not exist')
        setter(con.oid, 2606, 0, text)
    return _R("COMMENT")


# ---------------------------------------------------------------- roles and databases


def _role_opts(n: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for o in n.get("options", []) or []:
        d = o["DefElem"]
        name = d["defname"]
        arg = d.get("arg")
        val: Any = True
        if arg is not None:
            k, v = next(iter(arg.items()))
            if k == "Boolean":
                val = v.get("boolval", False)
            elif k == "Integer":
                val = v.get("ival", 0)
            elif k == "String":
                val = v.get("sval", "")
            elif k == "A_Const":
                val = const_value(v)
            elif k == "List":
                val = [x["String"]["sval"] for x in v.get("items", []) if "String" in x]
        key = {"password": "password", "canlogin": "login", "superuser": "superuser", "createdb": "create_db",
               "createrole": "create_role", "inherit": "inherit", "isreplication": "replication",
               "bypassrls": "bypass_rls", "connectionlimit": "connection_limit",
               "validUntil": "valid_until"}.get(name)
        if key is not None:
            out[key] = val
    return out


def _create_role(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    o = _role_opts(n)
    if n.get("stmt_type") == "ROLESTMT_USER" and "login" not in o:
        o["login"] = True
    s.engine.create_role(n["role"], **o)
    return _R("CREATE ROLE")


def _alter_role(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    name = n["role"]["RoleSpec"].get("rolename")
    s.engine.alter_role(name, **_role_opts(n))
    return _R("ALTER ROLE")


def _drop_role(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    for r in n.get("roles", []):
        s.engine.drop_role(r["RoleSpec"]["rolename"], if_exists=bool(n.get("missing_ok")))
    return _R("DROP ROLE")


def _createdb(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    if s.engine.in_transaction_block:
        raise PgError("25001", "CREATE DATABASE cannot run inside a transaction block")
    o = _opts(n)
    kw = {}
    if "owner" in o:
        kw["owner"] = o["owner"]
    if "template" in o:
        kw["template"] = o["template"]
    s.engine.create_database(n["dbname"], **kw)
    return _R("CREATE DATABASE")


def _dropdb(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    if s.engine.in_transaction_block:
        raise PgError("25001", "DROP DATABASE cannot run inside a transaction block")
    force = any(o["DefElem"]["defname"] == "force" for o in n.get("options", []) or [])
    s.engine.drop_database(n["dbname"], if_exists=bool(n.get("missing_ok")), force=force)
    return _R("DROP DATABASE")


# ---------------------------------------------------------------- EXPLAIN / PREPARE / EXECUTE


def _explain(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    k, q = next(iter(n["query"].items()))
    inner = RawStmt(k, q, raw.text, raw.location)
    if k not in ("SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt"):
        raise PgError("0A000", f"EXPLAIN {k} is not supported")
    import time as _time
    o = _opts(n)
    costs = o.get("costs", True) not in (False, "off", "false", 0)
    analyze = bool(o.get("analyze")) and o.get("analyze") not in ("off", "false")
    t0 = _time.perf_counter()
    prep = s._prepare(raw.text, inner, ())
    t1 = _time.perf_counter()
    if analyze:
        plan = prep.plan
        if hasattr(plan, "scan") and plan.scan is not None:
            instrument(plan.scan)
        elif not hasattr(plan, "scan"):
            instrument(plan)
        res = s._run(prep, [None] * len(prep.param_types))
        if res.rows is not None:
            for _ in res.rows:
                pass
        t2 = _time.perf_counter()
        lines = prep.plan.explain(0, costs, True)
        s.plan_cache.clear()  # the instrumented plan must not be reused
        if o.get("timing", True) not in (False, "off"):
            lines.append(f"Planning Time: {(t1 - t0) * 1000:.3f} ms")
            lines.append(f"Execution Time: {(t2 - t1) * 1000:.3f} ms")
    else:
        lines = prep.plan.explain(0, costs, False)
    return _R("EXPLAIN", [Column("QUERY PLAN", T.TEXT)], [(ln,) for ln in lines])


def _prepare_stmt(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    name = n["name"]
    if name in s.sql_prepared:
        raise PgError("42P05", f'prepared statement "{name}" already exists')
    types = []
    for tn in n.get("argtypes", []) or []:
        types.append(resolve_type(tn["TypeName"], s.env.lookup_type)[0])
    k, q = next(iter(n["query"].items()))
    s.sql_prepared[name] = s._prepare(raw.text, RawStmt(k, q, raw.text, raw.location), tuple(types))
    return _R("PREPARE")


def _execute_stmt(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    prep = s.sql_prepared.get(n["name"])
    if prep is None:
        raise PgError("26000", f'prepared statement "{n["name"]}" does not exist')
    vals = []
    an = Analyzer(s.env, ParamTypes())
    for i, p in enumerate(n.get("params", []) or []):
        e = an.coerce(an.expr(p, PState(None, QueryTree("select"))), prep.param_types[i], -1, "a", "")
        vals.append(compile_expr(e, Layout())((), ExecState([], s.env, s.storage, s)))
    s._begin_command(prep.raw)
    return s._run(prep, vals)


# ---------------------------------------------------------------- COPY


def _copy(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    return run_copy(s, n, raw)


def _create_enum(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    tn = names(n.get("typeName"))
    labels = [v["String"]["sval"] for v in n.get("vals", []) or []]
    s.env.create_enum(tn[-1], tn[-2] if len(tn) > 1 else None, labels)
    return _R("CREATE TYPE")


class Cursor:
    """A SQL cursor: its plan's rows consumed lazily, a position (0 = before the first
    row, k = on row k, count + 1 = after the last) and, for SCROLL cursors (and WITH
    HOLD ones, which are materialised at commit), the rows seen so far so that any
    FETCH direction works."""

    def __init__(self, prep: Any, rows: Any, hold: bool, scroll: bool, binary: bool = False) -> None:
        self.prep = prep
        self.binary = binary              # pg_cursors.is_binary
        self.creation_time = _dt.datetime.now(_dt.timezone.utc)
        self.it = iter(rows)
        self.hold = hold
        self.scroll = scroll
        self.buf: list = []
        self.pos = 0
        self.exhausted = False
        self.total: int | None = None  # rows in the result once exhausted

    def materialize(self) -> None:
        self._fill(None)

    def _fill(self, upto: int | None) -> None:
        """Make rows 1..upto available (all with None)."""
        while not self.exhausted and (upto is None or len(self.buf) < upto):
            try:
                self.buf.append(next(self.it))
            except StopIteration:
                self.exhausted = True
                self.total = len(self.buf)

    def _row(self, k: int) -> Any:
        if k < 1:
            return None
        self._fill(k)
        return self.buf[k - 1] if k <= len(self.buf) else None

    def _forward(self, n: int | None, keep: bool) -> list[tuple]:
        out: list[tuple] = []
        if not self.scroll:
            # forward-only: no buffer kept, the position counts rows consumed
            while n is None or len(out) < n:
                try:
                    r = next(self.it)
                except StopIteration:
                    if not self.exhausted:
                        self.exhausted = True
                        self.total = self.pos
                        self.pos += 1  # after the last row
                    break
                self.pos += 1
                out.append(r)
            return out
        while n is None or len(out) < n:
            r = self._row(self.pos + 1)
            if r is None:
                self.pos = len(self.buf) + 1
                break
            self.pos += 1
            out.append(r)
        return out

    def fetch(self, direction: str, count: int | None) -> list:
        """Rows of one FETCH/MOVE (count None = ALL)."""
        if direction == "FETCH_FORWARD":
            if count is not None and count < 0:
                return self.fetch("FETCH_BACKWARD", -count)
            return self._forward(count, True)
        self._need_scroll()
        if direction == "FETCH_BACKWARD":
            if count is not None and count < 0:
                return self._forward(-count, True)
            out: list[tuple] = []
            if self.pos > len(self.buf) + 1 or (self.exhausted and self.pos > len(self.buf)):
                self.pos = len(self.buf) + 1
            while (count is None or len(out) < count) and self.pos > 1:
                self.pos -= 1
                out.append(self.buf[self.pos - 1])
            if count is None or len(out) < count:
                self.pos = 0
            return out
        if direction == "FETCH_ABSOLUTE":
            k = count or 0
            if k < 0:
                self._fill(None)
                k = len(self.buf) + 1 + k
            return self._goto(k)
        if direction == "FETCH_RELATIVE":
            if count == 0:
                r = self._row(self.pos) if self.pos >= 1 else None
                return [r] if r is not None else []
            return self._goto(self.pos + (count or 0))
        raise PgError("0A000", f"FETCH {direction} is not supported")

    def _goto(self, k: int) -> list:
        """Position on row ``k`` and return it; before the first row (k < 1) or after the last,
        position there and return nothing."""
        if k < 1:
            self.pos = 0
            return []
        r = self._row(k)
        if r is None:
            self.pos = len(self.buf) + 1
            return []
        self.pos = k
        return [r]

    def _need_scroll(self) -> None:
        if not self.scroll:
            raise PgError("55000", "cursor can only scan forward",
                          hint="Declare it with SCROLL option to enable backward scan.")


def _create_table_as(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    """CREATE TABLE ... AS SELECT (and SELECT ... INTO): the query's columns, then its rows."""
    if n.get("objtype") == "OBJECT_MATVIEW":
        raise PgError("0A000", "materialized views are not supported")
    into = n["into"]
    schema, name = _rangevar(into["rel"])
    if n.get("if_not_exists") and s.storage.lookup_relation(schema, name) is not None:
        s.notice(f'relation "{name}" already exists, skipping', "42P07")
        return _R("CREATE TABLE AS")
    k, qv = next(iter(n["query"].items()))
    q = Analyzer(s.env, ParamTypes()).analyze(k, qv)
    cols = output_columns(q)
    aliases = names(into.get("colNames"))
    if len(aliases) > len(cols):
        raise PgError("42601", "too many column names were specified")
    defs = []
    for i, t in enumerate(cols):
        typ = t.expr.type if t.expr.type != T.UNKNOWN else T.TEXT
        defs.append(api.ColumnDef(aliases[i] if i < len(aliases) else t.name, typ, t.expr.typmod, False, None))
    persistence = {"u": "u", "t": "t"}.get(into["rel"].get("relpersistence"), "p")
    if persistence == "t":
        schema = temp_schema(s, schema)
    s.engine.create_table(name, defs, schema=schema, persistence=persistence)
    if into.get("skipData"):
        return _R("CREATE TABLE AS" if n.get("objtype") != "OBJECT_MATVIEW" else "SELECT 0")
    ins = {"relation": dict(into["rel"]), "selectStmt": n["query"]}
    prep = s._prepare(raw.text + " /* insert */", RawStmt("InsertStmt", ins, raw.text, raw.location), ())
    res = s._run(prep, list(params))
    count = res.tag.split()[-1] if res.tag else "0"
    return _R(f"SELECT {count}")


def _create_view(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    schema, name = _rangevar(n["view"])
    if n["view"].get("relpersistence") == "t":
        raise PgError("0A000", "temporary views are not supported")
    k, qv = next(iter(n["query"].items()))
    text = RawStream()(to_ast(n["query"]))
    q = Analyzer(s.env, ParamTypes()).analyze(k, qv)
    cols = output_columns(q)
    aliases = names(n.get("aliases"))
    if len(aliases) > len(cols):
        raise PgError("42601", "CREATE VIEW specifies more column names than columns")
    defs = []
    seen = set()
    for i, t in enumerate(cols):
        cname = aliases[i] if i < len(aliases) else t.name
        if cname in seen:
            raise PgError("42701", f'column "{cname}" specified more than once')
        seen.add(cname)
        typ = t.expr.type if t.expr.type != T.UNKNOWN else T.TEXT
        defs.append(api.ColumnDef(cname, typ, t.expr.typmod, False, None))
    s.engine.create_view(name, defs, text, schema=schema, replace=bool(n.get("replace")))
    return _R("CREATE VIEW")


def _declare(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    name = n["portalname"]
    opts = n.get("options", 0)
    hold = bool(opts & 0x0020)    # CURSOR_OPT_HOLD
    scroll = bool(opts & 0x0002)  # CURSOR_OPT_SCROLL
    if not hold and not s.engine.in_transaction_block:
        raise PgError("25P01", "DECLARE CURSOR can only be used in transaction blocks")
    if name in s.cursors or name in s.portals:
        raise PgError("42P03", f'cursor "{name}" already exists')
    k, q = next(iter(n["query"].items()))
    prep = s._prepare(raw.text, RawStmt(k, q, raw.text, raw.location), ())
    st = ExecState(list(params), s.env, s.storage, s)
    rows = prep.plan.rows(st, None)
    if hold:
        rows = list(rows)
    cur = Cursor(prep, rows, hold, scroll or hold, binary=bool(opts & 0x0001))  # CURSOR_OPT_BINARY
    if hold:
        cur.materialize()
    s.cursors[name] = cur
    return _R("DECLARE CURSOR")


def _fetch(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    name: str = n["portalname"]
    cur = s.cursors.get(name)
    how = n.get("howMany", 0)
    direction = n.get("direction", "FETCH_FORWARD")
    count = None if how >= 2**62 else how
    if cur is None:
        portal = s.portals.get(name)
        if portal is None or portal.rows is None:
            raise PgError("34000", f'cursor "{name}" does not exist')
        # a protocol-level portal (asyncpg's cursors MOVE them): forward only
        if direction != "FETCH_FORWARD":
            raise PgError("55000", "cursor can only scan forward",
                          hint="Declare it with SCROLL option to enable backward scan.")
        out = []
        for r in portal.rows:
            out.append(r)
            if count is not None and len(out) >= count:
                break
        portal.count += len(out)
        if n.get("ismove"):
            return _R(f"MOVE {len(out)}")
        return _R(f"FETCH {len(out)}", portal.prep.columns, out)
    out = cur.fetch(direction, count)
    if n.get("ismove"):
        return _R(f"MOVE {len(out)}")
    return _R(f"FETCH {len(out)}", cur.prep.columns, out)


def _do(s: Session, n: dict, raw: RawStmt, params: list) -> Any:
    raise PgError("0A000", "DO blocks are not supported")


_HANDLERS = {
    "TransactionStmt": _transaction, "VariableSetStmt": _set, "VariableShowStmt": _show,
    "CreateStmt": _create_table, "DropStmt": _drop, "IndexStmt": _index, "AlterTableStmt": _alter_table,
    "TruncateStmt": _truncate, "VacuumStmt": _vacuum, "CheckPointStmt": _checkpoint,
    "CreateSeqStmt": _create_seq, "CreateSchemaStmt": _create_schema, "DeallocateStmt": _deallocate,
    "ClosePortalStmt": _close, "ListenStmt": _listen, "UnlistenStmt": _unlisten, "NotifyStmt": _notify,
    "DiscardStmt": _discard, "LockStmt": _lock, "CommentStmt": _comment, "CreateRoleStmt": _create_role,
    "AlterRoleStmt": _alter_role, "DropRoleStmt": _drop_role, "CreatedbStmt": _createdb, "DropdbStmt": _dropdb,
    "ExplainStmt": _explain, "PrepareStmt": _prepare_stmt, "ExecuteStmt": _execute_stmt, "CopyStmt": _copy,
    "DoStmt": _do, "RenameStmt": _rename, "CreateEnumStmt": _create_enum, "DeclareCursorStmt": _declare,
    "FetchStmt": _fetch, "ViewStmt": _create_view, "CreateTableAsStmt": _create_table_as,
}

__all__ = ["describe_utility", "run_utility", "json", "M"]
