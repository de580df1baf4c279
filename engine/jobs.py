"""Background jobs (flushes for now): records in `system.jobs`, persisted in LevelDB, run
on a small thread pool. One flush or compaction per table at a time, whoever asked.
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import duckdb

from engine.errors import EngineError
from engine.hot_store import HotStore

log = logging.getLogger("tierd.jobs")

COLUMNS = (
    "job_id VARCHAR, job_type VARCHAR, status VARCHAR, table_name VARCHAR, parameters VARCHAR, "
    "message VARCHAR, error_trace VARCHAR, idempotency_key VARCHAR, retry_count INTEGER, "
    "max_retries INTEGER, next_retry_at TIMESTAMPTZ, rows_affected BIGINT, created_at TIMESTAMPTZ, "
    "updated_at TIMESTAMPTZ, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ"
)
FIELDS = [c.split()[0] for c in COLUMNS.split(", ")]
PREFIX = {"flush": "FL", "compact": "CO"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


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
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def record(self) -> dict:
        return {f: getattr(self, f) for f in FIELDS}


class JobRunner:
    def __init__(self, store: HotStore, db: duckdb.DuckDBPyConnection, workers: int = 2):
        self.store = store
        self.cur = db.cursor()
        self.cur.execute(f"CREATE TABLE __tierd.__sys.jobs ({COLUMNS})")
        self.cur.execute("CREATE VIEW memory.system.jobs AS SELECT * FROM __tierd.__sys.jobs")
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.active: dict[str, str] = {}  # table_name -> job_id of its queued/running job
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tierd-job")
        self._load()

    def _load(self) -> None:
        for _, raw in self.store.scan_json("j/"):
            job = Job(**raw)
            if job.status in ("queued", "running", "retrying"):
                job.status = "failed"
                job.message = "the daemon stopped while this job was queued or running"
                job.finished_at = job.updated_at = _now()
                self.store.put_json(f"j/{job.job_id}", job.record())
            job.done.set()
            self.jobs[job.job_id] = job
            self._mirror(job)

    def _mirror(self, job: Job) -> None:
        rec = job.record()
        self.cur.execute("DELETE FROM __tierd.__sys.jobs WHERE job_id = $1", [job.job_id])
        self.cur.execute(
            f"INSERT INTO __tierd.__sys.jobs VALUES ({', '.join('$' + str(i + 1) for i in range(len(FIELDS)))})",
            [rec[f] for f in FIELDS],
        )

    def _save(self, job: Job) -> None:
        job.updated_at = _now()
        self.store.put_json(f"j/{job.job_id}", job.record())
        self._mirror(job)

    def submit(self, job_type: str, table_name: str, fn: Callable[[Job], tuple[str, str, int]],
               parameters: dict | None = None) -> tuple[Job, bool]:
        """Queue `fn` unless the table already has a job; returns (job, created)."""
        with self.lock:
            if table_name in self.active:
                return self.jobs[self.active[table_name]], False
            job = Job(
                job_id=f"{PREFIX[job_type]}-{secrets.token_hex(6)}",
                job_type=job_type,
                table_name=table_name,
                parameters=json.dumps(parameters or {}),
            )
            self.jobs[job.job_id] = job
            self.active[table_name] = job.job_id
            self._save(job)
        self.pool.submit(self._run, job, fn)
        return job, True

    def record_skipped(self, job_type: str, table_name: str, message: str) -> Job:
        with self.lock:
            job = Job(job_id=f"{PREFIX[job_type]}-{secrets.token_hex(6)}", job_type=job_type,
                      table_name=table_name, status="skipped", message=message)
            job.finished_at = _now()
            job.done.set()
            self.jobs[job.job_id] = job
            self._save(job)
            return job

    def _run(self, job: Job, fn: Callable[[Job], tuple[str, str, int]]) -> None:
        with self.lock:
            job.status = "running"
            job.started_at = _now()
            self._save(job)
        try:
            status, message, rows = fn(job)
            job.status, job.message, job.rows_affected = status, message, rows
        except Exception as exc:  # a job failure is data for system.jobs, not a crash
            job.status = "failed"
            job.message = exc.message if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            job.error_trace = traceback.format_exc()
            log.error("job %s (%s %s) failed: %s", job.job_id, job.job_type, job.table_name, job.message)
        with self.lock:
            job.finished_at = _now()
            self._save(job)
            if self.active.get(job.table_name) == job.job_id:
                del self.active[job.table_name]
        job.done.set()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
