"""Flush policies, the job system and compaction, against a running daemon (seed §1 and §3)."""
import os
import shutil
import subprocess
import time

import psycopg
import pytest

from tests.daemon import wait_for
from tests.helpers import assert_cold_consistent, manifest, scope_dir

FAST_RETRIES = "[jobs]\nmax_retries = {n}\nretry_backoff_seconds = 0.1\nretry_backoff_max_seconds = 0.5\n"


def job(c, job_id):
    return c.execute("SELECT status, message, retry_count, rows_affected, next_retry_at FROM system.jobs "
                     "WHERE job_id = %s", (job_id,)).fetchone()


def wait_job(c, job_id, statuses=("completed",), timeout=60):
    def done():
        row = job(c, job_id)
        return row if row and row[0] in statuses else None
    return wait_for(done, timeout=timeout, what=f"job {job_id} to reach {statuses}")


def flush_jobs(c, table):
    return c.execute("SELECT job_id, status FROM system.jobs WHERE job_type = 'flush' AND table_name = %s "
                     "ORDER BY created_at", (table,)).fetchall()


def table_state(c, table="app.t"):
    return c.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def setup_table(c, policy="manual"):
    c.execute("CREATE NAMESPACE IF NOT EXISTS app")
    c.execute(f"CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT) WITH (FLUSH_POLICY = '{policy}')")


def test_seed_1a_rows_policy_flushes_at_the_50th_row(tierd):
    with tierd.connect() as c:
        setup_table(c, "rows:50")
        for i in range(49):
            c.execute("INSERT INTO app.t VALUES (%s, 'r')", (i,))
        # The policy is checked as each commit returns: 49 rows started nothing.
        assert flush_jobs(c, "app.t") == []
        c.execute("INSERT INTO app.t VALUES (49, 'r')")
        jobs = flush_jobs(c, "app.t")
        assert len(jobs) == 1, jobs
        wait_job(c, jobs[0][0])
        m = manifest(tierd.data_dir, "app", "t")
        assert m["segments"][0]["row_count"] == 50
        assert os.path.exists(os.path.join(scope_dir(tierd.data_dir, "app", "t"), "batch-0.parquet"))
        assert c.execute("SELECT hot_rows, cold_rows FROM system.tables WHERE table_name = 't'").fetchone() == (0, 50)
        assert c.execute("SELECT count(*) FROM app.t").fetchone() == (50,)


def test_rows_counts_distinct_keys_not_versions(tierd):
    with tierd.connect() as c:
        setup_table(c, "rows:5")
        for i in range(10):  # ten versions of four keys
            c.execute("INSERT INTO app.t VALUES (%s, 'v') ON CONFLICT DO NOTHING", (i % 4,))
            c.execute("UPDATE app.t SET body = %s WHERE id = %s", (f"v{i}", i % 4))
        assert flush_jobs(c, "app.t") == []
        c.execute("DELETE FROM app.t WHERE id = 0")
        c.execute("INSERT INTO app.t VALUES (4, 'fifth key')")
        assert len(flush_jobs(c, "app.t")) == 1


def test_seed_1b_manual_flush_below_threshold_runs_at_once(tierd):
    with tierd.connect() as c:
        setup_table(c, "rows:1000")
        c.execute("INSERT INTO app.t SELECT i, 'x' FROM range(10) t(i)")
        job_id, status, message = c.execute("STORAGE FLUSH TABLE app.t").fetchone()
        assert message == f"Storage flush started for table 'app.t'. Job ID: {job_id}"
        assert status in ("queued", "running", "completed")
        wait_job(c, job_id)
        assert manifest(tierd.data_dir, "app", "t")["segments"][0]["row_count"] == 10
        assert c.execute("STORAGE FLUSH TABLE app.t").fetchone()[2] == \
            "Storage flush skipped: no pending writes for table 'app.t'"


def test_interval_policy_flushes_old_writes(tierd):
    with tierd.connect() as c:
        setup_table(c, "interval:1")
        c.execute("INSERT INTO app.t VALUES (1, 'a')")
        wait_for(lambda: manifest(tierd.data_dir, "app", "t"), timeout=30, what="an interval flush")
        # The manifest is the commit point; the job record completes a moment later.
        wait_for(lambda: c.execute("SELECT status FROM system.jobs WHERE table_name = 'app.t' "
                                           "AND job_type = 'flush'").fetchall()
                 == [("completed",)], timeout=30, what="the one flush job to complete")
        assert table_state(c) == [(1, "a")]


