"""A real PostgreSQL 15 server for tests (the shared Iceberg catalog of several daemons), on a
free loopback port that stays the same across stop/start, so a test can take the catalog down
and bring it back. Built on the benchmark's server helpers (initdb as an unprivileged user)."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bench.servers import HOST, PG_BIN, PG_USER, pg_cmd, pg_os_user, stop_postgres, tail
from tests.daemon import free_port  # this pytest worker's port range


class PgServer:
    def __init__(self, workdir: str):
        self.workdir = Path(workdir)
        self.data = self.workdir / "data"
        self.log = self.workdir / "server.log"
        self.port = free_port()
        self.user = pg_os_user()

    @property
    def catalog_uri(self) -> str:
        """What `[iceberg] catalog_uri` takes (SQLAlchemy with psycopg 3)."""
        return f"postgresql+psycopg://{PG_USER}@{HOST}:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float) -> None:
        try:
            subprocess.run(pg_cmd(self.user, *argv), cwd=self.workdir, check=True, timeout=timeout,
                           capture_output=True, text=True)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"{argv[0]} failed:\n{e.stdout}\n{e.stderr}\n{tail(self.log)}") from e

    def start(self) -> "PgServer":
        if not (self.data / "PG_VERSION").exists():
            if self.user:
                pw = pwd.getpwnam(self.user)
                os.chown(self.workdir, pw.pw_uid, pw.pw_gid)
            self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", PG_USER, "-E", "UTF8",
                      "--locale=C", "--no-sync", timeout=180)
        opts = f"-p {self.port} -k {self.workdir} -c listen_addresses={HOST} -c fsync=off"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60",
                  "start", timeout=90)
        return self

    def stop(self) -> None:
        stop_postgres(self.user, self.data)


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    """One PostgreSQL 15 per test module; skipped when it is not installed (tests/install-test-deps.sh)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip("postgresql-15 is not installed (tests/install-test-deps.sh installs it)")
    # Not under pytest's tmp dir: that is private to root, and initdb runs as an unprivileged user.
    workdir = tempfile.mkdtemp(prefix="tierd-test-pg-")
    server = PgServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
