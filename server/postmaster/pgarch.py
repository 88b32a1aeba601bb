"""The WAL archiver (PostgreSQL's pgarch.c).

Job: with ``archive_mode = on``, copy every finished WAL segment somewhere safe by
running ``archive_command`` (``%p`` = path of the segment relative to the data
directory, ``%f`` = its file name) for each ``pg_wal/archive_status/<segment>.ready``
marker, oldest first, renaming the marker to ``.done`` on success.  A failure is logged
('archive command failed with exit code N') and retried (3 tries, then a pause of 60 s).
Checkpoints never remove a segment whose marker is still ``.ready``.  With
``archive_timeout`` the archiver also asks for a segment switch... (not implemented:
segments are archived when full).  Counts pg_stat_archiver.

Signals: SIGUSR1 = a segment is ready (latch); SIGTERM = archive what is ready, then
exit 0; SIGQUIT exits at once.  Crash meaning: attached to shared memory → crash reset.

Shared state (control block, written only by this process): archived_count,
failed_count, last_archived_segno/time, last_failed_segno/time.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import TYPE_CHECKING

from pgbundle.server.access.xlog import segment_number
from pgbundle.server.access.xlogarchive import status_dir
from pgbundle.server.postmaster.auxprocess import AuxProcess
from pgbundle.server.utils import elog

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext
    from pgbundle.server.storage.ipc import Env

NUM_ARCHIVE_RETRIES = 3


def main(ctx: ChildContext) -> int:
    aux = AuxProcess(ctx, "archiver", "ArchiverMain")
    env = aux.env
    ctl = env.ctl
    ctl.set("archiver_pid", os.getpid())
    s = ctx.settings
    segsize = int(s.value("wal_segment_size"))
    while True:
        stopping = aux.take("shutdown")
        _archive_ready(ctx, env, segsize)
        if stopping:
            aux.detach()
            return 0
        aux.wait(60.0)


def _archive_ready(ctx: ChildContext, env: Env, segsize: int) -> None:
    ctl = env.ctl
    cmd = str(ctx.settings.value("archive_command") or "")
    d = status_dir(ctx.datadir)
    try:
        ready = sorted(f[:-6] for f in os.listdir(d) if f.endswith(".ready"))
    except FileNotFoundError:
        return
    for seg in ready:
        if not cmd:
            elog.log("archive_mode enabled, yet archive_command is not set", "WARNING")
            return
        path = os.path.join("pg_wal", seg)
        command = cmd.replace("%p", path).replace("%f", seg).replace("%%", "%")
        ok = False
        for _attempt in range(NUM_ARCHIVE_RETRIES):
            r = subprocess.run(command, shell=True, cwd=ctx.datadir, capture_output=True, text=True)
            if r.returncode == 0:
                ok = True
                break
            elog.log(f"archive command failed with exit code {r.returncode}", "LOG",
                     detail=f'The failed archive command was: {command}')
            ctl.add("failed_count", 1)
            ctl.set("last_failed_segno", segment_number(seg, segsize))
            ctl.set("last_failed_time", time.time())
            time.sleep(1.0)
        if not ok:
            elog.log(f'archiving write-ahead log file "{seg}" failed too many times, will try again later',
                     "WARNING")
            return
        os.rename(os.path.join(d, seg + ".ready"), os.path.join(d, seg + ".done"))
        ctl.add("archived_count", 1)
        ctl.set("last_archived_segno", segment_number(seg, segsize))
        ctl.set("last_archived_time", time.time())
