"""The optional Prometheus endpoint: `[metrics] listen = "127.0.0.1:9187"`.

A stdlib HTTP server thread answers GET /metrics in the text exposition format (0.0.4).
Counters come from engine.metrics; gauges are read from the engine at scrape time.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from engine import metrics as counters
from engine.tiering.jobs import ACTIVE

log = logging.getLogger("tierd.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JOB_TYPES = ("flush", "compact", "stream_eviction")
COUNTER_ZEROS = {
    "tierd_errors_total": [(("severity", s),) for s in ("ERROR", "FATAL")],
    "tierd_job_attempts_total": [(("outcome", o), ("type", jt)) for jt in JOB_TYPES
                                 for o in ("completed", "skipped", "error", "cancelled")],
    "tierd_jobs_finished_total": [(("status", s), ("type", jt)) for jt in JOB_TYPES
                                  for s in ("completed", "failed", "skipped", "cancelled")],
    "tierd_job_rows_total": [(("type", jt),) for jt in JOB_TYPES],
    "tierd_reloads_total": [(("result", r),) for r in ("ok", "failed")],
}

GAUGES = {
    "tierd_build_info": "tierd's version, as a label; always 1.",
    "tierd_start_time_seconds": "When the daemon started, in seconds since the epoch.",
    "tierd_connections_active": "Client connections open now.",
    "tierd_hot_tier_writable": "1 when the hot tier (LevelDB) takes a write now; 0 after a write failed (a full disk) until one works again.",
    "tierd_tables": "Tables in the catalog.",
    "tierd_table_hot_rows": "Keys of the table with changes not yet flushed to Parquet (what rows:N counts).",
    "tierd_table_hot_bytes": "Bytes of the table's unflushed row batches in LevelDB (Arrow IPC).",
    "tierd_table_cold_rows": "Row versions in the table's Parquet segments.",
    "tierd_table_cold_bytes": "Bytes of the table's Parquet segments.",
    "tierd_table_segments": "Parquet segments in the table's manifest.",
    "tierd_table_cold_unavailable": "1 while the table's cold tier cannot be read (its storage is down).",
    "tierd_jobs_active": "Flush and compaction jobs queued, retrying or running (the job queue depth).",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Exposition:
    def __init__(self, engine, connections, version: str):
        self.engine = engine
        self.connections = connections
        self.version = version
        self.started = time.time()

    def render(self) -> str:
        out: list[str] = []
        series: dict[str, list[tuple[tuple, float]]] = {}

        def add(name: str, value: float, **labels) -> None:
            series.setdefault(name, []).append((tuple(labels.items()), value))

        e = self.engine
        add("tierd_build_info", 1, version=self.version)
        add("tierd_start_time_seconds", round(self.started, 3))
        add("tierd_connections_active", self.connections.count())
        add("tierd_hot_tier_writable", 0 if e.store.writable() else 1)
        tables = list(e.catalog.tables.values())
        add("tierd_tables", len(tables))
        for t in sorted(tables, key=lambda t: t.qualified):
            lab = {"table": t.qualified, "storage": t.storage_id}
            scopes = list((e.cold.manifests.get(t.tid) or {}).values())  # one per user of a USER table
            add("tierd_table_hot_rows", e.hot.pending_rows(t), **lab)
            add("tierd_table_hot_bytes", e.store.table_bytes(t.tid), **lab)
            add("tierd_table_cold_rows", sum(m.row_count for m in scopes), **lab)
            add("tierd_table_cold_bytes", sum(m.size_bytes for m in scopes), **lab)
            add("tierd_table_segments", sum(len(m.segments) for m in scopes), **lab)
            add("tierd_table_cold_unavailable", 1 if t.tid in e.cold.unavailable else 0, **lab)
        depth = {(jt, st): 0 for jt in JOB_TYPES for st in ACTIVE}
        for job in list(e.jobs.jobs.values()):
            if job.status in ACTIVE:
                depth[(job.job_type, job.status)] = depth.get((job.job_type, job.status), 0) + 1
        for (jt, st), n in sorted(depth.items()):
            add("tierd_jobs_active", n, type=jt, status=st)
        for name, help_text in GAUGES.items():
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} gauge")
            for labels, value in series.get(name, []):
                out.append(f"{name}{_labels(labels)} {_number(value)}")

        counted: dict[str, list[tuple[tuple, float]]] = {}
        for name, labels, value in counters.REGISTRY.samples():
            counted.setdefault(name, []).append((labels, value))
        for name, help_text in counters.COUNTERS.items():
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} counter")
            have = dict(counted.get(name, []))
            for labels in COUNTER_ZEROS.get(name, [()]):  # series exist before their first event
                have.setdefault(labels, 0.0)
            for labels, value in sorted(have.items()):
                out.append(f"{name}{_labels(labels)} {_number(value)}")
        commits = e.hot.commits  # group commit (engine/storage/group_commit.py): read, not counted twice
        for name, help_text, value in (
                ("tierd_group_commits_total", "Autocommit writes made durable by group commit.", commits.commits),
                ("tierd_group_commit_fsyncs_total", "Synced LevelDB writes group commit issued for them "
                                                    "(fewer than the commits: writers shared fsyncs).", commits.groups)):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
        for name, help_text in counters.SUMMARIES.items():
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} summary")
            for suffix in ("_sum", "_count"):
                have = dict(counted.get(name + suffix, []))
                for jt in JOB_TYPES:
                    have.setdefault((("type", jt),), 0.0)
                for labels, value in sorted(have.items()):
                    out.append(f"{name}{suffix}{_labels(labels)} {_number(value)}")
        return "\n".join(out) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server_version = "tierd-metrics"
    exposition: Exposition  # set on the subclass made per server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._reply(200, "text/html; charset=utf-8",
                        '<html><body><a href="/metrics">tierd metrics</a></body></html>\n')
            return
        if path != "/metrics":
            self._reply(404, "text/plain; charset=utf-8", "not found; try /metrics\n")
            return
        try:
            body = self.exposition.render()
        except Exception as exc:  # e.g. the engine closing under a late scrape
            log.warning("metrics scrape failed: %s", exc)
            self._reply(503, "text/plain; charset=utf-8", f"metrics unavailable: {exc}\n")
            return
        self._reply(200, CONTENT_TYPE, body)

    def _reply(self, code: int, content_type: str, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)


class MetricsServer:
    def __init__(self, address: tuple[str, int], exposition: Exposition):
        handler = type("Handler", (_Handler,), {"exposition": exposition})
        server_cls = ThreadingHTTPServer
        if ":" in address[0]:
            server_cls = type("HTTPServerV6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        self.httpd = server_cls(address, handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="metrics-http", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
