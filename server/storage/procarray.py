"""Backend slots (PostgreSQL's PGPROC array + PgBackendStatus) and snapshots.

One slot per process attached to shared memory: client backends, autovacuum workers
and every auxiliary process.  A slot holds what ``pg_stat_activity`` shows (pid,
backend_type, database, user, client address, state, query, start times, wait event)
and what MVCC needs (the running xid and the xmin of the snapshot in use).

A client backend's slot also holds what ``pg_stat_ssl`` shows (PgBackendSSLStatus): whether
the connection is TLS, the protocol version, cipher and key bits, and the client
certificate's subject DN, serial number and issuer DN -- each string cut to 63 bytes, as
PostgreSQL's NAMEDATALEN-sized fields are.  The backend's own, uncut facts stay in
:attr:`ProcArray.my_tls` (the sslinfo functions read those).

Locking: ``xids``/``xmins`` and slot allocation are guarded by ProcArrayLock (xid
assignment takes it too, so a snapshot never misses an assigned xid).  The other
fields of a slot are written only by the process that owns it and read without a
lock (a torn read of a query text is harmless, as with PostgreSQL's st_changecount
retry loop, which we skip).  The TLS fields are of that kind too: written once, by the
owner, during authentication (before its state leaves "starting"), never changed after.
"""

from __future__ import annotations

import os
import struct
import time
from typing import TYPE_CHECKING, Any

from pgbundle.server.access.api import Snapshot
from pgbundle.server.errors import FatalError

if TYPE_CHECKING:
    from pgbundle.shared.tls import ConnTls

FIRST_NORMAL_XID = 3

BACKEND_TYPES = ("", "client backend", "autovacuum launcher", "autovacuum worker", "background writer",
                 "checkpointer", "walwriter", "startup", "stats collector", "walsummarizer", "archiver",
                 "background worker", "walsender", "walreceiver", "io worker", "logical replication launcher")
BT = {name: i for i, name in enumerate(BACKEND_TYPES)}

STATES = (None, "active", "idle", "idle in transaction", "idle in transaction (aborted)",
          "fastpath function call", "disabled", "starting")
STATE_CODE = {s: i for i, s in enumerate(STATES)}

WAIT_EVENTS = ((None, None), ("Lock", "transactionid"), ("Lock", "relation"), ("IO", "WALSync"),
               ("Activity", "CheckpointerMain"), ("Activity", "BgWriterMain"), ("Activity", "WalWriterMain"),
               ("Activity", "AutoVacuumMain"), ("Client", "ClientRead"), ("Activity", "PgStatMain"),
               ("Timeout", "PgSleep"), ("IPC", "CheckpointDone"), ("Lock", "tuple"), ("Lock", "advisory"),
               ("Activity", "WalSummarizerMain"), ("Activity", "ArchiverMain"), ("IO", "DataFileRead"),
               ("LWLock", "WALWrite"), ("Activity", "RecoveryWalStream"))
WAIT_CODE = {w[1]: i for i, w in enumerate(WAIT_EVENTS) if w[1]}

# pid, backend_type, state, wait, dboid, userid, client_port, cancel_key, wait_for_xid,
# backend_start, xact_start, query_start, state_change, query_len
_HDR = struct.Struct("<iBBBxIIHxxIIxxxxddddI")
_NAME = 64
_ADDR = 48
_F_PID = 0
_TEXT_OFF = _HDR.size
_DATNAME = _TEXT_OFF
_USENAME = _DATNAME + _NAME
_APPNAME = _USENAME + _NAME
_ADDR_OFF = _APPNAME + _NAME
# TLS: in-use flag, pad, bits, then version, cipher, client DN, client serial, issuer DN
_TLS_OFF = _ADDR_OFF + _ADDR
_TLS_HDR = struct.Struct("<Bxxxi")
_TLS_TEXTS = 5
_QUERY = _TLS_OFF + _TLS_HDR.size + _TLS_TEXTS * _NAME
_PID = struct.Struct("<i")
_U32 = struct.Struct("<I")
_D = struct.Struct("<d")


def slot_size(layout: Any) -> int:
    return (_QUERY + layout.query_size + 7) // 8 * 8


def region_size(layout: Any) -> int:
    return layout.max_backends * (slot_size(layout) + 8) + 64


def _enc(s: str, n: int) -> bytes:
    b = s.encode("utf-8", "replace")[: n - 1]
    return b + b"\0" * (n - len(b))


def _dec(b: bytes) -> str:
    return bytes(b).split(b"\0", 1)[0].decode("utf-8", "replace")


