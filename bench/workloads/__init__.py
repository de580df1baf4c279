"""The workloads, one module per family, and WORKLOADS: the order in which they run.

A workload is `def wl_x(b: Bench) -> list[Measurement]`: it measures each system it can (a
failure becomes a table cell and a problem, see harness.attempt) and returns its table rows.

The order matters, because later workloads build on what earlier ones leave behind:
wl_single_insert creates PostgreSQL's bench schema (the write patterns after wl_pipeline use it); wl_events_group_by loads and flushes
bench.events, which the workloads after it read or copy (tierd_ready skips them without it);
wl_s3_cold must run before wl_hot_cold, which adds the hot rows that wl_point_select looks up.
"""
from __future__ import annotations

from typing import Callable

from bench.harness import Bench, Measurement
from bench.workloads.analytics import wl_big, wl_events_group_by, wl_hot_cold
from bench.workloads.copy import wl_copy
from bench.workloads.flush_compaction import wl_flush_throughput, wl_segments
from bench.workloads.iceberg import wl_iceberg_publish, wl_iceberg_scan
from bench.workloads.inserts import wl_concurrent_insert, wl_pipeline, wl_single_insert
from bench.workloads.memory import wl_ingest_rss
from bench.workloads.point_reads import wl_point_select
from bench.workloads.s3 import wl_s3_cold
from bench.workloads.streaming import wl_stream
from bench.workloads.write_patterns import (wl_asyncpg_pool, wl_pgbench, wl_returning, wl_sqlalchemy_inserts,
                                            wl_update_delete_by_key, wl_upsert_stream)

WORKLOADS: list[Callable[[Bench], list[Measurement]]] = [
    wl_single_insert,  # inserts.py
    wl_concurrent_insert,  # inserts.py
    wl_pipeline,  # inserts.py
    wl_update_delete_by_key,  # write_patterns.py
    wl_returning,  # write_patterns.py
    wl_sqlalchemy_inserts,  # write_patterns.py
    wl_asyncpg_pool,  # write_patterns.py
    wl_upsert_stream,  # write_patterns.py
    wl_pgbench,  # write_patterns.py
    wl_copy,  # copy.py
    wl_events_group_by,  # analytics.py
    wl_iceberg_scan,  # iceberg.py: before wl_hot_cold adds hot rows to bench.events
    wl_flush_throughput,  # flush_compaction.py
    wl_iceberg_publish,  # iceberg.py
    wl_segments,  # flush_compaction.py
    wl_s3_cold,  # s3.py
    wl_hot_cold,  # analytics.py
    wl_point_select,  # point_reads.py
    wl_stream,  # streaming.py
    wl_big,  # analytics.py
    wl_ingest_rss,  # memory.py
]
