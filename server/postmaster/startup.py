"""The startup process: runs first at every server start and after every crash reset.

Job: bring the cluster to a consistent state before anyone connects — read
global/pg_control and, after an unclean stop, replay the WAL from the last checkpoint's
redo point (:func:`pgbundle.server.access.recovery.startup`), then write the
end-of-recovery checkpoint.  While it runs the postmaster answers connections with 57P03
('the database system is starting up' / 'is in recovery mode').

Signals: SIGQUIT exits at once (immediate shutdown or crash of another process).
Exit 0 means recovery finished and normal operation may start; any other exit makes
the postmaster give up ('aborting startup due to startup process failure').

Shared state: it initialises next_xid/next_oid (under ProcArrayLock/OidGenLock by
construction: no other shared-memory process runs yet) and the WAL positions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgbundle.server.access import recovery
from pgbundle.server.postmaster.auxprocess import AuxProcess
from pgbundle.server.utils import elog

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext


def main(ctx: ChildContext) -> int:
    aux = AuxProcess(ctx, "startup", "RecoveryWalStream")
    aux.env.ctl.set("in_recovery", 1)
    recovery.startup(aux.env, elog.log)
    aux.env.ctl.set("in_recovery", 0)
    aux.env.xlog.close()
    aux.detach()
    return 0
