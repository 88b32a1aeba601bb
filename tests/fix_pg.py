"""PostgreSQL 15 for tests: throwaway clusters from the Debian package's binaries, run as the
``postgres`` OS user (via ``runuser`` when the tests run as root), in a temp dir, on a free
port on 127.0.0.1.  A test that needs PostgreSQL *fails* when it is missing: nothing here
skips.

Fixtures: ``pg`` (one cluster shared by the session, with a SCRAM and an md5 user),
``pg_private`` (a cluster of the test's own, which it may stop and restart).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import PGBIN, as_postgres, free_port


class PgCluster:
    """A throwaway PostgreSQL 15 cluster.

    ``hba`` lines are put before the default trust rules (``default_hba=False``: instead of
    them -- then :meth:`sql` needs a line that admits postgres over TCP, with TLS or not);
    ``conf`` is appended to postgresql.conf.  Users and passwords are created with :meth:`sql`.
    """

    def __init__(self, *, hba: list[str] | None = None, conf: dict[str, str] | None = None,
                 default_hba: bool = True) -> None:
        for tool in ("initdb", "postgres", "pg_ctl"):
            if not (PGBIN / tool).exists():
                raise RuntimeError(f"PostgreSQL 15 is required for this test: {PGBIN / tool} not found")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pgbundle-pg-"))
        self.data = self.root / "data"
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run([str(PGBIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                   "--locale=C", "--no-sync"])
        lines = list(hba or []) + ([
            "local all all trust",
            "host all all 127.0.0.1/32 trust",
        ] if default_hba else [])
        self._write(self.data / "pg_hba.conf", "\n".join(lines) + "\n")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "200",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
        }
        settings.update(conf or {})
        with open(self.data / "postgresql.conf", "a") as f:
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        self.proc: subprocess.Popen | None = None
        self.start()

    def _run(self, cmd: list[str]) -> str:
        out = subprocess.run(as_postgres() + cmd, capture_output=True, text=True, cwd="/tmp")
        if out.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {out.stdout}\n{out.stderr}")
        return out.stdout

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def start(self) -> None:
        log = open(self.root / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            as_postgres() + [str(PGBIN / "postgres"), "-D", str(self.data)],
            stdout=log, stderr=subprocess.STDOUT, cwd="/tmp", start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited: " + (self.root / "postgres.log").read_text()[-2000:])
            r = subprocess.run([str(PGBIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"])
            if r.returncode == 0:
                return
            time.sleep(0.05)
        raise TimeoutError("postgres did not start")

    @property
    def pid(self) -> int:
        """The postmaster's pid (from postmaster.pid; runuser sits in between)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self, mode: str = "fast") -> None:
        if self.proc is None:
            return
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            os.kill(self.pid, sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def dsn(self, user: str = "postgres", dbname: str = "postgres", password: str | None = None) -> str:
        s = f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"
        return s + (f" password='{password}'" if password else "")

    def sql(self, query: str, dbname: str = "postgres") -> str:
        """Run ``query`` with psql as postgres; return its unaligned output."""
        out = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", "-d", dbname, "-c", query],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr}")
        return out.stdout.strip()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# Users the shared cluster holds.  pg_hba demands SCRAM for scram_user and md5
# for md5_user (whose secret is stored as md5); everyone else is trusted.
SCRAM_USER, SCRAM_PASSWORD = "scram_user", "scram secret pw"
MD5_USER, MD5_PASSWORD = "md5_user", "md5 secret pw"


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    """A PostgreSQL 15 cluster shared by the session (do not stop it in a test)."""
    cluster = PgCluster(hba=[
        f"host all {SCRAM_USER} 127.0.0.1/32 scram-sha-256",
        f"host all {MD5_USER} 127.0.0.1/32 md5",
    ])
    try:
        cluster.sql(f"SET password_encryption = 'scram-sha-256'; "
                    f"CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}'")
        cluster.sql(f"SET password_encryption = 'md5'; CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}'")
        cluster.sql(f"GRANT ALL ON SCHEMA public TO {SCRAM_USER}, {MD5_USER}")
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pg_private() -> Iterator[PgCluster]:
    """A cluster of the test's own, which the test may stop and restart."""
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.close()