def test_writes_flow_during_flush_and_one_job_per_table(make_tierd):
    d = make_tierd('[failpoints]\n"flush.before_manifest" = "sleep:3000"\n').start()
    with d.connect() as c:
        setup_table(c)
        c.execute("INSERT INTO app.t SELECT i, 'old' FROM range(100) t(i)")
        job_id = c.execute("STORAGE FLUSH TABLE app.t").fetchone()[0]
        wait_job(c, job_id, ("running",))
        assert c.execute("STORAGE FLUSH TABLE app.t").fetchone()[1:] == (
            "skipped", "Storage flush skipped: a flush is already queued or running for table 'app.t'")
        assert c.execute("STORAGE COMPACT TABLE app.t").fetchone()[1] == "skipped"
        c.execute("INSERT INTO app.t SELECT i, 'new' FROM range(100, 150) t(i)")   # not blocked
        c.execute("UPDATE app.t SET body = 'changed' WHERE id < 10")
        assert job(c, job_id)[0] == "running"
        wait_job(c, job_id)
        rows = table_state(c)
        assert len(rows) == 150
        assert rows[:10] == [(i, "changed") for i in range(10)] and rows[120] == (120, "new")
        assert c.execute("SELECT hot_rows, cold_rows FROM system.tables WHERE table_name = 't'").fetchone() == (60, 100)
        c.execute("STORAGE FLUSH TABLE app.t WAIT")
        assert table_state(c) == rows
    assert_cold_consistent(d.data_dir, "app", "t")


def test_kill_running_flush_changes_nothing(make_tierd):
    d = make_tierd(FAST_RETRIES.format(n=0) + '[failpoints]\n"flush.after_parquet" = "sleep:2000"\n').start()
    with d.connect() as c:
        setup_table(c)
        c.execute("INSERT INTO app.t SELECT i, 'x' FROM range(20) t(i)")
        before = table_state(c)
        job_id = c.execute("STORAGE FLUSH TABLE app.t").fetchone()[0]
        wait_job(c, job_id, ("running",))
        reply = c.execute("KILL JOB %s" % f"'{job_id}'").fetchone()
        assert reply[0] == job_id
        assert wait_job(c, job_id, ("cancelled",))[1] == "cancelled by KILL JOB"
        assert table_state(c) == before
        assert manifest(d.data_dir, "app", "t") is None
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            c.execute(f"KILL JOB '{job_id}'")
        c.execute(f"RETRY JOB '{job_id}'")
        assert wait_job(c, job_id)[2] == 1
        assert table_state(c) == before
    assert_cold_consistent(d.data_dir, "app", "t")


def test_retry_job_after_failure_and_errors(make_tierd):
    d = make_tierd(FAST_RETRIES.format(n=0) + '[failpoints]\n"flush.before_manifest" = "error:1"\n').start()
    with d.connect() as c:
        setup_table(c)
        c.execute("INSERT INTO app.t SELECT i, 'x' FROM range(30) t(i)")
        before = table_state(c)
        job_id, status, message = c.execute("STORAGE FLUSH TABLE app.t WAIT").fetchone()
        assert status == "failed" and "injected fault" in message
        row = c.execute("SELECT status, error_trace IS NOT NULL, retry_count, max_retries FROM system.jobs "
                        "WHERE job_id = %s", (job_id,)).fetchone()
        assert row == ("failed", True, 0, 0)
        assert table_state(c) == before
        reply = c.execute(f"RETRY JOB '{job_id}'").fetchone()
        assert reply[0] == job_id and "queued for retry" in reply[2]
        final = wait_job(c, job_id)
        assert final[2] == 1 and final[3] == 30
        assert table_state(c) == before
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            c.execute(f"RETRY JOB '{job_id}'")  # (unknown jobs: tests/sql/storage/jobs.test)
    assert_cold_consistent(d.data_dir, "app", "t")
    failures = [line for line in d.output().splitlines() if job_id in line and "failed" in line]
    assert len(failures) == 1, failures  # one log line per failure, no traceback flood


def test_automatic_retries_with_backoff(make_tierd):
    d = make_tierd(FAST_RETRIES.format(n=3) + '[failpoints]\n"flush.after_parquet" = "error:2"\n').start()
    with d.connect() as c:
        setup_table(c)
        c.execute("INSERT INTO app.t SELECT i, 'x' FROM range(40) t(i)")
        job_id = c.execute("STORAGE FLUSH TABLE app.t").fetchone()[0]
        final = wait_job(c, job_id)
        assert final[2] == 2 and final[4] is None  # two automatic retries, none pending
        assert c.execute("SELECT count(*) FROM app.t").fetchone() == (40,)
    assert_cold_consistent(d.data_dir, "app", "t")


