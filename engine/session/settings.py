"""Session settings as Postgres reports them: SET, RESET and SHOW of a session's own values
(DuckDB's settings are never changed by clients: the sandbox refuses that).

`REGISTRY` is the one list of the settings tierd knows, with what `pg_settings` shows of each
(engine.catalog.pg_catalog fills pg_settings from it, and current_setting() reads the same
session values): add a setting here and it appears everywhere."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from engine.catalog.tables import DEFAULT_NAMESPACE
from engine.results import StatementResult
from engine.sql.parse import ResetSetting, SetSetting

_LOCALE = "Client Connection Defaults / Locale and Formatting"
_STATEMENT = "Client Connection Defaults / Statement Behavior"
_PRESET = "Preset Options"
_INT_MAX = "2147483647"
_ISOLATION = ("serializable", "repeatable read", "read committed", "read uncommitted")


@dataclass(frozen=True)
class Setting:
    """One setting as pg_settings describes it (`name` spelled as Postgres spells it)."""
    name: str
    default: str
    category: str
    short_desc: str
    context: str = "user"  # internal (read only), postmaster (at start), superuser, user
    vartype: str = "string"  # bool, enum, integer, real, string
    unit: str | None = None
    min_val: str | None = None
    max_val: str | None = None
    enumvals: tuple[str, ...] | None = None


REGISTRY: dict[str, Setting] = {s.name.lower(): s for s in (
    Setting("server_version", "15.0", _PRESET, "Shows the server version.", "internal"),
    Setting("server_version_num", "150000", _PRESET, "Shows the server version as an integer.", "internal",
            "integer", None, "150000", "150000"),
    Setting("server_encoding", "UTF8", _PRESET, "Shows the server (database) character set encoding.",
            "internal"),
    Setting("client_encoding", "UTF8", _LOCALE, "Sets the client's character set encoding."),
    Setting("DateStyle", "ISO, MDY", _LOCALE, "Sets the display format for date and time values."),
    Setting("IntervalStyle", "postgres", _LOCALE, "Sets the display format for interval values.", "user",
            "enum", enumvals=("postgres", "postgres_verbose", "sql_standard", "iso_8601")),
    Setting("TimeZone", "UTC", _LOCALE, "Sets the time zone for displaying and interpreting time stamps."),
    Setting("integer_datetimes", "on", _PRESET, "Shows whether datetimes are integer based.", "internal",
            "bool"),
    Setting("standard_conforming_strings", "on", "Version and Platform Compatibility / Previous PostgreSQL "
            "Versions", "Causes '...' strings to treat backslashes literally.", "user", "bool"),
    Setting("transaction_isolation", "serializable", _STATEMENT,
            "Sets the current transaction's isolation level.", "user", "enum", enumvals=_ISOLATION),
    Setting("default_transaction_isolation", "serializable", _STATEMENT,
            "Sets the transaction isolation level of each new transaction.", "user", "enum", enumvals=_ISOLATION),
    Setting("default_transaction_read_only", "off", _STATEMENT,
            "Sets the default read-only status of new transactions.", "user", "bool"),
    Setting("transaction_read_only", "off", _STATEMENT, "Sets the current transaction's read-only status.",
            "user", "bool"),
    Setting("application_name", "", "Reporting and Logging / What to Log",
            "Sets the application name to be reported in statistics and logs."),
    Setting("search_path", DEFAULT_NAMESPACE, _STATEMENT,
            "Sets the schema search order for names that are not schema-qualified."),
    Setting("statement_timeout", "0", _STATEMENT, "Sets the maximum allowed duration of any statement.",
            "user", "integer", "ms", "0", _INT_MAX),
    Setting("lock_timeout", "0", _STATEMENT, "Sets the maximum allowed duration of any wait for a lock.",
            "user", "integer", "ms", "0", _INT_MAX),
    Setting("idle_in_transaction_session_timeout", "0", _STATEMENT,
            "Sets the maximum allowed idle time between queries, when in a transaction.", "user", "integer",
            "ms", "0", _INT_MAX),
    Setting("extra_float_digits", "1", _LOCALE, "Sets the number of digits displayed for floating-point "
            "values.", "user", "integer", None, "-15", "3"),
    Setting("max_identifier_length", "63", _PRESET, "Shows the maximum identifier length.", "internal",
            "integer", None, "63", "63"),
    Setting("lc_collate", "C.UTF-8", _PRESET, "Shows the collation order locale.", "internal"),
    Setting("lc_ctype", "C.UTF-8", _PRESET, "Shows the character classification and case conversion locale.",
            "internal"),
    Setting("lc_messages", "C.UTF-8", _LOCALE, "Sets the language in which messages are displayed.",
            "superuser"),
    Setting("default_table_access_method", "heap", _STATEMENT,
            "Sets the default table access method for new tables."),
    Setting("default_tablespace", "", _STATEMENT,
            "Sets the default tablespace to create tables and indexes in."),
    Setting("bytea_output", "hex", _STATEMENT, "Sets the output format for bytea.", "user", "enum",
            enumvals=("escape", "hex")),
    Setting("client_min_messages", "notice", "Client Connection Defaults / Statement Behavior",
            "Sets the message levels that are sent to the client.", "user", "enum",
            enumvals=("debug5", "debug4", "debug3", "debug2", "debug1", "log", "notice", "warning", "error")),
    Setting("max_index_keys", "32", _PRESET, "Shows the maximum number of index keys.", "internal", "integer",
            None, "32", "32"),
    Setting("block_size", "8192", _PRESET, "Shows the size of a disk block.", "internal", "integer", None,
            "8192", "8192"),
    Setting("max_connections", "100", "Connections and Authentication / Connection Settings",
            "Sets the maximum number of concurrent connections.", "postmaster", "integer", None, "1", "262143"),
)}

# Each setting's value when a session starts (keys lower-case, as SET folds them).
SETTINGS_DEFAULTS = {key: s.default for key, s in REGISTRY.items()}


def pg_settings_rows() -> list[tuple]:
    """The fixed columns of pg_settings, one row per registered setting (engine.catalog.pg_catalog)."""
    return [(key, s.name, s.unit, s.category, s.short_desc, s.context, s.vartype, s.min_val, s.max_val,
             list(s.enumvals) if s.enumvals else None, s.default) for key, s in REGISTRY.items()]


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
