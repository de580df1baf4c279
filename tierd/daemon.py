"""Service lifecycle: open the engine (recovery), serve the wire, tell systemd, stop cleanly.

Start: recovery runs inside Engine(); the port is bound; READY=1 goes out from the accept
loop's first turn, so systemd only hears "ready" when connections are being accepted.
Watchdog: a monitor thread pings WATCHDOG=1 every WATCHDOG_USEC/2, but only after checking
that the accept loop turned recently, that DuckDB, LevelDB and the job scheduler answer and
that the hot tier takes a write (after a failed write, a probe write says so);
a wedged daemon stops pinging and systemd restarts it.
SIGTERM/SIGINT: STOPPING=1, stop accepting, let running statements finish within
`[server] shutdown_grace_seconds` (then cancel them), let running jobs finish within the same
grace (then stop them at their next step and leave them queued for the next start), close
LevelDB and DuckDB, exit 0.
SIGHUP: RELOADING=1, re-read the config, apply what can change live (tierd.reload), log what
changed and what needs a restart, READY=1.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from engine import metrics as counters
from engine.engine import Engine, EngineConfig
from engine.errors import EngineError
from engine.storage.iceberg_catalog import IcebergSettings
from engine.tiering.jobs import JobsConfig
from protocol.types import pg_type_for
from tierd import reload as reload_mod
from tierd import sdnotify
from tierd.config import Config, ConfigError
from tierd.version import version

log = logging.getLogger("tierd.daemon")
rlog = reload_mod.log


def job_counts(engine) -> dict[str, int]:
    counts = {"queued": 0, "retrying": 0, "running": 0}
    for job in list(engine.jobs.jobs.values()):
        if job.status in counts:
            counts[job.status] += 1
    return counts


class Monitor:
    """Sends READY=1 once the accept loop runs, WATCHDOG=1 while the daemon is healthy, and
    STATUS= lines when the state they describe changes."""

    def __init__(self, service: Service):
        self.service = service
        self.timeout = sdnotify.watchdog_timeout()
        self.interval = self.timeout / 2 if self.timeout else 5.0
        # The accept loop turns at least this often when idle (and notices a stop request).
        self.poll_interval = 0.1
        self.stall_limit = max(1.0, self.timeout or 0.0)
        self.ready = threading.Event()
        self.last_beat = time.monotonic()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sd-monitor", daemon=True)
        self._last_status = None
        self._unhealthy_logged = 0.0
        self._cur = None

    def start(self) -> None:
        if sdnotify.enabled():
            self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout=2.0)  # a wedged check must not block the shutdown

    def beat(self) -> None:
        """Called by the accept loop at every turn (socketserver's service_actions)."""
        self.last_beat = time.monotonic()
        if not self.ready.is_set():
            self.ready.set()
            status = self.service.status_text()
            self._last_status = status
            sdnotify.notify("READY=1", f"STATUS={status}")
            log.info("ready: accepting connections")

    def check(self) -> str | None:
        """None when healthy, else why not."""
        stalled = time.monotonic() - self.last_beat
        if stalled > self.stall_limit:
            return f"the accept loop has not turned for {stalled:.1f}s"
        engine = self.service.engine
        if not engine.jobs.scheduler.running:
            return "the job scheduler is not running"
        try:
            if self._cur is None:
                self._cur = engine.db.cursor()
            if self._cur.execute("SELECT 1").fetchone() != (1,):
                return "DuckDB did not answer SELECT 1"
            engine.store.last_seq()  # one LevelDB read
            problem = engine.store.writable()  # a daemon that cannot write is not healthy
            if problem is not None:
                return problem
        except Exception as exc:
            return f"engine check failed: {exc}"
        return None

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            if not self.ready.is_set() or self.service.stopping.is_set():
                continue
            problem = self.check()
            if self.stop_event.is_set():
                break
            if problem is None:
                if self.timeout:
                    sdnotify.notify("WATCHDOG=1")
            elif time.monotonic() - self._unhealthy_logged > 10:
                self._unhealthy_logged = time.monotonic()
                log.warning("watchdog: not pinging systemd: %s", problem)
            status = self.service.status_text()
            if status != self._last_status:
                self._last_status = status
                sdnotify.status(status)
        if self._cur is not None:
            try:
                self._cur.close()
            except Exception:
                pass


class Service:
    def __init__(self, cfg: Config, reload_config: Callable[[], Config] | None = None):
        self.cfg = cfg
        self.reload_config = reload_config
        self.stopping = threading.Event()
        self.reload_lock = threading.Lock()
        self.reload_pending = False
        self.engine: Engine | None = None
        self.server = None
        self.metrics = None
        self.monitor: Monitor | None = None

    # ------------------------------------------------------------------ status
    def status_text(self) -> str:
        if self.engine is None or self.server is None:
            return "starting"
        jobs = job_counts(self.engine)
        return (f"serving on {self.cfg.host}:{self.cfg.port}: {self.server.connections.count()} connection(s), "
                f"{len(self.engine.catalog.tables)} table(s), {jobs['running']} job(s) running, "
                f"{jobs['queued'] + jobs['retrying']} queued")

    # ------------------------------------------------------------------ signals
    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if self.stopping.is_set():
            log.info("received %s again; already stopping", name)
            return
        self.stopping.set()
        log.info("received %s, shutting down (grace %ss)", name, f"{self.cfg.shutdown_grace_s:g}")
        if self.server is not None:
            self.server.connections.draining = True  # no new statement starts from here on
            threading.Thread(target=self.server.shutdown, name="stop-accepting", daemon=True).start()

    def _on_reload(self, _signum, _frame) -> None:
        if self.monitor is None or not self.monitor.ready.is_set():
            self.reload_pending = True  # applied once the daemon is up
            return
        threading.Thread(target=self.reload, name="reload", daemon=True).start()

    # ------------------------------------------------------------------ start
    def run(self) -> int:
        cfg = self.cfg
        self._install_signals()
        sdnotify.status(f"recovering data in {os.path.abspath(cfg.data_dir)}")
        try:
            engine = Engine(EngineConfig(
                data_dir=cfg.data_dir,
                default_flush_policy=cfg.default_flush_policy,
                lock_timeout_s=cfg.lock_timeout_s,
                failpoints=cfg.failpoints,
                jobs=JobsConfig(workers=cfg.job_workers, max_retries=cfg.max_retries,
                                backoff_base_s=cfg.retry_backoff_s, backoff_max_s=cfg.retry_backoff_max_s,
                                retention_s=cfg.job_retention_s),
                compaction_max_segments=cfg.compaction_max_segments,
                compaction_target_rows=cfg.compaction_target_rows,
                copy_segment_threshold_rows=cfg.copy_segment_threshold_rows,
                copy_segment_rows=cfg.copy_segment_rows,
                storages=cfg.storages,
                iceberg=IcebergSettings(enabled=cfg.iceberg_enabled, catalog_uri=cfg.iceberg_catalog_uri,
                                        node_id=cfg.iceberg_node_id, catch_up_interval_s=cfg.iceberg_catch_up_s),
                superuser=cfg.superuser,
                superuser_password=cfg.password,
                type_oid=lambda f: pg_type_for(f.type, f.metadata).oid,
                server_settings=cfg.server_settings(),
            ))
        except EngineError as exc:
            log.error("cannot start: %s", exc.message)
            sdnotify.status(f"cannot start: {exc.message}")
            return 1
        self.engine = engine
        counters.instrument_jobs(engine)
        if self.stopping.is_set():
            log.info("stopped during recovery")
            engine.close()
            return 0
        if cfg.method == "scram" and not any(r.verifier and r.login for r in engine.roles.all()):
            why = (f"auth.method is scram but no role has a password, so nobody could log in: set auth.password "
                   f"(the password of superuser {cfg.superuser!r}) or use auth.method = \"trust\" on loopback")
            log.error("cannot start: %s", why)
            sdnotify.status(f"cannot start: {why}")
            engine.close()
            return 1
        try:
            self._bind()
        except OSError as exc:
            engine.close()
            sdnotify.status(f"cannot start: {exc.strerror or exc}")
            return 1
        if cfg.failpoints:
            log.warning("failpoints enabled: %s", ", ".join(f"{k}={v}" for k, v in cfg.failpoints.items()))
        if cfg.method == "trust":
            log.warning("auth.method is trust: accepting connections from loopback without a password")
        else:
            role = engine.roles.get(cfg.superuser)
            if role is None or role.verifier is None:
                log.warning("auth.method is scram but superuser %r has no password: set auth.password",
                            cfg.superuser)
        if cfg.ssl:
            log.info("TLS on (%s)%s", cfg.ssl_cert_file, "; plain connections refused" if cfg.ssl_required else "")
        log.info("tierd listening on %s:%d (data dir %s, user %s, database tierd)",
                 cfg.host, cfg.port, engine.data_dir, cfg.superuser)
        self.monitor = Monitor(self)
        self.server.service_actions = self._turn
        self.monitor.start()
        try:
            if not self.stopping.is_set():
                self.server.serve_forever(poll_interval=self.monitor.poll_interval)
        finally:
            rc = self._stop()
        return rc

    def _bind(self) -> None:
        from protocol.auth import AuthConfig
        from protocol.limits import ConnectionLimits
        from protocol.server import make_server
        from tierd.wire import Connections, ServiceHandler

        cfg = self.cfg
        limits = ConnectionLimits(cfg.max_connections, cfg.superuser_reserved_connections,
                                  cfg.authentication_timeout_s, cfg.idle_in_transaction_timeout_s)
        try:
            server = make_server(self.engine, cfg.host, cfg.port, AuthConfig(cfg.method),
                                 ssl_context=cfg.ssl_context(), ssl_required=cfg.ssl_required, limits=limits)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", cfg.host, cfg.port, exc.strerror or exc)
            raise
        server.RequestHandlerClass = ServiceHandler
        server.connections = Connections()
        self.server = server
        threading.Thread(target=server.connections.watch_disconnects, args=(self.stopping,),
                         name="disconnect-watch", daemon=True).start()
        address = cfg.metrics_address()
        if address is not None:
            from tierd.metrics import Exposition, MetricsServer

            try:
                self.metrics = MetricsServer(address, Exposition(self.engine, server.connections, version()))
            except OSError as exc:
                log.error("cannot listen on %s for metrics: %s", cfg.metrics_listen, exc.strerror or exc)
                server.socket.close()
                raise
            self.metrics.start()
            log.info("metrics on http://%s/metrics", cfg.metrics_listen)

    def _turn(self) -> None:
        first = not self.monitor.ready.is_set()
        self.monitor.beat()
        if first and self.reload_pending:
            self.reload_pending = False
            threading.Thread(target=self.reload, name="reload", daemon=True).start()

    # ------------------------------------------------------------------ reload
    def reload(self) -> None:
        with self.reload_lock:
            if self.stopping.is_set():
                return
            sdnotify.notify("RELOADING=1", f"MONOTONIC_USEC={sdnotify.monotonic_usec()}",
                            "STATUS=reloading the configuration")
            rlog.info("received SIGHUP, reloading the configuration")
            try:
                if self.reload_config is None:
                    raise ConfigError("no config file to reload (started without --config)")
                new = self.reload_config()
                out = reload_mod.apply(self.cfg, new, self.engine, set_log_level=set_log_level,
                                       set_auth=self._set_auth)
            except (ConfigError, EngineError) as exc:
                counters.inc("tierd_reloads_total", result="failed")
                rlog.error("reload failed, keeping the running settings: %s", getattr(exc, "message", exc))
            except Exception:
                counters.inc("tierd_reloads_total", result="failed")
                rlog.exception("reload failed, keeping the running settings")
            else:
                counters.inc("tierd_reloads_total", result="failed" if out.failed else "ok")
                if out.changed:
                    rlog.info("reloaded: %s", "; ".join(out.changed))
                else:
                    rlog.info("reloaded: no live setting changed")
                if out.restart:
                    rlog.warning("needs a restart to take effect (still running with the old value): %s",
                                "; ".join(out.restart))
                for failure in out.failed:
                    rlog.error("reload: not applied: %s", failure)
            status = self.status_text()
            sdnotify.notify("READY=1", f"STATUS={status}")

    def _set_auth(self, cfg: Config) -> None:
        """Authentication and TLS settings for new connections (open ones keep theirs)."""
        from protocol.auth import AuthConfig

        context = cfg.ssl_context()
        self.engine.roles.set_bootstrap(cfg.superuser, cfg.password)
        self.server.auth_config = AuthConfig(cfg.method)
        self.server.ssl_context, self.server.ssl_required = context, cfg.ssl_required

    # ------------------------------------------------------------------ stop
    def _stop(self) -> int:
        """Everything within the grace period: running statements and jobs may finish until
        the last CANCEL_MARGIN_S of it; then statements are cancelled (FATAL 57P01) and jobs
        asked to stop at their next step; at its end whatever still runs is abandoned (every
        job step is crash-safe: the next start finishes or redoes it) and LevelDB is closed."""
        engine, server, cfg = self.engine, self.server, self.cfg
        self.stopping.set()
        self.reload_lock.acquire(timeout=10)  # let a reload in progress finish first
        self.monitor.stop()
        sdnotify.notify("STOPPING=1", "STATUS=stopping: no new connections")
        server.socket.close()  # stop accepting; connections already accepted are drained
        deadline = time.monotonic() + cfg.shutdown_grace_s
        cancel_at = deadline - min(CANCEL_MARGIN_S, cfg.shutdown_grace_s / 2)

        def waiting(busy: int) -> None:
            sdnotify.status(f"stopping: {busy} statement(s) finishing (grace {cfg.shutdown_grace_s:g}s)")
            if not logged:
                logged.append(busy)
                log.info("shutdown: waiting for %d running statement(s) to finish", busy)

        logged: list[int] = []
        jobs_stopped: list[bool] = []
        stopper = threading.Thread(target=lambda: jobs_stopped.append(self._stop_jobs(cancel_at, deadline)),
                                   name="stop-jobs", daemon=True)
        stopper.start()
        cancelled = server.connections.drain(cancel_at, deadline, on_wait=waiting)
        if cancelled:
            log.warning("shutdown: cancelled %d statement(s) still running after %gs",
                        cancelled, cfg.shutdown_grace_s)
        stopper.join(max(0.0, deadline - time.monotonic()))
        if self.metrics is not None:
            self.metrics.stop()
        if not jobs_stopped or not jobs_stopped[0]:
            # A job step (a Parquet write, say) has not reached its next check: it is not
            # waited for. LevelDB is closed under its gate (the step's next write fails),
            # and the process ends without joining the job's thread, as a crash would end
            # it: every job step is crash-safe, and the next start runs the job again.
            log.warning("tierd stopped without waiting for a job step still running; the job runs "
                        "again at the next start")
            engine.store.close()
            log.info("tierd stopped")
            logging.shutdown()
            os._exit(0)
        sdnotify.status("stopping: closing LevelDB and DuckDB")
        engine.close()
        log.info("tierd stopped")
        return 0

    def _stop_jobs(self, cancel_at: float, deadline: float) -> bool:
        """Let running jobs finish until `cancel_at`, then stop them at their next step.
        False when one is still running at `deadline`."""
        runner = self.engine.jobs

        def running():
            return [j for j in list(runner.jobs.values()) if j.status == "running"]

        if running():
            sdnotify.status(f"stopping: waiting for {len(running())} running job(s)")
            log.info("shutdown: waiting for %d running job(s): %s", len(running()),
                     ", ".join(f"{j.job_id} ({j.job_type} {j.table_name})" for j in running()))
        while running() and time.monotonic() < cancel_at:
            time.sleep(0.05)
        interrupted = running()
        for job in interrupted:
            log.warning("shutdown: stopping job %s (%s %s) at its next step; it runs again at the next start",
                        job.job_id, job.job_type, job.table_name)
            job.cancel_requested = True
        stopper = threading.Thread(target=runner.shutdown, name="stop-scheduler", daemon=True)
        stopper.start()  # waits for running attempts to finish or stop
        stopper.join(max(0.0, deadline - time.monotonic()))
        if stopper.is_alive():
            return False
        for job in interrupted:
            if job.status == "cancelled":  # stopped by us, not by KILL JOB: the next start retries it
                runner.requeue_after_shutdown(job)
        return True


# Statements are analysed by recursive Python (sqlglot): deep enough nesting for what clients
# send (a few hundred levels of parentheses), with thread stacks to match; deeper is 54001.
RECURSION_LIMIT = 12_000
THREAD_STACK = 16 << 20


# The end of the grace period kept for cancelling statements and stopping jobs (at most
# half of it), so that the whole shutdown fits in shutdown_grace_seconds.
CANCEL_MARGIN_S = 1.0


def serve(cfg: Config, reload_config: Callable[[], Config] | None = None) -> int:
    sys.setrecursionlimit(RECURSION_LIMIT)
    threading.stack_size(THREAD_STACK)
    return Service(cfg, reload_config).run()


def set_log_level(level: str) -> None:
    value = getattr(logging, level.upper(), logging.INFO)
    logging.getLogger().setLevel(value)
    # APScheduler logs every run of the one-second policy tick at INFO; keep its warnings.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, value))


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    set_log_level(level)
