"""The throw-away servers of one run: a PostgreSQL 15 cluster (initdb in a temp dir; apt-get
installs postgresql-15 if it is missing) and a `tierd serve` daemon, each on a free loopback
port, stopped however the run ends (pg_ctl stop / SIGTERM first, SIGKILL if that fails)."""
from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg

from bench.harness import REPO

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "bench"  # superuser name given to initdb; we connect over TCP with trust auth
HOST = "127.0.0.1"  # all traffic stays on loopback


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
    kib = proc_status_kib(pid, "VmHWM")
    return "n/a" if kib is None else f"{kib / 1024:.0f} MiB"


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


def proc_status_kib(pid: int, key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None
