"""Session settings as Postgres reports them: SET, RESET and SHOW of a session's own values
(DuckDB's settings are never changed by clients: the sandbox refuses that)."""
from __future__ import annotations

import pyarrow as pa

from engine.catalog.tables import DEFAULT_NAMESPACE
from engine.results import StatementResult
from engine.sql.parse import ResetSetting, SetSetting

SETTINGS_DEFAULTS = {
    "server_version": "15.0",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "datestyle": "ISO, MDY",
    "intervalstyle": "postgres",
    "timezone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "transaction_isolation": "serializable",
    "application_name": "",
    "search_path": DEFAULT_NAMESPACE,
    "server_version_num": "150000",
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "1min",
    "default_transaction_isolation": "serializable",
    "default_transaction_read_only": "off",
    "transaction_read_only": "off",
    "extra_float_digits": "1",
    "max_identifier_length": "63",
    "lc_collate": "C.UTF-8",
    "lc_ctype": "C.UTF-8",
    "lc_messages": "C.UTF-8",
    "max_connections": "100",
    "superuser_reserved_connections": "3",
    "authentication_timeout": "1min",
}


def set_server_defaults(values: dict[str, str]) -> None:
    """The server's configured settings (max_connections & co.), as SHOW, RESET and new
    sessions see them: set once at start-up by the daemon's config."""
    SETTINGS_DEFAULTS.update(values)


def duration_text(seconds: float) -> str:
    """A time setting as Postgres shows it: 0, 500ms, 30s, 1min."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0"
    if ms % 60_000 == 0:
        return f"{ms // 60_000}min"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_seconds(text: str) -> float | None:
    """A time setting's value in seconds (a bare number is milliseconds, as Postgres's
    timeouts take it); None when it is not one."""
    value = text.strip().strip("'").strip().lower()
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz").strip()
    unit = value[len(number):].strip() or "ms"
    try:
        return float(number) * _UNITS_MS[unit] / 1000
    except (ValueError, KeyError):
        return None


def change(settings: dict[str, str], stmt: SetSetting | ResetSetting) -> StatementResult:
    if isinstance(stmt, ResetSetting):
        if stmt.name == "all":
            settings.clear()
            settings.update(SETTINGS_DEFAULTS)
        elif stmt.name in SETTINGS_DEFAULTS:
            settings[stmt.name] = SETTINGS_DEFAULTS[stmt.name]
        return StatementResult("RESET")
    settings[stmt.name] = stmt.value
    return StatementResult("SET")


def show(settings: dict[str, str], name: str, derived: dict[str, str]) -> StatementResult | None:
    """SHOW of a setting (None: not one; DuckDB's SHOW may know the name)."""
    value = settings.get(name, derived.get(name))
    if value is None:
        return None
    return StatementResult("SHOW", pa.table({name: [value]}))