class ProcArray:
    """The slots of one shared segment, seen from one process."""

    def __init__(self, shm: Any, locks: Any) -> None:
        lay = shm.layout
        self.buf = shm.buf
        self.ctl = shm.control
        self.lock = locks.ProcArrayLock
        self.n = lay.max_backends
        self.qsize = lay.query_size
        self.ssize = slot_size(lay)
        self.xids_off = lay.procs_off
        self.xmins_off = self.xids_off + 4 * self.n
        self.slots_off = self.xmins_off + 4 * self.n
        self._arr = struct.Struct(f"<{self.n}I")
        self._nx_st, self._nx_off = self.ctl.offset("next_xid")
        self._nx = self.ctl.cell("next_xid")
        self.my: int = -1  # this process's slot index
        # typed views: single aligned loads/stores for the fields read without the lock
        self._xids = memoryview(self.buf)[self.xids_off: self.xids_off + 4 * self.n].cast("I")
        self._xmins = memoryview(self.buf)[self.xmins_off: self.xmins_off + 4 * self.n].cast("I")
        # xactCompletionCount (in the spare bytes after the slots): bumped, under the lock,
        # whenever an xid leaves the array; with next_xid unchanged too, a new snapshot
        # would equal the last one (PostgreSQL's GetSnapshotDataReuse)
        done_off = self.slots_off + self.n * self.ssize
        self._done = memoryview(self.buf)[done_off: done_off + 8].cast("Q")
        self._last: tuple[int, int, int, tuple[int, int, frozenset[int]]] | None = None
        self._last_snap: Snapshot | None = None
        self._last_query: str | None = None
        self._last_query_bytes = b""
        self.my_tls: ConnTls | None = None  # this backend's own TLS facts, uncut (None: not TLS)

    def _off(self, i: int) -> int:
        return self.slots_off + i * self.ssize

    # ------------------------------------------------------------------ slots
    def attach(self, backend_type: str, *, max_client: int | None = None, reserved: int = 0,
               superuser: bool = True) -> int:
        """Take a free slot for this process.  For client backends ``max_client`` enforces
        max_connections (FATAL 53300)."""
        now = time.time()
        with self.lock:
            if max_client is not None:
                count = 0
                for i in range(self.n):
                    off = self._off(i)
                    if _PID.unpack_from(self.buf, off)[0] != 0 and self.buf[off + 4] == BT["client backend"]:
                        count += 1
                if count >= max_client:
                    raise FatalError("53300", "sorry, too many clients already")
                if not superuser and count >= max_client - reserved:
                    raise FatalError("53300", "remaining connection slots are reserved for non-replication "
                                              "superuser connections")
            for i in range(self.n):
                off = self._off(i)
                if _PID.unpack_from(self.buf, off)[0] == 0:
                    self.buf[off: off + self.ssize] = bytes(self.ssize)
                    _HDR.pack_into(self.buf, off, os.getpid(), BT[backend_type], STATE_CODE["starting"], 0, 0, 0,
                                   0, 0, 0, now, 0.0, 0.0, now, 0)
                    _U32.pack_into(self.buf, self.xids_off + 4 * i, 0)
                    _U32.pack_into(self.buf, self.xmins_off + 4 * i, 0)
                    self.my = i
                    return i
        raise FatalError("53300", "sorry, too many clients already")

    def detach(self) -> None:
        if self.my < 0:
            return
        with self.lock:
            if self._xids[self.my]:
                self._done[0] += 1
            _U32.pack_into(self.buf, self.xids_off + 4 * self.my, 0)
            _U32.pack_into(self.buf, self.xmins_off + 4 * self.my, 0)
            _PID.pack_into(self.buf, self._off(self.my), 0)
        self.my = -1

    def set_identity(self, *, dboid: int = 0, datname: str = "", userid: int = 0, usename: str = "",
                     appname: str = "", client_addr: str = "", client_port: int = 0, cancel_key: int = 0) -> None:
        off = self._off(self.my)
        struct.pack_into("<II", self.buf, off + 8, dboid, userid)
        struct.pack_into("<H", self.buf, off + 16, client_port)
        struct.pack_into("<I", self.buf, off + 20, cancel_key)
        self.buf[off + _DATNAME: off + _DATNAME + _NAME] = _enc(datname, _NAME)
        self.buf[off + _USENAME: off + _USENAME + _NAME] = _enc(usename, _NAME)
        self.buf[off + _APPNAME: off + _APPNAME + _NAME] = _enc(appname, _NAME)
        self.buf[off + _ADDR_OFF: off + _ADDR_OFF + _ADDR] = _enc(client_addr, _ADDR)

    def set_tls(self, info: ConnTls | None) -> None:
        """Publish the client connection's TLS facts (pgstat_bestart's SSL part); None: plain."""
        self.my_tls = info
        if self.my < 0 or info is None:
            return
        off = self._off(self.my) + _TLS_OFF
        _TLS_HDR.pack_into(self.buf, off, 1, info.bits)
        off += _TLS_HDR.size
        for text in (info.version, info.cipher, info.client_dn, info.client_serial, info.issuer_dn):
            self.buf[off: off + _NAME] = _enc(text or "", _NAME)
            off += _NAME

    def _tls_fields(self, off: int) -> dict[str, Any]:
        used, bits = _TLS_HDR.unpack_from(self.buf, off + _TLS_OFF)
        if not used:
            return dict(ssl=False, ssl_version=None, ssl_cipher=None, ssl_bits=None, ssl_client_dn=None,
                        ssl_client_serial=None, ssl_issuer_dn=None)
        base = off + _TLS_OFF + _TLS_HDR.size
        texts = [_dec(self.buf[base + i * _NAME: base + (i + 1) * _NAME]) or None for i in range(_TLS_TEXTS)]
        return dict(ssl=True, ssl_version=texts[0], ssl_cipher=texts[1], ssl_bits=bits, ssl_client_dn=texts[2],
                    ssl_client_serial=texts[3], ssl_issuer_dn=texts[4])

    def set_appname(self, appname: str) -> None:
        off = self._off(self.my)
        self.buf[off + _APPNAME: off + _APPNAME + _NAME] = _enc(appname, _NAME)

    def set_client(self, client_addr: str, client_port: int) -> None:
        """The client address pg_stat_activity shows (a pooled client's, see tcop.session_report)."""
        if self.my < 0:
            return
        off = self._off(self.my)
        struct.pack_into("<H", self.buf, off + 16, client_port)
        self.buf[off + _ADDR_OFF: off + _ADDR_OFF + _ADDR] = _enc(client_addr, _ADDR)

    def set_state(self, state: str, query: str | None = None) -> None:
        """pgstat_report_activity: state, and the query text + query_start when given."""
        if self.my < 0:
            return
        off = self._off(self.my)
        now = time.time()
        self.buf[off + 5] = STATE_CODE[state]
        _D.pack_into(self.buf, off + 56, now)  # state_change
        if query is not None:
            if query is self._last_query:  # the same statement again (a prepared one)
                q = self._last_query_bytes
            else:
                q = query.encode("utf-8", "replace")[: self.qsize - 1]
                self._last_query, self._last_query_bytes = query, q
            self.buf[off + _QUERY: off + _QUERY + len(q)] = q
            _U32.pack_into(self.buf, off + 64, len(q))
            _D.pack_into(self.buf, off + 48, now)  # query_start

    def set_xact_start(self, t: float) -> None:
        if self.my >= 0:
            _D.pack_into(self.buf, self._off(self.my) + 40, t)

    def set_wait(self, event: str | None, xid: int = 0) -> None:
        if self.my < 0:
            return
        off = self._off(self.my)
        self.buf[off + 6] = WAIT_CODE.get(event, 0) if event else 0
        _U32.pack_into(self.buf, off + 24, xid)

    # ------------------------------------------------------------------ xids and snapshots
    def assign_xid(self) -> int:
        with self.lock:
            xid = self._nx[0]
            if xid < FIRST_NORMAL_XID:
                xid = FIRST_NORMAL_XID
            self._nx[0] = xid + 1
            self._xids[self.my] = xid
        return xid

    def snapshot(self, my_xid: int, set_xmin: bool = True) -> tuple[int, int, frozenset[int]]:
        """(xmin, xmax, xip) of a new snapshot; advertises its xmin in our slot.  When no
        xid was assigned or ended since our last snapshot, that one is the answer again."""
        with self.lock:
            xmax = self._nx[0]
            done = self._done[0]
            last = self._last
            if last is not None and last[0] == xmax and last[1] == done and last[2] == my_xid:
                res = last[3]
            else:
                xids = self._arr.unpack_from(self.buf, self.xids_off)
                xip = frozenset(x for x in xids if x and x != my_xid)
                xmin = min(xip) if xip else xmax
                if my_xid and my_xid < xmin:
                    xmin = my_xid
                res = (xmin, xmax, xip)
                self._last = (xmax, done, my_xid, res)
            if set_xmin and self.my >= 0 and self._xmins[self.my] == 0:
                self._xmins[self.my] = res[0]
        return res

    def make_snapshot(self, my_xid: int, cid: int) -> Snapshot:
        res = self.snapshot(my_xid)
        snap = self._last_snap
        if snap is not None and snap.cid == cid and snap.xmax == res[1] and snap.xid == my_xid \
                and snap.xip is res[2] and snap.xmin == res[0]:
            return snap  # immutable: the same one again
        snap = self._last_snap = Snapshot(res[0], res[1], res[2], my_xid, cid)
        return snap

    def clear_xmin(self) -> None:
        if self.my >= 0:
            _U32.pack_into(self.buf, self.xmins_off + 4 * self.my, 0)

    def end_xact(self) -> None:
        """ProcArrayEndTransaction: our xid and xmin are no longer running.  Without an
        xid only the advertised xmin goes, which needs no lock (as in PostgreSQL)."""
        if self._xids[self.my] == 0:
            self._xmins[self.my] = 0
            return
        with self.lock:
            self._xids[self.my] = 0
            self._xmins[self.my] = 0
            self._done[0] += 1

    def is_running(self, xid: int) -> bool:
        """TransactionIdIsInProgress (without the lock: a stale answer only makes callers
        poll once more)."""
        return xid in self._xids

    def oldest_xmin(self) -> int:
        """The horizon: no snapshot can see a tuple deleted by a transaction older than this."""
        with self.lock:
            xmax = self._nx_st.unpack_from(self.buf, self._nx_off)[0]
            xids = self._arr.unpack_from(self.buf, self.xids_off)
            xmins = self._arr.unpack_from(self.buf, self.xmins_off)
        vals = [x for x in xids if x] + [x for x in xmins if x]
        return min(vals) if vals else xmax

    def next_xid(self) -> int:
        return self._nx[0]

    def set_next_xid(self, xid: int) -> None:
        """Recovery (the startup process, alone): the next xid to hand out."""
        self._nx_st.pack_into(self.buf, self._nx_off, xid)

    # ------------------------------------------------------------------ reading
    def pid_of_xid(self, xid: int) -> int:
        xids = self._arr.unpack_from(self.buf, self.xids_off)
        for i, x in enumerate(xids):
            if x == xid:
                return _PID.unpack_from(self.buf, self._off(i))[0]
        return 0

    def waits_for(self) -> dict[int, int]:
        """xid -> xid it is waiting for (deadlock detection)."""
        xids = self._arr.unpack_from(self.buf, self.xids_off)
        out = {}
        for i, x in enumerate(xids):
            if x:
                w = _U32.unpack_from(self.buf, self._off(i) + 24)[0]
                if w:
                    out[x] = w
        return out

    def entries(self) -> list[dict[str, Any]]:
        """Every live slot as a dict (pg_stat_activity's raw material)."""
        out = []
        xids = self._arr.unpack_from(self.buf, self.xids_off)
        xmins = self._arr.unpack_from(self.buf, self.xmins_off)
        for i in range(self.n):
            off = self._off(i)
            pid = _PID.unpack_from(self.buf, off)[0]
            if pid == 0:
                continue
            (pid, bt, state, wait, dboid, userid, port, key, wxid, bstart, xstart, qstart, schange,
             qlen) = _HDR.unpack_from(self.buf, off)
            out.append(dict(
                slot=i, pid=pid, backend_type=BACKEND_TYPES[bt], state=STATES[state] if state < len(STATES) else None,
                wait_event_type=WAIT_EVENTS[wait][0], wait_event=WAIT_EVENTS[wait][1], dboid=dboid, userid=userid,
                client_port=port, cancel_key=key, backend_start=bstart, xact_start=xstart, query_start=qstart,
                state_change=schange, query=bytes(self.buf[off + _QUERY: off + _QUERY + qlen]).decode("utf-8",
                                                                                                         "replace"),
                datname=_dec(self.buf[off + _DATNAME: off + _DATNAME + _NAME]),
                usename=_dec(self.buf[off + _USENAME: off + _USENAME + _NAME]),
                appname=_dec(self.buf[off + _APPNAME: off + _APPNAME + _NAME]),
                client_addr=_dec(self.buf[off + _ADDR_OFF: off + _ADDR_OFF + _ADDR]),
                xid=xids[i], xmin=xmins[i], **self._tls_fields(off)))
        return out

    def find_cancel(self, pid: int, key: int) -> bool:
        """Does a client backend with this pid and cancel key exist?"""
        for i in range(self.n):
            off = self._off(i)
            if _PID.unpack_from(self.buf, off)[0] == pid:
                return _U32.unpack_from(self.buf, off + 20)[0] == key
        return False

    def count_db(self, dboid: int, exclude_pid: int = 0) -> int:
        n = 0
        for e in self.entries():
            if e["dboid"] == dboid and e["pid"] != exclude_pid and e["backend_type"] in (
                    "client backend", "autovacuum worker"):
                n += 1
        return n
