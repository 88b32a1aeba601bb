"""What the postmaster and its children tell each other through shared memory
(PostgreSQL's pmsignal.c / pmsignal.h, and postmaster.c's PMState).

* :class:`PMState` — the postmaster's state machine.  The postmaster keeps its own copy
  and publishes it in the control block's ``pm_state`` field (:func:`set_pm_state`) when a
  child must know it: ``RUN`` once startup is done, ``CRASH`` / ``IMMEDIATE`` just before
  it sends SIGQUIT to every child, so that a backend's SIGQUIT handler can say why it dies
  (57P02 'crash of another server process' vs 57P01 'immediate shutdown').
* :class:`PMSignalReason` — why a child sent the postmaster SIGUSR1.  The child sets the
  reason's bit in the control block's ``pmsignal`` field (:func:`set_reason`) and signals
  (:func:`signal_postmaster`); the postmaster reads and clears the bits
  (:func:`take_reasons`).

Locks: ``pm_state`` has one writer (the postmaster) and is read without a lock (one
aligned word).  ``pmsignal`` is read-modify-written under AutovacuumLock by both sides
(its only reason today is the autovacuum launcher's worker request, whose
``av_request_*`` fields share that lock).
"""

from __future__ import annotations

import enum
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgbundle.server.storage.shmem import Control


class PMState(enum.IntEnum):
    """postmaster.c's PMState (the subset this server goes through)."""

    INIT = 0  # not yet running anything
    STARTUP = 1  # the startup process runs (no crash before it)
    RUN = 2  # normal processing: connections accepted
    WAIT_BACKENDS = 3  # shutting down: waiting for clients (and autovacuum workers) to leave
    SHUTDOWN = 4  # waiting for the checkpointer's shutdown checkpoint, then the last helpers
    CRASH = 5  # a child crashed: every other child got SIGQUIT, waiting for them to exit
    IMMEDIATE = 6  # immediate shutdown: every child got SIGQUIT
    RECOVERY = 7  # the startup process replays WAL after a crash reset


class PMSignalReason(enum.IntFlag):
    """pmsignal.h's PMSignalReason, as bits of the ``pmsignal`` field."""

    START_AUTOVAC_WORKER = 1  # the autovacuum launcher wants a worker (for av_request_db)


def set_pm_state(ctl: Control, state: PMState) -> None:
    """Publish the postmaster's state to its children (postmaster only)."""
    ctl.set("pm_state", int(state))


def pm_state(ctl: Control) -> PMState:
    """The state the postmaster last published (INIT for an unknown value)."""
    try:
        return PMState(ctl.get("pm_state"))
    except ValueError:
        return PMState.INIT


def set_reason(ctl: Control, reason: PMSignalReason) -> None:
    """SendPostmasterSignal's first half: mark ``reason`` (caller holds AutovacuumLock)."""
    ctl.set("pmsignal", ctl.get("pmsignal") | int(reason))


def take_reasons(ctl: Control) -> PMSignalReason:
    """CheckPostmasterSignal for every reason at once: the bits set, now cleared (caller
    holds AutovacuumLock; postmaster only)."""
    flags = PMSignalReason(ctl.get("pmsignal"))
    ctl.set("pmsignal", 0)
    return flags


def signal_postmaster(ctl: Control) -> None:
    """SendPostmasterSignal's second half: wake the postmaster (SIGUSR1)."""
    try:
        os.kill(ctl.get("postmaster_pid"), signal.SIGUSR1)
    except ProcessLookupError:
        pass


#: Signals a freshly forked child holds blocked until its main has installed its handlers
#: (PostgreSQL's BlockSig): a SIGHUP sent to every child must not kill one still starting.
CHILD_DEFERRED = frozenset((signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2))


def unblock_child_signals() -> None:
    """Called by a child once its handlers are in place: the signals held since the fork arrive."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CHILD_DEFERRED)
