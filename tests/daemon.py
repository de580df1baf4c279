"""Start tierd as a real process and reach it over the wire, the way users do."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIERD = os.path.join(os.path.dirname(sys.executable), "tierd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
                 password: str | None = None):
        self.data_dir = data_dir
        self.password = password  # the superuser's, when the config turns on SCRAM
        self.config = config
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(os.path.dirname(data_dir), f"tierd-{os.path.basename(data_dir)}.log")

    def command(self) -> list[str]:
        cmd = [TIERD, "serve", "--data-dir", self.data_dir, "--port", str(self.port), "--host", "127.0.0.1"]
        if self.config:
            cmd += ["--config", self.config]
        return cmd

    def start(self, wait: bool = True) -> "Tierd":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT)
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
        return f"host=127.0.0.1 port={self.port} user=tierd dbname=tierd{password}"

    def connect(self, autocommit: bool = True, **kw) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=autocommit, **kw)

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

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
        if getattr(self, "log", None):
            self.log.close()
            self.log = None
