"""tierd's storage jobs: STORAGE FLUSH throughput on fresh tables, and the GROUP BY over many small
segments before and after STORAGE COMPACT."""
from __future__ import annotations

import contextlib
import statistics
import time

import psycopg

from bench.cold_tier import JobRun, manifest_files, run_job, time_duckdb
from bench.data import GROUP_BY_SQL, create_like_events, fill_from_events, group_by_sql
from bench.harness import (DUCK, PG, TIERD, Bench, Measurement, attempt, check_answers, jobs_idle,
                           tierd_ready, time_query)


# --------------------------------------------------------------------------- workload: flush throughput

def wl_flush_throughput(b: Bench) -> list[Measurement]:
    """STORAGE FLUSH TABLE … WAIT on `runs` fresh tables of n hot rows each: rows/s from the
    job's own started_at/finished_at in system.jobs, and from the client-observed WAIT."""
    n, runs = b.args.flush_rows, b.args.runs
    server = Measurement(f"STORAGE FLUSH TABLE … WAIT, {n:,} hot rows → Parquet, server-side", "rows/s",
                         note=f"median over {runs} fresh tables (bench.flush_i, filled by INSERT … SELECT from "
                              "bench.events); duration = system.jobs finished_at − started_at")
    client = Measurement(f"STORAGE FLUSH TABLE … WAIT, {n:,} hot rows → Parquet, client-observed", "rows/s",
                         note="same runs; duration = statement sent → reply row read (includes queueing and the wire)")
    for m in (server, client):
        m.values[PG] = m.values[DUCK] = "n/a"
    if not tierd_ready(b, server, client):
        return [server, client]
    jobs: list[JobRun] = []

    def measure() -> float:
        with b.tierd() as conn:
            for i in range(runs):
                table = f"flush_{i}"
                create_like_events(conn, table)
                fill_from_events(conn, table, 0, n, b.args.events)
                jobs.append(run_job(b, conn, f"STORAGE FLUSH TABLE bench.{table} WAIT", expect_rows=n))
                with contextlib.suppress(psycopg.Error):
                    conn.execute(f"DROP TABLE bench.{table}")  # keep the daemon's footprint flat
        return n / statistics.median(j.server_s for j in jobs)

    server.values[TIERD] = attempt(b, f"{TIERD} flush throughput", measure)
    if isinstance(server.values[TIERD], float):
        client.values[TIERD] = n / statistics.median(j.wait_s for j in jobs)
        b.shared["flush_local"] = (n, n / statistics.median(j.server_s for j in jobs), client.values[TIERD])
        b.notes.append(f"flush runs, server-side: {fmt_s([j.server_s for j in jobs])}; client WAIT: "
                       f"{fmt_s([j.wait_s for j in jobs])}; e.g. job {jobs[0].job_id}: {jobs[0].message!r}")
        rate = server.values[TIERD]
        b.target("flush ≥ 2M rows/s (server-side median)", f"{rate:,.0f} rows/s ({n:,} rows/run)", rate >= 2e6)
    else:
        client.values[TIERD] = "error"
    return [server, client]


# --------------------------------------------------------------------------- workload: many small segments, compaction

