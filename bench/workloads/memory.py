"""Memory under ingest: the peak RSS of a fresh daemon ingesting 10M rows in one COPY."""
from __future__ import annotations

import time

import psycopg

from bench.data import EVENTS_COLUMNS, copy_rows
from bench.harness import DUCK, PG, TIERD, Bench, Measurement, attempt
from bench.servers import proc_status_kib, tierd_server
from bench.workloads.copy import copy_supported


RSS_LIMIT_MIB = 1024  # issue 15: one COPY of 10M rows holds peak RSS under 1 GiB


def wl_ingest_rss(b: Bench) -> list[Measurement]:
    """A fresh daemon (default config, so the default flush policy) ingests `rss_rows` rows
    into one table while a thread samples its /proc/<pid>/status (VmRSS, VmHWM). Through one
    COPY FROM STDIN of all the rows when tierd has COPY (a large COPY streams into Parquet
    segments: engine/session/copy_segments.py), else through 100,000-row INSERT … SELECT
    statements (server-generated rows: the hot-tier commit and flush policy)."""
    import threading

    n = b.args.rss_rows
    m = Measurement(f"peak RSS of a fresh daemon ingesting {n:,} rows, default flush policy", "MiB",
                    note="VmHWM from /proc/<pid>/status; RSS samples every 0.25 s")
    m.values[PG] = m.values[DUCK] = "n/a"
    if not b.tierd_conninfo:
        m.values[TIERD] = "skipped"
        return [m]
    use_copy = attempt(b, f"{TIERD} COPY probe", lambda: float(copy_supported(b))) == 1.0
    data_dir = b.scratch / "rss-data"
    data_dir.mkdir()
    samples: list[tuple[float, int, int]] = []  # (seconds, rows done, VmRSS KiB)
    done = [0]

    def run() -> float:
        rss: dict[str, str] = {}
        with tierd_server(data_dir, b.scratch / "rss-tierd.log", rss) as td:
            stop = threading.Event()
            t0 = time.monotonic()

            def sample() -> None:
                while not stop.wait(0.25):
                    kib = proc_status_kib(td.proc.pid, "VmRSS")
                    if kib is not None:
                        samples.append((time.monotonic() - t0, done[0], kib))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                with psycopg.connect(**td.conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute("CREATE NAMESPACE IF NOT EXISTS bench")
                    conn.execute(f"CREATE TABLE bench.ingest ({EVENTS_COLUMNS})")
                    if use_copy:  # one COPY statement of all the rows
                        copy_rows(conn, "ingest", n, on_chunk=lambda k: done.__setitem__(0, k))
                    else:
                        for lo in range(0, n, 100_000):
                            hi = min(n, lo + 100_000)
                            conn.execute(
                                "INSERT INTO bench.ingest SELECT i, i % 100, 'k' || (i % 5), (i % 1000) * 0.5, "
                                f"TIMESTAMP '2024-01-01' + to_seconds(i % 7776000) FROM range({lo}, {hi}) t(i)")
                            done[0] = hi
                    secs = time.monotonic() - t0
                    got = conn.execute("SELECT count(*) FROM bench.ingest").fetchone()[0]
                    if got != n:
                        raise RuntimeError(f"bench.ingest has {got} rows, expected {n}")
                    flushes = conn.execute("SELECT count(*) FROM system.jobs WHERE job_type = 'flush' "
                                           "AND status = 'completed'").fetchone()[0]
                hwm = proc_status_kib(td.proc.pid, "VmHWM") or 0
            finally:
                stop.set()
                sampler.join(timeout=5)
        how = "one COPY FROM STDIN statement" if use_copy else \
            "100,000-row INSERT … SELECT … FROM range() statements (tierd has no COPY yet)"
        tenths = [max((kib for _, d, kib in samples if d <= n * q / 10), default=0) // 1024 for q in range(1, 11)]
        b.notes.append(f"ingest RSS run: {n:,} rows via {how} in {secs:.1f} s ({n / secs:,.0f} rows/s); "
                       f"{flushes} policy flush(es) completed; peak RSS (MiB) up to each tenth of the rows: "
                       f"{', '.join(map(str, tenths))}")
        b.shared["rss_tenths"] = tenths
        return hwm / 1024

    m.values[TIERD] = attempt(b, f"{TIERD} ingest RSS", run)
    tenths = b.shared.get("rss_tenths")
    if isinstance(m.values[TIERD], float) and tenths:
        # bounded = the second half of the ingest does not raise the peak much over the first half
        first, second = max(tenths[:5]), max(tenths[5:])
        b.target("memory bounded under sustained ingest (peak RSS, 2nd half vs 1st half of the rows)",
                 f"{second} MiB vs {first} MiB (VmHWM {m.values[TIERD]:,.0f} MiB)", second <= first * 1.25 + 64)
        if use_copy:
            b.target(f"one COPY of {n:,} rows: peak RSS under {RSS_LIMIT_MIB:,} MiB",
                     f"VmHWM {m.values[TIERD]:,.0f} MiB", m.values[TIERD] < RSS_LIMIT_MIB)
    return [m]
