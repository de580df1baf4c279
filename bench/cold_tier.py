"""tierd's cold tier as the workloads see it: STORAGE … WAIT jobs (checked against system.jobs),
the live Parquet segments a table's manifest lists, and DuckDB in-process over those files."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg

from bench.data import group_by_sql
from bench.harness import DUCK, Bench, bounded, warm_median_ms


# Segment states that must not be read (live ones may be unset, "active", "live", "compacted", ...).
DEAD_SEGMENT_STATES = {"deleted", "superseded", "pending", "failed", "obsolete", "removed", "tombstoned"}


@dataclass
class JobRun:
    """One STORAGE … WAIT: the reply row plus its system.jobs record."""

    job_id: str
    status: str
    message: str
    wait_s: float  # client-observed: statement sent → reply read
    server_s: float  # system.jobs finished_at - started_at (excludes queueing and the wire)
    rows_affected: int | None


def run_job(b: Bench, conn: psycopg.Connection, sql: str, expect_rows: int | None = None) -> JobRun:
    """Run a STORAGE … WAIT statement within --job-timeout; the reply row is (job_id, status,
    message). Anything but status 'completed' (or a wrong rows_affected) raises."""
    with bounded(conn, b.args.job_timeout, sql):
        t0 = time.perf_counter()
        row = conn.execute(sql).fetchone()
        wait_s = time.perf_counter() - t0
    if row is None or len(row) < 3:
        raise RuntimeError(f"{sql} returned {row!r}, expected (job_id, status, message)")
    job_id, status, message = (str(x) for x in row[:3])
    if status.lower() != "completed":
        raise RuntimeError(f"{sql}: job {job_id} ended {status!r}: {message}")
    rec = conn.execute("SELECT status, rows_affected, started_at, finished_at FROM system.jobs WHERE job_id = %s",
                       (job_id,)).fetchone()
    if rec is None:
        raise RuntimeError(f"{sql}: job {job_id} is not in system.jobs")
    jstatus, affected, started, finished = rec
    if str(jstatus).lower() != "completed" or started is None or finished is None:
        raise RuntimeError(f"system.jobs says job {job_id} is {jstatus!r} (started {started}, finished {finished})")
    if expect_rows is not None and affected != expect_rows:
        raise RuntimeError(f"{sql}: job {job_id} rows_affected={affected}, expected {expect_rows}")
    return JobRun(job_id, status, message, wait_s, (finished - started).total_seconds(), affected)


def manifest_files(manifest: Path, b: Bench, note: bool = True) -> list[str]:
    """The live segment files of one scope, from its manifest (never by listing the directory)."""
    if not manifest.exists():
        raise RuntimeError(f"no manifest at {manifest} (did the flush write one?)")
    doc = json.loads(manifest.read_text())
    segs = [s for s in doc.get("segments", []) if str(s.get("status", "")).lower() not in DEAD_SEGMENT_STATES]
    if not segs:
        raise RuntimeError(f"manifest {manifest} lists no live segments")
    files = [str((manifest.parent / s["path"]).resolve()) for s in segs]
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise RuntimeError(f"manifest lists missing files: {missing[:3]}")
    if any(str(s.get("kind", "base")) != "base" for s in segs):
        # delta segments carry newer versions/tombstones: a plain read_parquet would double-count
        raise RuntimeError(f"manifest {manifest} has non-base segments; DuckDB would need a merge-on-read")
    rows = sum(int(s.get("row_count", 0)) for s in segs)
    if note:
        b.notes.append(f"tierd cold tier of {manifest.parent.parent.name}.{manifest.parent.name}: {len(segs)} "
                       f"segment(s), {rows:,} rows, {sum(Path(f).stat().st_size for f in files) / 2**20:.1f} MiB Parquet")
    return files


def time_duckdb(files: list[str], runs: int, answers: dict[str, list[tuple]],
                table: str = "events", key: str = DUCK) -> float:
    """Same SQL in DuckDB in-process: bench.<table> is a view over the Parquet files."""
    con = duckdb.connect()
    sql = group_by_sql(table)
    try:
        con.execute("CREATE SCHEMA bench")
        con.execute(f"CREATE VIEW bench.{table} AS SELECT * FROM read_parquet({json.dumps(files)})")
        return warm_median_ms(runs, lambda: con.execute(sql).fetchall(), answers, key)
    finally:
        con.close()
