"""The write patterns applications use, each side by side with PostgreSQL in the same run: UPDATE
and DELETE by primary key (1 and N clients), `executemany … RETURNING`, SQLAlchemy Core inserts
(its psycopg dialect casts every parameter, as pandas' `to_sql` sends them), an asyncpg pool of
concurrent single-row INSERTs, an `INSERT … ON CONFLICT DO UPDATE` stream, and pgbench's
built-in TPC-B after `pgbench -i`. Every cell checks its end state, so a fast wrong answer is a
problem, not a number."""
from __future__ import annotations

import asyncio
import random
import re
import shutil
import subprocess
import statistics
import threading
import time
from typing import Any, Callable

import psycopg

from bench.data import SEED
from bench.harness import DUCK, PG, REPEATS, TIERD, Bench, Measurement, attempt, median_seconds

KV_COLUMNS = "id BIGINT PRIMARY KEY, v TEXT, n BIGINT"


def ratio_target(b: Bench, m: Measurement, what: str, goal: float) -> None:
    """A SPEC-style target row: tierd's rate ≥ goal × PostgreSQL's in the same run."""
    t, p = m.values.get(TIERD), m.values.get(PG)
    if not isinstance(p, float):
        return
    if isinstance(t, float):
        b.target(f"{what} ≥ {goal:g}× PostgreSQL", f"{t / p:.2f}× ({t:,.0f} vs {p:,.0f} {m.unit})", t / p >= goal)
    else:
        b.target(f"{what} ≥ {goal:g}× PostgreSQL", f"tierd: {t}", None)


def both(b: Bench, m: Measurement, label: str, fn: Callable[[Callable[[], psycopg.Connection], str], float]) -> None:
    """Measure one cell on PostgreSQL and tierd (fn gets the connect function and the system)."""
    m.values[PG] = attempt(b, f"{PG} {label}", lambda: fn(b.pg, PG))
    m.values[TIERD] = attempt(b, f"{TIERD} {label}", lambda: fn(b.tierd, TIERD)) if b.tierd_conninfo else "skipped"
    m.values[DUCK] = "n/a"


def attempt_cells(b: Bench, label: str, fn: Callable[[], list[float]], cells: int) -> list[float | str]:
    """`attempt` for a measurement that yields several cells: all of them, or "error" in each."""
    got: list[float] = []

    def call() -> float:
        got.extend(fn())
        return 0.0

    return list(got) if attempt(b, label, call) != "error" else ["error"] * cells


def load_kv(conn: psycopg.Connection, table: str, n: int) -> None:
    """A fresh keyed table with ids 0..n-1 and n = 0, loaded by COPY."""
    conn.execute(f"CREATE TABLE bench.{table} ({KV_COLUMNS})")
    with conn.cursor().copy(f"COPY bench.{table} (id, v, n) FROM STDIN") as cp:
        for i in range(n):
            cp.write_row((i, f"v{i}", 0))


def run_clients(conns: list[psycopg.Connection], work: Callable[[int, psycopg.Cursor], None]) -> float:
    """Seconds for every connection to finish work(client_index, cursor), all started together."""
    errors: list[BaseException] = []
    go = threading.Barrier(len(conns) + 1)

    def client(c: int) -> None:
        cur = conns[c].cursor()
        go.wait()
        try:
            work(c, cur)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(len(conns))]
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


# --------------------------------------------------------------------------- UPDATE / DELETE by key

