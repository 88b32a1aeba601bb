"""The per-task error boundary: one connection's failure ends that task only.

Every task the pooler starts for one connection (a server's relay, a reset, a cancel forward,
a notification sender, a LISTEN connection) runs under :func:`guarded`: an unexpected exception
-- a bug, or a socket error nobody foresaw -- is logged with its traceback, as pgbouncer logs an
internal error, and the task ends; the pooler's nursery and every other connection go on.
Cancellation (trio.Cancelled) and KeyboardInterrupt are BaseExceptions and pass through.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("pgbundle.pooler")


async def guarded(fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Run ``await fn(*args)``; log and swallow any Exception it raises."""
    try:
        await fn(*args)
    except Exception:
        log.exception("internal error in %s; that connection is closed, the pooler goes on",
                      getattr(fn, "__qualname__", fn))
