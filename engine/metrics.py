"""Process-wide counters for what engine state cannot tell at scrape time.

Connections, statements, errors, ingested rows and job attempts are counted here as they
happen; gauges (hot rows, queue depth, ...) are read from the engine when scraped. Counters
only go up, so Prometheus' rate() works across restarts of nothing but the scrape.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

Labels = tuple[tuple[str, str], ...]

# name -> help; the exposition writes these as # HELP / # TYPE lines.
COUNTERS: dict[str, str] = {
    "tierd_connections_opened_total": "Client connections accepted.",
    "tierd_connections_closed_total": "Client connections closed.",
    "tierd_statements_total": "SQL statements executed (each statement of a multi-statement query counts).",
    "tierd_errors_total": "Errors sent to clients, by severity.",
    "tierd_rows_ingested_total": "Rows written by INSERT or COPY, as reported in their command tags.",
    "tierd_job_attempts_total": "Flush and compaction attempts, by job type and outcome.",
    "tierd_jobs_finished_total": "Jobs that reached a final status, by job type and status.",
    "tierd_job_rows_total": "Row versions moved by completed jobs, by job type.",
    "tierd_reloads_total": "Configuration reloads (SIGHUP), by result.",
    "tierd_fast_path_total": "Statements a fast path answered without a DuckDB query (used) or handed to the "
                             "general path (fallback), by path.",
}
# Summaries: a _sum and a _count series each.
SUMMARIES: dict[str, str] = {
    "tierd_job_duration_seconds": "Duration of flush and compaction attempts, by job type.",
}


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, Labels], float] = {}
        # (name, labels as passed) -> the series' key: checked and sorted once per call site
        # shape, not on every statement (several counters move per statement)
        self._keys: dict[tuple, tuple[str, Labels]] = {}

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        shape = (name, *labels.items())
        key = self._keys.get(shape)
        if key is None:
            assert name in COUNTERS or name.rpartition("_")[0] in SUMMARIES, name
            key = self._keys[shape] = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + value

    def observe(self, name: str, value: float, **labels: str) -> None:
        assert name in SUMMARIES, name
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[(name + "_sum", key)] = self._values.get((name + "_sum", key), 0.0) + value
            self._values[(name + "_count", key)] = self._values.get((name + "_count", key), 0.0) + 1

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get((name, tuple(sorted(labels.items()))), 0.0)

    def samples(self) -> Iterator[tuple[str, Labels, float]]:
        with self._lock:
            items = sorted(self._values.items())
        for (name, labels), value in items:
            yield name, labels, value


REGISTRY = Registry()


def inc(name: str, value: float = 1.0, **labels: str) -> None:
    REGISTRY.inc(name, value, **labels)


def instrument_jobs(engine) -> None:
    """Count every attempt of a flush or compaction (outcome, duration) and every job's end.

    Wraps the JobRunner's executor and finish hook; the job records themselves are kept
    only for the retention period, counters for the life of the process.
    """
    runner = engine.jobs
    execute, on_finished = runner.execute, runner.on_finished

    def timed_execute(job):
        start = time.monotonic()
        outcome = "error"
        try:
            result = execute(job)
            outcome = result[0]
            return result
        except Exception as exc:
            if type(exc).__name__ == "JobCancelled":
                outcome = "cancelled"
            raise
        finally:
            inc("tierd_job_attempts_total", type=job.job_type, outcome=outcome)
            REGISTRY.observe("tierd_job_duration_seconds", time.monotonic() - start, type=job.job_type)

    def counted_finish(job):
        inc("tierd_jobs_finished_total", type=job.job_type, status=job.status)
        if job.status == "completed" and job.rows_affected:
            inc("tierd_job_rows_total", job.rows_affected, type=job.job_type)
        if on_finished is not None:
            on_finished(job)

    runner.execute = timed_execute
    runner.on_finished = counted_finish
