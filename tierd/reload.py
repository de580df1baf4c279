"""SIGHUP: which settings change live, which wait for a restart, and applying the former.

Live: log level, the default flush policy, lock timeout, compaction thresholds, job retries,
backoff and retention, the shutdown grace period, the superuser, password, auth method and
TLS settings (for new connections; the certificate and key files are read again at every
reload, so a certificate renewed in place takes effect) and [storage.<id>] sections (added, or changed while type and base stay).
Everything else (listen address, data dir, job workers, metrics endpoint, failpoints)
keeps its running value until a restart, and the reload says so.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from tierd.config import KEY_NAMES, Config

log = logging.getLogger("tierd.reload")

ENGINE_LIVE = {  # Config attribute -> EngineConfig attribute
    "default_flush_policy": "default_flush_policy",
    "lock_timeout_s": "lock_timeout_s",
    "compaction_max_segments": "compaction_max_segments",
    "compaction_target_rows": "compaction_target_rows",
}
JOBS_LIVE = {  # Config attribute -> JobsConfig attribute
    "max_retries": "max_retries",
    "retry_backoff_s": "backoff_base_s",
    "retry_backoff_max_s": "backoff_max_s",
    "job_retention_s": "retention_s",
}
AUTH_LIVE = {"superuser", "password", "auth_method", "ssl", "ssl_cert_file", "ssl_key_file", "ssl_required"}
DAEMON_LIVE = {"log_level", "shutdown_grace_s"} | AUTH_LIVE
SECRET = {"password"}


@dataclass
class Outcome:
    changed: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _describe(attr: str, old, new) -> str:
    name = KEY_NAMES.get(attr, attr)
    if attr in SECRET:
        return f"{name} (changed)"
    return f"{name}: {old!r} -> {new!r}"


def _same(attr: str, old, new) -> bool:
    if attr == "data_dir":
        return os.path.abspath(old) == os.path.abspath(new)
    if attr == "log_level":
        return str(old).upper() == str(new).upper()
    return old == new


def apply(running: Config, new: Config, engine, set_log_level, set_auth) -> Outcome:
    """Apply `new` over `running` (updated in place to what is in force); report what happened."""
    out = Outcome()
    engine_changes, job_changes, applied = {}, {}, set()
    for attr in vars(running):
        old, value = getattr(running, attr), getattr(new, attr)
        if attr == "storages" or _same(attr, old, value):
            continue
        if attr in ENGINE_LIVE:
            engine_changes[ENGINE_LIVE[attr]] = value
        elif attr in JOBS_LIVE:
            job_changes[JOBS_LIVE[attr]] = value
        elif attr not in DAEMON_LIVE:
            out.restart.append(_describe(attr, old, value))
            continue
        out.changed.append(_describe(attr, old, value))
        applied.add(attr)
        setattr(running, attr, value)
    engine.apply_settings(engine_changes, job_changes)
    if "log_level" in applied:
        set_log_level(running.log_level)
    if applied & AUTH_LIVE or running.ssl:  # certificate files are re-read at every reload
        set_auth(running)
    try:
        changed, restart = engine.reload_storages(new.storages)
    except Exception as exc:
        out.failed.append(f"storage: {getattr(exc, 'message', exc)}")
    else:
        out.changed += changed
        out.restart += restart
        running.storages = dict(new.storages)  # reload_storages compares with the catalog itself
    return out
