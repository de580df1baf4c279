"""The TOML config and its defaults; errors name the key and the problem."""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field

from engine.catalog.flush_policy import parse_flush_policy

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    pass


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 5433
    data_dir: str = "./data"
    superuser: str = "tierd"
    password: str | None = None
    # "trust" (loopback only, no passwords) or "scram" (SCRAM-SHA-256 for every role);
    # None: scram when auth.password is set, else trust.
    auth_method: str | None = None
    ssl: bool = False  # answer SSLRequest with TLS (needs ssl_cert_file and ssl_key_file)
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    ssl_required: bool = False  # refuse connections that did not start TLS
    default_flush_policy: str = "rows:100000,interval:300"
    job_workers: int = 2
    max_retries: int = 3
    retry_backoff_s: float = 1.0
    retry_backoff_max_s: float = 300.0
    job_retention_s: float = 7 * 24 * 3600
    compaction_max_segments: int = 16
    compaction_target_rows: int = 1_000_000
    copy_segment_threshold_rows: int = 131_072  # a COPY this large streams into segments
    copy_segment_rows: int = 1_048_576  # rows per segment a streamed COPY writes
    lock_timeout_s: float = 30.0
    log_level: str = "INFO"
    shutdown_grace_s: float = 10.0  # SIGTERM: how long running statements and jobs may finish
    max_connections: int = 100  # sessions at once; 53300 beyond (as Postgres)
    superuser_reserved_connections: int = 3  # of those, kept for superusers
    authentication_timeout_s: float = 60.0  # startup packet, TLS and SASL exchange, in total
    # A transaction that has written (holds the write lock) and waits on its client longer
    # than this is ended (FATAL 25P03); 0: never.
    idle_in_transaction_timeout_s: float = 60.0
    metrics_listen: str | None = None  # "host:port" of the Prometheus endpoint; None: off
    failpoints: dict[str, str] = field(default_factory=dict)
    storages: dict[str, dict] = field(default_factory=dict)
    iceberg_enabled: bool = True  # publish SHARED and USER tables to Iceberg (per table: WITH (ICEBERG = ...))
    iceberg_catalog_uri: str = ""  # "": embedded SQLite catalog in the data dir
    iceberg_node_id: str = ""  # "": generated once, kept in the data dir
    iceberg_catch_up_s: float = 10.0

    def check(self) -> None:
        if not (0 < self.port < 65536):
            raise ConfigError(f"server.port: {self.port} is not a TCP port (1-65535)")
        try:
            parse_flush_policy(self.default_flush_policy)
        except Exception as exc:
            raise ConfigError(f"flush.default_policy: {exc}") from None
        if self.auth_method not in (None, "trust", "scram"):
            raise ConfigError(f"auth.method: {self.auth_method!r} is not one of trust, scram")
        if self.host not in LOOPBACK and self.method == "trust":
            raise ConfigError(
                f"server.host: refusing to listen on {self.host!r} without a password (auth.method is trust); "
                "set auth.password (or auth.method = \"scram\") or listen on 127.0.0.1"
            )
        if self.ssl:
            if not self.ssl_cert_file or not self.ssl_key_file:
                raise ConfigError("server.ssl: needs server.ssl_cert_file and server.ssl_key_file")
            self.ssl_context()
        elif self.ssl_required:
            raise ConfigError("server.ssl_required: needs server.ssl = true (and a certificate and key)")
        from engine.failpoints import Failpoints

        try:
            Failpoints(self.failpoints)
        except ValueError as exc:
            raise ConfigError(f"failpoints: {exc}") from None
        if self.job_workers < 1:
            raise ConfigError("jobs.workers: must be at least 1")
        if self.max_retries < 0:
            raise ConfigError("jobs.max_retries: must be 0 or more")
        if self.retry_backoff_s <= 0 or self.retry_backoff_max_s < self.retry_backoff_s:
            raise ConfigError("jobs.retry_backoff_seconds: must be > 0 and <= jobs.retry_backoff_max_seconds")
        if self.compaction_max_segments < 2:
            raise ConfigError("compaction.max_segments: must be at least 2")
        if self.compaction_target_rows < 1:
            raise ConfigError("compaction.target_rows: must be at least 1")
        if self.copy_segment_threshold_rows < 1 or self.copy_segment_rows < 1:
            raise ConfigError("copy.segment_threshold_rows and copy.segment_rows: must be at least 1")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"log.level: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if not 0 <= self.shutdown_grace_s <= 3600:
            raise ConfigError(f"server.shutdown_grace_seconds: {self.shutdown_grace_s:g} must be between 0 and 3600")
        if not 1 <= self.max_connections <= 10_000:
            raise ConfigError(f"server.max_connections: {self.max_connections} must be between 1 and 10000")
        if not 0 <= self.superuser_reserved_connections < self.max_connections:
            raise ConfigError("server.superuser_reserved_connections: must be 0 or more and less than "
                              "server.max_connections")
        if not 0 < self.authentication_timeout_s <= 600:
            raise ConfigError("server.authentication_timeout_seconds: must be more than 0 and at most 600")
        if self.idle_in_transaction_timeout_s < 0:
            raise ConfigError("server.idle_in_transaction_session_timeout_seconds: must be 0 (off) or more")
        if self.lock_timeout_s <= 0:
            raise ConfigError("jobs.lock_timeout_seconds: must be more than 0")
        if self.metrics_listen is not None:
            self.metrics_address()
        if not 0.5 <= self.iceberg_catch_up_s <= 86400:
            raise ConfigError("iceberg.catch_up_interval_seconds: must be between 0.5 and 86400")
        if self.iceberg_node_id and not re.match(r"^[A-Za-z0-9_.-]+$", self.iceberg_node_id):
            raise ConfigError(f"iceberg.node_id: {self.iceberg_node_id!r} may only hold letters, digits, '_', '.', '-'")

    def server_settings(self) -> dict[str, str]:
        """The settings SHOW (and pg_settings) report for this config, in Postgres's form."""
        from engine.session.settings import duration_text

        return {
            "max_connections": str(self.max_connections),
            "superuser_reserved_connections": str(self.superuser_reserved_connections),
            "authentication_timeout": duration_text(self.authentication_timeout_s),
            "idle_in_transaction_session_timeout": duration_text(self.idle_in_transaction_timeout_s),
        }

    @property
    def method(self) -> str:
        """The authentication method in force: auth.method, else scram when a password is set."""
        return self.auth_method or ("scram" if self.password else "trust")

    def ssl_context(self):
        """The server's TLS context (None when server.ssl is off); errors name the setting."""
        if not self.ssl:
            return None
        from protocol.tls import TlsConfigError, server_context

        try:
            return server_context(self.ssl_cert_file, self.ssl_key_file)
        except TlsConfigError as exc:
            raise ConfigError(f"server.ssl_cert_file/ssl_key_file: {exc}") from None

    def metrics_address(self) -> tuple[str, int] | None:
        """`[metrics] listen` as (host, port); "[::1]:9187" for IPv6."""
        if self.metrics_listen is None:
            return None
        text = self.metrics_listen.strip()
        host, sep, port = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"metrics.listen: {self.metrics_listen!r} is not host:port (e.g. \"127.0.0.1:9187\")")
        if (host, int(port)) == (self.host, self.port):
            raise ConfigError(f"metrics.listen: {text} is the address of the Postgres port (server.host/server.port)")
        return host, int(port)

    def redacted(self) -> dict:
        """The effective settings, secrets replaced by ********."""
        from engine.storage.backend import SECRET_KEYS

        out = {}
        for k, v in vars(self).items():
            if k == "password" and v:
                v = "********"
            elif k == "iceberg_catalog_uri" and v:
                from engine.storage.iceberg_catalog import IcebergSettings

                v = IcebergSettings(catalog_uri=v).redacted_uri("")
            elif k == "storages":
                v = {sid: {o: ({ck: ("********" if ck in SECRET_KEYS and cv else cv) for ck, cv in ov.items()}
                               if isinstance(ov, dict) else ov) for o, ov in opts.items()}
                     for sid, opts in v.items()}
            out[k] = v
        return out


