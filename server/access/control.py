"""The control file ``global/pg_control``: what the server needs before it can read the
WAL — state, the last checkpoint's location and a copy of its contents.

Written atomically (a temp file, fsync, rename, fsync of the directory) after every
checkpoint and at state changes; read by the startup process.  States are
PostgreSQL's: 'starting up', 'shut down', 'shut down in recovery', 'shutting down',
'in crash recovery', 'in archive recovery', 'in production'.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import asdict, dataclass

from pgbundle.server.errors import PgError

PG_CONTROL_VERSION = 1300
CATALOG_VERSION = 202209061

DB_STARTUP = "starting up"
DB_SHUTDOWNED = "shut down"
DB_SHUTDOWNING = "shutting down"
DB_IN_CRASH_RECOVERY = "in crash recovery"
DB_IN_PRODUCTION = "in production"


@dataclass
class ControlData:
    system_identifier: int
    state: str = DB_SHUTDOWNED
    time: float = 0.0
    checkpoint_lsn: int = 0  # start of the last checkpoint record
    redo_lsn: int = 0  # its redo point
    prev_lsn: int = 0  # the checkpoint record's xl_prev (where the reader expects it)
    next_xid: int = 3
    next_oid: int = 16384
    timeline: int = 1
    wal_segment_size: int = 16 * 1024 * 1024
    block_size: int = 8192
    pg_control_version: int = PG_CONTROL_VERSION
    catalog_version: int = CATALOG_VERSION
    checkpoint_time: float = 0.0


def path(datadir: str) -> str:
    return os.path.join(datadir, "global", "pg_control")


def read(datadir: str) -> ControlData:
    try:
        with open(path(datadir), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise PgError("58P01", f'could not open file "{path(datadir)}": No such file or directory') from None
    body, _, crc = raw.rpartition(b"\n")
    if str(zlib.crc32(body)).encode() != crc:
        raise PgError("XX001", "incorrect checksum in control file")
    return ControlData(**json.loads(body))


def write(datadir: str, data: ControlData) -> None:
    data.time = time.time()
    body = json.dumps(asdict(data), sort_keys=True).encode()
    raw = body + b"\n" + str(zlib.crc32(body)).encode()
    p = path(datadir)
    tmp = p + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, p)
    dfd = os.open(os.path.dirname(p), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
