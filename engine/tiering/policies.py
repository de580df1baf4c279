"""Flush policies: decide when a table's hot rows should move to Parquet.

"rows:N" counts a table's distinct primary keys with unflushed changes (inserts, updates
and deletes of one key count once): that is the number of hot entries a flush will write,
so it bounds hot memory. It is checked right after each commit, so the flush starts within
moments of the Nth key, not on a timer. "interval:S" flushes a table whose oldest unflushed
write is S seconds old; a one-second tick checks it.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from engine.catalog.flush_policy import FlushPolicy, parse_flush_policy
from engine.catalog.tables import Catalog, TableDef
from engine.tiers.hot import HotTier
from engine.tiering.jobs import JobRunner

log = logging.getLogger("tierd.policies")

TICK_SECONDS = 1.0


class PolicyRunner:
    def __init__(self, catalog: Catalog, hot: HotTier, jobs: JobRunner, default_policy: Callable[[], str]):
        self._catalog = catalog
        self._hot = hot
        self._jobs = jobs
        self._default_policy = default_policy  # a live setting: read at each use
        self.oldest: dict[int, float] = {}  # table id -> monotonic time of oldest unflushed write
        # Tables whose last flush failed after all its retries: no policy flush starts for them
        # until something changes (a write, ALTER TABLE, a flush that succeeds, e.g. RETRY JOB),
        # so a flush that fails the same way every time is not started again on every tick.
        self.failing: set[int] = set()
        self.lock = threading.Lock()
        self._cache: dict[str, FlushPolicy] = {}
        self._warned: dict[int, float] = {}  # table id -> when a failed start was last logged

    def policy(self, t: TableDef) -> FlushPolicy:
        text = t.flush_policy or self._default_policy()
        p = self._cache.get(text)
        if p is None:
            p = self._cache[text] = parse_flush_policy(text)
        return p

    def on_commit(self, tids: list[int]) -> None:
        now = time.monotonic()
        tables = [t for t in map(self._catalog.by_tid, tids) if t is not None and not t.is_stream]
        with self.lock:  # STREAM tables are never flushed: no policy applies
            for t in tables:
                self.oldest.setdefault(t.tid, now)
                self.failing.discard(t.tid)
        for t in tables:
            p = self.policy(t)
            if p.rows is not None and self._hot.pending_rows(t) >= p.rows:
                self._flush(t, f"rows:{p.rows} reached")

    def on_flushed(self, tid: int, hot_left: int) -> None:
        """After a flush: rows written meanwhile start a new interval now."""
        with self.lock:
            self.failing.discard(tid)
            if hot_left:
                self.oldest[tid] = time.monotonic()
            else:
                self.oldest.pop(tid, None)

    def schema_changed(self, tid: int) -> None:
        """After ALTER TABLE (which stopped any flush): pending rows start their interval again."""
        with self.lock:
            self.failing.discard(tid)
            if self._hot.index.get(tid):
                self.oldest.setdefault(tid, time.monotonic())

    def flush_failed(self, tid: int) -> None:
        """A flush of the table failed for good (its retries used up)."""
        with self.lock:
            self.failing.add(tid)

    def forget(self, tid: int) -> None:
        with self.lock:
            self.oldest.pop(tid, None)
            self.failing.discard(tid)

    def tick(self) -> None:
        now = time.monotonic()
        with self.lock:
            due = list(self.oldest.items())
        for tid, since in due:
            t = self._catalog.by_tid(tid)
            if t is None:
                self.forget(tid)
                continue
            p = self.policy(t)
            if p.interval is not None and now - since >= p.interval:
                self._flush(t, f"interval:{p.interval} reached")

    def _flush(self, t: TableDef, reason: str) -> None:
        if t.tid in self.failing or self._jobs.active_job(t.qualified) is not None or not self._hot.pending_rows(t):
            return
        try:
            job, created = self._jobs.submit("flush", t.qualified, {"trigger": reason})
        except Exception as exc:  # e.g. a full disk: the next tick asks again; the write stands
            if time.monotonic() - self._warned.get(t.tid, -1e9) < 60:
                return
            self._warned[t.tid] = time.monotonic()
            log.warning("policy flush of %s (%s) not started: %s", t.qualified, reason,
                        getattr(exc, "message", exc))
            return
        if created:
            log.info("policy flush of %s (%s): job %s", t.qualified, reason, job.job_id)
