"""pgbundle.shared: what the pooler and the server both use.

Nothing here opens sockets or touches shared memory; the one trio adapter
lives in :mod:`pgbundle.shared.io`.
"""
