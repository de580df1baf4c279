"""Ingest by single-row INSERT: from one connection (the OLTP path, one commit per row), from
several connections at once (group commit), and as a pipelined executemany."""
from __future__ import annotations

import time
from typing import Callable

import psycopg

from bench.data import INS_COLUMNS
from bench.harness import DUCK, PG, REPEATS, TIERD, Bench, Measurement, attempt, ingest_target, median_seconds


def wl_single_insert(b: Bench) -> list[Measurement]:
    """Single-row autocommit INSERT with bound parameters: the OLTP ingest path (one commit each)."""
    n, runs = b.args.insert_rows, b.args.runs
    m = Measurement(f"single-row INSERT, autocommit, params ({n:,} rows/run)", "rows/s",
                    note="psycopg extended protocol, one commit per row")
    m.values[PG] = attempt(b, f"{PG} insert", lambda: insert_rate(b.pg, "CREATE SCHEMA bench", n, runs))
    if b.tierd_conninfo:
        m.values[TIERD] = attempt(b, f"{TIERD} insert",
                                  lambda: insert_rate(b.tierd, "CREATE NAMESPACE IF NOT EXISTS bench", n, runs))
    else:
        m.values[TIERD] = "skipped"
    m.values[DUCK] = "n/a"
    ingest_target(b, m)
    return [m]


def insert_rate(connect: Callable[[], psycopg.Connection], create_ns: str, n: int, runs: int) -> float:
    """Median rows/s over `runs` runs of n single-row INSERTs, fresh keys each run."""
    with connect() as conn:
        conn.execute(create_ns)
        conn.execute(f"CREATE TABLE bench.ins ({INS_COLUMNS})")
        cur = conn.cursor()
        sql = "INSERT INTO bench.ins (id, v, x) VALUES (%s, %s, %s)"

        def once(run: int) -> float:
            t0 = time.perf_counter()
            for key in range(run * n, (run + 1) * n):
                cur.execute(sql, (key, f"row-{key}", key * 0.5))
            return time.perf_counter() - t0

        secs = median_seconds(runs, once)
        got = conn.execute("SELECT count(*) FROM bench.ins").fetchone()[0]
        if got != n * runs:
            raise RuntimeError(f"bench.ins has {got} rows, expected {n * runs}")
        return n / secs


def wl_concurrent_insert(b: Bench) -> list[Measurement]:
    """The single-row autocommit INSERT again, from `insert_clients` connections at once: what
    group commit buys (several commits share one fsync in both servers)."""
    clients, per, runs = b.args.insert_clients, max(1, b.args.insert_rows // b.args.insert_clients), b.args.runs
    m = Measurement(f"single-row INSERT, autocommit, {clients} concurrent clients ({clients}×{per:,} rows/run)",
                    "rows/s", note="same statement as above; client threads in the harness process")
    m.values[PG] = attempt(b, f"{PG} concurrent insert", lambda: concurrent_insert_rate(b.pg, clients, per, runs))
    m.values[TIERD] = attempt(b, f"{TIERD} concurrent insert",
                              lambda: concurrent_insert_rate(b.tierd, clients, per, runs)) \
        if b.tierd_conninfo else "skipped"
    m.values[DUCK] = "n/a"
    ingest_target(b, m)
    return [m]


def concurrent_insert_rate(connect: Callable[[], psycopg.Connection], clients: int, per: int, runs: int) -> float:
    """Median rows/s of `runs` rounds in which `clients` connections each insert `per` rows."""
    import threading

    with connect() as conn:
        conn.execute("CREATE TABLE bench.ins_c (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
    conns = [connect() for _ in range(clients)]
    try:
        def once(run: int) -> float:
            errors: list[BaseException] = []
            go = threading.Barrier(clients + 1)

            def client(c: int) -> None:
                cur = conns[c].cursor()
                base = (run * clients + c) * per
                go.wait()
                try:
                    for key in range(base, base + per):
                        cur.execute("INSERT INTO bench.ins_c (id, v, x) VALUES (%s, %s, %s)",
                                    (key, f"row-{key}", key * 0.5))
                except BaseException as e:  # noqa: BLE001 - re-raised below
                    errors.append(e)

            threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
            for t in threads:
                t.start()
            go.wait()
            t0 = time.perf_counter()
            for t in threads:
                t.join()
            secs = time.perf_counter() - t0
            if errors:
                raise errors[0]
            return secs

        secs = median_seconds(runs, once)
        got = conns[0].execute("SELECT count(*) FROM bench.ins_c").fetchone()[0]
        if got != clients * per * runs:
            raise RuntimeError(f"bench.ins_c has {got} rows, expected {clients * per * runs}")
        return clients * per / secs
    finally:
        for c in conns:
            c.close()


def wl_pipeline(b: Bench) -> list[Measurement]:
    """executemany of single-row INSERTs in psycopg pipeline mode (one Sync at the end)."""
    n = b.args.pipeline_rows
    m = Measurement(f"pipelined executemany, {n:,} single-row INSERTs", "rows/s",
                    note=f"psycopg pipeline mode, autocommit connection; median of {REPEATS} runs, each into a new table")
    rows = [(i, f"row-{i}", i * 0.5) for i in range(n)]

    def run(connect: Callable[[], psycopg.Connection]) -> float:
        with connect() as conn:
            def once(run: int) -> float:
                table = f"bench.pipe{run}"
                conn.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
                t0 = time.perf_counter()
                with conn.pipeline():
                    conn.cursor().executemany(f"INSERT INTO {table} (id, v, x) VALUES (%s, %s, %s)", rows)
                secs = time.perf_counter() - t0
                got = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                if got != n:
                    raise RuntimeError(f"{table} has {got} rows, expected {n}")
                return secs
            return n / median_seconds(REPEATS, once)

    m.values[PG] = attempt(b, f"{PG} pipeline", lambda: run(b.pg))
    m.values[TIERD] = attempt(b, f"{TIERD} pipeline", lambda: run(b.tierd)) if b.tierd_conninfo else "skipped"
    m.values[DUCK] = "n/a"
    ingest_target(b, m)
    return [m]
