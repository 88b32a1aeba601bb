"""``pg_catalog`` / ``information_schema`` relations and ``pg_stat_*`` views
answered from engine metadata, and the catalog functions clients call.

Each virtual relation is a :class:`VirtualTable`: column names and types as
PostgreSQL 15 shows them and a ``rows(env)`` function that builds the rows
from the engine API (relations, namespaces, databases, roles, settings,
activity, statistics) at scan time.  They are found before user tables for
unqualified names, like pg_catalog is searched first in PostgreSQL.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable
from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.executor.expr import Const, Func
from pgbundle.server.parser.coerce import format_type
from pgbundle.server.utils.adt import functions as F
from pgbundle.server.utils.adt.enums import EnumLabel
from pgbundle.server.utils.adt.ruleutils import pretty_text
from pgbundle.shared.quoting import quote_ident
from pgbundle.shared.types import oids as T
from pgbundle.shared.types.oids import TYPES, numeric_precision_scale

_TN = {"oid": T.OID, "name": T.NAME, "text": T.TEXT, "int2": T.INT2, "int4": T.INT4, "int8": T.INT8,
       "bool": T.BOOL, "char": T.CHAR, "float4": T.FLOAT4, "float8": T.FLOAT8, "regproc": T.REGPROC,
       "timestamptz": T.TIMESTAMPTZ, "inet": T.TEXT, "xid": T.XID, "regclass": T.REGCLASS, "regtype": T.REGTYPE,
       "oid[]": T.OID_ARRAY, "text[]": T.TEXT_ARRAY, "name[]": T.NAME_ARRAY, "int2[]": T.INT2_ARRAY,
       "char[]": T.CHAR_ARRAY, "aclitem[]": 1034, "int2vector": T.INT2VECTOR, "oidvector": T.OIDVECTOR,
       "pg_node_tree": T.PG_NODE_TREE, "numeric": T.NUMERIC, "int4[]": T.INT4_ARRAY, "float4[]": T.FLOAT4_ARRAY,
       "interval": T.INTERVAL, "xid8": T.XID8, "anyarray": T.ANYARRAY, "regnamespace": T.REGNAMESPACE,
       "regrole": T.REGROLE, "regtype[]": 2211}


class VirtualTable:
    def __init__(self, name: str, cols: str, rows: Callable[[Any], Iterable[tuple]], oid: int = 0,
                 schema: str = "pg_catalog") -> None:
        self.name = name
        self.schema = schema
        pairs = [c.strip().rsplit(" ", 1) for c in cols.split(",") if c.strip()]
        self.colnames = [p[0] for p in pairs]
        self.coltypes = [_TN[p[1]] for p in pairs]
        self._rows = rows
        self.oid = oid

    def rows(self, env: Any) -> Iterable[tuple]:
        w = len(self.colnames)
        for r in self._rows(env):
            if len(r) != w:
                r = tuple(r) + (None,) * (w - len(r)) if len(r) < w else tuple(r)[:w]
            yield r


TABLES: dict[tuple[str, str], VirtualTable] = {}
OIDS: dict[int, VirtualTable] = {}


def vt(name: str, cols: str, oid: int = 0, schema: str = "pg_catalog"):
    def deco(f):
        t = VirtualTable(name, cols, f, oid, schema)
        TABLES[(schema, name)] = t
        if oid:
            OIDS[oid] = t
        return f
    return deco


def virtual_table(env: Any, schema: str | None, name: str) -> VirtualTable | None:
    if schema is None:
        t = TABLES.get(("pg_catalog", name))
        if t is not None:
            return t
        return None
    return TABLES.get((schema, name))


def virtual_oid(schema: str | None, name: str) -> int:
    t = TABLES.get((schema or "pg_catalog", name))
    return t.oid if t is not None else 0


def virtual_name(oid: int) -> str | None:
    t = OIDS.get(oid)
    return t.name if t is not None else None


# ----------------------------------------------------------------------------- helpers

_NS_OID = {"pg_catalog": 11, "public": 2200, "information_schema": 13183, "pg_toast": 99}


def _rels(env: Any, kinds: str = "rivSmpcf") -> list[Any]:
    return env.storage.relations(kinds)


def _ns_oid(env: Any, name: str) -> int:
    o = env.namespace_oid(name)
    return o if o is not None else _NS_OID.get(name, 0)


def _kind(rel: Any) -> str:
    return rel.kind


def _engine(env: Any) -> Any:
    return env.engine


# ----------------------------------------------------------------------------- pg_catalog tables


@vt("pg_namespace", "oid oid, nspname name, nspowner oid, nspacl aclitem[]", 2615)
def _pg_namespace(env):
    for oid, name, owner in env.namespaces():
        yield (oid, name, owner, None)


def _fk_tables(env) -> set[int]:
    """Tables with foreign keys or referenced by one (PostgreSQL's RI triggers: relhastriggers)."""
    out: set[int] = set()
    for r in _rels(env, "r"):
        for c in r.constraints:
            if c.kind == "f":
                out.add(r.oid)
                out.add(c.ref_table)
    return out


@vt("pg_class", "oid oid, relname name, relnamespace oid, reltype oid, reloftype oid, relowner oid, relam oid, "
                "relfilenode oid, reltablespace oid, relpages int4, reltuples float4, relallvisible int4, "
                "reltoastrelid oid, relhasindex bool, relisshared bool, relpersistence char, relkind char, "
                "relnatts int2, relchecks int2, relhasrules bool, relhastriggers bool, relhassubclass bool, "
                "relrowsecurity bool, relforcerowsecurity bool, relispopulated bool, relreplident char, "
                "relispartition bool, relrewrite oid, relfrozenxid xid, relminmxid xid, relacl aclitem[], "
                "reloptions text[], relpartbound pg_node_tree", 1259)
def _pg_class(env):
    trig = _fk_tables(env)
    for r in _rels(env):
        er = getattr(r, "engine_rel", None)
        nidx = len(r.indexes)
        am = 403 if r.kind == "i" else (2 if r.kind in ("r", "m", "t") else 0)
        opts = list(getattr(er, "options", ()) or ()) or None
        yield (r.oid, r.name, r.namespace_oid or _ns_oid(env, r.schema), 0, 0, r.owner_oid, am,
               getattr(er, "relfilenode", r.oid), 0, r.relpages, float(r.reltuples), 0, 0, nidx > 0,
               bool(getattr(er, "is_shared", False)), r.persistence or "p", r.kind,
               sum(1 for c in r.columns), sum(1 for c in r.constraints if c.kind == "c"), False, r.oid in trig,
               False, False, False, True, "d", False, 0, 0, 0, None, opts, None)
    for (schema, name), t in TABLES.items():
        if t.oid:
            yield (t.oid, name, _NS_OID.get(schema, 11), 0, 0, 10, 0, 0, 0, 0, -1.0, 0, 0, False, False, "p",
                   "v" if name.startswith(("pg_stat", "pg_settings", "pg_roles", "pg_user", "pg_tables",
                                           "pg_indexes")) else "r",
                   len(t.colnames), 0, False, False, False, False, False, True, "n", False, 0, 0, 0, None, None,
                   None)


@vt("pg_attribute", "attrelid oid, attname name, atttypid oid, attstattarget int4, attlen int2, attnum int2, "
                    "attndims int4, attcacheoff int4, atttypmod int4, attbyval bool, attalign char, "
                    "attstorage char, attcompression char, attnotnull bool, atthasdef bool, atthasmissing bool, "
                    "attidentity char, attgenerated char, attisdropped bool, attislocal bool, attinhcount int4, "
                    "attcollation oid, attacl aclitem[], attoptions text[], attfdwoptions text[]", 1249)
def _pg_attribute(env):
    for r in _rels(env):
        for i, c in enumerate(r.columns):
            ti = TYPES.get(c.type_oid)
            coll = 100 if ti is not None and ti.category == "S" else 0
            yield (r.oid, c.name if not c.dropped else f"........pg.dropped.{i + 1}........",
                   0 if c.dropped else c.type_oid, -1, ti.typlen if ti else -1, c.attnum or i + 1,
                   1 if ti and ti.category == "A" else 0, -1, c.typmod, bool(ti and ti.byval),
                   ti.align if ti else "i", "p" if ti and ti.typlen > 0 else "x", "", c.not_null,
                   c.default is not None, False, c.identity or "", "", c.dropped, True, 0, coll, None, None, None)
        if r.kind in ("r", "m"):
            for num, (nm, typ) in enumerate((("tableoid", T.OID), ("cmax", T.CID), ("xmax", T.XID),
                                             ("cmin", T.CID), ("xmin", T.XID), ("ctid", T.TID))):
                yield (r.oid, nm, typ, 0, 4 if typ != T.TID else 6, -(num + 1), 0, -1, -1, True, "i", "p", "",
                       True, False, False, "", "", False, True, 0, 0, None, None, None)


@vt("pg_type", "oid oid, typname name, typnamespace oid, typowner oid, typlen int2, typbyval bool, typtype char, "
               "typcategory char, typispreferred bool, typisdefined bool, typdelim char, typrelid oid, "
               "typsubscript regproc, typelem oid, typarray oid, typinput regproc, typoutput regproc, "
               "typreceive regproc, typsend regproc, typmodin regproc, typmodout regproc, typanalyze regproc, "
               "typalign char, typstorage char, typnotnull bool, typbasetype oid, typtypmod int4, typndims int4, "
               "typcollation oid, typdefaultbin pg_node_tree, typdefault text, typacl aclitem[]", 1247)
def _pg_type(env):
    for t in TYPES.values():
        yield (t.oid, t.name, 11, 10, t.typlen, t.byval, t.typtype, t.category, t.preferred, True, t.delim, 0,
               0, t.elem, t.array, 0, 0, 0, 0, 0, 0, 0, t.align, "p" if t.typlen > 0 else "x", False, 0, -1, 0,
               100 if t.category == "S" and t.oid != T.CHAR else 0, None, None, None)
    for oid, (name, ns, labels) in env.user_types().items():
        yield (oid, name, ns, 10, 4, True, "e", "E", False, True, ",", 0, 0, 0, labels.get("_array", 0), 0, 0, 0,
               0, 0, 0, 0, "i", "p", False, 0, -1, 0, 0, None, None, None)


@vt("pg_index", "indexrelid oid, indrelid oid, indnatts int2, indnkeyatts int2, indisunique bool, "
                "indnullsnotdistinct bool, indisprimary bool, indisexclusion bool, indimmediate bool, "
                "indisclustered bool, indisvalid bool, indcheckxmin bool, indisready bool, indislive bool, "
                "indisreplident bool, indkey int2vector, indcollation oidvector, indclass oidvector, "
                "indoption int2vector, indexprs pg_node_tree, indpred pg_node_tree", 2610)
def _pg_index(env):
    for r in _rels(env, "r"):
        for i in r.indexes:
            keys = [r.columns[c].attnum for c in i.columns]
            yield (i.oid, r.oid, len(keys), len(keys), i.unique, False, i.primary, False, True, False, True,
                   False, True, True, False, keys, [0] * len(keys), [1978] * len(keys),
                   list(i.options) if i.options else [0] * len(keys), None, None)


@vt("pg_constraint", "oid oid, conname name, connamespace oid, contype char, condeferrable bool, "
                     "condeferred bool, convalidated bool, conrelid oid, contypid oid, conindid oid, "
                     "conparentid oid, confrelid oid, confupdtype char, confdeltype char, confmatchtype char, "
                     "conislocal bool, coninhcount int4, connoinherit bool, conkey int2[], confkey int2[], "
                     "conpfeqop oid[], conppeqop oid[], conffeqop oid[], confdelsetcols int2[], conexclop oid[], "
                     "conbin pg_node_tree", 2606)
def _pg_constraint(env):
    for r in _rels(env, "r"):
        for c in r.constraints:
            keys = [r.columns[k].attnum for k in c.columns] if c.columns else None
            fk = c.kind == "f"
            ref = env.storage.relation_by_oid(c.ref_table) if fk else None
            fkeys = [ref.columns[k].attnum for k in c.ref_columns] if ref is not None else None
            index_oid = c.index_oid
            if fk and ref is not None:
                want = sorted(c.ref_columns)
                index_oid = next((i.oid for i in ref.indexes if i.unique and sorted(i.columns) == want), 0)
            yield (c.oid, c.name, r.namespace_oid, c.kind, False, False, True, r.oid, 0, index_oid, 0,
                   c.ref_table if fk else 0, c.on_update if fk else " ", c.on_delete if fk else " ",
                   "s" if fk else " ", True, 0, c.kind == "c" and False, keys, fkeys, None, None, None, None,
                   None, c.expr)


@vt("pg_attrdef", "oid oid, adrelid oid, adnum int2, adbin pg_node_tree", 2604)
def _pg_attrdef(env):
    for r in _rels(env, "r"):
        for c in r.columns:
            if c.default is not None and not c.dropped:
                yield (r.oid * 1000 + c.attnum, r.oid, c.attnum, c.default)


@vt("pg_am", "oid oid, amname name, amhandler regproc, amtype char", 2601)
def _pg_am(env):
    yield (2, "heap", 0, "t")
    yield (403, "btree", 0, "i")
    yield (405, "hash", 0, "i")


@vt("pg_database", "oid oid, datname name, datdba oid, encoding int4, datlocprovider char, datistemplate bool, "
                   "datallowconn bool, datconnlimit int4, datfrozenxid xid, datminmxid xid, dattablespace oid, "
                   "datcollate text, datctype text, daticulocale text, datcollversion text, datacl aclitem[]", 1262)
def _pg_database(env):
    for d in env.engine.databases():
        yield (d.oid, d.name, d.owner, 6, "c", d.is_template, d.allow_connections, d.connection_limit, 0, 1, 1663,
               d.collate, d.ctype, None, None, None)


def _role_rows(env):
    for r in env.engine.roles():
        yield r


@vt("pg_roles", "rolname name, rolsuper bool, rolinherit bool, rolcreaterole bool, rolcreatedb bool, "
                "rolcanlogin bool, rolreplication bool, rolconnlimit int4, rolpassword text, "
                "rolvaliduntil timestamptz, rolbypassrls bool, rolconfig text[], oid oid", 0)
def _pg_roles(env):
    for r in _role_rows(env):
        yield (r.name, r.superuser, r.inherit, r.create_role, r.create_db, r.can_login, r.replication,
               r.connection_limit, "********", r.valid_until, r.bypass_rls, None, r.oid)


@vt("pg_authid", "oid oid, rolname name, rolsuper bool, rolinherit bool, rolcreaterole bool, rolcreatedb bool, "
                 "rolcanlogin bool, rolreplication bool, rolbypassrls bool, rolconnlimit int4, rolpassword text, "
                 "rolvaliduntil timestamptz", 1260)
def _pg_authid(env):
    for r in _role_rows(env):
        yield (r.oid, r.name, r.superuser, r.inherit, r.create_role, r.create_db, r.can_login, r.replication,
               r.bypass_rls, r.connection_limit, r.password, r.valid_until)


@vt("pg_user", "usename name, usesysid oid, usecreatedb bool, usesuper bool, userepl bool, usebypassrls bool, "
               "passwd text, valuntil timestamptz, useconfig text[]")
def _pg_user(env):
    for r in _role_rows(env):
        if r.can_login:
            yield (r.name, r.oid, r.create_db, r.superuser, r.replication, r.bypass_rls, "********",
                   r.valid_until, None)


@vt("pg_auth_members", "oid oid, roleid oid, member oid, grantor oid, admin_option bool")
def _pg_auth_members(env):
    return []


@vt("pg_inherits", "inhrelid oid, inhparent oid, inhseqno int4, inhdetachpending bool", 2611)
def _pg_inherits(env):
    return []


@vt("pg_partitioned_table", "partrelid oid, partstrat char, partnatts int2, partdefid oid, partattrs int2vector, "
                            "partclass oidvector, partcollation oidvector, partexprs pg_node_tree", 3350)
def _pg_partitioned_table(env):
    return []


@vt("pg_range", "rngtypid oid, rngsubtype oid, rngmultitypid oid, rngcollation oid, rngsubopc oid, "
                "rngcanonical regproc, rngsubdiff regproc", 3541)
def _pg_range(env):
    return []


@vt("pg_enum", "oid oid, enumtypid oid, enumsortorder float4, enumlabel name", 3501)
def _pg_enum(env):
    for oid, (_name, _ns, labels) in env.user_types().items():
        for i, lab in enumerate(labels.get("labels", [])):
            yield (oid * 1000 + i, oid, float(i + 1), lab)


@vt("pg_collation", "oid oid, collname name, collnamespace oid, collowner oid, collprovider char, "
                    "collisdeterministic bool, collencoding int4, collcollate text, collctype text, "
                    "colliculocale text, collversion text", 3456)
def _pg_collation(env):
    yield (100, "default", 11, 10, "d", True, -1, None, None, None, None)
    yield (950, "C", 11, 10, "c", True, -1, "C", "C", None, None)
    yield (951, "POSIX", 11, 10, "c", True, -1, "POSIX", "POSIX", None, None)


@vt("pg_description", "objoid oid, classoid oid, objsubid int4, description text", 2609)
def _pg_description(env):
    f = getattr(env.engine, "descriptions", None)
    rows = list(f()) if f is not None else []
    rows.append((_PLPGSQL_EXT, 3079, 0, "PL/pgSQL procedural language"))
    return rows


_PLPGSQL_EXT = 13500


def _description(env, objoid, classoid, objsubid=0):
    f = getattr(env.engine, "descriptions", None)
    if f is None:
        return None
    for o, c, sub, text in f():
        if o == objoid and c == classoid and sub == objsubid:
            return text
    return None


@vt("pg_shdescription", "objoid oid, classoid oid, description text", 2396)
def _pg_shdescription(env):
    return []


@vt("pg_policy", "oid oid, polname name, polrelid oid, polcmd char, polpermissive bool, polroles oid[], "
                 "polqual pg_node_tree, polwithcheck pg_node_tree", 3256)
def _pg_policy(env):
    return []


@vt("pg_statistic_ext", "oid oid, stxrelid oid, stxname name, stxnamespace oid, stxowner oid, "
                        "stxstattarget int4, stxkeys int2vector, stxkind char[], stxexprs pg_node_tree", 3381)
def _pg_statistic_ext(env):
    return []


@vt("pg_publication", "oid oid, pubname name, pubowner oid, puballtables bool, pubinsert bool, pubupdate bool, "
                      "pubdelete bool, pubtruncate bool, pubviaroot bool", 6104)
def _pg_publication(env):
    return []


@vt("pg_publication_rel", "oid oid, prpubid oid, prrelid oid, prqual pg_node_tree, prattrs int2vector", 6106)
def _pg_publication_rel(env):
    return []


@vt("pg_publication_namespace", "oid oid, pnpubid oid, pnnspid oid", 6237)
def _pg_publication_namespace(env):
    return []


@vt("pg_publication_tables", "pubname name, schemaname name, tablename name, attnames name[], rowfilter text")
def _pg_publication_tables(env):
    return []  # no publications: CREATE PUBLICATION is not supported


@vt("pg_trigger", "oid oid, tgrelid oid, tgparentid oid, tgname name, tgfoid oid, tgtype int2, tgenabled char, "
                  "tgisinternal bool, tgconstrrelid oid, tgconstrindid oid, tgconstraint oid, tgdeferrable bool, "
                  "tginitdeferred bool, tgnargs int2", 2620)
def _pg_trigger(env):
    return []


@vt("pg_rewrite", "oid oid, rulename name, ev_class oid, ev_type char, ev_enabled char, is_instead bool", 2618)
def _pg_rewrite(env):
    return []


@vt("pg_depend", "classid oid, objid oid, objsubid int4, refclassid oid, refobjid oid, refobjsubid int4, "
                 "deptype char", 2608)
def _pg_depend(env):
    return []


@vt("pg_sequence", "seqrelid oid, seqtypid oid, seqstart int8, seqincrement int8, seqmax int8, seqmin int8, "
                   "seqcache int8, seqcycle bool", 2224)
def _pg_sequence(env):
    for r in _rels(env, "S"):
        yield (r.oid, T.INT8, 1, 1, 2**63 - 1, 1, 1, False)


@vt("pg_opclass", "oid oid, opcmethod oid, opcname name, opcnamespace oid, opcowner oid, opcfamily oid, "
                  "opcintype oid, opcdefault bool, opckeytype oid", 2616)
def _pg_opclass(env):
    yield (1978, 403, "int4_ops", 11, 10, 1976, T.INT4, True, 0)
    yield (3126, 403, "text_ops", 11, 10, 1994, T.TEXT, True, 0)


@vt("pg_operator", "oid oid, oprname name, oprnamespace oid, oprowner oid, oprkind char, oprcanmerge bool, "
                   "oprcanhash bool, oprleft oid, oprright oid, oprresult oid, oprcom oid, oprnegate oid, "
                   "oprcode regproc", 2617)
def _pg_operator(env):
    return []


@vt("pg_tablespace", "oid oid, spcname name, spcowner oid, spcacl aclitem[], spcoptions text[]", 1213)
def _pg_tablespace(env):
    yield (1663, "pg_default", 10, None, None)
    yield (1664, "pg_global", 10, None, None)


@vt("pg_extension", "oid oid, extname name, extowner oid, extnamespace oid, extrelocatable bool, "
                    "extversion text", 3079)
def _pg_extension(env):
    yield (13500, "plpgsql", 10, 11, False, "1.0")


@vt("pg_proc", "oid oid, proname name, pronamespace oid, proowner oid, prolang oid, procost float4, "
               "prorows float4, provariadic oid, prosupport regproc, prokind char, prosecdef bool, "
               "proleakproof bool, proisstrict bool, proretset bool, provolatile char, proparallel char, "
               "pronargs int2, pronargdefaults int2, prorettype oid, proargtypes oidvector, "
               "proallargtypes oid[], proargmodes char[], proargnames text[], prosrc text", 1255)
def _pg_proc(env):
    for oid, name, nargs, ret, args, kind in _proc_table():
        yield (oid, name, 11, 10, 12, 1.0, 0.0, 0, 0, kind, False, False, True, False, "i", "s", nargs, 0, ret,
               list(args), None, None, None, name)


_PROCS: list | None = None
_PROC_BY_OID: dict[int, str] = {}
_PROC_BY_NAME: dict[str, int] = {}


def _proc_table() -> list:
    global _PROCS
    if _PROCS is None:
        out = []
        oid = 20000
        for name, defs in sorted(F.FUNCS.items()):
            for d in defs:
                out.append((oid, name, len(d.args), d.ret, d.args, "f"))
                _PROC_BY_OID[oid] = name
                _PROC_BY_NAME.setdefault(name, oid)
                oid += 1
        for name, aggs in sorted(F.AGGS.items()):
            for a in aggs:
                out.append((oid, name, len(a.args), a.ret, a.args, "a"))
                _PROC_BY_OID[oid] = name
                _PROC_BY_NAME.setdefault(name, oid)
                oid += 1
        _PROCS = out
    return _PROCS


def proc_oid(name: str) -> int:
    _proc_table()
    n = name.split("(")[0].strip().lower()
    if n.startswith("pg_catalog."):
        n = n[11:]
    o = _PROC_BY_NAME.get(n)
    if o is None:
        raise PgError("42883", f'function "{name}" does not exist')
    return o


def proc_name(oid: int) -> str | None:
    _proc_table()
    return _PROC_BY_OID.get(oid)


# ----------------------------------------------------------------------------- system views


@vt("pg_settings", "name text, setting text, unit text, category text, short_desc text, extra_desc text, "
                   "context text, vartype text, source text, min_val text, max_val text, enumvals text[], "
                   "boot_val text, reset_val text, sourcefile text, sourceline int4, pending_restart bool")
def _pg_settings(env):
    for r in env.settings.rows():
        yield (r.name, r.setting, r.unit, r.category, r.short_desc, r.extra_desc, r.context, r.vartype, r.source,
               r.min_val, r.max_val, r.enumvals, r.boot_val, r.reset_val, r.sourcefile, r.sourceline,
               r.pending_restart)


@vt("pg_tables", "schemaname name, tablename name, tableowner name, tablespace name, hasindexes bool, "
                 "hasrules bool, hastriggers bool, rowsecurity bool")
def _pg_tables(env):
    owner = _owner_names(env)
    for r in _rels(env, "r"):
        yield (r.schema, r.name, owner.get(r.owner_oid, "postgres"), None, bool(r.indexes), False, False, False)


@vt("pg_indexes", "schemaname name, tablename name, indexname name, tablespace name, indexdef text")
def _pg_indexes(env):
    for r in _rels(env, "r"):
        for i in r.indexes:
            yield (r.schema, r.name, i.name, None, indexdef(env, r, i))


@vt("pg_sequences", "schemaname name, sequencename name, sequenceowner name, data_type regtype, start_value int8, "
                    "min_value int8, max_value int8, increment_by int8, cycle bool, cache_size int8, "
                    "last_value int8")
def _pg_sequences(env):
    for r in _rels(env, "S"):
        yield (r.schema, r.name, "postgres", T.INT8, 1, 1, 2**63 - 1, 1, False, 1, None)


@vt("pg_stats", "schemaname name, tablename name, attname name, inherited bool, null_frac float4, avg_width int4, "
                "n_distinct float4, most_common_vals text[], most_common_freqs float4[], histogram_bounds text[], "
                "correlation float4")
def _pg_stats(env):
    f = getattr(env.engine, "column_stats", None)
    if f is None:
        return
    for r in _rels(env, "r"):
        try:
            stats = f(r.oid)
        except Exception:  # noqa: BLE001
            continue
        for c in r.columns:
            st = stats.get(c.attnum)
            if st is None or c.dropped:
                continue
            extra = st[3] or {}
            yield (r.schema, r.name, c.name, False, st[0], st[1], st[2], extra.get("mcv") or None,
                   extra.get("mcf") or None, extra.get("hist") or None, None)


@vt("pg_views", "schemaname name, viewname name, viewowner name, definition text")
def _pg_views(env):
    for r in _rels(env, "v"):
        yield (r.schema, r.name, _owner_name(env, r.owner_oid), _viewdef(env, r.oid))


def _owner_name(env, oid):
    for role in getattr(env.engine, "roles", lambda: [])():
        if role.oid == oid:
            return role.name
    return "postgres"


def _viewdef(env, oid, pretty=False):
    f = getattr(env.engine, "view_definition", None)
    text = f(oid) if f is not None else None
    return None if text is None else f" {text};"


@vt("views", "table_catalog name, table_schema name, table_name name, view_definition text, check_option text, "
             "is_updatable text, is_insertable_into text, is_trigger_updatable text, is_trigger_deletable text, "
             "is_trigger_insertable_into text", schema="information_schema")
def _is_views(env):
    for r in _rels(env, "v"):
        yield (env.database, r.schema, r.name, _viewdef(env, r.oid), "NONE", "NO", "NO", "NO", "NO", "NO")


@vt("pg_matviews", "schemaname name, matviewname name, matviewowner name, tablespace name, hasindexes bool, "
                   "ispopulated bool, definition text")
def _pg_matviews(env):
    return []


@vt("pg_prepared_statements", "name text, statement text, prepare_time timestamptz, parameter_types regtype[], "
                              "from_sql bool, generic_plans int8, custom_plans int8")
def _pg_prepared_statements(env):
    s = env.session
    for name, p in s.sql_prepared.items():
        yield (name, p.text, None, None, True, 0, 0)
    for name, p in s.prepared.items():
        if name:
            yield (name, p.text, None, None, False, 0, 0)


def _owner_names(env: Any) -> dict[int, str]:
    try:
        return {r.oid: r.name for r in env.engine.roles()}
    except Exception:
        return {10: "postgres"}


@vt("pg_stat_activity", "datid oid, datname name, pid int4, leader_pid int4, usesysid oid, usename name, "
                        "application_name text, client_addr inet, client_hostname text, client_port int4, "
                        "backend_start timestamptz, xact_start timestamptz, query_start timestamptz, "
                        "state_change timestamptz, wait_event_type text, wait_event text, state text, "
                        "backend_xid xid, backend_xmin xid, query_id int8, query text, backend_type text", 12222)
def _pg_stat_activity(env):
    for a in env.engine.activity():
        yield (a.datid, a.datname, a.pid, a.leader_pid, a.usesysid, a.usename, a.application_name, a.client_addr,
               a.client_hostname, a.client_port, a.backend_start, a.xact_start, a.query_start, a.state_change,
               a.wait_event_type, a.wait_event, a.state, a.backend_xid, a.backend_xmin, a.query_id, a.query,
               a.backend_type)


@vt("pg_stat_database", "datid oid, datname name, numbackends int4, xact_commit int8, xact_rollback int8, "
                        "blks_read int8, blks_hit int8, tup_returned int8, tup_fetched int8, tup_inserted int8, "
                        "tup_updated int8, tup_deleted int8, conflicts int8, temp_files int8, temp_bytes int8, "
                        "deadlocks int8, checksum_failures int8, checksum_last_failure timestamptz, "
                        "blk_read_time float8, blk_write_time float8, session_time float8, "
                        "active_time float8, idle_in_transaction_time float8, sessions int8, "
                        "sessions_abandoned int8, sessions_fatal int8, sessions_killed int8, "
                        "stats_reset timestamptz", 12230)
def _pg_stat_database(env):
    for d in env.engine.database_stats():
        yield (d.datid, d.datname, d.numbackends, d.xact_commit, d.xact_rollback, d.blks_read, d.blks_hit,
               d.tup_returned, d.tup_fetched, d.tup_inserted, d.tup_updated, d.tup_deleted, d.conflicts,
               d.temp_files, d.temp_bytes, d.deadlocks, None, None, d.blk_read_time, d.blk_write_time, 0.0, 0.0,
               0.0, 0, 0, 0, 0, d.stats_reset)


_TABLE_STATS_COLS = ("relid oid, schemaname name, relname name, seq_scan int8, seq_tup_read int8, idx_scan int8, "
                     "idx_tup_fetch int8, n_tup_ins int8, n_tup_upd int8, n_tup_del int8, n_tup_hot_upd int8, "
                     "n_live_tup int8, n_dead_tup int8, n_mod_since_analyze int8, n_ins_since_vacuum int8, "
                     "last_vacuum timestamptz, last_autovacuum timestamptz, last_analyze timestamptz, "
                     "last_autoanalyze timestamptz, vacuum_count int8, autovacuum_count int8, analyze_count int8, "
                     "autoanalyze_count int8")


def _table_stats(env, which: str):
    for t in env.engine.table_stats():
        sys = t.schemaname in ("pg_catalog", "information_schema") or t.schemaname.startswith("pg_toast")
        if which == "user" and sys or which == "sys" and not sys:
            continue
        yield (t.relid, t.schemaname, t.relname, t.seq_scan, t.seq_tup_read, t.idx_scan, t.idx_tup_fetch,
               t.n_tup_ins, t.n_tup_upd, t.n_tup_del, t.n_tup_hot_upd, t.n_live_tup, t.n_dead_tup,
               t.n_mod_since_analyze, t.n_ins_since_vacuum, t.last_vacuum, t.last_autovacuum, t.last_analyze,
               t.last_autoanalyze, t.vacuum_count, t.autovacuum_count, t.analyze_count, t.autoanalyze_count)


vt("pg_stat_user_tables", _TABLE_STATS_COLS, 12240)(lambda env: _table_stats(env, "user"))
vt("pg_stat_all_tables", _TABLE_STATS_COLS, 12241)(lambda env: _table_stats(env, "all"))
vt("pg_stat_sys_tables", _TABLE_STATS_COLS, 12242)(lambda env: _table_stats(env, "sys"))


@vt("pg_statio_user_tables", "relid oid, schemaname name, relname name, heap_blks_read int8, heap_blks_hit int8, "
                             "idx_blks_read int8, idx_blks_hit int8")
def _pg_statio_user_tables(env):
    for t in env.engine.table_stats():
        yield (t.relid, t.schemaname, t.relname, 0, 0, 0, 0)


@vt("pg_stat_bgwriter", "checkpoints_timed int8, checkpoints_req int8, checkpoint_write_time float8, "
                        "checkpoint_sync_time float8, buffers_checkpoint int8, buffers_clean int8, "
                        "maxwritten_clean int8, buffers_backend int8, buffers_backend_fsync int8, "
                        "buffers_alloc int8, stats_reset timestamptz", 12250)
def _pg_stat_bgwriter(env):
    d = env.engine.bgwriter_stats()
    yield tuple(d.get(k) for k in ("checkpoints_timed", "checkpoints_req", "checkpoint_write_time",
                                   "checkpoint_sync_time", "buffers_checkpoint", "buffers_clean",
                                   "maxwritten_clean", "buffers_backend", "buffers_backend_fsync", "buffers_alloc",
                                   "stats_reset"))


@vt("pg_stat_checkpointer", "num_timed int8, num_requested int8, restartpoints_timed int8, "
                            "restartpoints_req int8, restartpoints_done int8, write_time float8, sync_time float8, "
                            "buffers_written int8, stats_reset timestamptz", 12251)
def _pg_stat_checkpointer(env):
    d = env.engine.checkpointer_stats()
    yield tuple(d.get(k) for k in ("num_timed", "num_requested", "restartpoints_timed", "restartpoints_req",
                                   "restartpoints_done", "write_time", "sync_time", "buffers_written",
                                   "stats_reset"))


@vt("pg_stat_wal", "wal_records int8, wal_fpi int8, wal_bytes numeric, wal_buffers_full int8, wal_write int8, "
                   "wal_sync int8, wal_write_time float8, wal_sync_time float8, stats_reset timestamptz", 12252)
def _pg_stat_wal(env):
    d = env.engine.wal_stats()
    from decimal import Decimal
    yield (d.get("wal_records"), d.get("wal_fpi"), Decimal(d.get("wal_bytes") or 0), d.get("wal_buffers_full"),
           d.get("wal_write"), d.get("wal_sync"), d.get("wal_write_time", 0.0), d.get("wal_sync_time", 0.0),
           d.get("stats_reset"))


@vt("pg_stat_archiver", "archived_count int8, last_archived_wal text, last_archived_time timestamptz, "
                        "failed_count int8, last_failed_wal text, last_failed_time timestamptz, "
                        "stats_reset timestamptz")
def _pg_stat_archiver(env):
    f = getattr(env.engine, "archiver_stats", None)
    d = f() if f is not None else {}
    yield tuple(d.get(k) for k in ("archived_count", "last_archived_wal", "last_archived_time", "failed_count",
                                   "last_failed_wal", "last_failed_time", "stats_reset"))


@vt("pg_stat_user_indexes", "relid oid, indexrelid oid, schemaname name, relname name, indexrelname name, "
                            "idx_scan int8, idx_tup_read int8, idx_tup_fetch int8")
def _pg_stat_user_indexes(env):
    for r in _rels(env, "r"):
        for i in r.indexes:
            yield (r.oid, i.oid, r.schema, r.name, i.name, 0, 0, 0)


@vt("pg_locks", "locktype text, database oid, relation oid, page int4, tuple int2, virtualxid text, "
                "transactionid xid, classid oid, objid oid, objsubid int2, virtualtransaction text, pid int4, "
                "mode text, granted bool, fastpath bool, waitstart timestamptz")
def _pg_locks(env):
    f = getattr(env.engine, "locks", None)
    return f() if f is not None else []


# ----------------------------------------------------------------------------- information_schema


@vt("tables", "table_catalog name, table_schema name, table_name name, table_type text, "
              "self_referencing_column_name name, reference_generation text, user_defined_type_catalog name, "
              "user_defined_type_schema name, user_defined_type_name name, is_insertable_into text, "
              "is_typed text, commit_action text", schema="information_schema")
def _is_tables(env):
    for r in _rels(env, "rvmpf"):
        yield (env.database, r.schema, r.name, {"r": "BASE TABLE", "v": "VIEW", "p": "BASE TABLE",
                                                 "f": "FOREIGN"}.get(r.kind, "BASE TABLE"),
               None, None, None, None, None, "YES", "NO", None)


@vt("columns", "table_catalog name, table_schema name, table_name name, column_name name, ordinal_position int4, "
               "column_default text, is_nullable text, data_type text, character_maximum_length int4, "
               "character_octet_length int4, numeric_precision int4, numeric_precision_radix int4, "
               "numeric_scale int4, datetime_precision int4, udt_catalog name, udt_schema name, udt_name name, "
               "is_identity text, is_generated text, is_updatable text", schema="information_schema")
def _is_columns(env):
    for r in _rels(env, "rvmpf"):
        pos = 0
        for c in r.columns:
            if c.dropped:
                continue
            pos += 1
            dt = format_type(c.type_oid)
            if T.element_of(c.type_oid):
                dt = "ARRAY"
            maxlen = c.typmod - 4 if c.type_oid in (T.VARCHAR, T.BPCHAR) and c.typmod >= 4 else None
            prec = {T.INT2: 16, T.INT4: 32, T.INT8: 64, T.FLOAT4: 24, T.FLOAT8: 53}.get(c.type_oid)
            radix = 2 if prec else None
            scale = 0 if c.type_oid in (T.INT2, T.INT4, T.INT8) else None
            if c.type_oid == T.NUMERIC:
                ps = numeric_precision_scale(c.typmod)
                if ps:
                    prec, scale = ps
                radix = 10
            ti = TYPES.get(c.type_oid)
            yield (env.database, r.schema, r.name, c.name, pos, c.default, "NO" if c.not_null else "YES", dt,
                   maxlen, maxlen * 4 if maxlen else (1073741824 if c.type_oid == T.TEXT else None), prec, radix,
                   scale, 6 if c.type_oid in (T.TIMESTAMP, T.TIMESTAMPTZ, T.TIME, T.DATE) else None,
                   env.database, "pg_catalog", ti.name if ti else str(c.type_oid), "NO", "NEVER", "YES")


@vt("schemata", "catalog_name name, schema_name name, schema_owner name", schema="information_schema")
def _is_schemata(env):
    for _oid, name, _owner in env.namespaces():
        yield (env.database, name, "postgres")


# ----------------------------------------------------------------------------- catalog functions


def indexdef(env: Any, rel: Any, index: Any) -> str:
    opts = list(getattr(index, "options", ()) or ()) + [0] * len(index.columns)
    parts = []
    for c, o in zip(index.columns, opts):
        t = quote_ident(rel.columns[c].name)
        if o & 1:
            t += " DESC" if o & 2 else " DESC NULLS LAST"
        elif o & 2:
            t += " NULLS FIRST"
        parts.append(t)
    cols = ", ".join(parts)
    return (f"CREATE {'UNIQUE ' if index.unique else ''}INDEX {quote_ident(index.name)} ON "
            f"{rel.schema}.{quote_ident(rel.name)} USING btree ({cols})")


def _find_index(env: Any, oid: int):
    for r in _rels(env, "r"):
        for i in r.indexes:
            if i.oid == oid:
                return r, i
    return None, None


def _reg(name: str, args: str, ret: str, f: Callable, strict: bool = True, volatile: bool = False) -> None:
    F.fn(name, args, ret, strict=strict, env=True, volatile=volatile)(f)


SERVER_VERSION_STR = ("PostgreSQL 15.18 (pgbundle) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14+deb12u1) "
                      "12.2.0, 64-bit")

_reg("version", "", "text", lambda env: SERVER_VERSION_STR)
_reg("current_database", "", "name", lambda env: env.database)
_reg("current_schema", "", "name", lambda env: env.current_schema())
_reg("current_user|session_user|user", "", "name", lambda env: env.user)
_reg("current_schemas", "bool", "name[]",
     lambda env, implicit: (["pg_catalog"] if implicit else []) + env.search_path())
_reg("pg_backend_pid", "", "int4", lambda env: env.session.pid)
_reg("inet_server_addr", "", "text", lambda env: "127.0.0.1")
_reg("inet_server_port", "", "int4", lambda env: None, strict=False)
_reg("inet_client_addr", "", "text", lambda env: "127.0.0.1")


def _current_setting(env, name, missing_ok=False):
    try:
        low = name.lower()
        if low == "transaction_isolation":
            return env.engine.isolation.value
        return env.settings.get(name)
    except PgError:
        if missing_ok:
            return None
        raise


_reg("current_setting", "text", "text", lambda env, n: _current_setting(env, n))
_reg("current_setting", "text,bool", "text", lambda env, n, m: _current_setting(env, n, m))


def _set_config(env, name, value, is_local):
    if name is None:
        raise PgError("22004", "SET requires parameter name")
    env.settings.set(name, value, bool(is_local))
    return env.settings.get(name)


_reg("set_config", "text,text,bool", "text", _set_config, strict=False, volatile=True)


def _visible(env, oid):
    rel = env.storage.relation_by_oid(oid)
    if rel is None:
        return oid in OIDS
    return rel.schema in env.search_path() or rel.schema == "pg_catalog"


_reg("pg_table_is_visible", "oid", "bool", _visible)
for _vis in ("pg_type_is_visible", "pg_function_is_visible", "pg_collation_is_visible", "pg_opclass_is_visible",
             "pg_operator_is_visible", "pg_conversion_is_visible", "pg_statistics_obj_is_visible",
             "pg_ts_config_is_visible", "pg_opfamily_is_visible"):
    _reg(_vis, "oid", "bool", lambda env, oid: True)
_reg("format_type", "oid,int4", "text",
     lambda env, oid, typmod: format_type(oid, -1 if typmod is None else typmod, env.type_names()) if oid is not None
     else None, strict=False)


def _userbyid(env, oid):
    names = _owner_names(env)
    return names.get(oid, f"unknown (OID={oid})")


_reg("pg_get_userbyid", "oid", "name", _userbyid)
_reg("pg_encoding_to_char", "int4", "name", lambda env, e: {6: "UTF8", 0: "SQL_ASCII"}.get(e, ""))
_reg("pg_char_to_encoding", "name", "int4", lambda env, e: 6 if e.upper() in ("UTF8", "UTF-8") else -1)
def _get_expr_pretty(env, e, reloid, pretty):
    if not pretty or e is None:
        return e
    return pretty_text(env, e, env.storage.relation_by_oid(reloid) if reloid else None, default=True)


_reg("pg_get_expr", "pg_node_tree,oid", "text", lambda env, e, rel: e)
_reg("pg_get_expr", "pg_node_tree,oid,bool", "text", _get_expr_pretty)


def _get_indexdef(env, oid, col=0, pretty=False):
    rel, idx = _find_index(env, oid)
    if idx is None:
        return None
    if col:
        return rel.columns[idx.columns[col - 1]].name if col <= len(idx.columns) else ""
    return indexdef(env, rel, idx)


_reg("pg_get_indexdef", "oid", "text", lambda env, oid: _get_indexdef(env, oid))
_reg("pg_get_indexdef", "oid,int4,bool", "text", _get_indexdef)


def _constraintdef(env, oid, pretty=False):
    for r in _rels(env, "r"):
        for c in r.constraints:
            if c.oid == oid:
                cols = ", ".join(quote_ident(r.columns[k].name) for k in c.columns)
                if c.kind == "p":
                    return f"PRIMARY KEY ({cols})"
                if c.kind == "u":
                    return f"UNIQUE ({cols})"
                if c.kind == "c":
                    e = c.expr or ""
                    if pretty:
                        return f"CHECK ({pretty_text(env, e, r)})"
                    return f"CHECK ({e})" if e.startswith("(") and e.endswith(")") else f"CHECK (({e}))"
                if c.kind == "f":
                    ref = env.storage.relation_by_oid(c.ref_table)
                    if ref is None:
                        return None
                    rcols = ", ".join(quote_ident(ref.columns[k].name) for k in c.ref_columns)
                    acts = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
                    out = f"FOREIGN KEY ({cols}) REFERENCES {quote_ident(ref.name)}({rcols})"
                    if c.on_update in acts:
                        out += f" ON UPDATE {acts[c.on_update]}"
                    if c.on_delete in acts:
                        out += f" ON DELETE {acts[c.on_delete]}"
                    return out
                return c.expr or ""
    return None


_reg("pg_get_constraintdef", "oid", "text", lambda env, oid: _constraintdef(env, oid))
_reg("pg_get_constraintdef", "oid,bool", "text", _constraintdef)
_CLASSOIDS = {"pg_class": 1259, "pg_namespace": 2615, "pg_constraint": 2606, "pg_type": 1247, "pg_proc": 1255,
              "pg_extension": 3079, "pg_database": 1262, "pg_authid": 1260}
_reg("obj_description", "oid,name", "text",
     lambda env, o, c: None if o is None or c is None else _description(env, o, _CLASSOIDS.get(c, 0)), strict=False)
_reg("obj_description", "oid", "text", lambda env, o: None if o is None else _description(env, o, 1259),
     strict=False)
_reg("col_description", "oid,int4", "text",
     lambda env, o, c: None if o is None or c is None else _description(env, o, 1259, c), strict=False)
_reg("shobj_description", "oid,name", "text", lambda env, o, c: None, strict=False)
_reg("pg_get_statisticsobjdef_columns", "oid", "text", lambda env, o: None, strict=False)
_reg("pg_relation_is_publishable", "regclass", "bool", lambda env, o: False)
_reg("pg_get_partkeydef", "oid", "text", lambda env, o: None, strict=False)
_reg("pg_get_viewdef", "oid", "text", lambda env, o: _viewdef(env, o))
_reg("pg_get_viewdef", "oid,bool", "text", lambda env, o, p: _viewdef(env, o))
_reg("pg_get_viewdef", "text", "text", lambda env, name: _viewdef(env, env.reg_in(T.REGCLASS, name)))
_reg("pg_get_triggerdef", "oid,bool", "text", lambda env, o, p: None, strict=False)
_reg("pg_get_function_identity_arguments", "oid", "text", lambda env, o: "")
_reg("pg_get_function_result", "oid", "text", lambda env, o: "")
_reg("pg_get_function_arguments", "oid", "text", lambda env, o: "")


def _to_reg(t):
    def f(env, name):
        try:
            return env.reg_in(t, name)
        except PgError:
            return None
    return f


_reg("to_regclass", "text", "regclass", _to_reg(T.REGCLASS))
_reg("to_regtype", "text", "regtype", _to_reg(T.REGTYPE))
_reg("to_regnamespace", "text", "regnamespace", _to_reg(T.REGNAMESPACE))
_reg("to_regrole", "text", "regrole", _to_reg(T.REGROLE))
_reg("to_regproc", "text", "regproc", _to_reg(T.REGPROC))


def _relsize(env, oid, fork="main"):
    rel = env.storage.relation_by_oid(oid)
    if rel is None:
        return None
    f = getattr(env.engine, "relation_size", None)
    if f is not None:
        try:
            return f(oid)
        except Exception:
            pass
    return rel.relpages * 8192


_reg("pg_relation_size", "regclass", "int8", lambda env, o: _relsize(env, o))
_reg("pg_relation_size", "regclass,text", "int8", _relsize)
_reg("pg_table_size", "regclass", "int8", lambda env, o: _relsize(env, o))
_reg("pg_total_relation_size", "regclass", "int8", lambda env, o: _relsize(env, o))
_reg("pg_indexes_size", "regclass", "int8", lambda env, o: 0)
_reg("pg_database_size", "name", "int8", lambda env, n: 8 * 1024 * 1024)
_reg("pg_database_size", "oid", "int8", lambda env, n: 8 * 1024 * 1024)


def _size_pretty(env, n):
    n = int(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 10 * 1024 or unit == "TB":
            return f"{n} {unit}"
        n = (n + 512) // 1024 if n >= 0 else -((-n + 512) // 1024)
    return f"{n} PB"


_reg("pg_size_pretty", "int8", "text", _size_pretty)
_reg("pg_size_pretty", "numeric", "text", _size_pretty)
_reg("txid_current|pg_current_xact_id", "", "int8", lambda env: env.engine.current_xid(True), volatile=True)
_reg("txid_current_if_assigned|pg_current_xact_id_if_assigned", "", "int8",
     lambda env: env.engine.current_xid(False) or None, strict=False, volatile=True)
_reg("txid_current_snapshot|pg_current_snapshot", "", "text", lambda env: str(env.engine.snapshot()), volatile=True)
_reg("pg_is_in_recovery", "", "bool", lambda env: env.engine.is_in_recovery())
_reg("pg_postmaster_start_time", "", "timestamptz", lambda env: env.engine.postmaster_start_time())
_reg("pg_conf_load_time", "", "timestamptz", lambda env: env.engine.postmaster_start_time())
_reg("pg_current_wal_lsn|pg_current_wal_insert_lsn|pg_current_wal_flush_lsn", "", "text",
     lambda env: str(env.engine.wal_stats().get("lsn", "0/0")))
_reg("pg_cancel_backend", "int4", "bool", lambda env, pid: env.engine.cancel_backend(pid), volatile=True)
_reg("pg_terminate_backend", "int4", "bool", lambda env, pid: env.engine.terminate_backend(pid), volatile=True)
_reg("pg_reload_conf", "", "bool", lambda env: True, volatile=True)
_reg("pg_jit_available", "", "bool", lambda env: False)
for _n, _a in (("has_table_privilege", "text,text"), ("has_table_privilege", "oid,text"),
               ("has_table_privilege", "name,text,text"), ("has_table_privilege", "name,oid,text"),
               ("has_schema_privilege", "text,text"), ("has_schema_privilege", "name,text,text"),
               ("has_schema_privilege", "oid,text"), ("has_database_privilege", "text,text"),
               ("has_database_privilege", "name,text,text"), ("has_column_privilege", "oid,int2,text"),
               ("has_sequence_privilege", "text,text"), ("has_function_privilege", "oid,text"),
               ("pg_has_role", "name,text"), ("pg_has_role", "name,name,text"), ("pg_has_role", "oid,text")):
    _reg(_n, _a, "bool", lambda env, *a: True)


def _adv(kind):
    def f(env, *keys):
        key = keys[0] if len(keys) == 1 else (keys[0] << 32) | (keys[1] & 0xFFFFFFFF)
        eng = env.engine
        shared = "shared" in kind
        xact = "xact" in kind
        if kind.startswith("unlock"):
            return eng.advisory_unlock(key, shared=shared)
        ok = eng.advisory_lock(key, shared=shared, session=not xact, wait=not kind.startswith("try"))
        return ok if kind.startswith("try") else None
    return f


for _name, _kind_ in (("pg_advisory_lock", "lock"), ("pg_advisory_lock_shared", "lock_shared"),
                      ("pg_advisory_xact_lock", "lock_xact"), ("pg_advisory_xact_lock_shared", "lock_xact_shared"),
                      ("pg_try_advisory_lock", "try"), ("pg_try_advisory_lock_shared", "try_shared"),
                      ("pg_try_advisory_xact_lock", "try_xact"), ("pg_advisory_unlock", "unlock"),
                      ("pg_advisory_unlock_shared", "unlock_shared")):
    _ret = "bool" if _kind_.startswith(("try", "unlock")) else "void"
    _reg(_name, "int8", _ret, _adv(_kind_), volatile=True)
    _reg(_name, "int4,int4", _ret, _adv(_kind_), volatile=True)


def _unlock_all(env):
    f = getattr(env.engine, "advisory_unlock_all", None)
    if f is not None:
        try:
            f()
        except NotImplementedError:
            pass
    return None


_reg("pg_advisory_unlock_all", "", "void", _unlock_all, strict=False, volatile=True)


# sequences
def _seq(env, oid):
    rel = env.storage.relation_by_oid(oid)
    if rel is None or rel.kind != "S":
        raise PgError("42809", f'"{env.reg_out(T.REGCLASS, oid)}" is not a sequence')
    return rel


_reg("nextval", "regclass", "int8", lambda env, oid: env.engine.nextval(_seq(env, oid).oid), volatile=True)
_reg("currval", "regclass", "int8", lambda env, oid: env.engine.currval(_seq(env, oid).oid), volatile=True)
_reg("setval", "regclass,int8", "int8", lambda env, oid, v: env.engine.setval(_seq(env, oid).oid, v), volatile=True)
_reg("setval", "regclass,int8,bool", "int8",
     lambda env, oid, v, c: env.engine.setval(_seq(env, oid).oid, v, c), volatile=True)
_reg("lastval", "", "int8", lambda env: env.engine.lastval(), volatile=True)


def split_qualified_name(s: str) -> tuple[str | None, str]:
    """``a.b`` / ``"A".b`` as (schema or None, name): unquoted parts folded to lower case,
    quoted ones kept (PostgreSQL's stringToQualifiedNameList)."""
    parts = []
    cur = ""
    q = False
    i = 0
    while i < len(s):
        c = s[i]
        if c == '"':
            if q and i + 1 < len(s) and s[i + 1] == '"':
                cur += '"'
                i += 2
                continue
            q = not q
        elif c == "." and not q:
            parts.append(cur)
            cur = ""
        else:
            cur += c if q else c.lower()
        i += 1
    parts.append(cur)
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, parts[0]


def _serial_seq(env, table, column):
    schema, name = split_qualified_name(table)
    rel = env.storage.lookup_relation(schema, name)
    if rel is None:
        raise PgError("42P01", f'relation "{table}" does not exist')
    i = rel.column_index(column)
    if i < 0:
        raise PgError("42703", f'column "{column}" of relation "{name}" does not exist')
    d = rel.columns[i].default or ""
    import re
    m = re.match(r"nextval\('([^']+)'", d)
    if not m:
        return None
    seq = m.group(1)
    return seq if "." in seq else f"{rel.schema}.{seq}"


_reg("pg_get_serial_sequence", "text,text", "text", _serial_seq)


# ----------------------------------------------------------------------------- analysis-time specials

def _pg_typeof(an: Any, args: list, ps: Any, loc: int):
    if len(args) != 1:
        raise PgError("42883", "function pg_typeof does not exist")
    t = args[0].type
    return Const(T.TEXT if t == T.UNKNOWN else t, T.REGTYPE)


def _array_special(name: str):
    return None


def _enum_special(kind: str):
    def special(an: Any, args: list, ps: Any, loc: int):
        env = an.env
        types = [a.type for a in args]
        if not args or not env.is_enum(types[0]) or (kind == "range" and len(args) == 2 and types[1] not in (
                types[0], T.UNKNOWN)) or len(args) > (2 if kind == "range" else 1):
            shown = ", ".join(format_type(t, -1, env.type_names()) or "unknown" for t in types)
            raise PgError("42883", f"function enum_{kind}({shown}) does not exist", position=loc + 1 if loc >= 0
                          else None, hint="No function matches the given name and argument types. You might need "
                                          "to add explicit type casts.")
        et = types[0]
        arr = env.user_types()[et][2].get("_array") or T.TEXT_ARRAY

        def labels():
            return [EnumLabel(x, et) for x in env.user_types()[et][2]["labels"]]
        if kind == "first":
            return Func("enum_first", lambda _x: labels()[0], (args[0],), et, strict=False, volatile=True)
        if kind == "last":
            return Func("enum_last", lambda _x: labels()[-1], (args[0],), et, strict=False, volatile=True)
        if len(args) == 1:
            return Func("enum_range", lambda _x: labels(), (args[0],), arr, strict=False, volatile=True)
        b = an.coerce(args[1], et, -1, "i", "")

        def rng(lo, hi):
            labs = labels()
            i = 0 if lo is None else labs.index(lo)
            j = len(labs) - 1 if hi is None else labs.index(hi)
            return labs[i: j + 1]
        return Func("enum_range", rng, (args[0], b), arr, strict=False, volatile=True)
    return special


SPECIAL: dict[str, Callable] = {"pg_typeof": _pg_typeof, "enum_first": _enum_special("first"),
                                "enum_last": _enum_special("last"), "enum_range": _enum_special("range")}

__all__ = ["virtual_table", "SPECIAL", "VirtualTable", "Func", "_dt"]


@F.srf("pg_partition_ancestors", "regclass", "regclass")
def _pg_partition_ancestors(oid: int):
    return [oid]


@F.fn("pg_tablespace_location", "oid", "text")
def _pg_tablespace_location(oid: int) -> str:
    return ""
