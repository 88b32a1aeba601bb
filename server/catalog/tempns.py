"""Temporary relations: the session's temp namespace (PostgreSQL's namespace.c, temp part).

``CREATE TEMP TABLE t`` (or ``CREATE TABLE pg_temp.t``) creates ``t`` in the schema
``pg_temp_<N>``, N = the backend's slot number + 1 (PostgreSQL's proc number): slots are
unique among live backends, so no two sessions share one.  The schema is created the first
time a session needs it and kept afterwards (as PostgreSQL does); relations a crashed
predecessor left in it are dropped then.

Name resolution: an unqualified relation name is looked up in the session's temp schema
first (before pg_catalog and the search_path, as PostgreSQL does when ``pg_temp`` is not
listed explicitly); ``pg_temp.x`` names it explicitly.  Other sessions see the schema and
its relations in the catalogs but never resolve unqualified names to them.

The relations are ordinary heap relations with ``relpersistence = 't'``; they go at session
end (:func:`drop_all`, called by the backend), at ``DISCARD TEMP`` / ``DISCARD ALL``, or
with an explicit DROP.  The per-session state is one attribute on the engine,
``_temp_ns_used`` (this session has created or cleaned its temp schema).
"""

from __future__ import annotations

from typing import Any

from pgbundle.server.errors import PgError

ALIAS = "pg_temp"


def schema_name(engine: Any) -> str:
    return f"pg_temp_{engine.procs.my + 1}"


def used(engine: Any) -> bool:
    return bool(getattr(engine, "_temp_ns_used", False))


def namespace(engine: Any) -> int | None:
    """Oid of this session's temp schema once the session has used it (pg_my_temp_schema)."""
    if not used(engine):
        return None
    return engine.catalog().ns_by_name.get(schema_name(engine))


def resolve_schema(engine: Any, schema: str) -> str:
    """``pg_temp`` → this session's temp schema name; other names unchanged."""
    return schema_name(engine) if schema == ALIAS else schema


def lookup(engine: Any, name: str) -> Any:
    """The session's temporary relation ``name`` (unqualified lookups try this first)."""
    if not used(engine):
        return None
    cache = engine.catalog()
    ns = cache.ns_by_name.get(schema_name(engine))
    if ns is None:
        return None
    oid = cache.by_name.get((ns, name))
    return cache.relations.get(oid) if oid is not None else None


def creation_namespace(engine: Any) -> tuple[int, str]:
    """The temp schema to create a relation in, made (or cleaned of leftovers) on first use."""
    name = schema_name(engine)
    if engine.procs.my < 0:
        raise PgError("0A000", "cannot create temporary tables outside a client session")
    ns = engine.catalog().ns_by_name.get(name)
    if ns is None:
        ns = engine.create_namespace(name)
    elif not used(engine):
        _drop_in(engine, ns)  # a backend that died in this slot left them
    engine._temp_ns_used = True
    return ns, name


def relations(engine: Any) -> list[Any]:
    ns = namespace(engine)
    if ns is None:
        return []
    return [r for r in engine.catalog().relations.values() if r.namespace_oid == ns]


def has_relations(engine: Any) -> bool:
    """Does the session hold temporary relations?  (cheap when it never made any)"""
    if not used(engine):
        return False
    return bool(relations(engine))


def drop_all(engine: Any) -> int:
    """DROP every relation of the session's temp schema (in the running transaction)."""
    ns = namespace(engine)
    if ns is None:
        return 0
    return _drop_in(engine, ns)


def _drop_in(engine: Any, ns: int) -> int:
    order = {"v": 0, "r": 1, "p": 1, "S": 2, "i": 3}
    n = 0
    while True:
        rels = [r for r in engine.catalog().relations.values() if r.namespace_oid == ns]
        if not rels:
            return n
        rels.sort(key=lambda r: order.get(getattr(r.kind, "value", r.kind), 4))
        engine.drop_relation(rels[0].oid, cascade=True)
        n += 1


def drop_at_exit(engine: Any) -> None:
    """Session end: drop the temporary relations in a transaction of their own."""
    if not used(engine) or engine.procs.my < 0:
        return
    try:
        if engine.in_transaction:
            engine.rollback()
        engine.start_statement()
        drop_all(engine)
        engine.commit()
    except Exception:
        try:
            engine.rollback()
        except Exception:
            pass
        raise
