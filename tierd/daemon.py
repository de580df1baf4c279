"""Service lifecycle: open the engine (recovery), serve the wire, stop cleanly on signals."""
from __future__ import annotations

import logging
import signal
import sys
import threading

from engine.engine import Engine, EngineConfig
from engine.errors import EngineError
from engine.jobs import JobsConfig
from tierd.config import Config

log = logging.getLogger("tierd.daemon")


def serve(cfg: Config) -> int:
    from protocol.auth import AuthConfig
    from protocol.server import make_server

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
            storages=cfg.storages,
        ))
    except EngineError as exc:
        log.error("cannot start: %s", exc.message)
        return 1
    try:
        server = make_server(engine, cfg.host, cfg.port, AuthConfig(superuser=cfg.superuser, password=cfg.password))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", cfg.host, cfg.port, exc.strerror or exc)
        engine.close()
        return 1
    if cfg.failpoints:
        log.warning("failpoints enabled: %s", ", ".join(f"{k}={v}" for k, v in cfg.failpoints.items()))
    if cfg.password is None:
        log.warning("no password configured: accepting connections from loopback without a password")
    log.info("tierd listening on %s:%d (data dir %s, user %s, database tierd)",
             cfg.host, cfg.port, engine.data_dir, cfg.superuser)

    stopping = threading.Event()

    def on_signal(signum, _frame):
        if not stopping.is_set():
            stopping.set()
            log.info("received %s, shutting down", signal.Signals(signum).name)
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        engine.close()
        log.info("tierd stopped")
    return 0


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # APScheduler logs every run of the one-second policy tick at INFO; keep its warnings.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