def test_job_fails_after_max_retries(make_tierd):
    d = make_tierd(FAST_RETRIES.format(n=2) + '[failpoints]\n"flush.start" = "error"\n').start()
    with d.connect() as c:
        setup_table(c)
        c.execute("INSERT INTO app.t VALUES (1, 'x')")
        job_id = c.execute("STORAGE FLUSH TABLE app.t").fetchone()[0]
        final = wait_job(c, job_id, ("failed",))
        assert final[2] == 2 and "injected fault at failpoint flush.start" in final[1]


def _segments(c, table="app.t"):
    for i in range(4):
        c.execute(f"INSERT INTO {table} SELECT i, 'v' || i FROM range({i * 25}, {(i + 1) * 25}) t(i)")
        if i:
            c.execute(f"UPDATE {table} SET body = 'u{i}' WHERE id % 10 = {i}")
            c.execute(f"DELETE FROM {table} WHERE id = {i * 7}")
        c.execute(f"STORAGE FLUSH TABLE {table} WAIT")


def test_compaction_merges_segments_and_keeps_answers(tierd):
    with tierd.connect() as c:
        setup_table(c)
        _segments(c)
        c.execute("INSERT INTO app.t VALUES (1000, 'hot')")  # hot rows on top stay on top
        c.execute("UPDATE app.t SET body = 'hot update' WHERE id = 1")
        before = table_state(c)
        m = manifest(tierd.data_dir, "app", "t")
        assert len(m["segments"]) >= 5 and any(s["kind"] == "delta" for s in m["segments"])
        old_files = {s["path"] for s in m["segments"]}
        job_id, status, message = c.execute("STORAGE COMPACT TABLE app.t WAIT").fetchone()
        assert job_id.startswith("CO-") and status == "completed", message
        assert table_state(c) == before
        m2 = manifest(tierd.data_dir, "app", "t")
        assert [s["kind"] for s in m2["segments"]] == ["base"] and m2["version"] == m["version"] + 1
        live_cold = c.execute("SELECT count(*) FROM app.t WHERE id <> 1000").fetchone()[0]
        assert m2["segments"][0]["row_count"] == live_cold
        wait_for(lambda: not (old_files & set(os.listdir(scope_dir(tierd.data_dir, "app", "t")))),
                 timeout=30, what="replaced segment files to be deleted")
        assert c.execute("STORAGE COMPACT TABLE app.t WAIT").fetchone()[1] == "skipped"
        c.execute("STORAGE FLUSH TABLE app.t WAIT")
        assert table_state(c) == before
    assert_cold_consistent(tierd.data_dir, "app", "t")


def test_compaction_runs_automatically_past_max_segments(make_tierd):
    d = make_tierd("[compaction]\nmax_segments = 3\n").start()
    with d.connect() as c:
        setup_table(c)
        _segments(c)
        before = table_state(c)
        wait_for(lambda: c.execute("SELECT status FROM system.jobs WHERE job_type = 'compact' "
                                   "AND status = 'completed'").fetchone(), timeout=60, what="automatic compaction")
        wait_for(lambda: len(manifest(d.data_dir, "app", "t")["segments"]) <= 3, timeout=30, what="few segments")
        assert table_state(c) == before
    assert_cold_consistent(d.data_dir, "app", "t")


COMPACT_STEPS = ["compact.start", "compact.before_parquet", "compact.after_parquet",
                 "compact.before_manifest", "compact.after_manifest"]


@pytest.fixture(scope="module")
def segmented(module_make_tierd):
    """A data dir with app.t in several segments (_segments), made once; tests copy it."""
    d = module_make_tierd().start()
    with d.connect() as c:
        setup_table(c)
        _segments(c)
    d.stop()
    return d.data_dir


def copy_of(data_dir: str, tmp_path) -> str:
    data = str(tmp_path / "data")
    shutil.copytree(data_dir, data)
    return data


@pytest.mark.parametrize("step", COMPACT_STEPS)
def test_compaction_failure_at_each_step(make_tierd, tmp_path, segmented, step):
    data = copy_of(segmented, tmp_path)
    d = make_tierd(FAST_RETRIES.format(n=0) + f'[failpoints]\n"{step}" = "error:1"\n', data_dir=data).start()
    with d.connect() as c:
        before = table_state(c)
        job_id, status, message = c.execute("STORAGE COMPACT TABLE app.t WAIT").fetchone()
        assert status == "failed" and step in message
        assert table_state(c) == before
        c.execute(f"RETRY JOB '{job_id}'")
        # After the manifest commit the compaction has taken effect; its retry finds nothing left.
        expected = ("skipped",) if step == "compact.after_manifest" else ("completed",)
        wait_job(c, job_id, expected)
        assert table_state(c) == before
        assert len(manifest(data, "app", "t")["segments"]) == 1
    assert_cold_consistent(data, "app", "t")


