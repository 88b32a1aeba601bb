"""Relation files (PostgreSQL's storage manager, md.c): one file per relation fork.

Paths: ``base/<dboid>/<relfilenode>`` for a database's relations, ``global/<relfilenode>``
for the shared catalogs (dboid 0); forks other than main get a suffix (``_fsm``,
``_vm``).  Pages are 8 KB; the file size is the relation size (extension writes a zero
page at once, as mdextend does, so the size is known without the buffer pool).

Each process keeps its own cache of open file descriptors.  Errors become PgError 58030
with PostgreSQL's wording ('could not read block 7 in file "base/5/16384": ...').
"""

from __future__ import annotations

import errno
import os
from typing import Any

from pgbundle.server.errors import PgError

BLCKSZ = 8192
MAIN_FORK = 0
FSM_FORK = 1
VM_FORK = 2
FORK_SUFFIX = ("", "_fsm", "_vm", "_init")
ZERO_PAGE = bytes(BLCKSZ)


def relpath(dboid: int, relnode: int, fork: int = MAIN_FORK) -> str:
    base = f"global/{relnode}" if dboid == 0 else f"base/{dboid}/{relnode}"
    return base + FORK_SUFFIX[fork]


class Smgr:
    """File access relative to the data directory (the process's cwd is not relied on)."""

    def __init__(self, datadir: str) -> None:
        self.datadir = datadir
        self._fds: dict[tuple[int, int, int], int] = {}
        self.recovery = False  # during redo, missing files are created (their creation was not logged)

    def path(self, dboid: int, relnode: int, fork: int = MAIN_FORK) -> str:
        return os.path.join(self.datadir, relpath(dboid, relnode, fork))

    def _fd(self, dboid: int, relnode: int, fork: int, create: bool = False) -> int:
        key = (dboid, relnode, fork)
        fd = self._fds.get(key)
        if fd is not None:
            return fd
        p = self.path(dboid, relnode, fork)
        create = create or self.recovery
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(p, flags, 0o600)
        except FileNotFoundError:
            if fork != MAIN_FORK or create:
                os.makedirs(os.path.dirname(p), exist_ok=True)
                fd = os.open(p, flags | os.O_CREAT, 0o600)
            else:
                raise PgError("58P01", f'could not open file "{relpath(dboid, relnode, fork)}": '
                                       f'No such file or directory') from None
        if len(self._fds) > 900:
            self.close_all()
        self._fds[key] = fd
        return fd

    def exists(self, dboid: int, relnode: int, fork: int = MAIN_FORK) -> bool:
        return os.path.exists(self.path(dboid, relnode, fork))

    def create(self, dboid: int, relnode: int, fork: int = MAIN_FORK) -> None:
        p = self.path(dboid, relnode, fork)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)

    def nblocks(self, dboid: int, relnode: int, fork: int = MAIN_FORK) -> int:
        try:
            fd = self._fd(dboid, relnode, fork, create=fork != MAIN_FORK)
        except PgError:
            return 0
        return os.fstat(fd).st_size // BLCKSZ

    def read(self, dboid: int, relnode: int, fork: int, block: int, into: Any) -> None:
        """Read a page into ``into`` (a writable 8 KB buffer).  Beyond the end of the file
        (possible only for the FSM and during recovery) the page reads as zeros."""
        try:
            fd = self._fd(dboid, relnode, fork, create=fork != MAIN_FORK)
            n = os.preadv(fd, [into], block * BLCKSZ)
        except OSError as exc:
            raise PgError("58030", f'could not read block {block} in file "{relpath(dboid, relnode, fork)}": '
                                   f'{os.strerror(exc.errno or errno.EIO)}') from None
        if n < BLCKSZ:
            into[n:BLCKSZ] = ZERO_PAGE[: BLCKSZ - n]

    def write(self, dboid: int, relnode: int, fork: int, block: int, data: Any) -> None:
        try:
            fd = self._fd(dboid, relnode, fork, create=True)
            os.pwrite(fd, data, block * BLCKSZ)
        except OSError as exc:
            raise PgError("58030", f'could not write block {block} in file "{relpath(dboid, relnode, fork)}": '
                                   f'{os.strerror(exc.errno or errno.EIO)}') from None

    def extend(self, dboid: int, relnode: int, fork: int, block: int) -> None:
        """Write a zero page at ``block`` (the caller holds the relation extension lock)."""
        self.write(dboid, relnode, fork, block, ZERO_PAGE)

    def truncate(self, dboid: int, relnode: int, fork: int, nblocks: int) -> None:
        fd = self._fd(dboid, relnode, fork, create=True)
        os.ftruncate(fd, nblocks * BLCKSZ)

    def fsync(self, dboid: int, relnode: int, fork: int) -> None:
        if not os.path.exists(self.path(dboid, relnode, fork)):
            return
        try:
            fd = self._fd(dboid, relnode, fork)
            os.fsync(fd)
        except (PgError, OSError):
            return

    def unlink(self, dboid: int, relnode: int) -> None:
        for fork in range(len(FORK_SUFFIX)):
            fd = self._fds.pop((dboid, relnode, fork), None)
            if fd is not None:
                os.close(fd)
            try:
                os.unlink(self.path(dboid, relnode, fork))
            except FileNotFoundError:
                pass

    def forget(self, dboid: int, relnode: int) -> None:
        for fork in range(len(FORK_SUFFIX)):
            fd = self._fds.pop((dboid, relnode, fork), None)
            if fd is not None:
                os.close(fd)

    def close_all(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
