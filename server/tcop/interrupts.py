"""Interrupt flags of this process (PostgreSQL's InterruptPending/QueryCancelPending/
ProcDiePending) and :func:`check_for_interrupts`.

Signal handlers only set flags (and poke the wake-up pipe so a sleeping trio loop
notices); the flags are acted on at safe points: between rows, between pages, in every
wait loop.  SIGINT = cancel the running query (57014), SIGTERM = terminate the session
(FATAL 57P01), SIGALRM = statement_timeout (57014 'canceling statement due to statement
timeout'), SIGUSR1 = a NOTIFY was published for a channel this backend may listen on
(:mod:`.async_notify`).  SIGQUIT is handled immediately by the backend (see :mod:`.postgres`).
"""

from __future__ import annotations

import os
import signal

from pgbundle.server.errors import FatalError, PgError, QueryCanceled
from pgbundle.server.storage import pmsignal

cancel_pending = False
die_pending = False
timeout_pending = False
die_reason = ("57P01", "terminating connection due to administrator command")
query_active = False
timer_armed = False  # ITIMER_REAL runs for statement_timeout: end_query disarms it
wake_fd: int = -1


def _poke() -> None:
    if wake_fd >= 0:
        try:
            os.write(wake_fd, b"x")
        except OSError:
            pass


def on_sigint(signum: int, frame: object) -> None:
    global cancel_pending
    if query_active:
        cancel_pending = True


def on_sigterm(signum: int, frame: object) -> None:
    global die_pending
    die_pending = True
    _poke()


def on_sigalrm(signum: int, frame: object) -> None:
    global timeout_pending
    if query_active:
        timeout_pending = True


reload_pending = False
notify_pending = False


def on_sigusr1(signum: int, frame: object) -> None:
    """ProcessNotifyInterrupt's trigger: the protocol loop reads the NOTIFY queue."""
    global notify_pending
    notify_pending = True
    _poke()


def on_sighup(signum: int, frame: object) -> None:
    global reload_pending
    reload_pending = True


def install() -> None:
    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGALRM, on_sigalrm)
    signal.signal(signal.SIGHUP, on_sighup)
    signal.signal(signal.SIGUSR1, on_sigusr1)
    pmsignal.unblock_child_signals()


def start_query(statement_timeout_ms: int) -> None:
    global cancel_pending, timeout_pending, query_active, timer_armed
    cancel_pending = False
    timeout_pending = False
    query_active = True
    if statement_timeout_ms > 0:
        signal.setitimer(signal.ITIMER_REAL, statement_timeout_ms / 1000.0)
        timer_armed = True


def end_query() -> None:
    """The statement is over: no cancel or timeout pending, the timer off (a system call
    only when start_query armed it)."""
    global cancel_pending, timeout_pending, query_active, timer_armed
    query_active = False
    cancel_pending = False
    timeout_pending = False
    if timer_armed:
        timer_armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)


def check_for_interrupts() -> None:
    global cancel_pending, timeout_pending
    if die_pending:
        raise FatalError(*die_reason)
    if cancel_pending:
        cancel_pending = False
        raise QueryCanceled()
    if timeout_pending:
        timeout_pending = False
        raise QueryCanceled("canceling statement due to statement timeout")


def reset() -> None:
    global cancel_pending, die_pending, timeout_pending, query_active, notify_pending, timer_armed
    cancel_pending = die_pending = timeout_pending = query_active = notify_pending = False
    timer_armed = False  # a forked child does not inherit its parent's interval timer


_ = PgError
