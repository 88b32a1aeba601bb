"""SQL surface of TLS: the ``pg_stat_ssl`` view and the sslinfo functions.

* ``pg_stat_ssl`` -- one row per backend with a client connection (as PostgreSQL 15:
  ``pg_stat_get_activity`` rows whose client_port is not null), from the shared proc
  array (:mod:`pgbundle.server.storage.procarray`): ``ssl`` false and the rest NULL for a
  plain connection; the DNs in OpenSSL's ``/O=.../CN=...`` form and every string cut to 63
  bytes, as PostgreSQL's fixed-size fields are.
* ``ssl_is_used()``, ``ssl_version()``, ``ssl_cipher()``, ``ssl_client_cert_present()``,
  ``ssl_client_serial()``, ``ssl_client_dn()``, ``ssl_issuer_dn()`` -- contrib/sslinfo's
  functions about this session's own connection (uncut).  PostgreSQL needs
  ``CREATE EXTENSION sslinfo`` first; this server has no extensions, so they always exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

from pgbundle.server.catalog.system_views import vt
from pgbundle.server.utils.adt import functions as F

if TYPE_CHECKING:
    from pgbundle.server.utils.session_env import SessionEnv
    from pgbundle.shared.tls import ConnTls


@vt("pg_stat_ssl", "pid int4, ssl bool, version text, cipher text, bits int4, client_dn text, "
                   "client_serial numeric, issuer_dn text", 12262)
def _pg_stat_ssl(env: SessionEnv) -> Iterator[tuple]:
    for e in env.engine.procs.entries():
        if not e["client_port"] and e["client_addr"] != "local":
            continue  # no client connection (an auxiliary process, a worker)
        serial = e["ssl_client_serial"]
        yield (e["pid"], e["ssl"], e["ssl_version"], e["ssl_cipher"], e["ssl_bits"], e["ssl_client_dn"],
               Decimal(serial) if serial else None, e["ssl_issuer_dn"])


def _mine(env: SessionEnv) -> ConnTls | None:
    return env.engine.procs.my_tls


F.fn("ssl_is_used", "", "bool", env=True)(lambda env: _mine(env) is not None)
F.fn("ssl_version", "", "text", env=True)(lambda env: (t := _mine(env)) and t.version or None)
F.fn("ssl_cipher", "", "text", env=True)(lambda env: (t := _mine(env)) and t.cipher or None)
F.fn("ssl_client_cert_present", "", "bool", env=True)(
    lambda env: (t := _mine(env)) is not None and t.client_dn is not None)
F.fn("ssl_client_serial", "", "numeric", env=True)(
    lambda env: Decimal(t.client_serial) if (t := _mine(env)) is not None and t.client_serial else None)
F.fn("ssl_client_dn", "", "text", env=True)(lambda env: (t := _mine(env)) and t.client_dn or None)
F.fn("ssl_issuer_dn", "", "text", env=True)(lambda env: (t := _mine(env)) and t.issuer_dn or None)
