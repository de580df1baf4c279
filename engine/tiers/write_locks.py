"""Who may write the hot tier now: the write lock, in two modes, and row locks on keys.

A transaction whose writes all address rows by primary key, typed without DuckDB (UPDATE or
DELETE by key, INSERT of VALUES), holds the lock *shared* and a row lock on every key it
writes until it ends, as PostgreSQL's row locks do: writers of distinct keys go on together;
a writer of a key another transaction holds waits for that transaction to end and then reads
the version it committed (READ COMMITTED). Everything else that writes (a statement DuckDB
must type or evaluate, a transaction that reads through DuckDB, DDL, flush, compaction,
eviction) holds the lock *exclusive*: alone, as before row locks existed. A shared holder
that comes to need the exclusive mode upgrades: it waits until it is the only holder.

Waits are bounded by the lock timeout (55P03) and never form a cycle: a waiter that would
close one (two transactions each holding the key the other wants, or two upgrading) is told
40P01 at once, as PostgreSQL's deadlock detector would tell one of them.

Holders are tokens: a session for its transaction, any other object for a background task.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Hashable

from engine.errors import DeadlockDetected, LockNotAvailable, QueryCanceled

Token = Hashable
_POLL_S = 0.1  # waits wake this often to look for a timeout or cancellation


class WriteLocks:
    def __init__(self):
        self._cond = threading.Condition()
        self._exclusive: Token | None = None
        self._shared: dict[Token, tuple[str, float]] = {}  # token -> (who, since)
        self._who: tuple[str, float] = ("nobody", time.monotonic())  # the exclusive holder
        self._exclusive_waiting = 0  # new shared holders wait behind these (no starvation)
        self._upgrading: set[Token] = set()
        self._rows: dict[Hashable, Token] = {}  # (table id, key) -> its holder
        self._held: dict[Token, list] = {}  # holder -> its row locks
        self._waits_for_row: dict[Token, Hashable] = {}

    # ------------------------------------------------------------------ modes
    def exclusive(self, token: Token, who: str, timeout_s: float,
                  waiting: Callable[[bool], None] = lambda on: None) -> None:
        """Hold the lock alone (a shared holder upgrades: it waits until it is the only one)."""
        with self._cond:
            if self._exclusive == token:
                return
            upgrading = token in self._shared
            if upgrading:
                self._upgrading.add(token)
            else:
                self._exclusive_waiting += 1
            waiting(True)
            try:
                self._wait(lambda: self._exclusive is None and not (set(self._shared) - {token})
                           and (upgrading or not self._upgrading),
                           token, timeout_s, lambda: self._write_lock_busy(timeout_s),
                           (lambda: set(self._shared) - {token}) if upgrading else None)
            finally:
                waiting(False)
                if upgrading:
                    self._upgrading.discard(token)
                else:
                    self._exclusive_waiting -= 1
            self._shared.pop(token, None)
            self._exclusive = token
            self._who = (who, time.monotonic())

    def shared(self, token: Token, who: str, timeout_s: float) -> None:
        """Hold the lock beside other row-locking writers (not beside an exclusive holder)."""
        with self._cond:
            if self._exclusive == token or token in self._shared:
                return
            self._wait(lambda: self._exclusive is None and not self._exclusive_waiting and not self._upgrading,
                       token, timeout_s, lambda: self._write_lock_busy(timeout_s), None)
            self._shared[token] = (who, time.monotonic())

    def row(self, token: Token, row: Hashable, timeout_s: float,
            waiting: Callable[[bool], None] = lambda on: None, cancelled: Callable[[], bool] = lambda: False) -> None:
        """A row lock on `row` ((table id, key)) for a shared holder, until it releases;
        `waiting(True/False)` around a wait (pg_stat_activity's wait_event); a wait ends with
        57014 once `cancelled()` (statement_timeout, pg_cancel_backend)."""
        with self._cond:
            owner = self._rows.get(row)
            if owner == token:
                return
            if owner is not None:
                self._waits_for_row[token] = row
                waiting(True)
                try:
                    self._wait(lambda: row not in self._rows, token, timeout_s,
                               lambda: self._row_busy(row, timeout_s), lambda: {self._rows.get(row)}, cancelled)
                finally:
                    waiting(False)
                    del self._waits_for_row[token]
            self._rows[row] = token
            self._held.setdefault(token, []).append(row)

    def release(self, token: Token) -> None:
        """Everything `token` holds: the exclusive or shared mode and its row locks."""
        with self._cond:
            if self._exclusive == token:
                self._exclusive = None
            self._shared.pop(token, None)
            for row in self._held.pop(token, ()):
                if self._rows.get(row) == token:
                    del self._rows[row]
            self._cond.notify_all()

    def holds_exclusive(self, token: Token) -> bool:
        return self._exclusive == token

    # ------------------------------------------------------------------ waiting
    def _wait(self, ready: Callable[[], bool], token: Token, timeout_s: float,
              timed_out: Callable[[], Exception], blockers: Callable[[], set] | None,
              cancelled: Callable[[], bool] = lambda: False) -> None:
        """Under the condition: until `ready()`, the timeout, a cancel, or a wait that closes a cycle."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            if cancelled():
                raise QueryCanceled("canceling statement due to user request")
            if blockers is not None and self._closes_cycle(token, blockers()):
                raise DeadlockDetected(
                    "deadlock detected",
                    detail="This transaction waits for a row or the write lock held by another transaction "
                           "that waits for this one.",
                    hint="See server log for query details.")
            left = deadline - time.monotonic()
            if left <= 0:
                raise timed_out()
            self._cond.wait(min(left, _POLL_S))

    def _closes_cycle(self, token: Token, blockers: set) -> bool:
        """Whether one of `blockers` waits, directly or through others, for `token`."""
        seen, todo = set(), [b for b in blockers if b is not None]
        while todo:
            t = todo.pop()
            if t == token:
                return True
            if t in seen:
                continue
            seen.add(t)
            row = self._waits_for_row.get(t)
            if row is not None and row in self._rows:
                todo.append(self._rows[row])
            if t in self._upgrading:
                todo.extend(set(self._shared) - {t})
        return False

    def _write_lock_busy(self, timeout_s: float) -> LockNotAvailable:
        if self._exclusive is not None:
            who, since = self._who
        else:
            who, since = next(iter(self._shared.values()), ("another transaction", time.monotonic()))
        return LockNotAvailable(
            f"could not obtain the write lock within {timeout_s:g}s (another transaction is writing)",
            detail=f"The write lock is held by {who} for {time.monotonic() - since:.1f}s.")

    def _row_busy(self, row: Hashable, timeout_s: float) -> LockNotAvailable:
        who, since = self._shared.get(self._rows.get(row), ("another transaction", time.monotonic()))
        return LockNotAvailable("canceling statement due to lock timeout",
                                detail=f"The row is held by {who} for {time.monotonic() - since:.1f}s "
                                       f"(waited {timeout_s:g}s).")
