"""What every workload shares: the `Bench` context (sizes, connections, and where notes, problems
and SPEC §9 targets are collected), the `Measurement` results model, and the measuring helpers:
`attempt` (a failure becomes a table cell, not a crash), `bounded` (a statement that may hang),
`median_seconds`, `time_query`, and `check_answers` (a fast wrong answer is not a result).

The servers are started in bench/servers.py; the rows come from bench/data.py.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg

from bench.data import GROUP_BY_SQL

REPO = Path(__file__).resolve().parent.parent

TIERD = "tierd"
PG = "PostgreSQL 15"
DUCK = "DuckDB in-process"
SYSTEMS = (TIERD, PG, DUCK)


# --------------------------------------------------------------------------- results model

@dataclass
class Measurement:
    """One table row: a workload's median value per system (a float, or a string for n/a/error)."""

    name: str
    unit: str  # a rate, "rows/s" or "tx/s" (higher is better), or "ms" (lower is better)
    values: dict[str, float | str] = field(default_factory=dict)
    note: str = ""

    @property
    def throughput(self) -> bool:
        return self.unit.endswith("/s")


@dataclass
class Bench:
    """Everything workloads share: sizes, connection info, and where problems are collected."""

    args: argparse.Namespace
    pg_conninfo: dict[str, Any]
    tierd_conninfo: dict[str, Any] | None  # None when --skip-tierd
    tierd_data_dir: Path
    scratch: Path  # harness-owned temp dir (e.g. the stand-in Parquet in --skip-tierd mode)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # SPEC §9 targets: "target | measured | verdict"
    shared: dict[str, Any] = field(default_factory=dict)  # values one workload hands to a later one
    sections: list[list[str]] = field(default_factory=list)  # extra Markdown blocks (e.g. the S3 vs local table)

    def pg(self) -> psycopg.Connection:
        return psycopg.connect(**self.pg_conninfo, autocommit=True, connect_timeout=10)

    def tierd(self) -> psycopg.Connection:
        assert self.tierd_conninfo is not None
        return psycopg.connect(**self.tierd_conninfo, autocommit=True, connect_timeout=10)

    def target(self, what: str, measured: str, ok: bool | None) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "**missed**")
        self.targets.append(f"| {what} | {measured} | {verdict} |")


def ingest_target(b: Bench, m: Measurement, goal: float = 1.0) -> None:
    """SPEC §9: ingest (every write pattern) ≥ PostgreSQL; COPY ≥ 1.5× (`goal`)."""
    t, p = m.values.get(TIERD), m.values.get(PG)
    if isinstance(p, float):
        measured = f"{t / p:.2f}× ({t:,.0f} vs {p:,.0f} rows/s)" if isinstance(t, float) else f"tierd: {t}"
        what = "PostgreSQL" if goal == 1.0 else f"{goal:g}× PostgreSQL"
        b.target(f"ingest ≥ {what}: {m.name}", measured, t >= goal * p if isinstance(t, float) else None)


def attempt(b: Bench, label: str, fn: Callable[[], float]) -> float | str:
    """Run one system's measurement; a failure becomes a table cell and a problem, not a crash,
    so one missing daemon feature doesn't hide every other number."""
    try:
        return fn()
    except (KeyboardInterrupt, SystemExit, TimeoutError):
        raise
    except Exception as e:  # noqa: BLE001 - reported, and the exit code says it failed
        b.problems.append(f"{label}: {describe(e)}")
        return "error"


def describe(e: BaseException) -> str:
    """`Type: first line of the message`, for table-side problem lists."""
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"


class StatementTimeout(RuntimeError):
    """A statement (e.g. a job WAIT) outlived its bound; a cell error, not the end of the run."""


@contextlib.contextmanager
def bounded(conn: psycopg.Connection, seconds: float, what: str) -> Iterator[None]:
    """Bound one blocking statement: after `seconds` send a cancel request; if the server
    ignores it (a job WAIT may not look at cancels), shut the socket down 5 s later so the
    client call fails instead of hanging. The job itself may go on running in the server."""
    import threading

    fired: list[str] = []

    def cancel() -> None:
        fired.append("cancel")
        with contextlib.suppress(Exception):
            conn.cancel_safe(timeout=5)

    def cut() -> None:
        fired.append("shutdown")
        with contextlib.suppress(Exception):
            sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()

    timers = [threading.Timer(seconds, cancel), threading.Timer(seconds + 5, cut)]
    for t in timers:
        t.daemon = True
        t.start()
    try:
        yield
    except Exception as e:
        if fired:
            raise StatementTimeout(f"{what} did not finish within {seconds:.0f}s ({'+'.join(fired)} sent)") from e
        raise
    finally:
        for t in timers:
            t.cancel()
    if fired:
        raise StatementTimeout(f"{what} only finished after the {seconds:.0f}s bound ({'+'.join(fired)} sent)")


