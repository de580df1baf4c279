#!/usr/bin/env python3
"""tierd benchmark harness: tierd vs PostgreSQL 15 vs DuckDB in-process, in one run, on one machine.

Usage (from the repository root):
    .venv/bin/python bench/run.py            # full sizes, writes bench/results/latest.md
    .venv/bin/python bench/run.py --smoke    # tiny sizes, < 1 minute, writes nothing

It starts a throw-away PostgreSQL 15 cluster and a throw-away `tierd serve`, loads the same
generated rows into both, times each workload several times and reports the median (SPEC §9).
Every server it starts is stopped and every temp dir removed in `finally`, even on failure.

Workloads, in order (later ones reuse bench.events, so the order matters):
  single-row INSERT, from one and from several connections; pipelined executemany; COPY (n/a
  while tierd lacks it); events load + flush + cold GROUP BY (vs PostgreSQL and DuckDB on
  tierd's files); the same GROUP BY by DuckDB's iceberg_scan of the published Iceberg table;
  flush throughput on fresh tables; the Iceberg publish that follows a flush (vs the flush); GROUP BY over 100 small segments
  before/after STORAGE COMPACT; cold tier on S3 (a throw-away SeaweedFS) vs the same queries on
  the local storage; GROUP BY over cold + extra hot rows (hot+cold union vs the cold-only
  query); PK point SELECTs on cold and hot keys; a 1M-row result; GROUP BY over 10M cold rows,
  then with 100k hot rows on top; peak RSS of a fresh daemon ingesting 10M rows; and the write
  patterns applications use (bench/workloads/write_patterns.py): UPDATE/DELETE by key from 1 and
  8 clients, executemany … RETURNING, SQLAlchemy Core inserts, an asyncpg pool, an upsert
  stream, and pgbench's built-in TPC-B after `pgbench -i`.
Sizes are flags (see --help); the default run takes about 10 minutes on 2 cores.
tierd runs with `[compaction] max_segments = 1000` so that only our STORAGE COMPACT compacts.

The runner: arguments, the run loop, writing the report. The workloads are in bench/workloads/
(one module per family); the Bench context, servers, data and report are the other bench/ modules.
To add a workload: write `def wl_x(b: Bench) -> list[Measurement]` in a bench/workloads/ module and
add it to WORKLOADS in bench/workloads/__init__.py, which says the order.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# `python bench/run.py` puts bench/ on sys.path, not the repository root: add it, so that the
# modules of the `bench` package are imported as bench.harness, bench.workloads, …
if str(Path(__file__).resolve().parent.parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import servers  # noqa: E402 - after the sys.path line above
from bench.chart import draw  # noqa: E402
from bench.harness import REPO, Bench, Measurement  # noqa: E402
from bench.report import pg_settings, render, tierd_version  # noqa: E402
from bench.servers import TIERD_MAX_SEGMENTS, postgres_server, tail, tierd_server  # noqa: E402
from bench.workloads import WORKLOADS  # noqa: E402

RESULTS = REPO / "bench" / "results" / "latest.md"
CHART = RESULTS.with_name("ratios.png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 3 runs, < 1 minute, writes no file")
    p.add_argument("--runs", type=int, help="runs of INSERT and flush cells (default 5, smoke 3)")
    p.add_argument("--query-runs", type=int, help="timed runs of each query cell (default 11, smoke 3)")
    p.add_argument("--insert-rows", type=int, help="single-row INSERTs per run (default 2000, smoke 200)")
    p.add_argument("--events", type=int, help="rows in bench.events (default 1000000, smoke 10000)")
    p.add_argument("--insert-batch", type=int, default=5000, help="rows per multi-row INSERT when loading tierd")
    p.add_argument("--flush-rows", type=int, help="rows per fresh table in the flush workload (default 1000000, smoke 20000)")
    p.add_argument("--seg-rounds", type=int, help="insert+flush rounds (= segments) of bench.seg (default 100, smoke 20)")
    p.add_argument("--seg-rows", type=int, help="rows per bench.seg round (default 10000, smoke 200)")
    p.add_argument("--hot-rows", type=int, help="hot rows added for the hot+cold queries (default 100000, smoke 1000)")
    p.add_argument("--insert-clients", type=int, help="connections of the concurrent INSERT cell (default 8, smoke 4)")
    p.add_argument("--pipeline-rows", type=int, help="rows of the pipelined executemany (default 100000, smoke 2000)")
    p.add_argument("--write-ops", type=int, help="UPDATE/DELETE by key per run (default 2000, smoke 100)")
    p.add_argument("--returning-rows", type=int, help="rows of executemany … RETURNING (default 10000, smoke 500)")
    p.add_argument("--pool-inserts", type=int, help="concurrent INSERTs through the asyncpg pool (default 2000, smoke 200)")
    p.add_argument("--pgbench-seconds", type=int, help="duration of each pgbench TPC-B cell (default 10, smoke 2)")
    p.add_argument("--copy-rows", type=int, help="rows of the COPY cell (default 2000000, smoke 20000)")
    p.add_argument("--point-lookups", type=int, help="PK lookups per run and key kind (default 2000, smoke 200)")
    p.add_argument("--big-rows", type=int, help="cold rows of bench.big (default 10000000, smoke 40000)")
    p.add_argument("--big-chunk", type=int, help="rows per flush while building bench.big (default 1000000, smoke 20000)")
    p.add_argument("--big-runs", type=int, help="timed runs of the bench.big queries (default 5, smoke 3)")
    p.add_argument("--rss-rows", type=int, help="rows ingested by the fresh daemon of the RSS cell (default 10000000, smoke 200000)")
    p.add_argument("--job-timeout", type=int, help="bound on each STORAGE … WAIT, seconds (default 600, smoke 60)")
    p.add_argument("--only", help="comma-separated workload names (e.g. wl_pgbench); wl_single_insert, which "
                                  "creates the bench schema, always runs first")
    p.add_argument("--tierd-bin", type=Path, help="tierd executable (default: the venv's)")
    p.add_argument("--skip-tierd", action="store_true", help="PostgreSQL and DuckDB only (harness development)")
    p.add_argument("--output", type=Path, help=f"report path (default {RESULTS.relative_to(REPO)}, none in smoke)")
    p.add_argument("--timeout", type=int, help="abort the whole run after this many seconds (default 7200, smoke 300)")
    a = p.parse_args(argv)
    a.runs = a.runs or (3 if a.smoke else 5)
    a.query_runs = a.query_runs or (3 if a.smoke else 11)
    a.insert_rows = a.insert_rows or (200 if a.smoke else 2000)
    a.events = a.events or (10_000 if a.smoke else 1_000_000)
    a.timeout = a.timeout or (300 if a.smoke else 7200)
    a.flush_rows = a.flush_rows or (20_000 if a.smoke else 1_000_000)
    a.seg_rounds = a.seg_rounds or (20 if a.smoke else 100)
    a.seg_rows = a.seg_rows or (200 if a.smoke else 10_000)
    a.hot_rows = a.hot_rows or (1000 if a.smoke else 100_000)
    a.insert_clients = a.insert_clients or (4 if a.smoke else 8)
    a.pipeline_rows = a.pipeline_rows or (2000 if a.smoke else 100_000)
    a.write_ops = a.write_ops or (100 if a.smoke else 2000)
    a.returning_rows = a.returning_rows or (500 if a.smoke else 10_000)
    a.pool_inserts = a.pool_inserts or (200 if a.smoke else 2000)
    a.pgbench_seconds = a.pgbench_seconds or (2 if a.smoke else 10)
    a.copy_rows = a.copy_rows or (20_000 if a.smoke else 2_000_000)
    a.point_lookups = a.point_lookups or (200 if a.smoke else 2000)
    a.big_rows = a.big_rows or (40_000 if a.smoke else 10_000_000)
    a.big_chunk = a.big_chunk or (20_000 if a.smoke else 1_000_000)
    a.big_runs = a.big_runs or (3 if a.smoke else 5)
    a.rss_rows = a.rss_rows or (200_000 if a.smoke else 10_000_000)
    a.job_timeout = a.job_timeout or (60 if a.smoke else 600)
    if a.output is None and not a.smoke and not a.skip_tierd and not a.only:
        a.output = RESULTS
    return a


README = REPO / "README.md"
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def update_readme(report: str) -> None:
    """Copy the report's header, chart, tables and targets (not its notes) between the
    README's bench markers, so the README always shows the latest good full run."""
    text = README.read_text()
    if README_START not in text or README_END not in text:
        print(f"README has no {README_START} … {README_END} block; not updated", file=sys.stderr)
        return
    body = report.split("\nNotes:\n")[0].strip().splitlines()[1:]  # without the title
    block = ["From `bench/results/latest.md` (`make bench`; the machine is shared and noisy, so read "
             "ratios, not absolute times; the notes there say how each figure was measured):", "",
             f"![tierd's speed relative to PostgreSQL 15 and DuckDB, per workload]({CHART.relative_to(REPO)})"
             ] + body
    head, rest = text.split(README_START, 1)
    tail_ = rest.split(README_END, 1)[1]
    README.write_text(head + README_START + "\n" + "\n".join(block) + "\n" + README_END + tail_)
    print(f"updated the benchmark table in {README.name}", file=sys.stderr)


