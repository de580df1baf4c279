"""Start tierd as a real process and reach it over the wire, the way users do.

`Tierd` is one daemon process; `Daemons` makes them from TOML config text and stops every one
it made. The pytest fixtures over both are in tests/conftest.py.
"""
from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIERD = os.path.join(os.path.dirname(sys.executable), "tierd")
SUPERUSER = "tierd"
SUPERUSER_PASSWORD = "tierd-s3cret"  # the superuser's password of the SCRAM fixtures


# Ports come from a range of this pytest worker's own (pytest-xdist runs several at once),
# below the kernel's ephemeral range (32768+), so neither another worker's daemon nor a
# client's outgoing connection can take a port between our check and the server's bind.
_PORT_SPAN = 2000
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
_PORT_BASE = 12000 + (_WORKER % 10) * _PORT_SPAN
# a random start in the range: test runs of other checkouts on the same machine walk it too
_next_port = itertools.count(random.randrange(_PORT_SPAN))


def free_port() -> int:
    for _ in range(_PORT_SPAN):
        port = _PORT_BASE + next(_next_port) % _PORT_SPAN
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORT_BASE}..{_PORT_BASE + _PORT_SPAN}")


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll until `predicate()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Tierd:
    """One daemon process on a data dir; restartable, killable."""

    def __init__(self, data_dir: str, config: str | None = None, port: int | None = None,
                 password: str | None = None, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.password = password  # the superuser's, when the config turns on SCRAM
        self.config = config
        self.env = env or {}      # extra environment (NOTIFY_SOCKET, WATCHDOG_USEC, ...)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = None
        self.log_path = os.path.join(os.path.dirname(data_dir), f"tierd-{os.path.basename(data_dir)}.log")

    def command(self) -> list[str]:
        cmd = [TIERD, "serve", "--data-dir", self.data_dir, "--port", str(self.port), "--host", "127.0.0.1"]
        if self.config:
            cmd += ["--config", self.config]
        return cmd

    def start(self, wait: bool = True) -> "Tierd":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, **self.env})
        if wait:
            wait_for(self._ready, timeout=60, what=f"tierd on port {self.port} (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"tierd exited with {self.proc.returncode}: {self.output()[-2000:]}")
        try:
            with psycopg.connect(self.dsn, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def output(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def dsn(self) -> str:
        password = f" password={self.password}" if self.password else ""
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=tierd{password}"

    def connect(self, autocommit: bool = True, **kw) -> psycopg.Connection:
        """A connection as the superuser."""
        return psycopg.connect(self.dsn, autocommit=autocommit, **kw)

    def connect_as(self, user: str, password: str | None = None, autocommit: bool = True,
                   **kw) -> psycopg.Connection:
        """A connection as another role (in trust mode a role needs no password)."""
        params = dict(host="127.0.0.1", port=self.port, user=user, dbname="tierd", autocommit=autocommit,
                      connect_timeout=10)
        if password is not None:
            params["password"] = password
        return psycopg.connect(**params, **kw)

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def restart(self, kill9: bool = False) -> "Tierd":
        """Stop (SIGTERM, or SIGKILL with kill9=True) and start again on the same data dir and port."""
        if kill9:
            self.kill9()
        self.stop()
        return self.start()

    def wait_exit(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.log:
            self.log.close()
            self.log = None


def scram_config(password: str = SUPERUSER_PASSWORD) -> str:
    return f'[auth]\nmethod = "scram"\npassword = "{password}"\n'


# Iceberg publishing is on by default, and a daemon's first publish imports pyiceberg (seconds
# of CPU): tests that are not about it turn it off, so `make test` stays within its time. A
# config with an [iceberg] section (tests/test_iceberg*.py, tests/sql/iceberg) keeps the default.
ICEBERG_OFF = "\n[iceberg]\nenabled = false\n"


class Daemons:
    """Makes daemons under one base directory; `close()` stops every one it made."""

    def __init__(self, base: str):
        self.base = str(base)
        self.made: list[Tierd] = []

    def make(self, config: str | None = None, *, data_dir: str | None = None, password: str | None = None,
             env: dict[str, str] | None = None) -> Tierd:
        """A daemon (not started) with `config` as its TOML config text.

        password: turn on SCRAM with this superuser password (an [auth] section is added
        unless the config has one). Without it, a password the config sets is used to log in.
        data_dir: defaults to <base>/data, so daemons made one after another share it.
        """
        if "[iceberg]" not in (config or ""):
            config = (config or "") + ICEBERG_OFF
        if password is not None and "auth" not in tomllib.loads(config or ""):
            config = scram_config(password) + (config or "")
        if password is None and config:
            password = tomllib.loads(config).get("auth", {}).get("password")
        path = None
        if config is not None:
            path = os.path.join(self.base, f"tierd-{len(self.made)}.toml")
            with open(path, "w") as f:
                f.write(config)
        d = Tierd(data_dir or os.path.join(self.base, "data"), config=path, password=password, env=env)
        self.made.append(d)
        return d

    def close(self) -> None:
        for d in self.made:
            d.stop()


def scrape_metrics(port: int) -> dict[str, float]:
    """GET /metrics, as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out
