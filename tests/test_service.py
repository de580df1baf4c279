"""tierd as a service: the systemd unit, sd_notify, SIGTERM drain, SIGHUP reload, metrics, CLI."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from tests.daemon import ROOT, TIERD, free_port, scrape_metrics as scrape, wait_for

UNIT = os.path.join(ROOT, "systemd", "tierd.service")
EXAMPLE_CONFIG = os.path.join(ROOT, "systemd", "tierd.toml")


class NotifySocket:
    """A fake systemd: an abstract unix datagram socket collecting sd_notify messages."""

    def __init__(self):
        self.name = f"tierd-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []  # one entry per assignment line, in arrival order
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return "@" + self.name

    def _collect(self):
        while not self.closed.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.extend(data.decode().split("\n"))

    def lines(self) -> list[str]:
        with self.lock:
            return list(self.messages)

    def count(self, line: str) -> int:
        return self.lines().count(line)

    def close(self):
        self.closed.set()
        self.thread.join(timeout=5)
        self.sock.close()


# ---------------------------------------------------------------------- the unit file

def test_unit_file_passes_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; `make test` installs it "
                    "when apt-get can)")
    text = open(UNIT).read()
    for required in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=tierd", "StateDirectory=tierd",
                     "ConfigurationDirectory=tierd", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "ProtectHome=yes", "PrivateTmp=yes", "ReadWritePaths=/var/lib/tierd", "LimitNOFILE=",
                     "ExecReload=", "/etc/tierd/tierd.toml"):
        assert required in text, required
    # verify checks that ExecStart's program exists: point it at this checkout's tierd.
    unit = tmp_path / "tierd.service"
    unit.write_text(text.replace("/opt/tierd/bin/tierd", TIERD))
    r = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (r.stdout + r.stderr).splitlines() if "tierd.service" in line]
    assert r.returncode == 0 and not complaints, r.stdout + r.stderr


def test_example_config_is_valid():
    r = subprocess.run([TIERD, "check-config", EXAMPLE_CONFIG], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "server.shutdown_grace_seconds = 10.0" in r.stdout


# ---------------------------------------------------------------------- sd_notify

def test_sd_notify_to_a_socket_path(tmp_path, monkeypatch):
    from tierd import sdnotify

    path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.notify("READY=1", "STATUS=two\nlines")
        assert s.recv(4096) == b"READY=1\nSTATUS=two lines"
        monkeypatch.setenv("WATCHDOG_USEC", "400000")
        monkeypatch.setenv("WATCHDOG_PID", "1")  # someone else's watchdog
        assert sdnotify.watchdog_timeout() is None
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        assert sdnotify.watchdog_timeout() == 0.4
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sdnotify.notify("READY=1")  # outside systemd: a no-op


def test_notify_ready_watchdog_reload_stopping_in_order(make_tierd):
    ns = NotifySocket()
    try:
        d = make_tierd('[flush]\ndefault_policy = "manual"\n',
                       env={"NOTIFY_SOCKET": ns.address, "WATCHDOG_USEC": "400000"})
        d.start()
        wait_for(lambda: ns.count("READY=1") >= 1, timeout=30, what="READY=1")
        wait_for(lambda: ns.count("WATCHDOG=1") >= 3, timeout=30, what="three WATCHDOG=1 pings")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: ns.count("READY=1") >= 2, timeout=30, what="READY=1 after RELOADING=1")
        d.proc.send_signal(signal.SIGTERM)
        assert d.wait_exit(timeout=30) == 0
        wait_for(lambda: "STOPPING=1" in ns.lines(), timeout=10, what="STOPPING=1")
    finally:
        ns.close()
    lines = ns.lines()
    kinds = [line for line in lines if not line.startswith(("STATUS=", "MONOTONIC_USEC="))]
    ready = kinds.index("READY=1")
    assert "WATCHDOG=1" not in kinds[:ready], kinds  # nothing is pinged before the daemon is up
    reloading = kinds.index("RELOADING=1")
    assert ready < reloading < kinds.index("READY=1", reloading) < kinds.index("STOPPING=1")
    assert "WATCHDOG=1" not in kinds[kinds.index("STOPPING=1"):], kinds  # no ping once stopping
    assert any(line.startswith("MONOTONIC_USEC=") for line in lines)
    statuses = [line for line in lines if line.startswith("STATUS=")]
    assert any("serving on 127.0.0.1" in s for s in statuses), statuses
    assert any(s.startswith("STATUS=stopping") for s in statuses), statuses


# ---------------------------------------------------------------------- SIGTERM

def test_sigterm_during_write_load_loses_no_acknowledged_row(make_tierd):
    # The flush holds before its commit point long enough for SIGTERM to land while it runs.
    d = make_tierd('[server]\nshutdown_grace_seconds = 15\n'
                   '[failpoints]\n"flush.before_manifest" = "sleep:1500"\n').start()
    with d.connect() as c:
        c.execute("CREATE NAMESPACE app")
        c.execute("CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO app.t SELECT i, 'seed' FROM range(100000, 100050) r(i)")
    acked: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    notices: dict[int, list[str]] = {}
    ended: dict[int, BaseException] = {}

    def writer(base: int):
        try:
            with d.connect() as w:
                # A FATAL that arrives between two statements is handed to libpq's notice
                # processor (as with PostgreSQL's own shutdown); the next statement then fails
                # with "server closed the connection unexpectedly".
                w.add_notice_handler(lambda diag: notices.setdefault(base, []).append(diag.sqlstate))
                i = base
                while not stop.is_set() and i < base + 50_000:
                    w.execute("INSERT INTO app.t VALUES (%s, %s)", (i, f"row {i}"))
                    acked.append(i)
                    i += 1
        except psycopg.OperationalError as exc:  # 57P01 at shutdown, or the closed socket
            errors.append(exc)
            ended[base] = exc

    flush_result: list = []

    def flusher():
        with d.connect() as f:
            flush_result.append(f.execute("STORAGE FLUSH TABLE app.t WAIT").fetchone())

    idle = d.connect()  # an idle client must not hold the shutdown up
    writers = [threading.Thread(target=writer, args=(k * 1_000_000,)) for k in range(2)]
    for t in writers:
        t.start()
    wait_for(lambda: len(acked) > 100, timeout=60, what="100 acknowledged inserts")
    ft = threading.Thread(target=flusher)
    ft.start()
    with d.connect() as c:
        wait_for(lambda: c.execute("SELECT count(*) FROM system.jobs WHERE status = 'running' "
                                   "AND job_type = 'flush'").fetchone()[0],
                 timeout=30, what="the flush job running")
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait_exit(timeout=30) == 0, d.output()[-3000:]
    stop.set()
    for t in writers + [ft]:
        t.join(timeout=30)
        assert not t.is_alive()
    with pytest.raises(psycopg.OperationalError):
        idle.execute("SELECT 1")
    idle.close()
    # The running statement (the WAIT on the flush) finished and was answered.
    assert flush_result and flush_result[0][1] == "completed", (flush_result, d.output()[-3000:])
    # Each writer's session ended with FATAL 57P01: as the error of its statement when the
    # FATAL came while one ran, else as a notice between statements (then the next statement
    # finds the connection closed, as libpq reports it after a PostgreSQL shutdown too).
    assert sorted(ended) == [0, 1_000_000], (ended, errors)
    for base, exc in ended.items():
        assert isinstance(exc, psycopg.errors.AdminShutdown) or "57P01" in notices.get(base, []), (exc, notices)
    log = d.output()
    assert "tierd stopped" in log and "cancelled" not in log
    d.stop()

    d.start()
    with d.connect() as c:
        got = {r[0] for r in c.execute("SELECT id FROM app.t").fetchall()}
        assert set(acked) <= got
        assert len(got - set(acked) - set(range(100000, 100050))) <= 2  # at most one in flight per writer
        assert c.execute("SELECT segments > 0 FROM system.tables WHERE table_name = 't'").fetchone() == (True,)


def test_sigterm_cancels_past_the_grace_period_and_leaves_the_job_to_be_retried(make_tierd):
    grace = 2.0
    d = make_tierd(f'[server]\nshutdown_grace_seconds = {grace}\n'
                   '[failpoints]\n"flush.start" = "sleep:6000"\n').start()
    with d.connect() as c:
        c.execute("CREATE TABLE public.t (id INT PRIMARY KEY) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO public.t SELECT * FROM range(10)")
    waited: list[BaseException] = []

    def flush_and_wait():
        with d.connect() as w:
            try:
                w.execute("STORAGE FLUSH TABLE public.t WAIT")
            except psycopg.Error as exc:
                waited.append(exc)

    t = threading.Thread(target=flush_and_wait)
    t.start()
    with d.connect() as c:
        job_id = wait_for(lambda: c.execute("SELECT job_id FROM system.jobs WHERE status = 'running'").fetchone(),
                          timeout=30, what="the flush running")[0]
    start = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)  # the WAIT is a running statement; the job sleeps 6 s
    assert d.wait_exit(timeout=30) == 0
    # Within the grace (the job step still sleeping is abandoned, not waited for), not a
    # second or a whole step past it.
    assert time.monotonic() - start < grace + 0.8
    t.join(timeout=30)
    # Past the grace period the statement is cancelled and the session ended with 57P01, as
    # Postgres's fast shutdown does (not 57014); the job stopped at its next step.
    assert waited and isinstance(waited[0], psycopg.errors.AdminShutdown), waited
    assert "terminating connection due to administrator command" in str(waited[0])
    assert "runs again at the next start" in d.output()
    d.stop()
    d.start()
    with d.connect() as c:
        wait_for(lambda: c.execute("SELECT status FROM system.jobs WHERE job_id = %s",
                                   (job_id,)).fetchone()[0] == "completed", timeout=30, what="the flush retried")
        assert c.execute("SELECT hot_rows, cold_rows FROM system.tables WHERE table_name = 't'").fetchone() == (0, 10)


# ---------------------------------------------------------------------- SIGHUP

def test_sighup_changes_the_default_flush_policy_without_restart(make_tierd):
    d = make_tierd('[flush]\ndefault_policy = "manual"\n').start()
    pid = d.proc.pid
    with d.connect() as c:
        c.execute("CREATE TABLE public.t (id INT PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO public.t SELECT i, 'x' FROM range(3) r(i)")
        assert c.execute("SELECT flush_policy FROM system.tables").fetchone() == ("manual",)
        extra = os.path.join(os.path.dirname(d.data_dir), "extra")
        with open(d.config, "w") as f:
            f.write('[flush]\ndefault_policy = "rows:5"\n[jobs]\nworkers = 3\nmax_retries = 5\n'
                    f'[storage.extra]\ntype = "filesystem"\npath = "{extra}"\n')
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded:" in d.output(), timeout=30, what="the reload log line")
        log = d.output()
        assert "flush.default_policy: 'manual' -> 'rows:5'" in log and "jobs.max_retries: 3 -> 5" in log
        assert "storage.extra (added)" in log
        c.execute("CREATE TABLE public.e (id INT PRIMARY KEY) WITH (STORAGE_ID = 'extra', FLUSH_POLICY = 'manual')")
        assert re.search(r"needs a restart.*jobs\.workers: 2 -> 3", log), log
        assert c.execute("SELECT flush_policy FROM system.tables WHERE table_name = 't'").fetchone() == ("rows:5",)
        assert c.execute("SELECT count(*) FROM system.jobs").fetchone() == (0,)  # 3 rows: below 5
        c.execute("INSERT INTO public.t VALUES (3, 'x'), (4, 'x')")
        wait_for(lambda: c.execute("SELECT hot_rows, cold_rows FROM system.tables WHERE table_name = 't'")
                 .fetchone() == (0, 5), timeout=30, what="the flush at 5 rows")
        # The rows are in cold once the manifest is applied; the job record completes just after.
        job = wait_for(lambda: c.execute("SELECT status, max_retries, parameters FROM system.jobs "
                                         "WHERE status = 'completed' AND job_type = 'flush'").fetchone(),
                   timeout=30, what="the job record")
        assert job[1] == 5 and "rows:5" in job[2]
    assert d.proc.pid == pid and d.proc.poll() is None

    # A broken file is refused and the running settings stay.
    with open(d.config, "w") as f:
        f.write('[flush]\ndefault_policy = "rows:zero"\n')
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in d.output(), timeout=30, what="the failed reload")
    assert "flush.default_policy" in d.output().split("reload failed", 1)[1]
    with d.connect() as c:
        assert c.execute("SELECT flush_policy FROM system.tables WHERE table_name = 't'").fetchone() == ("rows:5",)


# ---------------------------------------------------------------------- metrics

def test_metrics_endpoint_reflects_inserts_and_a_flush(make_tierd):
    port = free_port()
    d = make_tierd(f'[metrics]\nlisten = "127.0.0.1:{port}"\n').start()
    with d.connect() as c:
        c.execute("CREATE TABLE public.m (id INT PRIMARY KEY, v TEXT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO public.m VALUES (1, 'a'), (2, 'b')")
        c.execute("INSERT INTO public.m VALUES (%s, %s)", (3, "c"))
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM public.nothing")
        m = scrape(port)
        table = '{table="public.m",storage="local"}'
        assert m["tierd_rows_ingested_total"] == 3
        assert m["tierd_statements_total"] >= 4
        assert m['tierd_errors_total{severity="ERROR"}'] == 1
        assert m["tierd_connections_active"] >= 1 and m["tierd_connections_opened_total"] >= 1
        assert m[f"tierd_table_hot_rows{table}"] == 3 and m[f"tierd_table_hot_bytes{table}"] > 0
        assert m[f"tierd_table_cold_rows{table}"] == 0
        assert m['tierd_job_attempts_total{outcome="completed",type="flush"}'] == 0

        assert c.execute("STORAGE FLUSH TABLE public.m WAIT").fetchone()[1] == "completed"
        m = scrape(port)
        assert m['tierd_job_attempts_total{outcome="completed",type="flush"}'] == 1
        assert m['tierd_jobs_finished_total{status="completed",type="flush"}'] == 1
        assert m['tierd_job_rows_total{type="flush"}'] == 3
        assert m['tierd_job_duration_seconds_count{type="flush"}'] == 1
        assert m['tierd_job_duration_seconds_sum{type="flush"}'] > 0
        assert m[f"tierd_table_hot_rows{table}"] == 0 and m[f"tierd_table_hot_bytes{table}"] == 0
        assert m[f"tierd_table_cold_rows{table}"] == 3 and m[f"tierd_table_segments{table}"] == 1
        assert m[f"tierd_table_cold_bytes{table}"] > 0
        assert m['tierd_jobs_active{type="flush",status="queued"}'] == 0
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=10)
    assert info.value.code == 404


# ---------------------------------------------------------------------- CLI

@pytest.mark.parametrize("text, key", [
    ('[server]\nshutdown_grace_seconds = -1\n', "server.shutdown_grace_seconds"),
    ('[server]\nshutdown_grace_seconds = "soon"\n', "server.shutdown_grace_seconds: expected float"),
    ('[metrics]\nlisten = "9187"\n', "metrics.listen"),
    ('[metrics]\nlisten = "127.0.0.1:99999"\n', "metrics.listen"),
    ('[log]\nlevel = "LOUD"\n', "log.level"),
    ('[jobs]\nretention = 5\n', "jobs.retention: unknown setting"),
    ('[server\nport = 1\n', "invalid TOML"),
])
def test_check_config_rejects_a_bad_file_naming_the_key(tmp_path, text, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    r = subprocess.run([TIERD, "check-config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and key in r.stderr, r.stderr


def test_check_config_prints_the_effective_config_with_secrets_hidden(tmp_path):
    cfg = tmp_path / "ok.toml"
    cfg.write_text('[auth]\npassword = "hunter2"\n[metrics]\nlisten = "127.0.0.1:9187"\n')
    r = subprocess.run([TIERD, "check-config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "hunter2" not in r.stdout and "auth.password = '********'" in r.stdout
    assert "metrics.listen = '127.0.0.1:9187'" in r.stdout


def test_version():
    r = subprocess.run([TIERD, "version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and re.match(r"^tierd \d+\.\d+", r.stdout)


def test_metrics_port_in_use_fails_the_start_clearly(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "m.toml"
        cfg.write_text(f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        # start-up itself, so `tierd serve` by hand: it must fail before it serves
        r = subprocess.run([TIERD, "serve", "--config", str(cfg), "--data-dir", str(tmp_path / "d"),
                            "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "metrics" in r.stderr, r.stderr


def test_sigterm_exits_promptly_with_idle_and_in_transaction_clients(make_tierd):
    d = make_tierd("").start()
    with d.connect() as c:
        c.execute("CREATE TABLE public.t (id INT PRIMARY KEY)")
    idle = d.connect()
    txn = d.connect(autocommit=False)
    txn.execute("INSERT INTO public.t VALUES (1)")  # never committed
    start = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait_exit(timeout=30) == 0
    assert time.monotonic() - start < 5
    for conn in (idle, txn):
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
    d.stop()
    d.start()
    with d.connect() as c:
        assert c.execute("SELECT count(*) FROM public.t").fetchone() == (0,)


def test_watchdog_check_fails_when_the_accept_loop_stops_turning():
    from tierd.daemon import Monitor

    class Cursor:
        def execute(self, sql):
            return self

        def fetchone(self):
            return (1,)

    class Stub:
        stopping = threading.Event()
        engine = type("E", (), {})()

    Stub.engine.jobs = type("J", (), {"scheduler": type("S", (), {"running": True})()})()
    Stub.engine.db = type("D", (), {"cursor": lambda self: Cursor()})()
    Stub.engine.store = type("L", (), {"last_seq": lambda self: 0, "writable": lambda self: None})()
    m = Monitor(Stub())
    m.beat = lambda: None  # no READY from a unit test
    m.last_beat = time.monotonic()
    assert m.check() is None
    m.last_beat = time.monotonic() - 60
    assert "accept loop" in m.check()
    m.last_beat = time.monotonic()
    Stub.engine.store.writable = lambda: "the hot tier cannot take a write: disk full"
    assert "cannot take a write" in m.check()   # a daemon that cannot write is not healthy
    Stub.engine.store.writable = lambda: None
    Stub.engine.jobs.scheduler.running = False
    assert "scheduler" in m.check()