_KEYS = {
    ("server", "host"): ("host", str),
    ("server", "port"): ("port", int),
    ("server", "data_dir"): ("data_dir", str),
    ("server", "shutdown_grace_seconds"): ("shutdown_grace_s", float),
    ("server", "ssl"): ("ssl", bool),
    ("server", "max_connections"): ("max_connections", int),
    ("server", "superuser_reserved_connections"): ("superuser_reserved_connections", int),
    ("server", "authentication_timeout_seconds"): ("authentication_timeout_s", float),
    ("server", "idle_in_transaction_session_timeout_seconds"): ("idle_in_transaction_timeout_s", float),
    ("server", "ssl_cert_file"): ("ssl_cert_file", str),
    ("server", "ssl_key_file"): ("ssl_key_file", str),
    ("server", "ssl_required"): ("ssl_required", bool),
    ("auth", "method"): ("auth_method", str),
    ("auth", "superuser"): ("superuser", str),
    ("auth", "password"): ("password", str),
    ("flush", "default_policy"): ("default_flush_policy", str),
    ("jobs", "workers"): ("job_workers", int),
    ("jobs", "lock_timeout_seconds"): ("lock_timeout_s", float),
    ("jobs", "max_retries"): ("max_retries", int),
    ("jobs", "retry_backoff_seconds"): ("retry_backoff_s", float),
    ("jobs", "retry_backoff_max_seconds"): ("retry_backoff_max_s", float),
    ("jobs", "retention_seconds"): ("job_retention_s", float),
    ("compaction", "max_segments"): ("compaction_max_segments", int),
    ("compaction", "target_rows"): ("compaction_target_rows", int),
    ("copy", "segment_threshold_rows"): ("copy_segment_threshold_rows", int),
    ("copy", "segment_rows"): ("copy_segment_rows", int),
    ("log", "level"): ("log_level", str),
    ("metrics", "listen"): ("metrics_listen", str),
    ("iceberg", "enabled"): ("iceberg_enabled", bool),
    ("iceberg", "catalog_uri"): ("iceberg_catalog_uri", str),
    ("iceberg", "node_id"): ("iceberg_node_id", str),
    ("iceberg", "catch_up_interval_seconds"): ("iceberg_catch_up_s", float),
}
# Config attribute -> its name in the file, for messages ("flush.default_policy").
KEY_NAMES = {attr: f"{section}.{key}" for (section, key), (attr, _) in _KEYS.items()}
KEY_NAMES.update(storages="storage.<id>", failpoints="failpoints")


