"""pgbundle.shared: what the pooler and the server both use.

The protocol (sans-IO: message objects, framing, codec), authentication, SQLSTATEs,
quoting and value types touch no socket; the one I/O layer, sockets driven by trio,
is :mod:`pgbundle.shared.netio`.
"""
