"""Background work that moves data between tiers, wired in one place: the job runner
(jobs.py: records, retries), the flush policies that start flushes, what each job type runs
(flush.py, compaction/, stream_ttl.py, publish.py), and the STORAGE FLUSH / COMPACT / PUBLISH
requests of clients. An Iceberg publish follows every flush and compaction as its own job,
after the manifest commit: it never slows or undoes them.
"""
from __future__ import annotations

import logging
from typing import Callable

import duckdb

from engine.catalog.tables import Catalog, TableDef
from engine.tiers.cold import ColdTier
from engine.errors import EngineError, ObjectInUse, QueryCanceled
from engine.failpoints import Failpoints
from engine.tiers.hot import HotTier
from engine.storage.reaper import FileReaper
from engine.tiering import stream_ttl
from engine.tiering.compaction.picker import needs_compaction
from engine.tiering.compaction.task import Compactor
from engine.tiering.flush import Flusher, Outcome
from engine.tiering.jobs import Job, JobRunner, JobsConfig
from engine.tiering.policies import TICK_SECONDS, PolicyRunner
from engine.tiering.publish import Publisher

log = logging.getLogger("tierd.tiering")


class TieringService:
    def __init__(self, catalog: Catalog, hot: HotTier, cold: ColdTier, db: duckdb.DuckDBPyConnection,
                 failpoints: Failpoints, reaper: FileReaper, jobs_config: JobsConfig, settings,
                 publisher: Publisher):
        """`settings`: the engine config, whose live values (default policy, compaction sizes,
        lock timeout) are read at each use."""
        self._catalog = catalog
        self._hot = hot
        self._cold = cold
        self._db = db
        self._fp = failpoints
        self._settings = settings
        self.jobs = JobRunner(hot.store, db, jobs_config, execute=self._execute, on_finished=self._finished)
        self.policies = PolicyRunner(catalog, hot, self.jobs, lambda: settings.default_flush_policy)
        self.flusher = Flusher(hot, cold, db, failpoints, self.policies.on_flushed)
        self.compactor = Compactor(hot, cold, db, failpoints, reaper, lambda: settings.compaction_target_rows)
        self.evictions = stream_ttl.EvictionScheduler(catalog, hot, db, self.jobs)
        self.publisher = publisher
        publisher.request_compaction = lambda t: self._submit(
            "compact", t.qualified, "files written before an ALTER TABLE, for Iceberg readers")

    def start(self, retry_unavailable: Callable[[], None]) -> None:
        """After recovery: recovered hot rows start their flush interval now; the ticks run."""
        for t in self._catalog.tables.values():
            if self._hot.index.get(t.tid):
                self.policies.on_commit([t.tid])
        self.jobs.start()
        self.jobs.every(TICK_SECONDS, self.policies.tick, "flush-policy-tick")
        self.jobs.every(5.0, retry_unavailable, "cold-tier-recovery")
        self.jobs.every(stream_ttl.TICK_SECONDS, self.evictions.tick, "stream-eviction-tick")
        self.jobs.every(self.publisher.catalogs.settings.catch_up_interval_s, self.publish_lagging, "iceberg-catch-up")
        self.publish_lagging()  # commits made before a crash or while the catalog was down

    def publish_lagging(self) -> None:
        """A publish job for every table whose Iceberg table misses manifest commits."""
        for t in list(self._catalog.tables.values()):
            if t.tid not in self._cold.unavailable and self.publisher.lag(t) > 0:
                self._submit_publish(t.qualified, "catch-up")

    def publish_soon(self, t: TableDef) -> None:
        """After a change outside the jobs (ALTER TABLE, TRUNCATE): the Iceberg table follows."""
        if self.publisher.lag(t) > 0:
            self._submit_publish(t.qualified, "table changed")

    def _submit_publish(self, table_name: str, trigger: str) -> None:
        self._submit("publish", table_name, trigger)

    def _submit(self, job_type: str, table_name: str, trigger: str) -> None:
        try:
            self.jobs.submit(job_type, table_name, {"trigger": trigger})
        except EngineError:
            pass  # shutting down: the next start catches up

    def shutdown(self) -> None:
        self.jobs.shutdown()

    # ------------------------------------------------------------------ what a job runs
    def _execute(self, job: Job) -> Outcome:
        ns, _, name = job.table_name.partition(".")
        t = self._catalog.find(ns, name)
        if t is None:
            raise EngineError(f"table '{job.table_name}' no longer exists")
        if t.tid in self._cold.unavailable:
            raise EngineError(self._cold.unavailable[t.tid])
        if job.job_type in ("flush", "compact"):
            self.publisher.warm_up(t)  # a publish follows: load pyiceberg meanwhile
        if job.job_type == "stream_eviction":
            return stream_ttl.evict(self._hot, self._db, self._fp, t, job)
        if job.job_type == "publish":
            return self.publisher.publish(t, job.check_cancel)
        with self._cold.editing(t, job.check_cancel):  # a streamed COPY commits between jobs
            if job.job_type == "flush":
                return self.flusher.flush_table(t, job)
            return self.compactor.compact_table(t, job)

    def _finished(self, job: Job) -> None:
        """After a flush or compaction (even a failed one: it may have committed a scope), the
        Iceberg table follows; after a publish, again if commits arrived meanwhile. A completed
        flush that left a scope with too many segments starts a compaction; a flush that failed
        for good keeps the policies from starting another until a change."""
        ns, _, name = job.table_name.partition(".")
        t = self._catalog.find(ns, name)
        if t is not None and job.job_type in ("flush", "compact", "publish") and self.publisher.lag(t) > 0:
            if job.job_type != "publish" or job.status == "completed":
                self._submit_publish(t.qualified, f"after {job.job_type} {job.job_id}")
        if job.job_type != "flush" or job.status not in ("completed", "failed"):
            return
        if job.status == "failed":
            if t is not None:
                self.policies.flush_failed(t.tid)
            return
        if t is not None:
            self.compact_if_needed(t)

    def compact_if_needed(self, t: TableDef) -> bool:
        """After a flush or a streamed COPY added segments: a scope with too many is compacted."""
        limit = self._settings.compaction_max_segments
        if any(needs_compaction(m, limit) for m in self._cold.manifests.get(t.tid, {}).values()):
            self.jobs.submit("compact", t.qualified, {"trigger": f"more than {limit} segments"})
            return True
        return False

    def after_load(self, t: TableDef) -> None:
        """After a streamed COPY committed segments: a compaction if the table has too many
        (the Iceberg table follows it), else the Iceberg table follows now."""
        if not self.compact_if_needed(t) and self.publisher.lag(t) > 0:
            self._submit_publish(t.qualified, "after a COPY")

    # ------------------------------------------------------------------ requests
    def request(self, job_type: str, t: TableDef, wait: bool, cancelled: Callable[[], bool] = lambda: False) -> Job:
        """STORAGE FLUSH / COMPACT: a new job, or a skipped record saying why not.

        With WAIT, a job already running for the table (a policy flush, say) is waited for
        and the request made again, so the caller's rows are in Parquet when it returns."""
        word = {"flush": "flush", "compact": "compaction", "publish": "publish"}[job_type]
        for attempt in (1, 2):
            # (batches left by a flush whose hot cleanup failed are work for a flush too)
            if job_type == "flush" and not self._hot.index.get(t.tid) and not self._hot.store.batch_keys(t.tid):
                return self.jobs.record(job_type, t.qualified, "skipped",
                                        f"Storage flush skipped: no pending writes for table '{t.qualified}'")
            job, created = self.jobs.submit(job_type, t.qualified, {"trigger": "command"})
            if created or wait and attempt == 1:
                if wait:
                    _wait(job, cancelled)
                if created:
                    return job
                continue
            break
        return self.jobs.record(
            job_type, t.qualified, "skipped",
            f"Storage {word} skipped: a {word} is already queued or running for table '{t.qualified}'")

    def stop_table_job(self, t: TableDef) -> None:
        """Before DROP TABLE: cancel the table's flush or compaction and wait for it to stop."""
        for job_type in ("flush", "publish"):
            job = self.jobs.active_job(t.qualified, job_type)
            if job is None:
                continue
            try:
                self.jobs.kill(job.job_id)
            except EngineError:
                pass  # it finished meanwhile
            if not job.done.wait(self._settings.lock_timeout_s):
                raise ObjectInUse(f"table '{t.qualified}' has a {job.job_type} job ({job.job_id}) that did not stop")

    def forget_table(self, t: TableDef) -> None:
        self.policies.forget(t.tid)


def _wait(job: Job, cancelled: Callable[[], bool]) -> None:
    while not job.done.wait(0.2):
        if cancelled():  # the client's cancel request stops the wait, not the job
            raise QueryCanceled(f"canceling statement due to user request; job {job.job_id} goes on")
