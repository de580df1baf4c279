"""COPY FROM STDIN of the events rows into a fresh table (n/a while tierd lacks COPY)."""
from __future__ import annotations

import contextlib
from typing import Callable

import psycopg

from bench.data import EVENTS_COLUMNS, copy_rows
from bench.harness import DUCK, PG, TIERD, Bench, Measurement, attempt, describe, ingest_target


COPY_UNSUPPORTED = "n/a: COPY unsupported"


def copy_supported(b: Bench) -> bool:
    """Whether tierd takes COPY FROM STDIN (a helper is building it); memoised per run."""
    if "copy_ok" not in b.shared:
        with b.tierd() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS bench.copy_probe ({EVENTS_COLUMNS})")
            try:
                copy_rows(conn, "copy_probe", 1)
                b.shared["copy_ok"] = True
            except psycopg.errors.FeatureNotSupported as e:
                b.shared["copy_ok"] = False
                b.notes.append(f"tierd COPY: {describe(e)} (SQLSTATE {e.sqlstate}); COPY cells are n/a")
            with contextlib.suppress(psycopg.Error):
                conn.execute("DROP TABLE bench.copy_probe")
    return b.shared["copy_ok"]


def wl_copy(b: Bench) -> list[Measurement]:
    """COPY FROM STDIN of the events rows, text format, into a fresh table, one COPY statement."""
    n = b.args.copy_rows
    m = Measurement(f"COPY FROM STDIN, {n:,} rows", "rows/s", note="text format; 50,000-row writes; measured once")

    def run(connect: Callable[[], psycopg.Connection], create: str) -> float:
        with connect() as conn:
            conn.execute(create)
            secs = copy_rows(conn, "copy_t", n)
            got = conn.execute("SELECT count(*) FROM bench.copy_t").fetchone()[0]
            if got != n:
                raise RuntimeError(f"bench.copy_t has {got} rows, expected {n}")
        return n / secs

    m.values[PG] = attempt(b, f"{PG} copy", lambda: run(b.pg, f"CREATE TABLE bench.copy_t ({EVENTS_COLUMNS})"))
    if not b.tierd_conninfo:
        m.values[TIERD] = "skipped"
    elif (ok := attempt(b, f"{TIERD} COPY probe", lambda: float(copy_supported(b)))) != 1.0:
        m.values[TIERD] = COPY_UNSUPPORTED if ok == 0.0 else "error"
    else:
        m.values[TIERD] = attempt(b, f"{TIERD} copy", lambda: run(
            b.tierd, f"CREATE TABLE bench.copy_t ({EVENTS_COLUMNS}) WITH (FLUSH_POLICY = 'manual')"))
    m.values[DUCK] = "n/a"
    ingest_target(b, m, 1.5)
    return [m]