def selected(only: str | None) -> list:
    """The workloads to run: all of them, or those named by --only behind wl_single_insert."""
    if not only:
        return list(WORKLOADS)
    names = {n.strip() for n in only.split(",") if n.strip()}
    unknown = names - {w.__name__ for w in WORKLOADS}
    if unknown:
        raise RuntimeError(f"--only: unknown workload(s) {', '.join(sorted(unknown))}")
    return [w for i, w in enumerate(WORKLOADS) if i == 0 or w.__name__ in names]


def on_signal(signum: int, _frame: Any) -> None:
    """SIGTERM/SIGALRM unwind through every `finally`, so servers stop and temp dirs go."""
    if signum == signal.SIGALRM:
        raise TimeoutError("benchmark exceeded --timeout")
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    servers.TIERD_BIN = args.tierd_bin  # read by servers.tierd_binary()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(args.timeout)
    t_start = time.monotonic()
    header = {"date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "tierd": tierd_version()}
    rss: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        tmp = lambda prefix: Path(tempfile.mkdtemp(prefix=prefix))  # noqa: E731
        scratch = tmp("tierd-bench-")
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        stack.callback(signal.alarm, 0)  # cleanup itself must not be interrupted by the watchdog
        pg_dir = tmp("tierd-bench-pg-")
        stack.callback(shutil.rmtree, pg_dir, ignore_errors=True)
        tierd_dir = scratch / "tierd-data"
        tierd_dir.mkdir()
        pg_conninfo = stack.enter_context(postgres_server(pg_dir))
        config = scratch / "tierd.toml"
        config.write_text(f"[compaction]\nmax_segments = {TIERD_MAX_SEGMENTS}\n")
        td = None if args.skip_tierd else stack.enter_context(
            tierd_server(tierd_dir, scratch / "tierd.log", rss, config))
        b = Bench(args, pg_conninfo, td.conninfo if td else None, tierd_dir, scratch)
        header["pg"] = pg_settings(b)
        results: list[Measurement] = []
        for workload in selected(args.only):
            print(f"... {workload.__name__}", file=sys.stderr, flush=True)
            results += workload(b)
            if td and td.proc.poll() is not None and b.tierd_conninfo:
                b.problems.append(f"tierd exited (code {td.proc.returncode}) during {workload.__name__}; "
                                  "later tierd cells were not measured")
                b.tierd_conninfo = None  # later workloads report "skipped" instead of piling up errors
        if b.problems and td:
            b.notes.append("tierd log tail:\n```\n" + tail(td.log, 20) + "\n```")
    header["rss"] = rss.get("tierd", "n/a")
    header["elapsed"] = f"{time.monotonic() - t_start:.0f} s"
    report = render(b, results, header)
    print(report)
    title = f"tierd vs PostgreSQL 15 and DuckDB, {header['date']}{' (smoke sizes)' if args.smoke else ''}"
    if args.output:
        chart = args.output.with_name(("ratios-failed" if b.problems else CHART.stem) + ".png")
        if draw(results, chart, title):
            print(f"wrote {chart}", file=sys.stderr)
    else:  # smoke or partial runs: draw it anyway, so a broken chart fails here and not in the full run
        with tempfile.TemporaryDirectory() as d:
            draw(results, Path(d) / "ratios.png", title)
    if args.output:
        # a failed run must not overwrite the last good report
        out = args.output.with_name(args.output.stem + "-failed.md") if b.problems else args.output
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
        print(f"wrote {out}", file=sys.stderr)
        if not b.problems and out == RESULTS:
            update_readme(report)
    if b.problems:
        print("\n!!! BENCHMARK PROBLEMS !!!\n" + "\n".join(b.problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, TimeoutError) as e:
        print(f"bench/run.py: error: {e}", file=sys.stderr)
        sys.exit(2)
