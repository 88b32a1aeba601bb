"""pgbundle.server: the PostgreSQL-compatible multi-process server (postmaster, backends, storage)."""
