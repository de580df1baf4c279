"""STREAM tables over the wire: hot only, TTL_SECONDS required, expired rows hidden at once and
evicted by stream_eviction jobs, flush refused."""
import os

from tests.daemon import wait_for


def test_flush_all_skips_streams(tierd):
    """(STORAGE FLUSH TABLE of a STREAM table is refused: tests/sql/stream/kill9.test.)"""
    with tierd.connect() as c:
        c.execute("CREATE STREAM TABLE public.ev (id BIGINT PRIMARY KEY, v TEXT) WITH (TTL_SECONDS = 3600)")
        c.execute("CREATE TABLE public.plain (id BIGINT PRIMARY KEY) WITH (FLUSH_POLICY = 'rows:1')")
        c.execute("INSERT INTO public.ev SELECT i, 'v' || i FROM range(100) t(i)")  # no policy applies
        tables = [r[2] for r in c.execute("STORAGE FLUSH ALL WAIT").fetchall()]
        assert all("public.ev" not in m for m in tables) and any("public.plain" in m for m in tables)
        assert c.execute("SELECT count(*) FROM public.ev").fetchone() == (100,)
        assert c.execute("SELECT count(*) FROM system.jobs WHERE table_name = 'public.ev'").fetchone() == (0,)
    assert not os.path.exists(os.path.join(tierd.data_dir, "storage", "public", "ev"))


def test_expired_rows_disappear_and_are_evicted_by_a_job(tierd):
    with tierd.connect() as c:
        c.execute("CREATE STREAM TABLE public.ev (id BIGINT PRIMARY KEY, v TEXT) WITH (TTL_SECONDS = 1)")
        c.execute("INSERT INTO public.ev VALUES (1, 'a'), (2, 'b')")
        c.execute("UPDATE public.ev SET v = 'b2' WHERE id = 2")
        wait_for(lambda: c.execute("SELECT count(*) FROM public.ev").fetchone() == (0,), timeout=30,
                 what="expired rows to disappear")
        job = wait_for(lambda: c.execute(
            "SELECT job_id, status, rows_affected, message FROM system.jobs "
            "WHERE job_type = 'stream_eviction' AND table_name = 'public.ev' AND status = 'completed'").fetchone(),
            timeout=30, what="a completed stream_eviction job")
        assert job[0].startswith("SE-") and job[2] >= 1 and "public.ev" in job[3]
        wait_for(lambda: c.execute("SELECT sum(rows_affected) FROM system.jobs WHERE job_type = 'stream_eviction' "
                                   "AND status = 'completed'").fetchone() == (3,), timeout=30,
                 what="all three row versions evicted")
        assert c.execute("SELECT hot_rows FROM system.tables WHERE table_name = 'ev'").fetchone() == (0,)
        c.execute("INSERT INTO public.ev VALUES (1, 'fresh')")
        assert c.execute("SELECT id, v FROM public.ev").fetchall() == [(1, "fresh")]


def test_expired_rows_are_invisible_before_eviction_runs(make_tierd):
    d = make_tierd('[jobs]\nmax_retries = 0\n[failpoints]\n"stream_eviction.start" = "error"\n').start()
    with d.connect() as c:
        c.execute("CREATE STREAM TABLE public.ev (id BIGINT PRIMARY KEY, v TEXT) WITH (TTL_SECONDS = 1)")
        c.execute("INSERT INTO public.ev VALUES (1, 'old')")
        wait_for(lambda: c.execute("SELECT count(*) FROM system.jobs WHERE job_type = 'stream_eviction' "
                                   "AND status = 'failed'").fetchone()[0] >= 1, timeout=30,
                 what="a failed (injected) eviction job")
        assert c.execute("SELECT * FROM public.ev").fetchall() == []
        assert c.execute("SELECT count(*) FROM public.ev WHERE _seq > 0").fetchone() == (0,)
        assert c.execute("SELECT hot_rows FROM system.tables WHERE table_name = 'ev'").fetchone() == (0,)
        c.execute("INSERT INTO public.ev VALUES (1, 'new')")  # the expired key is free again
        assert c.execute("SELECT id, v FROM public.ev").fetchall() == [(1, "new")]
