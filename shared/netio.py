"""The one I/O layer of both programs: connected sockets driven by trio's low-level
readiness waits, and whole protocol messages over them.

The pooler relays raw bytes through :class:`Conn`; logins, the bundled server's
backends and the pooler's own internal connections read and write whole messages
through :class:`MessageConn` (the sans-IO :class:`~pgbundle.shared.protocol.FrameBuffer`
and codec over a :class:`Conn`).

trio's SocketStream yields to the scheduler on every send and receive, even
when the kernel could complete the call at once.  On a data path that is
most of the CPU, so :class:`Conn` first tries the non-blocking call
and only waits (``trio.lowlevel.wait_readable`` / ``wait_writable``) when the
kernel says it would block.  Every ``_YIELD_EVERY`` calls that did not block it
checkpoints anyway, so a busy connection cannot starve the others and
cancellation is still noticed.

Contract:
* :meth:`Conn.recv` returns bytes, ``b""`` at EOF; a reset connection also
  reads as EOF (the peer is gone either way).
* :meth:`Conn.send_all` sends everything or raises :class:`ConnectionLost`.
  Sends are serialised per connection (a FIFO lock taken without a scheduler
  round trip when free), so the relay and the pooler's own messages never
  interleave.  A send interrupted by cancellation leaves the stream unusable:
  close the connection.
* :meth:`Conn.close` is idempotent and wakes any task waiting on the socket
  (it gets :class:`ConnectionLost` or ``b""``); a :meth:`Conn.recv` or
  :meth:`Conn.wait_readable` called after the close returns at once (``b""``).
* :meth:`MessageConn.receive` returns the next whole message as ``(type, payload)``
  (type 0: a startup-phase packet), raises :class:`EOFError` when the peer is gone and
  :class:`~pgbundle.shared.protocol.RemoteProtocolError` for bad framing;
  :meth:`MessageConn.send` encodes and sends messages in one write.  The caller owns the
  connection and closes it.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

import trio

from pgbundle.shared.protocol import FrameBuffer, codec
from pgbundle.shared.protocol.constants import DEFAULT_MAX_MESSAGE_LENGTH
from pgbundle.shared.protocol.framing import NEED_DATA
from pgbundle.shared.protocol.messages import Message

RECV_SIZE = 65536
_YIELD_EVERY = 16
_checkpoint = trio.lowlevel.checkpoint


async def sock_readable(sock: Any) -> None:
    """trio's wait_readable; a socket closed under the caller (fd -1: trio raises ValueError)
    is trio.ClosedResourceError, as for one closed while waiting."""
    try:
        await trio.lowlevel.wait_readable(sock)
    except ValueError:
        raise trio.ClosedResourceError("socket closed") from None


async def sock_writable(sock: Any) -> None:
    """trio's wait_writable, with the same rule as :func:`sock_readable`."""
    try:
        await trio.lowlevel.wait_writable(sock)
    except ValueError:
        raise trio.ClosedResourceError("socket closed") from None



class ConnectionLost(Exception):
    """The peer went away (reset, broken pipe) or the socket was closed under us."""


class Conn:
    """One connected non-blocking socket (TCP or Unix)."""

    __slots__ = ("sock", "closed", "_ops", "_lock", "peer", "is_unix", "_wait_first")

    tls = False  # a pgbundle.shared.tls.TlsConn says True
    #: What a non-blocking send raises when it would block (TlsConn: OpenSSL's want-write/read).
    _WOULD_BLOCK: tuple[type[OSError], ...] = (BlockingIOError,)

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.closed = False
        self._ops = 0
        self._wait_first = False
        self._lock = trio.StrictFIFOLock()
        self.is_unix = sock.family == socket.AF_UNIX
        if not self.is_unix:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.peer: tuple[str, int] = sock.getpeername()[:2]
            except OSError:
                self.peer = ("?", 0)
        else:
            self.peer = ("unix", 0)

    @property
    def is_local(self) -> bool:
        """A Unix socket or a loopback peer: where a password may travel in clear."""
        if self.is_unix:
            return True
        host = self.peer[0]
        return host.startswith("127.") or host == "::1" or host.startswith("::ffff:127.")

    async def recv(self, n: int = RECV_SIZE) -> bytes:
        sock = self.sock
        if self._wait_first:
            # Request/response traffic: the last read had to wait, so this one almost surely
            # will too -- wait first and save the recv() that would fail with EAGAIN.
            if self.closed:
                return b""  # closed before this call: trio cannot wait on fd -1
            try:
                await sock_readable(sock)
            except trio.ClosedResourceError:
                return b""
            self._ops = 0
        while True:
            try:
                data = sock.recv(n)
            except BlockingIOError:
                self._wait_first = True
                try:
                    await sock_readable(sock)
                except trio.ClosedResourceError:
                    return b""
                self._ops = 0
                continue
            except (ConnectionResetError, TimeoutError):
                return b""
            except OSError as exc:
                if self.closed or exc.errno in (errno.EBADF, errno.ENOTCONN):
                    return b""
                raise
            if len(data) == n:
                self._wait_first = False  # more may be queued: read again without waiting
            self._ops += 1
            if self._ops >= _YIELD_EVERY:
                self._ops = 0
                await _checkpoint()
            return data

    async def wait_readable(self) -> None:
        """Wait until :meth:`recv` would not block (data, EOF or an error is there) without
        reading anything, so a caller that cancels the wait loses no bytes (a cancelled
        :meth:`recv` may drop what it had just read).  The next :meth:`recv` reads at once."""
        if self.closed:
            return  # the next recv() reads b""
        try:
            await sock_readable(self.sock)
        except trio.ClosedResourceError:
            pass  # closed under us: the next recv() reads b""
        self._ops = 0
        self._wait_first = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        lock = self._lock
        if not lock.locked():
            # Fast path: the kernel usually takes it all at once, no lock or wait needed.
            try:
                n = self.sock.send(data)
            except self._WOULD_BLOCK:
                n = 0
            except OSError as exc:
                raise ConnectionLost(str(exc)) from None
            if n == len(data):
                self._ops += 1
                if self._ops >= _YIELD_EVERY:
                    self._ops = 0
                    await _checkpoint()
                return
            data = memoryview(data)[n:]
            lock.acquire_nowait()
        else:
            await lock.acquire()
        try:
            sock = self.sock
            view = memoryview(data)
            total = len(view)
            sent = 0
            while sent < total:
                try:
                    # (After TLS's want-write OpenSSL wants the same bytes again: view[sent:] is
                    # exactly that, as nothing of it was counted as sent.)
                    sent += sock.send(view[sent:])
                except self._WOULD_BLOCK as exc:
                    try:
                        await self._wait_to_send(exc)
                    except trio.ClosedResourceError:
                        raise ConnectionLost("connection closed") from None
                except OSError as exc:
                    raise ConnectionLost(str(exc)) from None
        finally:
            lock.release()
        self._ops += 1
        if self._ops >= _YIELD_EVERY:
            self._ops = 0
            await _checkpoint()

    async def _wait_to_send(self, exc: OSError) -> None:
        """A send would block: wait until it can go on."""
        await sock_writable(self.sock)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            trio.lowlevel.notify_closing(self.sock)
        except (RuntimeError, ValueError):
            pass
        self.sock.close()


