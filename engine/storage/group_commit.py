"""Group commit: concurrent autocommit writers share one fsync.

A writer queues its row batches while it still holds the write lock, so queue order is
`_seq` order; it then releases the lock and waits until its batches are durable. The first
waiter that finds no write in progress becomes the leader: it takes everything queued so
far, writes it as one synced LevelDB WriteBatch, makes the rows visible (publishes them) in
queue order, and wakes the others. So a commit is acknowledged only once it is durable
(invariant 1), rows become visible only once durable and in `_seq` order, and N writers
arriving during one fsync pay for the next one together instead of N in a row.

Anything that reads DuckDB's hot rows or `Engine.seq` under the write lock (UPDATE, DELETE,
INSERT … SELECT, explicit transactions, flush) first `drain()`s the queue, so it never misses
a row whose commit was queued before it took the lock.
"""
from __future__ import annotations

import threading
from typing import Callable

import pyarrow as pa

from engine.storage.hot_store import HotStore

Batches = list[tuple[int, int, pa.Table]]  # (table id, first _seq, rows with _seq/_deleted)


class Ticket:
    """One queued commit: its batches, and how its wait ended."""

    __slots__ = ("batches", "last_seq", "done", "error", "undo")

    def __init__(self, batches: Batches, last_seq: int, undo: Callable[[], None] | None):
        self.batches = batches
        self.last_seq = last_seq
        self.done = False
        self.error: BaseException | None = None
        self.undo = undo  # reverts what the writer did before durability (its key index updates)


class CommitQueue:
    def __init__(self, store: HotStore, publish: Callable[[Batches, int], None],
                 failpoint: Callable[[str], None] = lambda name: None):
        self._store = store
        self._publish = publish  # (batches, their last _seq): make them visible
        self._failpoint = failpoint  # "group_commit.before_write": tests hold the leader's write
        self._cond = threading.Condition()
        self._queue: list[Ticket] = []
        self._in_flight: Ticket | None = None  # the last ticket of the group being written
        self.groups = 0  # fsyncs issued (observability, tests)
        self.commits = 0  # tickets made durable

    def enqueue(self, batches: Batches, last_seq: int, undo: Callable[[], None] | None = None) -> Ticket:
        """Queue a commit; the caller holds the write lock (that is what orders the queue)."""
        ticket = Ticket(batches, last_seq, undo)
        with self._cond:
            self._queue.append(ticket)
        return ticket

    def wait(self, ticket: Ticket) -> None:
        """Return once `ticket` is durable and visible; raise the write's error if it failed."""
        with self._cond:
            while not ticket.done:
                if self._in_flight is not None or not self._queue:
                    self._cond.wait()
                    continue
                group, self._queue = self._queue, []
                self._in_flight = group[-1]
                self._cond.release()
                try:
                    self._write(group)
                finally:
                    self._cond.acquire()
                    self._in_flight = None
                    for t in group:
                        t.done = True
                    self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error

    def drain(self) -> None:
        """Wait until every commit queued so far is durable and visible (errors are theirs)."""
        with self._cond:
            last = self._queue[-1] if self._queue else self._in_flight
        if last is not None:
            try:
                self.wait(last)
            except Exception:  # noqa: BLE001 - reported to that commit's own client
                pass

    def _write(self, group: list[Ticket]) -> None:
        """Leader only: one synced WriteBatch for the whole group, then publish in order."""
        batches = [b for t in group for b in t.batches]
        try:
            self._failpoint("group_commit.before_write")
            self._store.commit(batches, max(t.last_seq for t in group))
        except BaseException as exc:  # nothing of the group is durable: nothing becomes visible
            for t in reversed(group):
                t.error = exc
                if t.undo is not None:
                    t.undo()
            return
        self.groups += 1
        self.commits += len(group)
        self._publish(batches, max(t.last_seq for t in group))
