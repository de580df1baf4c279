#!/usr/bin/env python3
"""Where a statement's time goes, tierd beside PostgreSQL 15: wall time and server CPU per
statement (user and system, from /proc) of the write patterns and point reads whose `make
bench` targets are still missed, and per transaction of pgbench's TPC-B.

Usage (from the repository root; about two minutes):
    .venv/bin/python bench/per_statement.py            # prints a Markdown table

Both servers are fresh throw-away ones (bench/servers.py), driven by the same clients one
after the other on the same machine. The server's CPU is the daemon's for tierd, and the
postmaster's plus its backends' (live and reaped) for PostgreSQL. /proc counts CPU in clock
ticks (10 ms here), so each cell runs 2,000 statements and reports the median of 3 runs;
cells of a few µs are at that resolution. The README's notes under the performance table
quote this table.
"""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

if str(Path(__file__).resolve().parent.parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bench.servers import PG_BIN, postgres_server, tierd_server  # noqa: E402
from bench.workloads.write_patterns import load_kv, run_clients  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
STATEMENTS = 2000
RUNS = 3
KEYS = 40_000
NS = "bench"  # the namespace bench/workloads' helpers write to


def process_cpu(pid: int, reaped: bool) -> tuple[float, float]:
    """User and system seconds of `pid` (with its reaped children's when `reaped`)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    user, system = int(fields[11]), int(fields[12])
    if reaped:
        user, system = user + int(fields[13]), system + int(fields[14])
    return user / TICK, system / TICK


class Server:
    """One server to drive: how to connect, and how much CPU it has used so far."""

    def __init__(self, name: str, conninfo: dict[str, Any], pid: int, tree: bool):
        self.name, self.conninfo, self.pid, self.tree = name, conninfo, pid, tree

    def connect(self, **kw: Any) -> psycopg.Connection:
        return psycopg.connect(**self.conninfo, autocommit=True, **kw)

    def cpu(self) -> tuple[float, float]:
        pids = [self.pid]
        if self.tree:  # the postmaster and every backend it forked
            out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.pid)], capture_output=True, text=True)
            pids += [int(p) for p in out.stdout.split()]
        parts = [process_cpu(p, reaped=p == self.pid and self.tree) for p in pids]
        return sum(u for u, _ in parts), sum(s for _, s in parts)


def measure(server: Server, n: int, fn: Callable[[int], None]) -> tuple[float, float, float]:
    """Median over RUNS of (wall, server user, server system) µs per statement of fn(run)."""
    walls, users, systems = [], [], []
    for run in range(RUNS):
        u0, s0 = server.cpu()
        t0 = time.perf_counter()
        fn(run)
        wall = time.perf_counter() - t0
        u1, s1 = server.cpu()
        walls.append(wall / n * 1e6)
        users.append((u1 - u0) / n * 1e6)
        systems.append((s1 - s0) / n * 1e6)
    return statistics.median(walls), statistics.median(users), statistics.median(systems)


def in_clients(conns: list[psycopg.Connection], work: Callable[[int, int, psycopg.Cursor], None]
               ) -> Callable[[int], None]:
    """fn(run): work(run, client, cursor) on every connection at once (bench/workloads'
    `run_clients`, which re-raises a client's error)."""
    return lambda run: run_clients(conns, lambda c, cur: work(run, c, cur))


def patterns(server: Server) -> list[tuple[str, tuple[float, float, float]]]:
    """Each pattern's (label, (wall, user, system) µs per statement)."""
    n, rng, out = STATEMENTS, random.Random(20261205), []
    admin = server.connect()
    admin.execute(f"CREATE TABLE {NS}.ins (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
    load_kv(admin, "kv", KEYS)
    admin.execute(f"CREATE TABLE {NS}.up (id BIGINT PRIMARY KEY, v TEXT, n BIGINT)")
    admin.execute(f"CREATE TABLE {NS}.sa_ins (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
    admin.execute(f"CREATE TABLE {NS}.pool_ins (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
    one = server.connect()
    eight = [server.connect() for _ in range(8)]
    per = n // len(eight)
    cur = one.cursor()
    try:
        insert = f"INSERT INTO {NS}.ins (id, v, x) VALUES (%s, %s, %s)"
        out.append(("single-row INSERT, 1 client", measure(server, n, lambda r: [
            cur.execute(insert, (r * n + i, f"row-{i}", i * 0.5)) for i in range(n)])))
        out.append(("single-row INSERT, 8 clients", measure(server, n, in_clients(eight, lambda r, c, cur: [
            cur.execute(insert, (10 * n + r * n + c * per + i, "x", 1.0)) for i in range(per)]))))
        update = f"UPDATE {NS}.kv SET n = n + 1 WHERE id = %s"
        out.append(("UPDATE by key, 1 client", measure(server, n, lambda r: [
            cur.execute(update, (rng.randrange(n),)) for _ in range(n)])))
        out.append(("UPDATE by key, 8 clients", measure(server, n, in_clients(eight, lambda r, c, cur: [
            cur.execute(update, (c * per + i,)) for i in range(per)]))))
        delete = f"DELETE FROM {NS}.kv WHERE id = %s"
        out.append(("DELETE by key, 1 client", measure(server, n, lambda r: [
            cur.execute(delete, (10_000 + r * n + i,)) for i in range(n)])))
        out.append(("DELETE by key, 8 clients", measure(server, n, in_clients(eight, lambda r, c, cur: [
            cur.execute(delete, (20_000 + r * n + c * per + i,)) for i in range(per)]))))
        upsert = (f"INSERT INTO {NS}.up (id, v, n) VALUES (%s, %s, 1) "
                  f"ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = {NS}.up.n + EXCLUDED.n")
        out.append(("INSERT … ON CONFLICT DO UPDATE", measure(server, n, lambda r: [
            cur.execute(upsert, (rng.randrange(2 * n), "v")) for _ in range(n)])))
        out.append(("SQLAlchemy Core INSERT, one row per transaction", sqlalchemy_inserts(server)))
        out.append(("asyncpg pool of 10, concurrent INSERTs", asyncpg_pool(server)))
        keys = [rng.randrange(KEYS) for _ in range(n)]
        point = f"SELECT id, v, n FROM {NS}.kv WHERE id = %s"
        out.append(("PK point SELECT", measure(server, n, lambda r: [
            cur.execute(point, (k,)).fetchone() for k in keys])))
        if server.name == "tierd":
            admin.execute(f"STORAGE FLUSH TABLE {NS}.kv WAIT")
            out.append(("PK point SELECT, cold keys", measure(server, n, lambda r: [
                cur.execute(point, (k,)).fetchone() for k in keys])))
    finally:
        for conn in [one, admin, *eight]:
            conn.close()
    return out


def sqlalchemy_inserts(server: Server) -> tuple[float, float, float]:
    """`conn.execute(insert(t), row); conn.commit()` per row, as bench/workloads does."""
    import sqlalchemy as sa

    info = server.conninfo
    engine = sa.create_engine(f"postgresql+psycopg://{info['user']}@{info['host']}:{info['port']}/{info['dbname']}")
    table = sa.Table("sa_ins", sa.MetaData(schema=NS),
                     sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
                     sa.Column("v", sa.Text), sa.Column("x", sa.Float))
    try:
        with engine.connect() as conn:
            def once(run: int) -> None:
                for key in range(run * STATEMENTS, (run + 1) * STATEMENTS):
                    conn.execute(sa.insert(table), {"id": key, "v": f"row-{key}", "x": key * 0.5})
                    conn.commit()
            return measure(server, STATEMENTS, once)
    finally:
        engine.dispose()


def asyncpg_pool(server: Server) -> tuple[float, float, float]:
    """`pool.execute` of single-row INSERTs under asyncio.gather, a pool of 10."""
    import asyncpg

    info = server.conninfo
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # asyncpg's connections attach to the current loop
    pool = loop.run_until_complete(asyncpg.create_pool(host=info["host"], port=info["port"], user=info["user"],
                                                       database=info["dbname"], min_size=10, max_size=10))

    async def burst(run: int) -> None:
        await asyncio.gather(*(pool.execute(f"INSERT INTO {NS}.pool_ins (id, v, x) VALUES ($1, $2, $3)", i, "r", 0.5)
                               for i in range(run * STATEMENTS, (run + 1) * STATEMENTS)))
    try:
        return measure(server, STATEMENTS, lambda run: loop.run_until_complete(burst(run)))
    finally:
        loop.run_until_complete(asyncio.wait_for(pool.close(), 30))
        asyncio.set_event_loop(None)
        loop.close()


def tpcb(server: Server) -> list[tuple[str, tuple[float, float, float]]]:
    """pgbench's built-in TPC-B at scale 1, 5 s per cell: per transaction."""
    info, out = server.conninfo, []
    base = [str(PG_BIN / "pgbench"), "-h", info["host"], "-p", str(info["port"]), "-U", info["user"]]
    subprocess.run(base + ["-i", "-s", "1", "-q", info["dbname"]], check=True, capture_output=True, timeout=600)
    for clients in (1, 8):
        for mode in ("prepared", "simple"):
            u0, s0 = server.cpu()
            t0 = time.perf_counter()
            run = subprocess.run(base + ["-c", str(clients), "-j", str(clients), "-M", mode, "-T", "5",
                                         info["dbname"]], check=True, capture_output=True, text=True, timeout=120)
            wall = time.perf_counter() - t0
            u1, s1 = server.cpu()
            done = next(int(line.split()[-1].split("/")[0]) for line in run.stdout.splitlines()
                        if "number of transactions actually processed" in line)
            out.append((f"pgbench TPC-B transaction, -c {clients} -M {mode}",
                        (wall / done * 1e6, (u1 - u0) / done * 1e6, (s1 - s0) / done * 1e6)))
    return out


def table(rows: dict[str, dict[str, tuple[float, float, float]]]) -> str:
    lines = ["| per statement (pgbench: per transaction), µs | tierd wall | tierd CPU user + sys | "
             "PostgreSQL wall | PostgreSQL CPU user + sys |", "|---|---:|---:|---:|---:|"]
    for label, by in rows.items():
        cells = []
        for name in ("tierd", "PostgreSQL"):
            if name in by:
                wall, user, system = by[name]
                cells += [f"{wall:,.0f}", f"{user:,.0f} + {system:,.0f}"]
            else:
                cells += ["—", "—"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="tierd-per-statement-"))
    pg_dir = Path(tempfile.mkdtemp(prefix="tierd-per-statement-pg-"))  # postgres_server chowns it
    rows: dict[str, dict[str, tuple[float, float, float]]] = {}
    try:
        with postgres_server(pg_dir) as pg:
            pg = {**pg, "dbname": "postgres"}
            pid = int((pg_dir / "data" / "postmaster.pid").read_text().split()[0])
            server = Server("PostgreSQL", pg, pid, tree=True)
            with server.connect() as c:
                c.execute(f"CREATE SCHEMA {NS}")
            for label, cell in patterns(server) + tpcb(server):
                rows.setdefault(label, {})["PostgreSQL"] = cell
        (tmp / "tierd").mkdir()
        with tierd_server(tmp / "tierd" / "data", tmp / "tierd" / "log", {}) as d:
            server = Server("tierd", d.conninfo, d.proc.pid, tree=False)
            with server.connect() as c:
                c.execute(f"CREATE NAMESPACE {NS}")
            for label, cell in patterns(server) + tpcb(server):
                rows.setdefault(label, {})["tierd"] = cell
        print(table(rows))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(pg_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
