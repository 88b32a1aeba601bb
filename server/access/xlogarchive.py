"""The archive-status markers of WAL segments (PostgreSQL's xlogarchive.c), shared by the
WAL writer side (:mod:`.xlog`: a segment just finished → ``.ready``; checkpoints keep a
segment whose marker is still ``.ready``) and the archiver (:mod:`..postmaster.pgarch`:
archived → ``.done``).

Markers live in ``pg_wal/archive_status/<segment>.ready|.done``; the file system is the
only shared state (no lock: a marker is created, renamed or removed whole).
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgbundle.server.storage.shmem import Control


def status_dir(datadir: str) -> str:
    return os.path.join(datadir, "pg_wal", "archive_status")


def mark_ready(datadir: str, segname: str) -> None:
    """XLogArchiveNotify: the segment is complete and waits for the archiver."""
    d = status_dir(datadir)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, segname + ".ready"), "w"):
        pass


def is_archived(datadir: str, segname: str) -> bool:
    """XLogArchiveCheckDone: no ``.ready`` marker is left for the segment."""
    return not os.path.exists(os.path.join(status_dir(datadir), segname + ".ready"))


def cleanup(datadir: str, segname: str) -> None:
    """XLogArchiveCleanup: the segment was removed; so is its ``.done`` marker."""
    try:
        os.unlink(os.path.join(status_dir(datadir), segname + ".done"))
    except FileNotFoundError:
        pass


def wake_archiver(ctl: Control) -> None:
    """Tell the archiver (if it runs) that markers are ready (SIGUSR1, its latch)."""
    pid = ctl.get("archiver_pid")
    if pid:
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass

