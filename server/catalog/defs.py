"""The system catalogs: their OIDs, columns (PostgreSQL 15 names and types) and the
fixed objects initdb creates.

Catalogs are ordinary heap relations (relfilenode = oid) in every database, except the
shared ones (pg_database, pg_authid) which live once under ``global/``.  A catalog's
own pg_class/pg_attribute rows are written by initdb from these definitions, so
``SELECT * FROM pg_class`` works like any table.  To add a catalog: append a
:class:`CatalogDef` (and bump nothing else: initdb writes it into new clusters).
"""

from __future__ import annotations

from dataclasses import dataclass

OID, NAME, INT2, INT4, INT8, BOOL, CHAR, TEXT, FLOAT4, XID = 26, 19, 21, 23, 20, 16, 18, 25, 700, 28
INT2VECTOR, OIDVECTOR, INT2ARR, TEXTARR, OIDARR, ACLARR, NODETREE, REGPROC, TSTZ = 22, 30, 1005, 1009, 1028, 1034, \
    194, 24, 1184
ANYARRAY = 2277

PG_CATALOG_NS = 11
PUBLIC_NS = 2200
INFORMATION_SCHEMA_NS = 13000
TOAST_NS = 99

BOOTSTRAP_SUPERUSER = 10
TEMPLATE1_OID = 1
TEMPLATE0_OID = 4
POSTGRES_OID = 5
FIRST_NORMAL_OID = 16384


@dataclass(frozen=True)
class CatalogDef:
    name: str
    oid: int
    columns: tuple[tuple[str, int], ...]
    shared: bool = False
    rowtype: int = 0


def _c(spec: str) -> tuple[tuple[str, int], ...]:
    types = {"oid": OID, "name": NAME, "int2": INT2, "int4": INT4, "int8": INT8, "bool": BOOL, "char": CHAR,
             "text": TEXT, "float4": FLOAT4, "xid": XID, "int2vector": INT2VECTOR, "oidvector": OIDVECTOR,
             "int2[]": INT2ARR, "text[]": TEXTARR, "oid[]": OIDARR, "aclitem[]": ACLARR, "pg_node_tree": NODETREE,
             "regproc": REGPROC, "timestamptz": TSTZ, "anyarray": ANYARRAY}
    out = []
    for part in spec.split(","):
        n, t = part.split()
        out.append((n, types[t]))
    return tuple(out)


PG_DATABASE = CatalogDef("pg_database", 1262, _c(
    "oid oid, datname name, datdba oid, encoding int4, datlocprovider char, datistemplate bool, datallowconn bool, "
    "datconnlimit int4, datfrozenxid xid, datminmxid xid, dattablespace oid, datcollate text, datctype text, "
    "daticulocale text, datcollversion text, datacl aclitem[]"), shared=True, rowtype=1248)
PG_AUTHID = CatalogDef("pg_authid", 1260, _c(
    "oid oid, rolname name, rolsuper bool, rolinherit bool, rolcreaterole bool, rolcreatedb bool, "
    "rolcanlogin bool, rolreplication bool, rolbypassrls bool, rolconnlimit int4, rolpassword text, "
    "rolvaliduntil timestamptz"), shared=True, rowtype=2842)
PG_NAMESPACE = CatalogDef("pg_namespace", 2615, _c("oid oid, nspname name, nspowner oid, nspacl aclitem[]"))
PG_CLASS = CatalogDef("pg_class", 1259, _c(
    "oid oid, relname name, relnamespace oid, reltype oid, reloftype oid, relowner oid, relam oid, "
    "relfilenode oid, reltablespace oid, relpages int4, reltuples float4, relallvisible int4, reltoastrelid oid, "
    "relhasindex bool, relisshared bool, relpersistence char, relkind char, relnatts int2, relchecks int2, "
    "relhasrules bool, relhastriggers bool, relhassubclass bool, relrowsecurity bool, relforcerowsecurity bool, "
    "relispopulated bool, relreplident char, relispartition bool, relrewrite oid, relfrozenxid xid, "
    "relminmxid xid, relacl aclitem[], reloptions text[], relpartbound pg_node_tree"), rowtype=83)
PG_ATTRIBUTE = CatalogDef("pg_attribute", 1249, _c(
    "attrelid oid, attname name, atttypid oid, attstattarget int4, attlen int2, attnum int2, attndims int4, "
    "attcacheoff int4, atttypmod int4, attbyval bool, attalign char, attstorage char, attcompression char, "
    "attnotnull bool, atthasdef bool, atthasmissing bool, attidentity char, attgenerated char, "
    "attisdropped bool, attislocal bool, attinhcount int4, attcollation oid, attacl aclitem[], "
    "attoptions text[], attfdwoptions text[], attmissingval anyarray"), rowtype=75)