def set_tcp_options(sock: socket.socket, *, keepalive: bool = True, keepidle: int = 0, keepintvl: int = 0,
                    keepcnt: int = 0, user_timeout_ms: int = 0, buffer: int = 0) -> None:
    """pgbouncer's tcp_* settings on a TCP socket (0 = the operating system's default); a Unix
    socket is left alone.  Errors: none (an option the kernel refuses is skipped)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    opts: list[tuple[int, int, int]] = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(keepalive))]
    if keepalive:
        opts += [(socket.IPPROTO_TCP, o, v) for o, v in ((socket.TCP_KEEPIDLE, keepidle),
                                                          (socket.TCP_KEEPINTVL, keepintvl),
                                                          (socket.TCP_KEEPCNT, keepcnt)) if v]
    if user_timeout_ms:
        opts.append((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms))
    if buffer:
        opts += [(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer), (socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)]
    for level, opt, value in opts:
        try:
            sock.setsockopt(level, opt, value)
        except OSError:
            pass


async def open_connection(host: str, port: int) -> Conn:
    """Connect to ``host:port`` (``host`` starting with ``/`` is a Unix socket directory).

    Errors: OSError (refused, unreachable, no such host).  Use a cancel scope for a
    timeout; the half-open socket is closed on cancellation.
    """
    if host.startswith("/") or host.startswith("@"):
        path = host if host.endswith(f".s.PGSQL.{port}") else f"{host.rstrip('/')}/.s.PGSQL.{port}"
        if host.startswith("@"):
            path = "\0" + path[1:]
        infos: list[tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]] = [
            (socket.AF_UNIX, socket.SOCK_STREAM, 0, "", path)]
    else:
        infos = list(await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    last: OSError | None = None
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            err = sock.connect_ex(addr)
            if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                await sock_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, f"{errno.errorcode.get(err, err)}: {os_strerror(err)} ({host}:{port})")
            return Conn(sock)
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    raise last or OSError(f"cannot resolve {host}")


def os_strerror(err: int) -> str:
    return os.strerror(err)


class MessageConn:
    """Whole-message reads and writes over a :class:`Conn`."""

    __slots__ = ("conn", "frames")

    def __init__(self, conn: Conn, *, startup: bool = False, max_length: int = DEFAULT_MAX_MESSAGE_LENGTH) -> None:
        self.conn = conn
        self.frames = FrameBuffer(startup=startup, max_length=max_length)

    async def receive(self) -> tuple[int, bytes]:
        """The next complete message as ``(type, payload)`` (type 0 = startup packet)."""
        frames = self.frames
        while True:
            f = frames.next_frame()
            if f is not NEED_DATA:
                return f
            data = await self.conn.recv()
            if not data:
                raise EOFError("peer closed the connection")
            frames.receive_data(data)

    async def send(self, *msgs: Message) -> None:
        """Encode ``msgs`` and send them in one write (ConnectionLost if the peer is gone)."""
        await self.conn.send_all(codec.encode_many(msgs) if len(msgs) != 1 else codec.encode(msgs[0]))

    async def send_many(self, msgs: list[Message]) -> None:
        """:meth:`send` for a list."""
        if msgs:
            await self.conn.send_all(codec.encode_many(msgs) if len(msgs) > 1 else codec.encode(msgs[0]))
