"""Full disks, against the daemon as a process: a small tmpfs under the hot tier (LevelDB)
or under the storage (Parquet). While the disk is full, writes fail with 53100 and nothing
is left half-done (no invisible job); once space is freed, writes and flushes resume without
a restart and every acknowledged row is there. Mounting a tmpfs needs root (CI runs as root).
"""
from __future__ import annotations

import os
import subprocess
import urllib.request

import psycopg
import pytest

from tests.daemon import free_port, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")

ROW = 256 * 1024  # bytes of random text per row: LevelDB cannot compress it away


@pytest.fixture
def tmpfs(tmp_path):
    """mount(dir, size) -> dir: a tmpfs, unmounted after the test (after its daemons stop)."""
    mounted = []

    def mount(path: str, size: str) -> str:
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", path], check=False)


def fill(directory: str, leave: int) -> str:
    """A file taking all the free space of `directory`'s filesystem but `leave` bytes."""
    st = os.statvfs(directory)
    path = os.path.join(directory, "filler")
    with open(path, "wb") as f:
        left = st.f_bavail * st.f_frsize - leave
        while left > 0:
            n = min(left, 1 << 20)
            try:
                f.write(b"\0" * n)
                f.flush()
            except OSError:
                break
            left -= n
    return path


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def config(metrics_port: int) -> str:
    return f"""
[flush]
default_policy = "manual"
[jobs]
max_retries = 1
retry_backoff_seconds = 0.2
retry_backoff_max_seconds = 0.5
[metrics]
listen = "127.0.0.1:{metrics_port}"
"""


