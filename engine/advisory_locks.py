"""Advisory locks as PostgreSQL keeps them: application-defined keys (one bigint, or two
int4s: separate key spaces), exclusive or shared, held per session (until unlocked or the
session ends) or per transaction (until it ends). A session's holds count: locking twice
needs unlocking twice; a session never conflicts with itself. A blocked lock waits until it
is granted, its statement is cancelled (cancel request, statement_timeout) or lock_timeout
passes.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable

from engine.errors import LockNotAvailable, QueryCanceled

Key = tuple  # ("bigint", k) or ("int4", k1, k2)
Hold = tuple[str, bool]  # (level "session" | "xact", shared)


class AdvisoryLocks:
    def __init__(self):
        self._cond = threading.Condition()
        self._held: dict[Key, dict[int, Counter]] = {}  # key -> pid -> Counter[Hold]
        self._waiting: dict[int, tuple[Key, bool, float]] = {}  # pid -> (key, shared, since)

    def _grantable(self, key: Key, pid: int, shared: bool) -> bool:
        for other, holds in self._held.get(key, {}).items():
            if other == pid or not +holds:
                continue
            if not shared or any(not sh for (_level, sh), n in holds.items() if n):
                return False
        return True

    def acquire(self, pid: int, key: Key, shared: bool, xact: bool, wait: bool,
                cancelled: Callable[[], bool] = lambda: False, timeout_s: float = 0.0,
                waiting: Callable[[bool], None] = lambda on: None) -> bool:
        """Take one hold of `key`; with `wait`, block until granted (57014 when `cancelled()`,
        55P03 after `timeout_s` > 0). Without `wait`: whether it was granted."""
        deadline = time.monotonic() + timeout_s if timeout_s else None
        with self._cond:
            if not self._grantable(key, pid, shared):
                if not wait:
                    return False
                waiting(True)
                self._waiting[pid] = (key, shared, time.time())
                try:
                    while not self._grantable(key, pid, shared):
                        if cancelled():
                            raise QueryCanceled("canceling statement due to user request")
                        if deadline is not None and time.monotonic() >= deadline:
                            raise LockNotAvailable("canceling statement due to lock timeout")
                        self._cond.wait(0.05)
                finally:
                    self._waiting.pop(pid, None)
                    waiting(False)
            holds = self._held.setdefault(key, {}).setdefault(pid, Counter())
            holds[("xact" if xact else "session", shared)] += 1
            return True

    def release(self, pid: int, key: Key, shared: bool) -> bool:
        """pg_advisory_unlock[_shared]: drop one session-level hold; False if none was held."""
        with self._cond:
            holds = self._held.get(key, {}).get(pid)
            hold = ("session", shared)
            if not holds or not holds[hold]:
                return False
            holds[hold] -= 1
            self._tidy(key, pid)
            self._cond.notify_all()
            return True

    def release_all(self, pid: int, levels: tuple[str, ...] = ("session",)) -> None:
        """pg_advisory_unlock_all (session level), transaction end ("xact"), disconnect (both)."""
        with self._cond:
            changed = False
            for key in list(self._held):
                holds = self._held[key].get(pid)
                if not holds:
                    continue
                for hold in list(holds):
                    if hold[0] in levels and holds[hold]:
                        del holds[hold]
                        changed = True
                self._tidy(key, pid)
            if changed:
                self._cond.notify_all()

    def rows(self) -> list[tuple[int, Key, bool, bool, float | None]]:
        """pg_locks' advisory rows: (pid, key, shared, granted, wait start) for each lock a
        session holds (once per mode, however many times it took it) or waits for."""
        with self._cond:
            held = {(pid, key, shared) for key, pids in self._held.items()
                    for pid, holds in pids.items() for (_level, shared), n in holds.items() if n}
            out = [(pid, key, shared, True, None) for pid, key, shared in sorted(held, key=repr)]
            out += [(pid, key, shared, False, since) for pid, (key, shared, since) in self._waiting.items()]
        return out

    def _tidy(self, key: Key, pid: int) -> None:
        pids = self._held.get(key, {})
        if pid in pids and not +pids[pid]:
            del pids[pid]
        if not pids:
            self._held.pop(key, None)
