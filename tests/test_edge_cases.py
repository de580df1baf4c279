"""Edge cases found in review, each against a running daemon."""
import os

import psycopg
import pytest

from tests.daemon import wait_for


def test_rolled_back_seqs_never_reused_after_restart_with_cold_down(make_tierd, tmp_path):
    fast, data = tmp_path / "fast", str(tmp_path / "data")
    d = make_tierd(data_dir=data).start()
    with d.connect() as c:
        c.execute(f"CREATE STORAGE fast TYPE 'filesystem' PATH '{fast}'")
        c.execute("CREATE TABLE public.t (id INT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'fast')")
        c.execute("INSERT INTO t VALUES (1, 'a')")
        with d.connect(autocommit=False) as tx:
            tx.execute("INSERT INTO t VALUES (2, 'b'), (3, 'c'), (4, 'd')")
            tx.rollback()
        c.execute("STORAGE FLUSH TABLE public.t WAIT")
    d.stop()
    os.rename(fast, tmp_path / "away")
    d2 = make_tierd(data_dir=data).start()
    with d2.connect() as c:
        # The cold tier is unknown: an insert cannot be checked for uniqueness, so it is refused.
        with pytest.raises(psycopg.Error) as info:
            c.execute("INSERT INTO t VALUES (1, 'duplicate?')")
        assert "unavailable" in str(info.value)
    d2.stop()
    os.rename(tmp_path / "away", fast)
    d3 = make_tierd(data_dir=data).start()
    with d3.connect() as c:
        c.execute("INSERT INTO t VALUES (10, 'x'), (11, 'y')")
        c.execute("STORAGE FLUSH TABLE public.t WAIT")
        assert c.execute("SELECT id FROM t ORDER BY id").fetchall() == [(1,), (10,), (11,)]
    d3.stop()
    d4 = make_tierd(data_dir=data).start()
    with d4.connect() as c:
        assert c.execute("SELECT id FROM t ORDER BY id").fetchall() == [(1,), (10,), (11,)]


def test_statement_errors_never_leak_the_write_lock(make_tierd):
    d = make_tierd("[jobs]\nlock_timeout_seconds = 2\n").start()
    with d.connect() as a, d.connect() as b:
        a.execute("CREATE TABLE public.t (id INT PRIMARY KEY, v TEXT)")
        with pytest.raises(psycopg.errors.UndefinedParameter):
            a.execute(psycopg.sql.SQL("INSERT INTO t VALUES ($1, 'x')"))  # no parameters sent
        b.execute("INSERT INTO t VALUES (1, 'other session')")  # would time out on a leaked lock
        assert b.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_failed_system_column_query_in_transaction_does_not_stick(tierd):
    with tierd.connect(autocommit=False) as c:
        c.execute("CREATE TABLE public.h (id INT PRIMARY KEY, v TEXT)")
        c.commit()
        c.execute("INSERT INTO h VALUES (1, 'a')")
        with pytest.raises(psycopg.Error):
            c.execute("SELECT _seq, 1 / (id - 1) :: INT, no_such_column FROM h")
        c.rollback()
        c.execute("INSERT INTO h VALUES (2, 'b')")
        c.commit()
        assert [d.name for d in c.execute("SELECT * FROM h").description] == ["id", "v"]


def test_fast_retries_are_never_dropped(make_tierd):
    d = make_tierd("[jobs]\nmax_retries = 5\nretry_backoff_seconds = 0.001\nretry_backoff_max_seconds = 0.01\n"
                   '[failpoints]\n"flush.start" = "error:4"\n').start()
    with d.connect() as c:
        c.execute("CREATE TABLE public.r (id INT PRIMARY KEY) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO r VALUES (1)")
        job_id = c.execute("STORAGE FLUSH TABLE public.r").fetchone()[0]
        row = wait_for(lambda: c.execute("SELECT status, retry_count FROM system.jobs WHERE job_id = %s "
                                         "AND status IN ('completed', 'failed')", (job_id,)).fetchone(),
                       timeout=60, what="the job to finish")
        assert row == ("completed", 4)