REPEATS = 3  # runs of a workload that is one long batch (pipelined executemany, a pool's burst): a median, not one sample


def median_seconds(runs: int, once: Callable[[int], float]) -> float:
    """Median wall time of `runs` calls; `once(run_index)` returns its own elapsed seconds so setup
    stays outside the timed region."""
    return statistics.median(once(i) for i in range(runs))


def warm_median_ms(runs: int, query: Callable[[], list[tuple]], answers: dict[str, list[tuple]], key: str) -> float:
    """Median ms of `runs` calls of `query` (which fetches all rows), after one untimed warm-up
    whose rows are kept as answers[key] for check_answers."""
    answers[key] = query()

    def once(_: int) -> float:
        t0 = time.perf_counter()
        query()
        return time.perf_counter() - t0

    return median_seconds(runs, once) * 1000


def jobs_idle(b: Bench, conn: psycopg.Connection) -> None:
    """Wait until tierd runs no background job (an Iceberg publish after the last flush would
    otherwise share the CPU with a timed query: one 10M-row GROUP BY read 222 ms against 143 ms)."""
    deadline = time.monotonic() + b.args.job_timeout
    while time.monotonic() < deadline:
        busy = conn.execute("SELECT count(*) FROM system.jobs WHERE status IN ('queued', 'running', 'retrying')"
                            ).fetchone()[0]
        if busy == 0:
            return
        time.sleep(0.1)
    b.notes.append(f"background jobs still running after {b.args.job_timeout} s; timed anyway")


def time_query(connect: Callable[[], psycopg.Connection], runs: int,
               answers: dict[str, list[tuple]], system: str, sql: str = GROUP_BY_SQL) -> float:
    """Median ms of the GROUP BY with fetchall, after one untimed warm-up (which is also the answer)."""
    with connect() as conn:
        cur = conn.cursor()
        return warm_median_ms(runs, lambda: cur.execute(sql).fetchall(), answers, system)


def check_answers(b: Bench, answers: dict[str, list[tuple]], n: int, what: str) -> None:
    """All systems must return the same groups with the same counts (and avg/max): a fast wrong
    answer is not a result. Mismatches are printed loudly and fail the run."""
    def norm(rows: list[tuple]) -> dict[tuple[str, str], tuple[int, float, str]]:
        return {(str(r[0]), str(r[1])): (int(r[2]), float(r[3]), str(r[4])) for r in rows}

    if not answers:
        return
    sets = {s: norm(rows) for s, rows in answers.items()}
    for s, groups in sets.items():
        total = sum(c for c, _, _ in groups.values())
        if total != n:
            b.problems.append(f"MISMATCH ({what}): {s} counts sum to {total:,}, expected {n:,}")
    ref_name, ref = next(iter(sets.items()))
    for s, groups in sets.items():
        if s == ref_name:
            continue
        if len(groups) != len(ref) or groups.keys() != ref.keys():
            b.problems.append(f"MISMATCH ({what}): {s} returned {len(groups)} groups, {ref_name} {len(ref)}")
            continue
        bad = [k for k in ref if groups[k][0] != ref[k][0] or groups[k][2] != ref[k][2]
               or not math.isclose(groups[k][1], ref[k][1], rel_tol=1e-9, abs_tol=1e-9)]
        if bad:
            k = bad[0]
            b.problems.append(f"MISMATCH ({what}): {s} vs {ref_name}: {len(bad)} group(s) differ, "
                              f"e.g. {k}: {groups[k]} vs {ref[k]}")
    if len(sets) > 1 and not any(p.startswith(f"MISMATCH ({what})") for p in b.problems):
        b.notes.append(f"{what}: answers agree across {', '.join(sets)} ({len(ref)} groups, {n:,} rows; "
                       "avg compared to 1e-9 relative)")


def tierd_ready(b: Bench, *measurements: Measurement) -> bool:
    """Workloads after the events one build on tierd's flushed bench.events: without it, skip."""
    if b.tierd_conninfo and b.shared.get("events_flushed"):
        return True
    for m in measurements:
        m.values.setdefault(TIERD, "skipped")
        m.values.setdefault(DUCK, "skipped")
    return False