def wl_update_delete_by_key(b: Bench) -> list[Measurement]:
    """Autocommit UPDATE … WHERE id = $1 and DELETE … WHERE id = $1 on a keyed table, from one
    connection and from `insert_clients` connections at once."""
    ops, runs, clients = b.args.write_ops, b.args.runs, b.args.insert_clients
    per = max(1, ops // clients)
    # ids [0, ops): updated at random; then one fresh range per DELETE run, 1 client then N
    n_rows = ops + 2 * runs * ops
    out = []
    for kind in ("UPDATE", "DELETE"):
        for n_clients in (1, clients):
            name = f"{kind} by primary key, autocommit, {n_clients} client{'s' if n_clients > 1 else ''} " \
                   f"({n_clients * (ops if n_clients == 1 else per):,} rows/run)"
            sql = ("UPDATE bench.kv SET n = n + 1 WHERE id = %s" if kind == "UPDATE"
                   else "DELETE FROM bench.kv WHERE id = %s")
            out.append(Measurement(name, "rows/s", note=f"`{sql}`, psycopg extended protocol, one commit per row"))

    def measure(connect: Callable[[], psycopg.Connection], system: str) -> list[float]:
        rng = random.Random(SEED + 11)
        with connect() as conn:
            load_kv(conn, "kv", n_rows)
        conns = [connect() for _ in range(clients)]
        rates: list[float] = []
        updates = 0
        try:
            # UPDATE, 1 client then N clients: random keys among the first `ops`
            for n_clients in (1, clients):
                count = ops if n_clients == 1 else per

                def once(_: int, n_clients: int = n_clients, count: int = count) -> float:
                    keys = [[rng.randrange(ops) for _ in range(count)] for _ in range(n_clients)]

                    def work(c: int, cur: psycopg.Cursor) -> None:
                        for k in keys[c]:
                            cur.execute("UPDATE bench.kv SET n = n + 1 WHERE id = %s", (k,))
                    return run_clients(conns[:n_clients], work)

                rates.append(n_clients * count / median_seconds(runs, once))
                updates += runs * n_clients * count
            got = conns[0].execute("SELECT sum(n) FROM bench.kv").fetchone()[0]
            if got != updates:
                raise RuntimeError(f"{system}: sum(n) = {got} after {updates} increments")
            # DELETE, 1 client then N clients: each run deletes a fresh range of ids
            base = ops
            deleted = 0
            for n_clients in (1, clients):
                count = ops if n_clients == 1 else per

                def once_d(_: int, n_clients: int = n_clients, count: int = count) -> float:
                    nonlocal base
                    start, base = base, base + n_clients * count

                    def work(c: int, cur: psycopg.Cursor) -> None:
                        for k in range(start + c * count, start + (c + 1) * count):
                            cur.execute("DELETE FROM bench.kv WHERE id = %s", (k,))
                    return run_clients(conns[:n_clients], work)

                rates.append(n_clients * count / median_seconds(runs, once_d))
                deleted += runs * n_clients * count
            got = conns[0].execute("SELECT count(*) FROM bench.kv").fetchone()[0]
            if got != n_rows - deleted:
                raise RuntimeError(f"{system}: {got} rows left, expected {n_rows - deleted}")
            return rates
        finally:
            for c in conns:
                c.close()

    for system, connect in ((PG, b.pg), (TIERD, b.tierd if b.tierd_conninfo else None)):
        if connect is None:
            for m in out:
                m.values[system] = "skipped"
            continue
        cells = attempt_cells(b, f"{system} UPDATE/DELETE by key", lambda: measure(connect, system), len(out))
        for m, v in zip(out, cells):
            m.values[system] = v
    for m in out:
        m.values[DUCK] = "n/a"
        ratio_target(b, m, m.name.split(" (")[0], 1.0)
    return out


# --------------------------------------------------------------------------- RETURNING, ORMs, pools

def wl_returning(b: Bench) -> list[Measurement]:
    """psycopg `executemany(…, returning=True)`: what ORMs do to learn server-made ids."""
    n = b.args.returning_rows
    m = Measurement(f"executemany … RETURNING id, {n:,} rows", "rows/s",
                    note=f"psycopg `executemany(returning=True)` (pipelined), autocommit connection; median of "
                         f"{REPEATS} runs, each into a new table")
    rows = [(i, f"row-{i}", i * 0.5) for i in range(n)]

    def run(connect: Callable[[], psycopg.Connection], system: str) -> float:
        with connect() as conn:
            def once(run: int) -> float:
                table = f"bench.ret{run}"
                conn.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
                cur = conn.cursor()
                t0 = time.perf_counter()
                cur.executemany(f"INSERT INTO {table} (id, v, x) VALUES (%s, %s, %s) RETURNING id", rows,
                                returning=True)
                ids = []
                while True:
                    ids.extend(r[0] for r in cur.fetchall())
                    if not cur.nextset():
                        break
                secs = time.perf_counter() - t0
                if sorted(ids) != list(range(n)):
                    raise RuntimeError(f"{system}: RETURNING gave {len(ids)} ids, expected {n}")
                return secs
            return n / median_seconds(REPEATS, once)

    both(b, m, "executemany RETURNING", run)
    ratio_target(b, m, "executemany … RETURNING", 1.0)
    return [m]


def sqlalchemy_url(info: dict[str, Any]) -> str:
    auth = info["user"] + (f":{info['password']}" if info.get("password") else "")
    return f"postgresql+psycopg://{auth}@{info['host']}:{info['port']}/{info['dbname']}"


def wl_sqlalchemy_inserts(b: Bench) -> list[Measurement]:
    """SQLAlchemy Core inserts through the psycopg dialect, which casts every parameter
    (`%(id)s::BIGINT`): one row per transaction (an ORM-style app), and one executemany of all
    rows (what pandas `to_sql` sends: SQLAlchemy's insertmanyvalues batches)."""
    n, runs = b.args.insert_rows, b.args.runs
    single = Measurement(f"SQLAlchemy Core INSERT, one row per transaction ({n:,} rows/run)", "rows/s",
                         note="`conn.execute(insert(t), row); conn.commit()`; psycopg dialect, `::BIGINT` casts")
    many = Measurement(f"SQLAlchemy Core executemany as pandas to_sql sends it ({n * 10:,} rows)", "rows/s",
                       note=f"`conn.execute(insert(t), rows)` in one transaction; insertmanyvalues, median of {REPEATS} runs")

    def run(info: dict[str, Any], system: str) -> tuple[float, float]:
        import sqlalchemy as sa

        engine = sa.create_engine(sqlalchemy_url(info))
        md = sa.MetaData(schema="bench")
        t = sa.Table("sa_ins", md, sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
                     sa.Column("v", sa.Text), sa.Column("x", sa.Float))
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("CREATE TABLE bench.sa_ins (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)"))
                conn.commit()

                def once(run: int) -> float:
                    t0 = time.perf_counter()
                    for key in range(run * n, (run + 1) * n):
                        conn.execute(sa.insert(t), {"id": key, "v": f"row-{key}", "x": key * 0.5})
                        conn.commit()
                    return time.perf_counter() - t0

                r_single = n / median_seconds(runs, once)

                def once_many(run: int) -> float:
                    first = runs * n + run * n * 10
                    rows = [{"id": k, "v": f"row-{k}", "x": k * 0.5} for k in range(first, first + n * 10)]
                    t0 = time.perf_counter()
                    conn.execute(sa.insert(t), rows)
                    conn.commit()
                    return time.perf_counter() - t0

                r_many = n * 10 / median_seconds(REPEATS, once_many)
                expected = runs * n + REPEATS * n * 10
                got = conn.execute(sa.text("SELECT count(*) FROM bench.sa_ins")).scalar()
                if got != expected:
                    raise RuntimeError(f"{system}: bench.sa_ins has {got} rows, expected {expected}")
                return r_single, r_many
        finally:
            engine.dispose()

    for system, info in ((PG, b.pg_conninfo), (TIERD, b.tierd_conninfo)):
        if info is None:
            single.values[system] = many.values[system] = "skipped"
            continue
        single.values[system], many.values[system] = attempt_cells(
            b, f"{system} SQLAlchemy inserts", lambda: list(run(info, system)), 2)
    for m in (single, many):
        m.values[DUCK] = "n/a"
        ratio_target(b, m, m.name.split(" (")[0], 1.0)
    return [single, many]


