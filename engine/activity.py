"""The live sessions, as pg_stat_activity shows them and as one session reaches another:
each session's backend pid (the one the client got in BackendKeyData), what it runs, and the
signals `pg_cancel_backend` / `pg_terminate_backend` send it.

A session registers an `Activity` when it opens and removes it when it closes; it updates
the record's state at each statement (a few attribute writes, no lock: readers copy).
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

from engine.errors import InsufficientPrivilege

# pg_stat_activity's columns (PostgreSQL 15), in order, as DuckDB types.
COLUMNS = (
    ("datid", pa.int64()), ("datname", pa.string()), ("pid", pa.int32()), ("leader_pid", pa.int32()),
    ("usesysid", pa.int64()), ("usename", pa.string()), ("application_name", pa.string()),
    ("client_addr", pa.string()), ("client_hostname", pa.string()), ("client_port", pa.int32()),
    ("backend_start", pa.timestamp("us", tz="UTC")), ("xact_start", pa.timestamp("us", tz="UTC")),
    ("query_start", pa.timestamp("us", tz="UTC")), ("state_change", pa.timestamp("us", tz="UTC")),
    ("wait_event_type", pa.string()), ("wait_event", pa.string()), ("state", pa.string()),
    ("backend_xid", pa.string()), ("backend_xmin", pa.string()), ("query_id", pa.int64()),
    ("query", pa.string()), ("backend_type", pa.string()),
)
SCHEMA = pa.schema(COLUMNS)


@dataclass
class Activity:
    """One session as others see it."""

    pid: int
    user: str
    application_name: Callable[[], str]   # read from the session's settings when shown
    cancel: Callable[[str], None]          # interrupt its statement (reason for the 57014 message)
    terminate: Callable[[], None]          # end the session (FATAL 57P01 to its client)
    owner: object = None                   # the session itself (its functions act on it)
    client_addr: str | None = None
    client_port: int | None = None
    backend_start: float = field(default_factory=time.time)
    xact_start: float | None = None
    query_start: float | None = None
    state_change: float = field(default_factory=time.time)
    state: str = "idle"
    query: str = ""
    wait_event_type: str | None = None
    wait_event: str | None = None
    terminated: bool = False  # pg_terminate_backend: gone from pg_stat_activity while it winds down

    def started(self, sql: str, in_transaction: bool) -> None:
        now = time.time()
        self.query, self.query_start, self.state, self.state_change = sql, now, "active", now
        if not in_transaction or self.xact_start is None:
            self.xact_start = now

    def finished(self, in_transaction: bool, failed: bool) -> None:
        self.state = ("idle in transaction (aborted)" if failed else "idle in transaction") if in_transaction \
            else "idle"
        self.state_change = time.time()
        if not in_transaction:
            self.xact_start = None


class SessionRegistry:
    """Every open session by pid."""

    def __init__(self, database: str, database_oid: int, role_oid: Callable[[str], int]):
        self._lock = threading.Lock()
        self._by_pid: dict[int, Activity] = {}
        self.database, self.database_oid, self._role_oid = database, database_oid, role_oid

    def new_pid(self) -> int:
        """A backend pid no open session has (positive int32, as BackendKeyData carries)."""
        while True:
            pid = secrets.randbelow(2**31 - 2) + 1
            if pid not in self._by_pid:
                return pid

    def add(self, activity: Activity) -> None:
        with self._lock:
            self._by_pid[activity.pid] = activity

    def remove(self, pid: int) -> None:
        with self._lock:
            self._by_pid.pop(pid, None)

    def get(self, pid: int) -> Activity | None:
        return self._by_pid.get(pid)

    def __len__(self) -> int:
        return len(self._by_pid)

    def signal(self, caller: Activity, is_superuser: Callable[[str], bool], pid: int, action: str) -> bool:
        """pg_cancel_backend / pg_terminate_backend: True if the session exists and was
        signalled. A role may signal its own sessions; a superuser any (42501 otherwise, in
        PostgreSQL's words)."""
        target = self.get(pid)
        if target is None:
            return False
        if target.user != caller.user and not is_superuser(caller.user):
            if action == "terminate":
                raise InsufficientPrivilege(
                    "permission denied to terminate process",
                    detail=f'Only roles with privileges of the role whose process is being terminated or with '
                           f'privileges of the "pg_signal_backend" role may terminate this process.')
            raise InsufficientPrivilege(
                "permission denied to cancel query",
                detail=f'Only roles with privileges of the role whose query is being canceled or with '
                       f'privileges of the "pg_signal_backend" role may cancel this query.')
        if action == "terminate":
            target.terminated = True  # the caller's next query no longer lists it (its thread may take a moment)
            target.terminate()
        else:
            target.cancel("user request")
        return True

    def pids(self) -> list[int]:
        with self._lock:
            return list(self._by_pid)

    def table(self) -> pa.Table:
        """pg_stat_activity's rows (the view hides what a reader may not see)."""
        with self._lock:
            sessions = sorted((a for a in self._by_pid.values() if not a.terminated), key=lambda a: a.backend_start)
        rows = []

        def ts(value: float | None) -> int | None:
            return None if value is None else int(value * 1_000_000)

        for a in sessions:
            rows.append((
                self.database_oid, self.database, a.pid, None, self._role_oid(a.user), a.user,
                a.application_name(), a.client_addr, None, a.client_port, ts(a.backend_start), ts(a.xact_start),
                ts(a.query_start), ts(a.state_change), a.wait_event_type, a.wait_event, a.state, None, None, None,
                a.query, "client backend",
            ))
        columns = list(zip(*rows)) if rows else [[] for _ in COLUMNS]
        return pa.Table.from_arrays([pa.array(list(c), type=t) for c, (_, t) in zip(columns, COLUMNS)], schema=SCHEMA)
