"""PgBouncer in front of tierd, as it is most often deployed: session pooling with its default
`server_reset_query = DISCARD ALL`. With one server connection in the pool, the second client
gets the first one's server session back, after DISCARD ALL: none of the first client's
cursors, advisory locks, settings, sequence state or prepared statements may reach it (psycopg
names its prepared statements `_pg3_0`, `_pg3_1`... on every connection, so a statement left
behind makes the next client's first prepare fail with 42P05). Had DISCARD ALL failed,
PgBouncer would have closed the server connection instead, and the backend pid would differ.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time

import psycopg
import pytest

from bench.servers import pg_os_user
from tests.daemon import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@pytest.fixture(scope="module")
def bouncer(module_tierd):
    if not os.access(PGBOUNCER, os.X_OK):
        pytest.skip("pgbouncer is not installed (tests/install-test-deps.sh installs it)")
    workdir = tempfile.mkdtemp(prefix="tierd-test-pgbouncer-")  # readable by the unprivileged user
    user = pg_os_user()  # PgBouncer refuses to run as root
    port = free_port()
    with open(os.path.join(workdir, "userlist.txt"), "w") as f:
        f.write('"tierd" ""\n')
    with open(os.path.join(workdir, "pgbouncer.ini"), "w") as f:
        f.write(f"""[databases]
tierd = host=127.0.0.1 port={module_tierd.port} dbname=tierd user=tierd

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
pool_mode = session
default_pool_size = 1
max_client_conn = 10
server_reset_query = DISCARD ALL
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
""")
    if user:
        pw = pwd.getpwnam(user)
        for name in ("", "userlist.txt", "pgbouncer.ini"):
            os.chown(os.path.join(workdir, name), pw.pw_uid, pw.pw_gid)
    argv = (["runuser", "-u", user, "--"] if user else []) + [PGBOUNCER, os.path.join(workdir, "pgbouncer.ini")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        dsn = f"host=127.0.0.1 port={port} user=tierd dbname=tierd connect_timeout=5"
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(dsn).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = open(os.path.join(workdir, "pgbouncer.log")).read() if os.path.exists(
                        os.path.join(workdir, "pgbouncer.log")) else proc.stdout.read().decode()
                    pytest.fail(f"pgbouncer did not come up:\n{log[-3000:]}")
                time.sleep(0.1)
        yield dsn, workdir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def test_pooled_clients_share_a_server_session_reset_by_discard_all(bouncer, module_tierd):
    dsn, workdir = bouncer
    with module_tierd.connect() as direct:
        direct.execute("CREATE SEQUENCE IF NOT EXISTS public.pooled_seq")
        direct.execute("CREATE TABLE IF NOT EXISTS public.pooled (id BIGINT PRIMARY KEY, v TEXT)")
    with psycopg.connect(dsn, autocommit=True) as first:
        pid = first.execute("SELECT pg_backend_pid()").fetchone()[0]
        first.execute("SET search_path = pg_catalog, public")
        first.execute("SELECT pg_advisory_lock(77)")
        first.execute("SELECT nextval('public.pooled_seq')")
        first.execute("LISTEN pooled_channel")
        with first.transaction():
            first.execute("DECLARE left_open CURSOR WITH HOLD FOR SELECT 1")
        first.execute("INSERT INTO public.pooled VALUES (%s, %s)", (1, "first"), prepare=True)
        assert first.execute("SELECT count(*) FROM pg_cursors").fetchone() == (1,)

    with psycopg.connect(dsn, autocommit=True) as second:
        assert second.execute("SELECT pg_backend_pid()").fetchone() == (pid,), (
            "PgBouncer opened a new server connection: its reset query failed?\n"
            + open(os.path.join(workdir, "pgbouncer.log")).read()[-3000:])
        # psycopg prepares `_pg3_0` again: the first client's one must be gone
        second.execute("INSERT INTO public.pooled VALUES (%s, %s)", (2, "second"), prepare=True)
        assert second.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)
        assert second.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()").fetchone() == (0,)
        assert second.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)
        assert second.execute("SHOW search_path").fetchone() == ('"$user", public',)
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            second.execute("SELECT currval('public.pooled_seq')")

    with module_tierd.connect() as direct:  # the lock was released on the server, not only hidden
        assert direct.execute("SELECT pg_try_advisory_lock(77)").fetchone() == (True,)
        assert direct.execute("SELECT id, v FROM public.pooled ORDER BY id").fetchall() == [(1, "first"), (2, "second")]
