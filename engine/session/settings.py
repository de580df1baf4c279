"""Session settings as Postgres reports them: SET, RESET and SHOW of a session's own values
(DuckDB's settings are never changed by clients: the sandbox refuses that).

`SETTINGS` is the one list of the settings tierd knows, with what `pg_settings` shows of each
(engine.catalog.pg_catalog fills pg_settings from it, and current_setting() reads the same
session values): add a setting here and it appears everywhere. A setting whose value the
engine acts on has a `check` that turns what a client wrote into the value SHOW prints (or
raises 22023, as Postgres does for a bad value); the session applies it
(engine/session/state.py `apply_settings`: TimeZone and search_path on the session's DuckDB
connection, statement_timeout and lock_timeout per statement)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from engine.errors import FeatureNotSupported, InvalidParameterValue
from engine.results import StatementResult
from engine.sql.parse import ResetSetting, SetSetting

_LOCALE = "Client Connection Defaults / Locale and Formatting"
_STATEMENT = "Client Connection Defaults / Statement Behavior"
_PRESET = "Preset Options"
_INT_MAX = "2147483647"
_ISOLATION = ("serializable", "repeatable read", "read committed", "read uncommitted")


MAX_MS = 2147483647  # Postgres's limit for a millisecond setting


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


def _parse_ms(name: str, value: str) -> int:
    """A time setting in milliseconds: `500`, `500ms`, `1.5s`, `2min`, `1h`, `1d`."""
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*", value)
    if not m:
        raise InvalidParameterValue(f'invalid value for parameter "{name}": "{value}"',
                                    hint='Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".')
    scale = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}[m.group(2) or "ms"]
    ms = round(float(m.group(1)) * scale)
    if not 0 <= ms <= MAX_MS:
        raise InvalidParameterValue(f'{ms} ms is outside the valid range for parameter "{name}" (0 .. {MAX_MS})')
    return ms


def format_ms(ms: int) -> str:
    """A millisecond value as SHOW prints it: the largest unit that divides it (`1min`)."""
    if ms == 0:
        return "0"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def timeout_ms(value: str) -> int:
    """A stored timeout setting (as SHOW prints it) back in milliseconds."""
    return _parse_ms("timeout", value)


def _ms_setting(name: str) -> Callable[[str], str]:
    return lambda value: format_ms(_parse_ms(name, value))


@functools.lru_cache(maxsize=256)
def search_path_list(value: str) -> tuple[str, ...]:
    """The schema names of a search_path value, in order (`"$user"` kept as written).
    Cached: sessions look at their path before every statement."""
    names = []
    for part in re.findall(r'"(?:[^"]|"")*"|[^,]+', value):
        part = part.strip()
        if not part:
            continue
        if part.startswith('"') and part.endswith('"') and len(part) > 1:
            inner = part[1:-1].replace('""', '"')
            names.append(inner)
        else:
            names.append(part.strip("'").strip().lower())
    return tuple(names)


def _search_path(value: str) -> str:
    """search_path as SHOW prints it: names comma-separated, quoted where they must be."""
    def show(name: str) -> str:
        if name == "$user" or not re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
            return '"' + name.replace('"', '""') + '"'
        return name
    return ", ".join(show(n) for n in search_path_list(value))


_DATE_ORDERS = {"MDY": "MDY", "DMY": "DMY", "YMD": "YMD", "US": "MDY", "NONEURO": "MDY", "NONEUROPEAN": "MDY",
                "EURO": "DMY", "EUROPEAN": "DMY"}


def _datestyle(value: str) -> str:
    """DateStyle: output style ISO (the one tierd prints) and an input field order."""
    style, order = "ISO", "MDY"
    for word in (w.strip().upper() for w in value.split(",") if w.strip()):
        if word in _DATE_ORDERS:
            order = _DATE_ORDERS[word]
        elif word in ("SQL", "POSTGRES", "GERMAN"):
            raise FeatureNotSupported(f'DateStyle "{word}" is not supported by tierd: dates are printed in ISO style')
        elif word == "DEFAULT":
            style, order = "ISO", "MDY"
        elif word != "ISO":
            raise InvalidParameterValue(f'invalid value for parameter "DateStyle": "{value}"',
                                        detail=f'Unrecognized key word: "{word.lower()}".')
    return f"{style}, {order}"


def _intervalstyle(value: str) -> str:
    """IntervalStyle: postgres and iso_8601 are printed (the wire layer formats interval text)."""
    v = value.strip().lower()
    if v not in ("postgres", "postgres_verbose", "sql_standard", "iso_8601"):
        raise InvalidParameterValue(f'invalid value for parameter "IntervalStyle": "{value}"',
                                    hint='Available values: postgres, postgres_verbose, sql_standard, iso_8601.')
    if v not in ("postgres", "iso_8601"):
        raise FeatureNotSupported(f'IntervalStyle "{v}" is not supported by tierd: use postgres or iso_8601')
    return v


def _on_off(name: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        v = value.strip().lower()
        if v in ("on", "true", "yes", "1"):
            return "on"
        if v in ("off", "false", "no", "0"):
            return "off"
        raise InvalidParameterValue(f'parameter "{name}" requires a Boolean value')
    return check


def _encoding(value: str) -> str:
    if value.strip().upper().replace("-", "") not in ("UTF8", "UNICODE"):
        raise FeatureNotSupported(f'client_encoding "{value}" is not supported by tierd: it speaks UTF8 only')
    return "UTF8"


SETTINGS: dict[str, Setting] = {s.name.lower(): s for s in (
    Setting("server_version", "15.0", "Shows the server version.", category=_PRESET, context="internal"),
    Setting("server_version_num", "150000", "Shows the server version as an integer.", category=_PRESET,
            context="internal", vartype="integer", min_val="150000", max_val="150000"),
    Setting("server_encoding", "UTF8", "Shows the server (database) character set encoding.", category=_PRESET,
            context="internal"),
    Setting("client_encoding", "UTF8", "Sets the client's character set encoding.", category=_LOCALE,
            check=_encoding),
    Setting("DateStyle", "ISO, MDY", "Sets the display format for date and time values.", category=_LOCALE,
            check=_datestyle),
    Setting("IntervalStyle", "postgres", "Sets the display format for interval values.", category=_LOCALE,
            vartype="enum", enumvals=("postgres", "postgres_verbose", "sql_standard", "iso_8601"),
            check=_intervalstyle),
    # TimeZone is checked by the session: DuckDB's ICU knows which names it can apply.
    Setting("TimeZone", "UTC", "Sets the time zone for displaying and interpreting time stamps.",
            category=_LOCALE),
    Setting("integer_datetimes", "on", "Shows whether datetimes are integer based.", category=_PRESET,
            context="internal", vartype="bool"),
    Setting("standard_conforming_strings", "on", "Causes '...' strings to treat backslashes literally.",
            category="Version and Platform Compatibility / Previous PostgreSQL Versions", vartype="bool",
            check=_on_off("standard_conforming_strings")),
    Setting("transaction_isolation", "serializable", "Sets the current transaction's isolation level.",
            category=_STATEMENT, vartype="enum", enumvals=_ISOLATION),
    Setting("default_transaction_isolation", "serializable",
            "Sets the transaction isolation level of each new transaction.", category=_STATEMENT, vartype="enum",
            enumvals=_ISOLATION),
    Setting("default_transaction_read_only", "off", "Sets the default read-only status of new transactions.",
            category=_STATEMENT, vartype="bool", check=_on_off("default_transaction_read_only")),
    Setting("transaction_read_only", "off", "Sets the current transaction's read-only status.",
            category=_STATEMENT, vartype="bool"),
    Setting("application_name", "", "Sets the application name to be reported in statistics and logs.",
            category="Reporting and Logging / What to Log"),
    Setting("search_path", '"$user", public',
            "Sets the schema search order for names that are not schema-qualified.", category=_STATEMENT,
            check=_search_path),
    Setting("statement_timeout", "0", "Sets the maximum allowed duration of any statement.", unit="ms",
            category=_STATEMENT, vartype="integer", min_val="0", max_val=_INT_MAX,
            check=_ms_setting("statement_timeout")),
    Setting("lock_timeout", "0", "Sets the maximum allowed duration of any wait for a lock.", unit="ms",
            category=_STATEMENT, vartype="integer", min_val="0", max_val=_INT_MAX, check=_ms_setting("lock_timeout")),
    Setting("idle_in_transaction_session_timeout", "1min",
            "Sets the maximum allowed idle time between queries, when in a transaction.", unit="ms",
            category=_STATEMENT, vartype="integer", min_val="0", max_val=_INT_MAX,
            check=_ms_setting("idle_in_transaction_session_timeout")),
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
    Setting("superuser_reserved_connections", "3",
            "Sets the number of connection slots reserved for superusers.",
            category="Connections and Authentication / Connection Settings", context="postmaster",
            vartype="integer", min_val="0", max_val="262143"),
    Setting("authentication_timeout", "1min", "Sets the maximum allowed time to complete client authentication.",
            unit="s", category="Connections and Authentication / Authentication", context="sighup",
            vartype="integer", min_val="1", max_val="600"),
)}

# Each setting's value when a session starts (keys lower-case, as SET folds them).
SETTINGS_DEFAULTS = {key: s.default for key, s in SETTINGS.items()}


def pg_settings_rows() -> list[tuple]:
    """The fixed columns of pg_settings, one row per registered setting (engine.catalog.pg_catalog)."""
    return [(key, s.name, s.unit, s.category, s.description, s.context, s.vartype, s.min_val, s.max_val,
             list(s.enumvals) if s.enumvals else None, s.default) for key, s in SETTINGS.items()]


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


def normalize(name: str, value: str, check_zone: Callable[[str], str]) -> str:
    """The value SHOW prints for `value` written for setting `name` (22023 if invalid)."""
    if name == "timezone":
        return check_zone(value)
    setting = SETTINGS.get(name)
    if setting is not None and setting.check is not None:
        return setting.check(value)
    return value


def change_in_session(s, stmt: SetSetting | ResetSetting, params: list) -> StatementResult:
    """SET / RESET as a session runs them (`s`: engine/session/state.py's SessionState): SET
    LOCAL only inside a transaction block, remembering the value to restore at its end; a
    session-level SET or RESET outlives the transaction (RESET ALL drops every SET LOCAL)."""
    if isinstance(stmt, SetSetting) and stmt.local:
        if not s.tx.explicit:   # PostgreSQL warns and changes nothing
            return StatementResult("SET", notices=("SET LOCAL can only be used in transaction blocks",))
        s.local_settings.setdefault(stmt.name, s.settings.get(stmt.name))
    result = change(s.settings, stmt, s.check_zone, s.reset_settings)
    if not isinstance(stmt, SetSetting) or not stmt.local:
        s.local_settings.pop(getattr(stmt, "name", ""), None)  # a session SET outlives the transaction
        if isinstance(stmt, ResetSetting) and stmt.name == "all":
            s.local_settings.clear()
    return result


def change(settings: dict[str, str], stmt: SetSetting | ResetSetting, check_zone: Callable[[str], str],
           reset_values: dict[str, str]) -> StatementResult:
    """SET or RESET; `check_zone` applies a TimeZone name (the session knows DuckDB's zones);
    RESET returns to `reset_values`: the defaults, or what the startup packet set."""
    if isinstance(stmt, ResetSetting):
        if stmt.name == "all":
            settings.clear()
            settings.update(reset_values)
        elif stmt.name in reset_values:
            settings[stmt.name] = reset_values[stmt.name]
        return StatementResult("RESET")
    value = stmt.value
    if value.strip().upper() == "DEFAULT" and stmt.name in reset_values:
        value = reset_values[stmt.name]
    elif stmt.name == "timezone" and value.strip().upper() == "LOCAL":
        value = reset_values["timezone"]
    settings[stmt.name] = normalize(stmt.name, value, check_zone)
    return StatementResult("SET")


def show(settings: dict[str, str], name: str, derived: dict[str, str]) -> StatementResult | None:
    """SHOW of a setting (None: not one; DuckDB's SHOW may know the name)."""
    value = settings.get(name, derived.get(name))
    if value is None:
        return None
    column = SETTINGS[name].name if name in SETTINGS else name
    return StatementResult("SHOW", pa.table({column: [value]}))
