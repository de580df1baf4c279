"""Session settings as Postgres reports them: SET, RESET and SHOW of a session's own values
(DuckDB's settings are never changed by clients: the sandbox refuses that).

`SETTINGS` is the one list of the settings tierd knows, with what `pg_settings` shows of each
(engine.catalog.pg_catalog fills pg_settings from it, and current_setting() reads the same
session values): add a setting here and it appears everywhere."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
    """One setting as pg_settings describes it."""
    name: str                 # as Postgres spells it (TimeZone); looked up lower-cased
    default: str
    description: str          # pg_settings.short_desc
    unit: str | None = None   # pg_settings.unit: "ms" for timeouts
    check: Callable[[str], str] | None = None  # value as written -> value as SHOW prints it
    category: str = "Client Connection Defaults"
    context: str = "user"     # internal (read only), postmaster (at start), superuser, user
    vartype: str = "string"   # bool, enum, integer, real, string
    min_val: str | None = None
    max_val: str | None = None
    enumvals: tuple[str, ...] | None = None


SETTINGS: dict[str, Setting] = {s.name.lower(): s for s in (
    Setting("server_version", "15.0", "Shows the server version.", category=_PRESET, context="internal"),
    Setting("server_version_num", "150000", "Shows the server version as an integer.", category=_PRESET,
            context="internal", vartype="integer", min_val="150000", max_val="150000"),
    Setting("server_encoding", "UTF8", "Shows the server (database) character set encoding.", category=_PRESET,
            context="internal"),
    Setting("client_encoding", "UTF8", "Sets the client's character set encoding.", category=_LOCALE),
    Setting("DateStyle", "ISO, MDY", "Sets the display format for date and time values.", category=_LOCALE),
    Setting("IntervalStyle", "postgres", "Sets the display format for interval values.", category=_LOCALE,
            vartype="enum", enumvals=("postgres", "postgres_verbose", "sql_standard", "iso_8601")),
    Setting("TimeZone", "UTC", "Sets the time zone for displaying and interpreting time stamps.",
            category=_LOCALE),
    Setting("integer_datetimes", "on", "Shows whether datetimes are integer based.", category=_PRESET,
            context="internal", vartype="bool"),
    Setting("standard_conforming_strings", "on", "Causes '...' strings to treat backslashes literally.",
            category="Version and Platform Compatibility / Previous PostgreSQL Versions", vartype="bool"),
    Setting("transaction_isolation", "serializable", "Sets the current transaction's isolation level.",
            category=_STATEMENT, vartype="enum", enumvals=_ISOLATION),
    Setting("default_transaction_isolation", "serializable",
            "Sets the transaction isolation level of each new transaction.", category=_STATEMENT, vartype="enum",
            enumvals=_ISOLATION),
    Setting("default_transaction_read_only", "off", "Sets the default read-only status of new transactions.",
            category=_STATEMENT, vartype="bool"),
    Setting("transaction_read_only", "off", "Sets the current transaction's read-only status.",
            category=_STATEMENT, vartype="bool"),
    Setting("application_name", "", "Sets the application name to be reported in statistics and logs.",
            category="Reporting and Logging / What to Log"),
    Setting("search_path", DEFAULT_NAMESPACE,
            "Sets the schema search order for names that are not schema-qualified.", category=_STATEMENT),
    Setting("statement_timeout", "0", "Sets the maximum allowed duration of any statement.", unit="ms",
            category=_STATEMENT, vartype="integer", min_val="0", max_val=_INT_MAX),
    Setting("lock_timeout", "0", "Sets the maximum allowed duration of any wait for a lock.", unit="ms",
            category=_STATEMENT, vartype="integer", min_val="0", max_val=_INT_MAX),
    Setting("idle_in_transaction_session_timeout", "0",
            "Sets the maximum allowed idle time between queries, when in a transaction.", unit="ms",
            category=_STATEMENT, vartype="integer", min_val="0", max_val=_INT_MAX),
    Setting("extra_float_digits", "1", "Sets the number of digits displayed for floating-point values.",
            category=_LOCALE, vartype="integer", min_val="-15", max_val="3"),
    Setting("max_identifier_length", "63", "Shows the maximum identifier length.", category=_PRESET,
            context="internal", vartype="integer", min_val="63", max_val="63"),
    Setting("lc_collate", "C.UTF-8", "Shows the collation order locale.", category=_PRESET, context="internal"),
    Setting("lc_ctype", "C.UTF-8", "Shows the character classification and case conversion locale.",
            category=_PRESET, context="internal"),
    Setting("lc_messages", "C.UTF-8", "Sets the language in which messages are displayed.", category=_LOCALE,
            context="superuser"),
    Setting("default_table_access_method", "heap", "Sets the default table access method for new tables.",
            category=_STATEMENT),
    Setting("default_tablespace", "", "Sets the default tablespace to create tables and indexes in.",
            category=_STATEMENT),
    Setting("bytea_output", "hex", "Sets the output format for bytea.", category=_STATEMENT, vartype="enum",
            enumvals=("escape", "hex")),
    Setting("client_min_messages", "notice", "Sets the message levels that are sent to the client.",
            category=_STATEMENT, vartype="enum",
            enumvals=("debug5", "debug4", "debug3", "debug2", "debug1", "log", "notice", "warning", "error")),
    Setting("max_index_keys", "32", "Shows the maximum number of index keys.", category=_PRESET,
            context="internal", vartype="integer", min_val="32", max_val="32"),
    Setting("block_size", "8192", "Shows the size of a disk block.", category=_PRESET, context="internal",
            vartype="integer", min_val="8192", max_val="8192"),
    Setting("max_connections", "100", "Sets the maximum number of concurrent connections.",
            category="Connections and Authentication / Connection Settings", context="postmaster",
            vartype="integer", min_val="1", max_val="262143"),
)}

# Each setting's value when a session starts (keys lower-case, as SET folds them).
SETTINGS_DEFAULTS = {key: s.default for key, s in SETTINGS.items()}


def pg_settings_rows() -> list[tuple]:
    """The fixed columns of pg_settings, one row per registered setting (engine.catalog.pg_catalog)."""
    return [(key, s.name, s.unit, s.category, s.description, s.context, s.vartype, s.min_val, s.max_val,
             list(s.enumvals) if s.enumvals else None, s.default) for key, s in SETTINGS.items()]


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
