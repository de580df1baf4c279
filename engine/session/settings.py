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
    "idle_in_transaction_session_timeout": "0",
    "default_transaction_isolation": "serializable",
    "default_transaction_read_only": "off",
    "transaction_read_only": "off",
    "extra_float_digits": "1",
    "max_identifier_length": "63",
    "lc_collate": "C.UTF-8",
    "lc_ctype": "C.UTF-8",
    "lc_messages": "C.UTF-8",
    "max_connections": "100",
}


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