def insert_until_full(c: psycopg.Connection, first: int, limit: int = 400) -> tuple[list[int], psycopg.Error]:
    acked = []
    for i in range(first, first + limit):
        try:
            c.execute("INSERT INTO t VALUES (%s, %s)", (i, os.urandom(ROW // 2).hex()))
        except psycopg.Error as exc:
            return acked, exc
        acked.append(i)
    raise AssertionError(f"the disk never filled up ({len(acked)} rows written)")


def insert_works(c: psycopg.Connection, key: int) -> bool:
    try:
        c.execute("INSERT INTO t VALUES (%s, 'after')", (key,))
        return True
    except psycopg.Error:
        return False


def active_jobs(c: psycopg.Connection) -> int:
    return c.execute("SELECT count(*) FROM system.jobs WHERE status IN ('queued', 'running', 'retrying')"
                     ).fetchone()[0]


def test_full_hot_tier_then_space_freed(tmpfs, make_tierd, tmp_path):
    data = str(tmp_path / "data")
    hot = tmpfs(os.path.join(data, "hot"), "24m")
    mport = free_port()
    d = make_tierd(config(mport), data_dir=data).start()
    pid = d.proc.pid
    with d.connect() as c:
        c.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO t VALUES (0, 'first')")
        filler = fill(hot, leave=2 << 20)
        acked, err = insert_until_full(c, 1)
        assert err.sqlstate == "53100", (err.sqlstate, str(err))
        assert "could not extend file" in str(err) and "No space left on device" in str(err)
        assert "b'" not in str(err)
        # a flush cannot even record its job: an error, and nothing left behind
        with pytest.raises(psycopg.Error) as flush_err:
            c.execute("STORAGE FLUSH TABLE t WAIT")
        assert flush_err.value.sqlstate == "53100"
        assert active_jobs(c) == 0
        assert c.execute("SELECT count(*) FROM t").fetchone()[0] == len(acked) + 1   # reads go on
        assert metric(mport, "tierd_hot_tier_writable") == 0
        os.unlink(filler)
        wait_for(lambda: insert_works(c, 100_000), timeout=30, what="writes to resume once space is freed")
        assert metric(mport, "tierd_hot_tier_writable") == 1
        row = c.execute("STORAGE FLUSH TABLE t WAIT").fetchone()
        assert row[1] == "completed", row
        keys = {r[0] for r in c.execute("SELECT id FROM t").fetchall()}
        assert keys == {0, 100_000, *acked}
    assert d.proc.pid == pid and d.proc.poll() is None   # no restart
    assert "Traceback" not in d.output()


def test_leveldb_compaction_hits_a_full_disk_then_space_freed(tmpfs, make_tierd, tmp_path):
    """LevelDB's background compaction (its memtable written out as a table file) fails on a
    full disk; LevelDB then refuses every write until it is opened again."""
    data = str(tmp_path / "data")
    hot = tmpfs(os.path.join(data, "hot"), "32m")
    d = make_tierd(config(free_port()), data_dir=data).start()
    with d.connect() as c:
        c.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        # room for the log of one memtable (4 MiB) but not for the table file it becomes
        filler = fill(hot, leave=6 << 20)
        acked, err = insert_until_full(c, 1)
        assert err.sqlstate == "53100", (err.sqlstate, str(err))
        assert not insert_works(c, 50_000)   # still failing while the disk is full
        os.unlink(filler)
        wait_for(lambda: insert_works(c, 100_000), timeout=30, what="writes to resume once space is freed")
        for i in range(100_001, 100_030):   # more than a memtable: compaction runs again
            c.execute("INSERT INTO t VALUES (%s, %s)", (i, os.urandom(ROW // 2).hex()))
        assert c.execute("STORAGE FLUSH TABLE t WAIT").fetchone()[1] == "completed"
        keys = {r[0] for r in c.execute("SELECT id FROM t").fetchall()}
        assert keys == {*acked, *range(100_000, 100_030)}
    d.restart()   # and what LevelDB holds is intact
    with d.connect() as c:
        assert c.execute("SELECT count(*) FROM t").fetchone()[0] == len(acked) + 30


def test_full_storage_then_space_freed(tmpfs, make_tierd, tmp_path):
    """A full storage directory fails flushes and compactions with Postgres's 53100 wording
    (in system.jobs and in the WAIT answer, not OSError's text); once space is freed they are
    retried and nothing is lost."""
    data = str(tmp_path / "data")
    storage = tmpfs(os.path.join(data, "storage"), "24m")
    d = make_tierd(config(free_port()), data_dir=data).start()
    with d.connect() as c:
        c.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        for first in (1000, 2000):   # two segments, for a compaction to merge
            for i in range(first, first + 4):
                c.execute("INSERT INTO t VALUES (%s, %s)", (i, os.urandom(ROW // 2).hex()))
            assert c.execute("STORAGE FLUSH TABLE t WAIT").fetchone()[1] == "completed"
        for i in range(40):   # ~10 MiB of random text: more than the storage has left
            c.execute("INSERT INTO t VALUES (%s, %s)", (i, os.urandom(ROW // 2).hex()))
        filler = fill(storage, leave=256 << 10)
        job_id, status, answer = c.execute("STORAGE FLUSH TABLE t WAIT").fetchone()
        assert status == "failed", status
        message = c.execute("SELECT message FROM system.jobs WHERE job_id = %s", (job_id,)).fetchone()[0]
        for text in (message, answer):
            assert text.startswith('could not extend file "' + storage), text
            assert text.endswith('": No space left on device'), text
        compact_id, status, answer = c.execute("STORAGE COMPACT TABLE t WAIT").fetchone()
        assert status == "failed" and answer.startswith('could not extend file "' + storage), answer
        assert "No space left on device" in answer and "Errno" not in answer, answer
        assert active_jobs(c) == 0
        assert c.execute("SELECT count(*) FROM t").fetchone()[0] == 48   # all still readable
        os.unlink(filler)
        for job in (job_id, compact_id):
            c.execute(f"RETRY JOB '{job}'")
            wait_for(lambda: c.execute("SELECT status FROM system.jobs WHERE job_id = %s", (job,)
                                       ).fetchone()[0] == "completed", timeout=60, what="the retried job")
        assert c.execute("SELECT count(*) FROM t").fetchone()[0] == 48
        c.execute("INSERT INTO t VALUES (5000, 'after')")
        assert c.execute("STORAGE FLUSH TABLE t WAIT").fetchone()[1] == "completed"
        assert c.execute("SELECT count(*) FROM t").fetchone()[0] == 49
    assert "Traceback" not in d.output()