@pytest.mark.parametrize("kind", ["flush", "compact"])
def test_kill9_while_job_runs_then_restart(make_tierd, tmp_path, segmented, kind):
    data = copy_of(segmented, tmp_path)
    step = "flush.after_parquet" if kind == "flush" else "compact.after_parquet"
    slow = make_tierd(f'[failpoints]\n"{step}" = "sleep:60000"\n', data_dir=data).start()
    with slow.connect() as c:
        c.execute("INSERT INTO app.t SELECT i, 'hot' FROM range(500, 600) t(i)")
        before = table_state(c)
        job_id = c.execute(f"STORAGE {kind.upper()} TABLE app.t").fetchone()[0]
        wait_job(c, job_id, ("running",))
        wait_for(lambda: step in slow.output(), timeout=30, what="the job to reach its pause")
    slow.kill9()
    d2 = make_tierd(data_dir=data).start()
    with d2.connect() as c:
        assert table_state(c) == before
        final = wait_job(c, job_id, ("completed", "skipped"))
        assert final[2] >= 1  # failed by the crash, retried after restart
        assert table_state(c) == before
        assert c.execute("SELECT count(*) = count(DISTINCT id) FROM app.t").fetchone() == (True,)
    assert_cold_consistent(data, "app", "t")


def _mount_tmpfs(path: str, size: str) -> bool:
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True, text=True, timeout=30)
    return r.returncode == 0


