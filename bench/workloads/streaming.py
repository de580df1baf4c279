"""A big result (every row and column of bench.events) streamed to psycopg."""
from __future__ import annotations

import time
from typing import Callable

import psycopg

from bench.harness import DUCK, PG, TIERD, Bench, Measurement, attempt, median_seconds, tierd_ready


def wl_stream(b: Bench) -> list[Measurement]:
    """A big result to psycopg: every column of `events` rows (cold, flushed), fetchall."""
    n, runs = b.args.events, b.args.runs
    sql = f"SELECT id, device, kind, value, ts FROM bench.events WHERE id < {n}"
    m = Measurement(f"{n:,}-row result to psycopg (5 columns, fetchall)", "rows/s",
                    note=f"`{sql}`; text format; median of {runs} runs")
    m.values[DUCK] = "n/a"

    def rate(connect: Callable[[], psycopg.Connection]) -> float:
        with connect() as conn:
            cur = conn.cursor()

            def once(_: int) -> float:
                t0 = time.perf_counter()
                got = len(cur.execute(sql).fetchall())
                secs = time.perf_counter() - t0
                if got != n:
                    raise RuntimeError(f"{got} rows, expected {n}")
                return secs

            return n / median_seconds(runs, once)

    m.values[PG] = attempt(b, f"{PG} stream", lambda: rate(b.pg))
    m.values[TIERD] = attempt(b, f"{TIERD} stream", lambda: rate(b.tierd)) if tierd_ready(b, m) else "skipped"
    t, p = m.values.get(TIERD), m.values.get(PG)
    if isinstance(t, float) and isinstance(p, float):
        b.target("result streaming ≥ 0.5× PostgreSQL", f"{t / p:.2f}× ({t:,.0f} vs {p:,.0f} rows/s)", t / p >= 0.5)
    return [m]
