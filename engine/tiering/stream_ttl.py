"""STREAM tables: rows live TTL_SECONDS from their write, in the hot tier only.

Every row version carries its write time (`_written_at`, stamped at the write, never going
backwards across _seq), so versions expire in `_seq` order: the expired rows of a table are
exactly those with `_seq <= S`, S the newest expired version. The views hide them at once
(tiers/views.py); a `stream_eviction` job, visible in system.jobs, deletes them from DuckDB and
LevelDB later. The check runs every max(1, min(5, TTL/2)) seconds per table and starts a job
only when something has expired, so an idle stream leaves no job records behind.
"""
from __future__ import annotations

import logging
import threading
import time
import duckdb

from engine.catalog.tables import Catalog, TableDef
from engine.failpoints import Failpoints
from engine.tiers.hot import HotTier
from engine.tiers import views
from engine.tiering.jobs import Job, JobRunner

log = logging.getLogger("tierd.stream")

TICK_SECONDS = 1.0


def check_every(t: TableDef) -> float:
    return max(1.0, min(5.0, (t.ttl_seconds or 1) / 2))


def _expired_sql(t: TableDef) -> str:
    return f"_written_at <= now() - INTERVAL {int(t.ttl_seconds or 0)} SECOND"


class EvictionScheduler:
    """Called every TICK_SECONDS by the job runner's scheduler; submits eviction jobs."""

    def __init__(self, catalog: Catalog, hot: HotTier, db: duckdb.DuckDBPyConnection, jobs: JobRunner):
        self._catalog = catalog
        self._hot = hot
        self._db = db
        self._jobs = jobs
        self.checked: dict[int, float] = {}  # table id -> monotonic time of its last check
        self.lock = threading.Lock()

    def tick(self) -> None:
        now = time.monotonic()
        for t in list(self._catalog.tables.values()):
            if not t.is_stream or now - self.checked.get(t.tid, 0.0) < check_every(t):
                continue
            self.checked[t.tid] = now
            if self._jobs.active_job(t.qualified) is not None or not self._has_expired(t):
                continue
            try:
                job, created = self._jobs.submit("stream_eviction", t.qualified, {"trigger": f"ttl:{t.ttl_seconds}"})
            except Exception as exc:  # shutting down
                log.debug("no eviction of %s: %s", t.qualified, exc)
                continue
            if created:
                log.info("stream eviction of %s: job %s", t.qualified, job.job_id)

    def _has_expired(self, t: TableDef) -> bool:
        self._hot.materialize()
        cur = self._db.cursor()
        try:
            return cur.execute(f"SELECT EXISTS (SELECT 1 FROM {views.hot_table(t)} "
                               f"WHERE {_expired_sql(t)})").fetchone()[0]
        except Exception:  # the table was dropped meanwhile
            return False
        finally:
            cur.close()


def evict(hot: HotTier, db: duckdb.DuckDBPyConnection, failpoints: Failpoints, t: TableDef,
          job: Job | None) -> tuple[str, str, int]:
    """Delete every expired row version of `t` from DuckDB and LevelDB."""
    failpoints.hit("stream_eviction.start")
    cur = db.cursor()
    try:
        with hot.locked(f"a STREAM eviction of table {t.qualified}"):
            hot.settle()  # queued commits durable and in DuckDB first
            table = views.hot_table(t)
            newest, count = cur.execute(f"SELECT max(_seq), count(*) FROM {table} WHERE {_expired_sql(t)}").fetchone()
            if not count:
                return "skipped", f"Stream eviction skipped: no expired rows in table '{t.qualified}'", 0
            if job is not None:
                job.check_cancel()
            hot.store.delete_keys([k for k, first in hot.store.batch_keys(t.tid) if first <= newest])
            cur.execute(f"DELETE FROM {table} WHERE _seq <= {newest}")
            hot.forget_evicted(t, newest)
            return "completed", (f"Evicted {count} expired row version(s) of table '{t.qualified}' "
                                 f"(older than {t.ttl_seconds}s)"), count
    finally:
        cur.close()
