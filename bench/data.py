"""The generated events rows every workload measures, identical on every call (fixed seed) so that
PostgreSQL, tierd, DuckDB and the answer checks see the same values; the events schema and GROUP BY;
and the ways rows go into a table: multi-row INSERT text, COPY, or INSERT … SELECT from tierd's
bench.events."""
from __future__ import annotations

import datetime as dt
import random
import time
from typing import Callable, Iterator

import psycopg


GROUP_BY_SQL = (
    "SELECT device, kind, count(*), avg(value), max(ts) FROM bench.events "
    "GROUP BY device, kind ORDER BY device, kind"
)
EVENTS_COLUMNS = "id BIGINT PRIMARY KEY, device INT, kind TEXT, value DOUBLE PRECISION, ts TIMESTAMP"
INS_COLUMNS = "id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION"
KINDS = ("click", "view", "purchase", "error", "heartbeat")
N_DEVICES = 100
SEED = 20240101


def event_chunks(n: int, chunk: int, first_id: int = 0, seed: int = SEED) -> Iterator[list[tuple[str, str, str, str, str]]]:
    """The events rows as pre-formatted text, identical on every call (same seed), so both
    servers and the checks see exactly the same values. Ids are first_id .. first_id+n-1."""
    rng = random.Random(seed)
    base = dt.datetime(2024, 1, 1)
    span = 90 * 86400
    for start in range(first_id, first_id + n, chunk):
        rows = []
        for i in range(start, min(first_id + n, start + chunk)):
            ts = base + dt.timedelta(seconds=rng.randrange(span))
            rows.append((str(i), str(rng.randrange(N_DEVICES)), rng.choice(KINDS),
                         f"{rng.uniform(0, 1000):.3f}", ts.isoformat(sep=" ")))
        yield rows


def insert_sql(rows: list[tuple[str, str, str, str, str]]) -> str:
    """One multi-row INSERT as literal SQL (tierd may not have COPY yet)."""
    values = ",".join(f"({i},{d},'{k}',{v},'{t}')" for i, d, k, v, t in rows)
    return f"INSERT INTO bench.events (id, device, kind, value, ts) VALUES {values}"


def group_by_sql(table: str = "events") -> str:
    return GROUP_BY_SQL.replace("bench.events", f"bench.{table}")


def copy_rows(conn: psycopg.Connection, table: str, n: int, first_id: int = 0, chunk: int = 50_000,
              on_chunk: Callable[[int], None] | None = None) -> float:
    """COPY n events rows (text format) into bench.<table>; returns the wall time from the
    first write to the COPY's CommandComplete. The rows are formatted before the clock starts:
    timing only the writes (libpq buffers them) would leave the server's work between writes
    unmeasured."""
    chunks = [("".join("\t".join(r) + "\n" for r in rows), len(rows))
              for rows in event_chunks(n, chunk, first_id=first_id, seed=SEED + 2)]
    done = 0
    t0 = time.perf_counter()
    with conn.cursor().copy(f"COPY bench.{table} (id, device, kind, value, ts) FROM STDIN") as copy:
        for data, count in chunks:
            copy.write(data)
            done += count
            if on_chunk:
                on_chunk(done)
    return time.perf_counter() - t0


def create_like_events(conn: psycopg.Connection, table: str) -> None:
    """bench.<table> with the events schema, flushed only when we say so."""
    conn.execute(f"CREATE TABLE bench.{table} ({EVENTS_COLUMNS}) WITH (FLUSH_POLICY = 'manual')")


def fill_from_events(conn: psycopg.Connection, table: str, lo: int, hi: int, n_events: int) -> None:
    """Rows with ids lo..hi-1 into bench.<table> by INSERT … SELECT from tierd's bench.events
    (server-side, much faster than literal INSERTs): row i is events row i mod n_events with its
    id shifted to i, so any size can be built from the loaded events."""
    i = lo
    while i < hi:
        k, a = divmod(i, n_events)
        z = min(n_events, a + (hi - i))
        cur = conn.execute(
            f"INSERT INTO bench.{table} (id, device, kind, value, ts) SELECT id + {k * n_events}, device, kind, "
            f"value, ts FROM bench.events WHERE id >= {a} AND id < {z}")
        if cur.rowcount not in (-1, z - a):
            raise RuntimeError(f"INSERT … SELECT into bench.{table} inserted {cur.rowcount} rows, expected {z - a}")
        i += z - a
