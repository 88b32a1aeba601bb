"""Server log lines (PostgreSQL's elog.c, stderr destination).

Every process writes ``<timestamp> [<pid>] LEVEL:  message`` lines to its stderr,
which the postmaster points at the logging collector's pipe (see
:mod:`pgbundle.server.postmaster.syslogger`).  Lines are written with one ``os.write``
each, so lines from different processes do not interleave (pipe writes up to PIPE_BUF
are atomic; longer messages are split into chunks that each carry the prefix).
"""

from __future__ import annotations

import os
import sys
import time
import traceback

LEVELS = ("DEBUG", "LOG", "INFO", "NOTICE", "WARNING", "ERROR", "FATAL", "PANIC")
_prefix_pid = None


def _stamp() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d} UTC"


def log(message: str, level: str = "LOG", *, detail: str | None = None, hint: str | None = None,
        statement: str | None = None) -> None:
    pid = os.getpid()
    lines = [f"{_stamp()} [{pid}] {level}:  {message}"]
    if detail:
        lines.append(f"{_stamp()} [{pid}] DETAIL:  {detail}")
    if hint:
        lines.append(f"{_stamp()} [{pid}] HINT:  {hint}")
    if statement:
        lines.append(f"{_stamp()} [{pid}] STATEMENT:  {statement}")
    data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
    try:
        while data:
            n = os.write(2, data[:4096])
            data = data[n:]
    except OSError:
        pass


def log_exception(context: str) -> None:
    log(f"{context}: {traceback.format_exc().rstrip()}", "ERROR")


_ = sys
