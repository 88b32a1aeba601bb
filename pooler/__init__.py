"""pgbundle.pooler: the pgbouncer-shaped connection pooler on trio."""
