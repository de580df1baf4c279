"""Primary-key point SELECTs on cold and hot keys of bench.events."""
from __future__ import annotations

import random
import time
from typing import Callable

import psycopg

from bench.data import SEED
from bench.harness import DUCK, PG, TIERD, Bench, Measurement, attempt, median_seconds, tierd_ready


POINT_SQL = "SELECT id, device, kind, value, ts FROM bench.events WHERE id = %s"


def wl_point_select(b: Bench) -> list[Measurement]:
    """Primary-key point SELECTs with a bound parameter, one row each, on keys that are cold
    (flushed to Parquet) and hot (inserted by wl_hot_cold, not flushed). Runs after it."""
    n, extra, k, runs = b.args.events, b.args.hot_rows, b.args.point_lookups, b.args.runs
    rng = random.Random(SEED + 3)
    cold_keys = [rng.randrange(n) for _ in range(k)]
    hot_keys = [n + rng.randrange(extra) for _ in range(k)]
    out = []
    for label, keys in (("cold", cold_keys), ("hot", hot_keys)):
        m = Measurement(f"PK point SELECT, {label} keys ({k:,} lookups/run)", "rows/s",
                        note=f"`{POINT_SQL}`, random {label} ids, psycopg extended protocol; rate in lookups/s")
        answers: dict[str, list] = {}
        m.values[PG] = attempt(b, f"{PG} point {label}", lambda: lookup_rate(b.pg, keys, runs, answers, PG))
        m.values[TIERD] = attempt(b, f"{TIERD} point {label}", lambda: lookup_rate(
            b.tierd, keys, runs, answers, TIERD)) if tierd_ready(b, m) else "skipped"
        m.values[DUCK] = "n/a"
        if len(answers) == 2 and answers[PG] != answers[TIERD]:
            bad = next(i for i, (x, y) in enumerate(zip(answers[PG], answers[TIERD])) if x != y)
            b.problems.append(f"MISMATCH (point SELECT {label}): id {keys[bad]}: {PG} {answers[PG][bad]} vs "
                              f"{TIERD} {answers[TIERD][bad]}")
        elif len(answers) == 2:
            b.notes.append(f"PK point SELECT {label}: the {k:,} rows agree across {PG} and {TIERD}")
        t, p = m.values.get(TIERD), m.values.get(PG)
        if isinstance(t, float) and isinstance(p, float):
            b.target(f"PK point lookup ≥ 1.0× PostgreSQL ({label} keys)", f"{t / p:.2f}× ({t:,.0f}/s vs {p:,.0f}/s)",
                     t / p >= 1.0)
        out.append(m)
    return out


def lookup_rate(connect: Callable[[], psycopg.Connection], keys: list[int], runs: int,
                answers: dict[str, list], system: str) -> float:
    with connect() as conn:
        cur = conn.cursor()
        answers[system] = [tuple(str(v) for v in cur.execute(POINT_SQL, (key,)).fetchone()) for key in keys]

        def once(_: int) -> float:
            t0 = time.perf_counter()
            for key in keys:
                cur.execute(POINT_SQL, (key,)).fetchone()
            return time.perf_counter() - t0

        return len(keys) / median_seconds(runs, once)
