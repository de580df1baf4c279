"""Background jobs: records in `system.jobs`, persisted in LevelDB, run and retried by
APScheduler.

Lifecycle: queued -> running -> completed | failed | skipped | cancelled, with `retrying`
between automatic attempts (exponential backoff with jitter, up to `max_retries`). At most
one flush or compaction per table is queued, retrying or running at a time, whoever asked
(and one Iceberg publish, beside it).

A job is created in one step: its record is saved first, and only then is it listed and
marked as its table's active job, so a failed save (a full disk) is an error to the caller
and leaves nothing behind. Later changes of a job's status never get stuck on a failed save:
the job's state in memory and in `system.jobs` moves on, and the record is saved again at the
next change or by the periodic prune. So whatever holds up a table's flushes is a job that
`system.jobs` shows and KILL JOB / RETRY JOB act on.
"""
from __future__ import annotations

import json
import logging
import random
import secrets
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import duckdb
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from engine.errors import EngineError, JobNotRetryable, ObjectInUse, UndefinedObject
from engine.storage.hot_store import HotStore

log = logging.getLogger("tierd.jobs")

COLUMNS = (
    "job_id VARCHAR, job_type VARCHAR, status VARCHAR, table_name VARCHAR, parameters VARCHAR, "
    "message VARCHAR, error_trace VARCHAR, idempotency_key VARCHAR, retry_count INTEGER, "
    "max_retries INTEGER, next_retry_at TIMESTAMPTZ, rows_affected BIGINT, created_at TIMESTAMPTZ, "
    "updated_at TIMESTAMPTZ, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, "
    # Progress of a running job (Job.progress): the step it is in, row versions written of
    # those to write, Parquet bytes written, and the bytes of the segments being replaced
    # (a compaction; NULL for a flush, whose output size is known only once written).
    "phase VARCHAR, rows_done BIGINT, rows_total BIGINT, bytes_done BIGINT, bytes_total BIGINT"
)
FIELDS = [c.split()[0] for c in COLUMNS.split(", ")]
PREFIX = {"flush": "FL", "compact": "CO", "stream_eviction": "SE", "publish": "IP"}
# Job types that run beside a table's flush or compaction rather than waiting for it: an
# Iceberg publish never holds a flush back.
SIDE_JOBS = ("publish",)
ACTIVE = ("queued", "running", "retrying")
FINISHED = ("completed", "failed", "skipped", "cancelled")


def slot(job_type: str, table_name: str) -> str:
    """What at most one active job holds: the table, or the table's side job of that type."""
    return f"{table_name}#{job_type}" if job_type in SIDE_JOBS else table_name


