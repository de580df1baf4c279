"""Session settings as Postgres reports them: SET, RESET and SHOW of a session's own values
(DuckDB's settings are never changed by clients: the sandbox refuses that).

Each setting is declared once in SETTINGS with its default, description and unit, so the
catalog (pg_settings) can list them as Postgres does. A setting whose value the engine acts
on has a `check` that turns what a client wrote into the value SHOW prints (or raises 22023,
as Postgres does for a bad value); the session applies it (engine/session/state.py
`apply_settings`: TimeZone and search_path on the session's DuckDB connection,
statement_timeout per statement).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from engine.errors import FeatureNotSupported, InvalidParameterValue
from engine.results import StatementResult
from engine.sql.parse import ResetSetting, SetSetting

MAX_MS = 2147483647  # Postgres's limit for a millisecond setting


@dataclass(frozen=True)
class Setting:
    name: str                 # as Postgres spells it (TimeZone); looked up lower-cased
    default: str
    description: str          # pg_settings.short_desc
    unit: str | None = None   # pg_settings.unit: "ms" for timeouts
    check: Callable[[str], str] | None = None  # value as written -> value as SHOW prints it
    category: str = "Client Connection Defaults"
    context: str = "user"     # pg_settings.context: "internal" ones cannot be SET


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


_INTERNAL = "Preset Options"
SETTINGS: dict[str, Setting] = {s.name.lower(): s for s in (
    Setting("server_version", "15.0", "Shows the server version.", context="internal", category=_INTERNAL),
    Setting("server_version_num", "150000", "Shows the server version as an integer.", context="internal",
            category=_INTERNAL),
    Setting("server_encoding", "UTF8", "Shows the server (database) character set encoding.", context="internal",
            category=_INTERNAL),
    Setting("client_encoding", "UTF8", "Sets the client's character set encoding.", check=_encoding),
    Setting("DateStyle", "ISO, MDY", "Sets the display format for date and time values.", check=_datestyle),
    Setting("IntervalStyle", "postgres", "Sets the display format for interval values.", check=_intervalstyle),
    # TimeZone is checked by the session: DuckDB's ICU knows which names it can apply.
    Setting("TimeZone", "UTC", "Sets the time zone for displaying and interpreting time stamps."),
    Setting("integer_datetimes", "on", "Shows whether datetimes are integer based.", context="internal",
            category=_INTERNAL),
    Setting("standard_conforming_strings", "on", "Causes '...' strings to treat backslashes literally.",
            check=_on_off("standard_conforming_strings")),
    Setting("transaction_isolation", "serializable", "Sets the current transaction's isolation level."),
    Setting("default_transaction_isolation", "serializable",
            "Sets the transaction isolation level of each new transaction."),
    Setting("default_transaction_read_only", "off", "Sets the default read-only status of new transactions.",
            check=_on_off("default_transaction_read_only")),
    Setting("transaction_read_only", "off", "Sets the current transaction's read-only status."),
    Setting("application_name", "", "Sets the application name to be reported in statistics and logs.",
            category="Reporting and Logging / What to Log"),
    Setting("search_path", '"$user", public', "Sets the schema search order for names that are not schema-qualified.",
            check=_search_path),
    Setting("statement_timeout", "0", "Sets the maximum allowed duration of any statement.", unit="ms",
            check=_ms_setting("statement_timeout")),
    Setting("lock_timeout", "0", "Sets the maximum allowed duration of any wait for a lock.", unit="ms",
            check=_ms_setting("lock_timeout")),
    Setting("idle_in_transaction_session_timeout", "0",
            "Sets the maximum allowed idle time between queries, when in a transaction.", unit="ms",
            check=_ms_setting("idle_in_transaction_session_timeout")),
    Setting("extra_float_digits", "1", "Sets the number of digits displayed for floating-point values."),
    Setting("max_identifier_length", "63", "Shows the maximum identifier length.", context="internal",
            category=_INTERNAL),
    Setting("lc_collate", "C.UTF-8", "Shows the collation order locale.", context="internal", category=_INTERNAL),
    Setting("lc_ctype", "C.UTF-8", "Shows the character classification and case conversion locale.",
            context="internal", category=_INTERNAL),
    Setting("lc_messages", "C.UTF-8", "Sets the language in which messages are displayed."),
    Setting("max_connections", "100", "Sets the maximum number of concurrent connections.", context="internal",
            category="Connections and Authentication / Connection Settings"),
)}
SETTINGS_DEFAULTS = {name: s.default for name, s in SETTINGS.items()}


def normalize(name: str, value: str, check_zone: Callable[[str], str]) -> str:
    """The value SHOW prints for `value` written for setting `name` (22023 if invalid)."""
    if name == "timezone":
        return check_zone(value)
    setting = SETTINGS.get(name)
    if setting is not None and setting.check is not None:
        return setting.check(value)
    return value


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
