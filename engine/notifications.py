"""LISTEN / NOTIFY between sessions: which session listens on which channel, and delivery of
a committed transaction's notifications to every listener.

The engine knows nothing of sockets: a session's front end attaches a `deliver` callback
(the wire layer writes a NotificationResponse, at once to an idle connection, else before its
next ReadyForQuery). Delivery happens at the sender's commit, never on rollback, in the
order the sender notified, each (channel, payload) pair once per transaction (PostgreSQL
folds duplicates).
"""
from __future__ import annotations

import threading
from typing import Callable

Deliver = Callable[[int, str, str], None]  # (sender pid, channel, payload)

MAX_PAYLOAD = 7999  # bytes: PostgreSQL's limit is "8000 bytes" including the terminator


class NotificationHub:
    def __init__(self):
        self._lock = threading.Lock()
        self._channels: dict[str, set[int]] = {}  # channel -> listening pids
        self._deliver: dict[int, Deliver] = {}  # pid -> the front end's callback

    def attach(self, pid: int, deliver: Deliver) -> None:
        with self._lock:
            self._deliver[pid] = deliver

    def detach(self, pid: int) -> None:
        """A session closed: it listens nowhere any more."""
        with self._lock:
            self._deliver.pop(pid, None)
            for pids in self._channels.values():
                pids.discard(pid)

    def listen(self, pid: int, channel: str) -> None:
        with self._lock:
            self._channels.setdefault(channel, set()).add(pid)

    def unlisten(self, pid: int, channel: str | None) -> None:
        """UNLISTEN channel; None: UNLISTEN *."""
        with self._lock:
            for name, pids in list(self._channels.items()):
                if channel is None or name == channel:
                    pids.discard(pid)
                    if not pids:
                        del self._channels[name]

    def channels(self, pid: int) -> list[str]:
        """pg_listening_channels() of a session."""
        with self._lock:
            return sorted(name for name, pids in self._channels.items() if pid in pids)

    def publish(self, sender: int, notifications: list[tuple[str, str]]) -> None:
        """A transaction of `sender` committed: hand each notification to every listener."""
        with self._lock:
            targets = [(channel, payload, [self._deliver[p] for p in self._channels.get(channel, ())
                                           if p in self._deliver])
                       for channel, payload in notifications]
        for channel, payload, callbacks in targets:
            for deliver in callbacks:
                deliver(sender, channel, payload)