def wl_segments(b: Bench) -> list[Measurement]:
    """bench.seg filled by `rounds` rounds of insert-then-flush (one small segment each), the
    GROUP BY timed, STORAGE COMPACT TABLE … WAIT, the GROUP BY timed again; DuckDB in-process on
    the manifest's files before and after; every answer checked against the others and
    PostgreSQL's."""
    rounds, per, runs = b.args.seg_rounds, b.args.seg_rows, b.args.query_runs
    total = rounds * per
    sql = group_by_sql("seg")
    before = Measurement(f"GROUP BY over {rounds} segments × {per:,} rows, before compaction", "ms",
                         note=f"bench.seg filled by {rounds} × (INSERT … SELECT {per:,} rows from bench.events; "
                              "STORAGE FLUSH TABLE bench.seg WAIT); DuckDB on the manifest's files")
    compact = Measurement(f"STORAGE COMPACT TABLE … WAIT, {rounds} segments, {total:,} rows", "ms",
                          note="measured once; client-observed WAIT (server-side duration in the notes)")
    after = Measurement(f"GROUP BY over the same {total:,} rows after compaction", "ms",
                        note="DuckDB on the manifest's files, re-read after the compaction")
    for m in (before, compact, after):
        m.values[PG] = "n/a"
    compact.values[DUCK] = "n/a"
    if not tierd_ready(b, before, compact, after):
        return [before, compact, after]
    manifest = b.tierd_data_dir / "storage" / "bench" / "seg" / "manifest.json"
    live = lambda: len(manifest_files(manifest, b, note=False))  # noqa: E731
    answers: dict[str, list[tuple]] = {}
    flushes: list[JobRun] = []

    def fill() -> float:
        t0 = time.perf_counter()
        with b.tierd() as conn:
            create_like_events(conn, "seg")
            for r in range(rounds):
                fill_from_events(conn, "seg", r * per, (r + 1) * per, b.args.events)
                flushes.append(run_job(b, conn, "STORAGE FLUSH TABLE bench.seg WAIT", expect_rows=per))
            secs = time.perf_counter() - t0
            jobs_idle(b, conn)  # the flushes' Iceberg publishes would share the CPU with the timed query
        if (segs := live()) != rounds:
            raise RuntimeError(f"bench.seg has {segs} live segments after {rounds} flushes, expected {rounds} "
                               "(did something compact it?)")
        b.notes.append(f"bench.seg fill: {rounds} rounds in {secs:.1f} s; flush of {per:,} rows: median "
                       f"{statistics.median(j.wait_s for j in flushes) * 1000:.0f} ms client WAIT; "
                       f"{rounds} live segments in the manifest before compaction")
        return secs

    if not isinstance(attempt(b, f"{TIERD} bench.seg fill", fill), float):
        for m in (before, compact, after):
            m.values.setdefault(TIERD, "error")
            m.values.setdefault(DUCK, "skipped")
        return [before, compact, after]

    before.values[TIERD] = attempt(b, f"{TIERD} seg group by (before)",
                                   lambda: time_query(b.tierd, runs, answers, f"{TIERD} before", sql))
    before.values[DUCK] = attempt(b, f"{DUCK} seg group by (before)", lambda: time_duckdb(
        manifest_files(manifest, b), runs, answers, "seg", f"{DUCK} before"))

    def do_compact() -> float:
        with b.tierd() as conn:
            job = run_job(b, conn, "STORAGE COMPACT TABLE bench.seg WAIT", expect_rows=total)
            jobs_idle(b, conn)  # as after the flushes: the compaction's publish runs next
        b.notes.append(f"compaction: job {job.job_id} {job.status}, server-side {job.server_s * 1000:,.0f} ms "
                       f"({total / job.server_s:,.0f} rows/s), client WAIT {job.wait_s * 1000:,.0f} ms; "
                       f"{live()} live segment(s) after; message {job.message!r}")
        return job.wait_s * 1000

    compact.values[TIERD] = attempt(b, f"{TIERD} compact", do_compact)
    after.values[TIERD] = attempt(b, f"{TIERD} seg group by (after)",
                                  lambda: time_query(b.tierd, runs, answers, f"{TIERD} after", sql))
    after.values[DUCK] = attempt(b, f"{DUCK} seg group by (after)", lambda: time_duckdb(
        manifest_files(manifest, b), runs, answers, "seg", f"{DUCK} after"))
    if total <= b.args.events:  # bench.seg holds exactly events ids 0..total-1
        ref = f"{PG} (bench.events WHERE id < {total:,})"
        attempt(b, f"{PG} seg reference answer", lambda: float(len(answers.setdefault(
            ref, b.pg().execute(GROUP_BY_SQL.replace("GROUP BY", f"WHERE id < {total} GROUP BY")).fetchall()))))
    check_answers(b, answers, total, "GROUP BY over bench.seg")
    for m, when in ((before, f"{rounds} small segments, before compaction"), (after, "after compaction")):
        t, d = m.values.get(TIERD), m.values.get(DUCK)
        if isinstance(t, float) and isinstance(d, float):
            b.target(f"analytic query over cold data ≤ 1.1× DuckDB in-process ({when})",
                     f"{t / d:.2f}× ({t:.1f} ms vs {d:.1f} ms)", t / d <= 1.1)
    tb, ta = before.values.get(TIERD), after.values.get(TIERD)
    db, da = before.values.get(DUCK), after.values.get(DUCK)
    if all(isinstance(x, float) for x in (tb, ta, db, da)):
        b.notes.append(f"compaction effect on the GROUP BY (time before / time after, >1 = faster after): "
                       f"tierd {tb / ta:.2f}×, DuckDB {db / da:.2f}×")
    return [before, compact, after]


def fmt_s(seconds: list[float]) -> str:
    return ", ".join(f"{x * 1000:,.0f}" for x in seconds) + " ms"