PG_ATTRDEF = CatalogDef("pg_attrdef", 2604, _c("oid oid, adrelid oid, adnum int2, adbin pg_node_tree"))
PG_INDEX = CatalogDef("pg_index", 2610, _c(
    "indexrelid oid, indrelid oid, indnatts int2, indnkeyatts int2, indisunique bool, "
    "indnullsnotdistinct bool, indisprimary bool, indisexclusion bool, indimmediate bool, indisclustered bool, "
    "indisvalid bool, indcheckxmin bool, indisready bool, indislive bool, indisreplident bool, "
    "indkey int2vector, indcollation oidvector, indclass oidvector, indoption int2vector, "
    "indexprs pg_node_tree, indpred pg_node_tree"))
PG_CONSTRAINT = CatalogDef("pg_constraint", 2606, _c(
    "oid oid, conname name, connamespace oid, contype char, condeferrable bool, condeferred bool, "
    "convalidated bool, conrelid oid, contypid oid, conindid oid, conparentid oid, confrelid oid, "
    "confupdtype char, confdeltype char, confmatchtype char, conislocal bool, coninhcount int4, "
    "connoinherit bool, conkey int2[], confkey int2[], conpfeqop oid[], conppeqop oid[], conffeqop oid[], "
    "confdelsetcols int2[], conexclop oid[], conbin pg_node_tree"))
PG_SEQUENCE = CatalogDef("pg_sequence", 2224, _c(
    "seqrelid oid, seqtypid oid, seqstart int8, seqincrement int8, seqmax int8, seqmin int8, seqcache int8, "
    "seqcycle bool"))
PG_TYPE = CatalogDef("pg_type", 1247, _c(
    "oid oid, typname name, typnamespace oid, typowner oid, typlen int2, typbyval bool, typtype char, "
    "typcategory char, typispreferred bool, typisdefined bool, typdelim char, typrelid oid, typsubscript regproc, "
    "typelem oid, typarray oid, typinput regproc, typoutput regproc, typreceive regproc, typsend regproc, "
    "typmodin regproc, typmodout regproc, typanalyze regproc, typalign char, typstorage char, typnotnull bool, "
    "typbasetype oid, typtypmod int4, typndims int4, typcollation oid, typdefaultbin pg_node_tree, "
    "typdefault text, typacl aclitem[]"), rowtype=71)
PG_ENUM = CatalogDef("pg_enum", 3501, _c("oid oid, enumtypid oid, enumsortorder float4, enumlabel name"))
PG_DESCRIPTION = CatalogDef("pg_description", 2609, _c(
    "objoid oid, classoid oid, objsubid int4, description text"))
PG_DEPEND = CatalogDef("pg_depend", 2608, _c(
    "classid oid, objid oid, objsubid int4, refclassid oid, refobjid oid, refobjsubid int4, deptype char"))

PG_REWRITE = CatalogDef("pg_rewrite", 2618, _c(
    "oid oid, rulename name, ev_class oid, ev_type char, ev_enabled char, is_instead bool, ev_qual pg_node_tree, "
    "ev_action pg_node_tree"))  # ev_action: a view's SELECT as SQL text

PG_STATISTIC = CatalogDef("pg_statistic", 2619, _c(
    "starelid oid, staattnum int2, stainherit bool, stanullfrac float4, stawidth int4, stadistinct float4, "
    "stavalues text"))  # stavalues: JSON {"mcv": [text...], "mcf": [...], "hist": [text...], "corr": x}

CATALOGS: tuple[CatalogDef, ...] = (PG_DATABASE, PG_AUTHID, PG_NAMESPACE, PG_CLASS, PG_ATTRIBUTE, PG_ATTRDEF,
                                    PG_INDEX, PG_CONSTRAINT, PG_SEQUENCE, PG_TYPE, PG_ENUM, PG_DESCRIPTION,
                                    PG_DEPEND, PG_REWRITE, PG_STATISTIC)
BY_NAME = {c.name: c for c in CATALOGS}
BY_OID = {c.oid: c for c in CATALOGS}

# attlen/attbyval/attalign of the types catalogs use (pg_attribute fidelity)
TYPE_LAYOUT: dict[int, tuple[int, bool, str]] = {
    16: (1, True, "c"), 18: (1, True, "c"), 19: (64, False, "c"), 20: (8, True, "d"), 21: (2, True, "s"),
    23: (4, True, "i"), 24: (4, True, "i"), 25: (-1, False, "i"), 26: (4, True, "i"), 28: (4, True, "i"),
    700: (4, True, "i"), 701: (8, True, "d"), 1082: (4, True, "i"), 1114: (8, True, "d"), 1184: (8, True, "d"),
    1700: (-1, False, "i"), 17: (-1, False, "i"), 1042: (-1, False, "i"), 1043: (-1, False, "i"),
    1083: (8, True, "d"), 1186: (16, False, "d"), 2950: (16, False, "c"), 22: (-1, False, "i"),
    30: (-1, False, "i"), 194: (-1, False, "i"),
}


def type_layout(type_oid: int) -> tuple[int, bool, str]:
    return TYPE_LAYOUT.get(type_oid, (-1, False, "i"))