class JobCancelled(Exception):
    """Raised inside a running job, between steps, after KILL JOB."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


@dataclass
class JobsConfig:
    workers: int = 2
    max_retries: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    retention_s: float = 7 * 24 * 3600


@dataclass
class Job:
    job_id: str
    job_type: str
    table_name: str
    status: str = "queued"
    parameters: str = "{}"
    message: str | None = None
    error_trace: str | None = None
    idempotency_key: str | None = None
    retry_count: int = 0
    max_retries: int = 3
    next_retry_at: str | None = None
    rows_affected: int | None = None
    created_at: str = field(default_factory=lambda: _now().isoformat())
    updated_at: str = field(default_factory=lambda: _now().isoformat())
    started_at: str | None = None
    finished_at: str | None = None
    phase: str | None = None
    rows_done: int | None = None
    rows_total: int | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    cancel_requested: bool = field(default=False, repr=False, compare=False)
    # Set by the runner while the job runs: publishes a progress change to system.jobs.
    reporter: Callable[["Job"], None] | None = field(default=None, repr=False, compare=False)

    def record(self) -> dict:
        return {f: getattr(self, f) for f in FIELDS}

    def progress(self, phase: str, *, rows_done: int | None = None, rows_total: int | None = None,
                 bytes_done: int | None = None, bytes_total: int | None = None) -> None:
        """Record where a running job stands (called by job bodies at each step and segment,
        never per row); the values given replace the old ones, the others stay."""
        self.phase = phase
        for name, value in (("rows_done", rows_done), ("rows_total", rows_total), ("bytes_done", bytes_done),
                            ("bytes_total", bytes_total)):
            if value is not None:
                setattr(self, name, value)
        if self.reporter is not None:
            self.reporter(self)

    def advance(self, phase: str, rows: int, nbytes: int) -> None:
        """One more piece written: `rows` row versions, `nbytes` Parquet bytes."""
        self.progress(phase, rows_done=(self.rows_done or 0) + rows, bytes_done=(self.bytes_done or 0) + nbytes)

    def check_cancel(self) -> None:
        """Called by job bodies between steps, so KILL JOB stops a running job cleanly."""
        if self.cancel_requested:
            raise JobCancelled()


class Untracked:
    """The progress sink of work that runs outside a job (a flush at shutdown, in tests)."""

    def progress(self, phase: str, **counts) -> None:
        pass

    def advance(self, phase: str, rows: int, nbytes: int) -> None:
        pass


Executor = Callable[[Job], tuple[str, str, int]]


class JobRunner:
    def __init__(self, store: HotStore, db: duckdb.DuckDBPyConnection, config: JobsConfig,
                 execute: Executor, on_finished: Callable[[Job], None] | None = None):
        self.store = store
        self.config = config
        self.execute = execute
        self.on_finished = on_finished
        self.cur = db.cursor()
        self.cur.execute(f"CREATE TABLE __tierd.__sys.jobs ({COLUMNS})")
        self.cur.execute("CREATE VIEW memory.system.jobs AS SELECT * FROM __tierd.__sys.jobs")
        self.lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self.active: dict[str, str] = {}  # slot (table name) -> its queued/running/retrying job
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=config.workers)},
            job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 1},
            timezone=timezone.utc,
        )
        self._interrupted: list[Job] = []
        self._unsaved: set[str] = set()  # jobs whose last record could not be saved yet
        self.stopping = False  # set by shutdown: nothing new is scheduled
        self._load()

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        for _, raw in self.store.scan_json("j/"):
            job = Job(**raw)
            if job.status in ACTIVE:
                job.status = "failed"
                job.message = f"the daemon stopped while this job was {raw['status']}"
                job.finished_at = _now().isoformat()
                self._interrupted.append(job)
            job.done.set()
            self.jobs[job.job_id] = job
            self._save(job)

    def _mirror(self, job: Job) -> None:
        """Replace the job's row in one transaction: a reader never sees the job missing."""
        rec = job.record()
        self.cur.execute("BEGIN")
        try:
            self.cur.execute("DELETE FROM __tierd.__sys.jobs WHERE job_id = $1", [job.job_id])
            self.cur.execute(
                f"INSERT INTO __tierd.__sys.jobs VALUES ({', '.join('$' + str(i + 1) for i in range(len(FIELDS)))})",
                [rec[f] for f in FIELDS],
            )
            self.cur.execute("COMMIT")
        except BaseException:
            self.cur.execute("ROLLBACK")
            raise

    def _save(self, job: Job) -> None:
        """Save the job's record and show it in system.jobs. A failed save (the hot store
        cannot write) is logged and tried again later: the job's life goes on in memory."""
        with self.lock:
            job.updated_at = _now().isoformat()
            try:
                self.store.put_json(f"j/{job.job_id}", job.record())
                self._unsaved.discard(job.job_id)
            except Exception as exc:
                if job.job_id not in self._unsaved:
                    log.warning("job %s: could not save its record (%s); saved again later",
                                job.job_id, getattr(exc, "message", exc))
                self._unsaved.add(job.job_id)
            self._mirror(job)

    def _create(self, job: Job) -> None:
        """Save a new job's record; raise (leaving nothing behind) when it cannot be saved."""
        with self.lock:
            self.store.put_json(f"j/{job.job_id}", job.record())
            try:
                self._mirror(job)
            except BaseException:
                try:
                    self.store.delete(f"j/{job.job_id}")
                except Exception:
                    log.warning("job %s: could not remove the record of a job that was never created",
                                job.job_id)
                raise
            self.jobs[job.job_id] = job

    def save_pending(self) -> None:
        """Save again the records that failed to save (once the hot store can write)."""
        with self.lock:
            for jid in list(self._unsaved):
                job = self.jobs.get(jid)
                if job is None:
                    self._unsaved.discard(jid)
                    continue
                try:
                    self.store.put_json(f"j/{jid}", job.record())
                except Exception:
                    return  # still failing: the next prune tries again
                self._unsaved.discard(jid)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the scheduler; jobs cut off by a crash or stop are retried now."""
        self.scheduler.start()
        every = max(1.0, min(60.0, self.config.retention_s / 4))
        self.scheduler.add_job(self.prune, "interval", seconds=every, id="prune-jobs")
        self.scheduler.add_job(self.save_pending, "interval", seconds=2, id="save-job-records")
        for job in self._interrupted:
            with self.lock:
                if slot(job.job_type, job.table_name) in self.active or job.retry_count >= job.max_retries:
                    continue
                job.retry_count += 1
                self._schedule_retry(job, delay=0.0)
        self._interrupted = []

    def shutdown(self) -> None:
        # A job finishing now must not add jobs (retries, compactions) to a scheduler that is
        # joining its threads while holding its job-store lock: that add would wait forever.
        with self.lock:
            self.stopping = True
        try:
            self.scheduler.shutdown(wait=True)
        except Exception:  # never started
            pass

    def requeue_after_shutdown(self, job: Job) -> None:
        """A job the shutdown stopped (not KILL JOB) runs again at the next start."""
        job.status = "queued"
        job.message = "interrupted by shutdown; runs again at the next start"
        job.finished_at = None
        job.cancel_requested = False
        self._save(job)

    def every(self, seconds: float, fn: Callable[[], None], job_id: str) -> None:
        """A periodic engine task (policy ticks) on the same scheduler."""
        self.scheduler.add_job(fn, "interval", seconds=seconds, id=job_id, max_instances=1, coalesce=True)

    # ------------------------------------------------------------------ requests
    def active_job(self, table_name: str, job_type: str = "flush") -> Job | None:
        """The table's active flush/compaction (or side job of `job_type`)."""
        with self.lock:
            jid = self.active.get(slot(job_type, table_name))
            return self.jobs.get(jid) if jid else None

    def submit(self, job_type: str, table_name: str, parameters: dict | None = None) -> tuple[Job, bool]:
        """Queue a job unless the table already has one; returns (job, created)."""
        with self.lock:
            if self.stopping:
                raise EngineError("the daemon is shutting down; no new jobs are started")
            current = self.active_job(table_name, job_type)
            if current is not None:
                return current, False
            job = Job(
                job_id=f"{PREFIX[job_type]}-{secrets.token_hex(6)}",
                job_type=job_type,
                table_name=table_name,
                parameters=json.dumps(parameters or {}),
                max_retries=self.config.max_retries,
                idempotency_key=f"{job_type}:{table_name}",
            )
            self._create(job)  # raises when the record cannot be saved: nothing is left behind
            self.active[slot(job_type, table_name)] = job.job_id
            try:
                self.scheduler.add_job(self._run, args=[job], id=f"run-{job.job_id}")
            except Exception as exc:
                self._finish(job, "failed", f"could not schedule the job: {exc}", None)
                raise
        return job, True

    def record(self, job_type: str, table_name: str, status: str, message: str) -> Job:
        """A job that finished at once (a skipped flush) still leaves its record."""
        job = Job(job_id=f"{PREFIX[job_type]}-{secrets.token_hex(6)}", job_type=job_type,
                  table_name=table_name, status=status, message=message,
                  max_retries=self.config.max_retries)
        job.finished_at = _now().isoformat()
        job.done.set()
        self._create(job)
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise UndefinedObject(f"job '{job_id}' does not exist")
        return job

    def retry(self, job_id: str) -> Job:
        """RETRY JOB: a new attempt of a failed or cancelled job, under the same id."""
        with self.lock:
            job = self.get(job_id)
            if job.status not in ("failed", "cancelled"):
                raise JobNotRetryable(
                    f"job '{job_id}' is {job.status}; only failed or cancelled jobs can be retried")
            other = self.active_job(job.table_name, job.job_type)
            if other is not None:
                raise ObjectInUse(
                    f"job '{other.job_id}' ({other.job_type}) is already queued or running for table "
                    f"'{job.table_name}'")
            job.retry_count += 1
            job.status = "queued"
            job.message = None
            job.finished_at = job.next_retry_at = None
            job.cancel_requested = False
            job.done.clear()
            self.active[slot(job.job_type, job.table_name)] = job.job_id
            self._save(job)
            self.scheduler.add_job(self._run, args=[job], id=f"run-{job.job_id}-{job.retry_count}")
        return job

    def kill(self, job_id: str) -> Job:
        """KILL JOB: cancel a queued or retrying job at once, a running one at its next step."""
        with self.lock:
            job = self.get(job_id)
            if job.status in ("queued", "retrying"):
                for sid in (f"run-{job.job_id}", f"run-{job.job_id}-{job.retry_count}",
                            f"retry-{job.job_id}-{job.retry_count}"):
                    try:
                        self.scheduler.remove_job(sid)
                    except Exception:
                        pass
                self._finish(job, "cancelled", "cancelled by KILL JOB", None)
            elif job.status == "running":
                job.cancel_requested = True
            else:
                raise JobNotRetryable(f"job '{job_id}' is {job.status}; only queued or running jobs can be killed")
        return job

    # ------------------------------------------------------------------ running
    def _run(self, job: Job) -> None:
        with self.lock:
            if job.status not in ("queued", "retrying"):
                return
            job.status = "running"
            job.started_at = _now().isoformat()
            job.next_retry_at = None
            job.phase = "starting"
            job.rows_done = job.rows_total = job.bytes_done = job.bytes_total = None
            job.reporter = self._save
            self._save(job)
        try:
            status, message, rows = self.execute(job)
        except JobCancelled:
            self._finish(job, "cancelled", "cancelled by KILL JOB", None)
            return
        except Exception as exc:  # a job failure is data for system.jobs, not a crash
            message = exc.message if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            trace = traceback.format_exc()
            with self.lock:
                if job.retry_count < job.max_retries and not job.cancel_requested:
                    job.error_trace = trace
                    job.message = message
                    job.retry_count += 1
                    self._schedule_retry(job, delay=self._backoff(job.retry_count))
                    log.warning("job %s (%s %s) failed, retry %d/%d at %s: %s", job.job_id, job.job_type,
                                job.table_name, job.retry_count, job.max_retries, job.next_retry_at, message)
                    return
                job.error_trace = trace
            log.error("job %s (%s %s) failed: %s", job.job_id, job.job_type, job.table_name, message)
            self._finish(job, "failed", message, None)
            return
        self._finish(job, status, message, rows)

    def _backoff(self, attempt: int) -> float:
        base = min(self.config.backoff_max_s, self.config.backoff_base_s * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.0)  # jitter: spread retries of many tables

    def _schedule_retry(self, job: Job, delay: float) -> None:
        at = _now() + timedelta(seconds=delay)
        job.phase, job.reporter = None, None
        job.status = "retrying"
        job.next_retry_at = at.isoformat()
        job.done.clear()
        self.active[slot(job.job_type, job.table_name)] = job.job_id
        self._save(job)  # while stopping, the record says "retrying": the next start retries it
        if not self.stopping:
            # One scheduler id per attempt: the next attempt may be due while this one still runs.
            self.scheduler.add_job(self._run, "date", run_date=at, args=[job],
                                   id=f"retry-{job.job_id}-{job.retry_count}")

    def _finish(self, job: Job, status: str, message: str | None, rows: int | None) -> None:
        with self.lock:
            job.status, job.message, job.rows_affected = status, message, rows
            job.finished_at = _now().isoformat()
            job.phase, job.reporter = None, None
            job.next_retry_at = None
            if self.active.get(slot(job.job_type, job.table_name)) == job.job_id:
                del self.active[slot(job.job_type, job.table_name)]
            self._save(job)
        job.done.set()
        if self.on_finished is not None and not self.stopping:
            try:
                self.on_finished(job)
            except Exception:
                log.exception("after job %s", job.job_id)

    def prune(self) -> None:
        """Forget finished jobs older than the retention age; save records that failed to."""
        self.save_pending()
        cutoff = _now() - timedelta(seconds=self.config.retention_s)
        with self.lock:
            old = [j for j in self.jobs.values()
                   if j.status in FINISHED and j.finished_at and datetime.fromisoformat(j.finished_at) < cutoff]
            for job in old:
                try:
                    self.store.delete(f"j/{job.job_id}")
                except Exception:
                    return  # the hot store cannot write: prune later
                del self.jobs[job.job_id]
                self._unsaved.discard(job.job_id)
                self.cur.execute("DELETE FROM __tierd.__sys.jobs WHERE job_id = $1", [job.job_id])
        if old:
            log.info("pruned %d finished job(s) older than %ss", len(old), int(self.config.retention_s))