def test_seed_3_disk_full_fails_then_retry_after_space_is_freed(make_tierd, tmp_path):
    data = tmp_path / "data"
    storage = str(data / "storage")
    if not _mount_tmpfs(storage, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        filler = os.path.join(storage, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # take all of the space
        try:
            for _ in range(1000):
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        d = make_tierd(FAST_RETRIES.format(n=0), data_dir=str(data)).start()
        with d.connect() as c:
            setup_table(c)
            c.execute("INSERT INTO app.t SELECT i, repeat('x', 50) || i FROM range(2000) t(i)")
            before = table_state(c)
            job_id, status, message = c.execute("STORAGE FLUSH TABLE app.t WAIT").fetchone()
            assert status == "failed", message
            row = c.execute("SELECT status, message FROM system.jobs WHERE job_id = %s", (job_id,)).fetchone()
            assert row[0] == "failed" and "No space left on device" in row[1]
            assert table_state(c) == before
            os.unlink(filler)  # the operator frees space
            c.execute(f"RETRY JOB '{job_id}'")
            wait_job(c, job_id)
            assert table_state(c) == before
            assert manifest(str(data), "app", "t")["segments"][0]["row_count"] == 2000
        d.stop()
        assert_cold_consistent(str(data), "app", "t")
    finally:
        subprocess.run(["umount", "-l", storage], capture_output=True, timeout=30)


def test_finished_jobs_are_pruned(make_tierd):
    d = make_tierd("[jobs]\nretention_seconds = 2\n").start()
    with d.connect() as c:
        setup_table(c)
        c.execute("INSERT INTO app.t VALUES (1, 'x')")
        job_id = c.execute("STORAGE FLUSH TABLE app.t WAIT").fetchone()[0]
        assert job(c, job_id)[0] == "completed"
        wait_for(lambda: job(c, job_id) is None, timeout=30, what="the finished job to be pruned")


def test_cancel_request_stops_a_wait_not_the_job(make_tierd):
    import threading

    d = make_tierd('[failpoints]\n"flush.start" = "sleep:3000"\n').start()
    with d.connect() as c, d.connect() as watcher:
        setup_table(c)
        c.execute("INSERT INTO app.t VALUES (1, 'x')")
        running = lambda: watcher.execute("SELECT job_id FROM system.jobs WHERE status = 'running' "
                                          "AND job_type = 'flush'").fetchone()
        t = threading.Thread(target=lambda: (wait_for(running, timeout=30, what="a running flush"), c.cancel()))
        t.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("STORAGE FLUSH TABLE app.t WAIT")
        t.join(timeout=30)
        job_id = running()[0]
        wait_job(c, job_id)  # the job itself went on to completion
        assert c.execute("SELECT cold_rows FROM system.tables WHERE table_name = 't'").fetchone() == (1,)


def test_drop_table_during_flush_leaves_no_ghost_rows(make_tierd, tmp_path):
    data = str(tmp_path / "data")
    d = make_tierd('[failpoints]\n"flush.after_parquet" = "sleep:1500"\n', data_dir=data).start()
    with d.connect() as c:
        setup_table(c)
        c.execute("INSERT INTO app.t SELECT i, 'old' FROM range(50) t(i)")
        job_id = c.execute("STORAGE FLUSH TABLE app.t").fetchone()[0]
        wait_job(c, job_id, ("running",))
        c.execute("DROP TABLE app.t")  # cancels the flush and waits for it to stop
        assert job(c, job_id)[0] in ("cancelled", "completed", "failed")
        c.execute("CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO app.t VALUES (1, 'new')")
        assert table_state(c) == [(1, "new")]
    d.stop()
    d2 = make_tierd(data_dir=data).start()
    with d2.connect() as c:
        assert table_state(c) == [(1, "new")]
        c.execute("STORAGE FLUSH TABLE app.t WAIT")
        assert table_state(c) == [(1, "new")]
    assert_cold_consistent(data, "app", "t")


def test_flush_wait_waits_for_a_running_policy_flush_then_flushes_the_rest(make_tierd):
    d = make_tierd('[failpoints]\n"flush.before_manifest" = "sleep:3000"\n').start()
    with d.connect() as c:
        setup_table(c, "rows:10")
        c.execute("INSERT INTO app.t SELECT i, 'x' FROM range(10) t(i)")  # starts a policy flush
        policy_job = flush_jobs(c, "app.t")[0][0]
        # The policy job may still be queued: its snapshot is taken when it starts. Its Parquet
        # file is written from that snapshot, so once the file exists a new row is not in it.
        segment = os.path.join(scope_dir(d.data_dir, "app", "t"), "batch-0.parquet")
        wait_for(lambda: os.path.exists(segment), timeout=60, what="the policy flush's Parquet file")
        c.execute("INSERT INTO app.t VALUES (100, 'late')")
        job_id, status, _ = c.execute("STORAGE FLUSH TABLE app.t WAIT").fetchone()
        assert job_id != policy_job and status == "completed"
        assert job(c, policy_job)[0] == "completed"
        assert c.execute("SELECT hot_rows, cold_rows FROM system.tables WHERE table_name = 't'").fetchone() == (0, 11)


def test_a_job_never_drops_out_of_system_jobs_while_its_status_changes(tierd):
    """Each status change rewrites the job's system.jobs row; a reader polling meanwhile must
    always find every job it has seen (the rewrite once went DELETE, then INSERT, as two
    commits: a policy flush going queued -> running was missing for a moment)."""
    import threading

    stop = threading.Event()
    gaps: list[str] = []

    def watch() -> None:
        seen: set = set()
        with tierd.connect() as w:
            while not stop.is_set():
                now = {r[0] for r in w.execute("SELECT job_id FROM system.jobs").fetchall()}
                gaps.extend(sorted(seen - now))
                seen |= now

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with tierd.connect() as c:
            setup_table(c)
            for i in range(60):
                c.execute("INSERT INTO app.t VALUES (%s, 'x')", (i,))
                c.execute("STORAGE FLUSH TABLE app.t WAIT")
    finally:
        stop.set()
        watcher.join(timeout=60)
    assert not watcher.is_alive()
    assert gaps == [], f"jobs missing from system.jobs for a moment: {gaps}"


def test_policy_does_not_restart_a_flush_that_failed_for_good(make_tierd):
    """A flush that fails the same way on every attempt stays failed with its cause after
    max_retries; the interval policy starts no new job for the table until a write."""
    d = make_tierd(FAST_RETRIES.format(n=1) + '[failpoints]\n"flush.start" = "error"\n').start()
    with d.connect() as c:
        setup_table(c, "interval:1")
        c.execute("INSERT INTO app.t VALUES (1, 'a')")
        first = wait_for(lambda: flush_jobs(c, "app.t") or None, timeout=30, what="a policy flush")[0][0]
        status, message, retries, _, _ = wait_job(c, first, ("failed",))
        assert retries == 1 and "flush.start" in message, message
        # Several policy ticks (one a second) pass: no new job for the failing table.
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            assert len(flush_jobs(c, "app.t")) == 1, flush_jobs(c, "app.t")
            c.execute("SELECT 1")
        # A write is a change: the policy tries again (and fails again, once more).
        c.execute("INSERT INTO app.t VALUES (2, 'b')")
        jobs = wait_for(lambda: len(flush_jobs(c, "app.t")) == 2 and flush_jobs(c, "app.t"), timeout=30,
                        what="a new policy flush after the write")
        wait_job(c, jobs[1][0], ("failed",))
        assert c.execute("SELECT count(*) FROM app.t").fetchone() == (2,)
