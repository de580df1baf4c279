"""Iceberg publishing (README "Scaling out"): what a publish adds to a flush, and an external
engine's scan of the published table (DuckDB's iceberg_scan) vs tierd's own GROUP BY."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import statistics
import time

import duckdb
import psycopg

from bench.cold_tier import run_job
from bench.data import create_like_events, fill_from_events, group_by_sql
from bench.harness import DUCK, PG, TIERD, Bench, Measurement, attempt, check_answers, jobs_idle, \
    tierd_ready, time_query, warm_median_ms


def publish_job(b: Bench, conn: psycopg.Connection, table: str, after: str) -> float:
    """Server-side seconds of the table's first completed publish job that started after the
    flush finished at `after` (the publish follows the flush as its own job)."""
    deadline = time.monotonic() + b.args.job_timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT status, started_at, finished_at, message FROM system.jobs WHERE job_type = 'publish' "
            "AND table_name = %s AND created_at >= %s::TIMESTAMPTZ AND status IN ('completed', 'failed') "
            "ORDER BY created_at LIMIT 1", (table, after)).fetchone()
        if row is not None:
            if row[0] != "completed":
                raise RuntimeError(f"publish of {table} failed: {row[3]}")
            return (row[2] - row[1]).total_seconds()
        time.sleep(0.05)
    raise TimeoutError(f"no publish of {table} within {b.args.job_timeout} s")


def wl_iceberg_publish(b: Bench) -> list[Measurement]:
    """For `runs` fresh tables of n rows: STORAGE FLUSH TABLE … WAIT, then the publish job that
    follows it (system.jobs durations, server-side); then an UPDATE of 1% of the rows and a
    flush, whose publish also writes position deletes. The target: publish ≤ 10% of the flush."""
    n, runs = b.args.flush_rows, max(1, min(3, b.args.runs))
    append = Measurement(f"Iceberg publish after a flush of {n:,} new rows", "ms",
                         note=f"median over {runs} fresh tables; system.jobs duration of the IP- job "
                              "(the flush's own duration in the notes)")
    delta = Measurement(f"Iceberg publish after a flush updating {n // 100:,} of them", "ms",
                        note="a delta segment: the older versions are hidden with a position-delete file")
    for m in (append, delta):
        m.values[PG] = m.values[DUCK] = "n/a"
    if not tierd_ready(b, append, delta):
        return [append, delta]
    flushes: list[float] = []
    publishes: list[float] = []
    delta_flushes: list[float] = []
    delta_publishes: list[float] = []

    def measure() -> float:
        with b.tierd() as conn:
            for i in range(runs):
                table = f"ice_{i}"
                create_like_events(conn, table)
                fill_from_events(conn, table, 0, n, b.args.events)
                jobs_idle(b, conn)  # the publishes of earlier workloads' tables are not this one's
                job = run_job(b, conn, f"STORAGE FLUSH TABLE bench.{table} WAIT", expect_rows=n)
                done = conn.execute("SELECT finished_at FROM system.jobs WHERE job_id = %s", (job.job_id,)).fetchone()[0]
                flushes.append(job.server_s)
                publishes.append(publish_job(b, conn, f"bench.{table}", done.isoformat()))
                conn.execute(f"UPDATE bench.{table} SET value = value + 1 WHERE id % 100 = 0")
                jobs_idle(b, conn)
                job = run_job(b, conn, f"STORAGE FLUSH TABLE bench.{table} WAIT")
                done = conn.execute("SELECT finished_at FROM system.jobs WHERE job_id = %s", (job.job_id,)).fetchone()[0]
                delta_flushes.append(job.server_s)
                delta_publishes.append(publish_job(b, conn, f"bench.{table}", done.isoformat()))
                with contextlib.suppress(psycopg.Error):
                    conn.execute(f"DROP TABLE bench.{table}")
        return statistics.median(publishes) * 1000

    append.values[TIERD] = attempt(b, f"{TIERD} iceberg publish", measure)
    if isinstance(append.values[TIERD], float):
        delta.values[TIERD] = statistics.median(delta_publishes) * 1000
        flush_s, pub_s = statistics.median(flushes), statistics.median(publishes)
        b.notes.append(f"Iceberg publish after a flush of {n:,} rows: {pub_s * 1000:,.0f} ms vs the flush's "
                       f"{flush_s * 1000:,.0f} ms ({pub_s / flush_s:.1%}); runs: "
                       f"{', '.join(f'{p * 1000:,.0f}/{f * 1000:,.0f}' for p, f in zip(publishes, flushes))} ms; "
                       f"after the 1% update: {statistics.median(delta_publishes) * 1000:,.0f} ms vs the flush's "
                       f"{statistics.median(delta_flushes) * 1000:,.0f} ms")
        b.target(f"Iceberg publish ≤ 10% of the flush ({n:,} rows)",
                 f"{pub_s / flush_s:.1%} ({pub_s * 1000:,.0f} ms of {flush_s * 1000:,.0f} ms)", pub_s / flush_s <= 0.10)
    else:
        delta.values[TIERD] = "error"
    return [append, delta]


def _extension(package: str, name: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise RuntimeError(f"{package} is not installed (pip install '.[test]')")
    root = list(spec.submodule_search_locations)[0]
    return os.path.join(root, "extensions", "v" + duckdb.__version__, f"{name}.duckdb_extension")


def wl_iceberg_scan(b: Bench) -> list[Measurement]:
    """The events GROUP BY: tierd over the wire vs DuckDB's iceberg_scan of the Iceberg table
    tierd published for bench.events (an external engine reading the same files)."""
    runs = b.args.query_runs
    m = Measurement(f"GROUP BY over bench.events ({b.args.events:,} rows): tierd vs an Iceberg reader", "ms",
                    note=f"{DUCK} column: DuckDB's iceberg_scan of the published table (extension loaded by "
                         "path from duckdb-extension-iceberg), warm median")
    m.values[PG] = "n/a"
    if not tierd_ready(b, m):
        return [m]
    answers: dict[str, list[tuple]] = {}
    with b.tierd() as conn:
        wait_published(b, conn, "bench", "events")
    m.values[TIERD] = attempt(b, f"{TIERD} events group by (iceberg cell)",
                              lambda: time_query(b.tierd, runs, answers, TIERD, group_by_sql("events")))

    def external() -> float:
        from pyiceberg.catalog import load_catalog

        cat = load_catalog("tierd", type="sql", uri=f"sqlite:///{b.tierd_data_dir / 'iceberg' / 'catalog.db'}")
        location = cat.load_table("bench.events").metadata_location
        con = duckdb.connect(config={"allow_unsigned_extensions": "true", "autoload_known_extensions": "false",
                                     "autoinstall_known_extensions": "false"})
        try:
            con.execute(f"LOAD '{_extension('duckdb_extension_avro', 'avro')}'")
            con.execute(f"LOAD '{_extension('duckdb_extension_iceberg', 'iceberg')}'")
            con.execute("CREATE SCHEMA bench")
            con.execute(f"CREATE VIEW bench.events AS SELECT * FROM iceberg_scan('{location}')")
            return warm_median_ms(runs, lambda: con.execute(group_by_sql("events")).fetchall(), answers,
                                  "DuckDB iceberg_scan")
        finally:
            con.close()

    m.values[DUCK] = attempt(b, "DuckDB iceberg_scan events group by", external)
    check_answers(b, answers, b.args.events, "GROUP BY over the published bench.events")
    t, d = m.values.get(TIERD), m.values.get(DUCK)
    if isinstance(t, float) and isinstance(d, float):
        b.notes.append(f"external engine (DuckDB iceberg_scan) {d:.1f} ms vs tierd {t:.1f} ms over the wire "
                       f"({d / t:.2f}×) for the events GROUP BY")
    return [m]


def wait_published(b: Bench, conn: psycopg.Connection, ns: str, name: str) -> None:
    deadline = time.monotonic() + b.args.job_timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT iceberg_lag, iceberg_snapshot_id FROM system.tables WHERE namespace = %s "
                           "AND table_name = %s", (ns, name)).fetchone()
        if row is not None and row[0] == 0 and row[1] is not None:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{ns}.{name} not published within {b.args.job_timeout} s")