def load(path: str | None) -> Config:
    cfg = Config()
    if path is None:
        return cfg
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    for section, values in raw.items():
        if section == "failpoints":
            cfg.failpoints = {str(k): str(v) for k, v in values.items()}
            continue
        if section == "storage":
            for sid, opts in values.items():
                if not isinstance(opts, dict):
                    raise ConfigError(f"storage.{sid}: expected a [storage.{sid}] table")
                try:
                    from engine.catalog.storages import StorageCatalog

                    StorageCatalog.from_options(sid, opts, source="config")
                except Exception as exc:
                    raise ConfigError(f"storage.{sid}: {getattr(exc, 'message', exc)}") from None
                cfg.storages[sid] = dict(opts)
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a [{section}] table")
        for key, value in values.items():
            spec = _KEYS.get((section, key))
            if spec is None:
                raise ConfigError(f"{section}.{key}: unknown setting")
            attr, typ = spec
            if typ is float and isinstance(value, int):
                value = float(value)
            if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
                raise ConfigError(f"{section}.{key}: expected {typ.__name__}, got {type(value).__name__}")
            setattr(cfg, attr, value)
    if path and not os.path.isabs(cfg.data_dir):
        cfg.data_dir = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), cfg.data_dir))
    if cfg.password == "":
        cfg.password = None
    base = os.path.dirname(os.path.abspath(path))
    for attr in ("ssl_cert_file", "ssl_key_file"):  # relative to the config file, like data_dir
        value = getattr(cfg, attr)
        if value and not os.path.isabs(value):
            setattr(cfg, attr, os.path.normpath(os.path.join(base, value)))
    return cfg