def wl_asyncpg_pool(b: Bench) -> list[Measurement]:
    """An asyncpg pool (default settings, 10 connections) running `pool_inserts` concurrent
    single-row INSERTs: what an async web service does."""
    n = b.args.pool_inserts
    m = Measurement(f"asyncpg pool of 10, {n:,} concurrent single-row INSERTs", "rows/s",
                    note="`asyncpg.create_pool(min_size=10, max_size=10)`, `pool.execute` under asyncio.gather; "
                         f"median of {REPEATS} bursts")

    def run(info: dict[str, Any], system: str) -> float:
        import asyncpg

        async def main() -> float:
            pool = await asyncpg.create_pool(host=info["host"], port=info["port"], user=info["user"],
                                             password=info.get("password"), database=info["dbname"],
                                             min_size=10, max_size=10)
            try:
                await pool.execute("CREATE TABLE bench.pool_ins (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
                bursts = []
                for run in range(REPEATS):
                    t0 = time.perf_counter()
                    await asyncio.gather(*(pool.execute("INSERT INTO bench.pool_ins (id, v, x) VALUES ($1, $2, $3)",
                                                        i, f"row-{i}", i * 0.5) for i in range(run * n, (run + 1) * n)))
                    bursts.append(time.perf_counter() - t0)
                got = await pool.fetchval("SELECT count(*) FROM bench.pool_ins")
                if got != n * REPEATS:
                    raise RuntimeError(f"{system}: bench.pool_ins has {got} rows, expected {n * REPEATS}")
                return n / statistics.median(bursts)
            finally:
                await asyncio.wait_for(pool.close(), 30)

        return asyncio.run(main())

    m.values[PG] = attempt(b, f"{PG} asyncpg pool", lambda: run(b.pg_conninfo, PG))
    m.values[TIERD] = attempt(b, f"{TIERD} asyncpg pool", lambda: run(b.tierd_conninfo, TIERD)) \
        if b.tierd_conninfo else "skipped"
    m.values[DUCK] = "n/a"
    ratio_target(b, m, "asyncpg pool inserts", 1.0)
    return [m]


def wl_upsert_stream(b: Bench) -> list[Measurement]:
    """Single-row autocommit `INSERT … ON CONFLICT (id) DO UPDATE`, half of them on existing keys:
    an ingestion pipeline keeping the latest state per key."""
    n, runs = b.args.insert_rows, b.args.runs
    sql = ("INSERT INTO bench.up (id, v, n) VALUES (%s, %s, 1) "
           "ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = bench.up.n + EXCLUDED.n")
    m = Measurement(f"INSERT … ON CONFLICT DO UPDATE, autocommit ({n:,} rows/run)", "rows/s",
                    note=f"`{sql}`; keys drawn from 2×rows, so about half update; one commit per row")

    def run(connect: Callable[[], psycopg.Connection], system: str) -> float:
        rng = random.Random(SEED + 12)
        with connect() as conn:
            conn.execute(f"CREATE TABLE bench.up ({KV_COLUMNS})")
            cur = conn.cursor()

            def once(_: int) -> float:
                keys = [rng.randrange(2 * n) for _ in range(n)]
                t0 = time.perf_counter()
                for k in keys:
                    cur.execute(sql, (k, f"v{k}"))
                return time.perf_counter() - t0

            rate = n / median_seconds(runs, once)
            got = conn.execute("SELECT sum(n) FROM bench.up").fetchone()[0]
            if got != n * runs:
                raise RuntimeError(f"{system}: sum(n) = {got} after {n * runs} upserts")
            return rate

    both(b, m, "upsert stream", run)
    ratio_target(b, m, "INSERT … ON CONFLICT DO UPDATE stream", 1.0)
    return [m]


# --------------------------------------------------------------------------- pgbench TPC-B

TPS_RE = re.compile(r"tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)")
FAILED_RE = re.compile(r"number of failed transactions: (\d+)")


def pgbench(info: dict[str, Any], *args: str, timeout: float) -> str:
    """Run the real pgbench against one server; its output, or an error naming its last lines."""
    exe = shutil.which("pgbench")
    if exe is None:
        raise RuntimeError("pgbench not found (postgresql-client)")
    env = {"PATH": "/usr/bin:/bin", "PGHOST": info["host"], "PGPORT": str(info["port"]), "PGUSER": info["user"],
           "PGDATABASE": info["dbname"], "PGCONNECT_TIMEOUT": "10"}
    if info.get("password"):
        env["PGPASSWORD"] = info["password"]
    p = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=timeout)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} exited {p.returncode}: "
                           + " | ".join(out.strip().splitlines()[-3:]))
    return out


