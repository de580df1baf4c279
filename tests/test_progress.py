"""Progress where operators look for it (issue 14): phase, rows and bytes of running flushes and
compactions in system.jobs, and running COPYs in pg_stat_progress_copy. Failpoints hold a job
at a known step so the progress it shows there is exact."""
from __future__ import annotations

import threading

from tests.daemon import wait_for

JOB_PROGRESS = ("SELECT status, phase, rows_done, rows_total, bytes_done, bytes_total, rows_affected "
                "FROM system.jobs WHERE table_name = 'public.p' AND job_type = %s ORDER BY created_at DESC LIMIT 1")


def _start_in_thread(d, sql: str) -> threading.Thread:
    def run():
        with d.connect() as c:
            c.execute(sql)
    th = threading.Thread(target=run)
    th.start()
    return th


def test_flush_and_compaction_progress_in_system_jobs(make_tierd):
    d = make_tierd('[failpoints]\n"flush.before_manifest" = "sleep:4000"\n'
                   '"compact.before_manifest" = "sleep:4000"\n').start()
    with d.connect() as c:
        c.execute("CREATE TABLE public.p (id BIGINT PRIMARY KEY, v TEXT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO public.p SELECT i, 'v' || i FROM range(1000) t(i)")
        th = _start_in_thread(d, "STORAGE FLUSH TABLE public.p WAIT")
        row = wait_for(lambda: (r := c.execute(JOB_PROGRESS, ["flush"]).fetchone()) and r[1] == "committing manifest"
                       and r, timeout=30, what="the flush at its manifest commit")
        status, phase, done, total, nbytes, bytes_total, _ = row
        assert (status, done, total, bytes_total) == ("running", 1000, 1000, None)
        assert nbytes > 0  # the Parquet segment is written
        th.join(timeout=60)
        assert c.execute(JOB_PROGRESS, ["flush"]).fetchone() == ("completed", None, 1000, 1000, nbytes, None, 1000)

        c.execute("UPDATE public.p SET v = 'new' WHERE id < 100")
        c.execute("STORAGE FLUSH TABLE public.p WAIT")  # a second segment: 100 newer versions
        segments = c.execute("SELECT sum(size_bytes) FROM system.manifest WHERE table_name = 'p'").fetchone()[0]
        th = _start_in_thread(d, "STORAGE COMPACT TABLE public.p WAIT")
        row = wait_for(lambda: (r := c.execute(JOB_PROGRESS, ["compact"]).fetchone()) and r[1] == "committing manifest"
                       and r, timeout=30, what="the compaction at its manifest commit")
        status, phase, done, total, nbytes, bytes_total, _ = row
        # 1100 row versions are read, 1000 live rows written; the input is the two segments
        assert (status, done, total, bytes_total) == ("running", 1000, 1100, segments)
        assert nbytes > 0
        th.join(timeout=60)
        assert c.execute(JOB_PROGRESS, ["compact"]).fetchone()[:2] == ("completed", None)


def test_running_copy_in_pg_stat_progress_copy(tierd):
    with tierd.connect() as c:
        c.execute("CREATE TABLE public.big (id BIGINT PRIMARY KEY, pad TEXT)")
        relid = c.execute("SELECT oid FROM pg_class WHERE relname = 'big'").fetchone()[0]
        assert c.execute("SELECT count(*) FROM pg_stat_progress_copy").fetchone() == (0,)
        line = "x" * 80
        first = "".join(f"{i}\t{line}\n" for i in range(120_000)).encode()  # > one 8 MiB input block
        with tierd.connect() as loader:
            with loader.cursor().copy("COPY public.big FROM STDIN") as cp:
                cp.write(first)
                row = wait_for(lambda: c.execute(
                    "SELECT relid, datname, command, type, tuples_processed, bytes_processed, bytes_total "
                    "FROM pg_stat_progress_copy WHERE tuples_processed > 0").fetchone(), timeout=60,
                    what="the COPY's first block in pg_stat_progress_copy")
                got_relid, datname, command, kind, tuples, nbytes, total = row
                assert (got_relid, datname, command, kind, total) == (relid, "tierd", "COPY FROM", "PIPE", 0)
                assert 0 < tuples <= 120_000 and 7 << 20 <= nbytes <= len(first)  # whole rows of one 8 MiB block
                cp.write("".join(f"{i}\t{line}\n" for i in range(120_000, 130_000)).encode())
        assert c.execute("SELECT count(*) FROM public.big").fetchone() == (130_000,)
        assert c.execute("SELECT count(*) FROM pg_stat_progress_copy").fetchone() == (0,)