def wl_pgbench(b: Bench) -> list[Measurement]:
    """pgbench's built-in TPC-B-like script (3 UPDATEs by key, 1 SELECT, 1 INSERT per transaction)
    after `pgbench -i -s 1`, unmodified, with 1 and N clients, simple and prepared protocol."""
    secs, clients = b.args.pgbench_seconds, b.args.insert_clients
    cells = [(c, mode) for c in (1, clients) for mode in ("simple", "prepared")]
    out = [Measurement(f"pgbench TPC-B, scale 1, -c {c} -M {mode} ({secs} s)", "tx/s",
                       note="unmodified `pgbench -T … -c … -j … -M …` after `pgbench -i -s 1`; tps without "
                            "connection time; 0 failed transactions and balances that add up are checked")
           for c, mode in cells]

    def run(info: dict[str, Any], system: str) -> list[float]:
        pgbench(info, "-i", "-s", "1", "-q", timeout=600)
        rates = []
        for c, mode in cells:
            text = pgbench(info, "-T", str(secs), "-c", str(c), "-j", str(min(c, 4)), "-M", mode,
                           timeout=secs + 300)
            tps = TPS_RE.search(text)
            failed = FAILED_RE.search(text)
            if tps is None:
                raise RuntimeError(f"pgbench printed no tps: {text.strip().splitlines()[-1:]}")
            if failed and int(failed.group(1)):
                raise RuntimeError(f"pgbench -c {c} -M {mode}: {failed.group(1)} failed transactions")
            rates.append(float(tps.group(1)))
        with psycopg.connect(**info, autocommit=True, connect_timeout=10) as conn:
            sums = conn.execute(
                "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches),"
                " (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"
            ).fetchone()
        # the history is truncated by each run's vacuum step, so only the last run's deltas are
        # there; the three balances must still agree with each other
        if len({int(sums[0]), int(sums[1]), int(sums[2])}) != 1:
            raise RuntimeError(f"{system}: balances do not add up: accounts/branches/tellers = {sums[:3]}")
        return rates

    for system, info in ((PG, b.pg_conninfo), (TIERD, b.tierd_conninfo)):
        if info is None:
            for m in out:
                m.values[system] = "skipped"
            continue
        for m, v in zip(out, attempt_cells(b, f"{system} pgbench", lambda: run(info, system), len(out))):
            m.values[system] = v
    for m in out:
        m.values[DUCK] = "n/a"
        ratio_target(b, m, m.name.split(" (")[0], 0.5)
    return out
