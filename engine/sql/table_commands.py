"""The grammar of statements that act on a table's rows wholesale: TRUNCATE, ALTER TABLE ...
ADD PRIMARY KEY, and Postgres's maintenance commands (VACUUM, ANALYZE, CHECKPOINT), which
tierd accepts and which have nothing to do here (LevelDB and Parquet need no vacuum)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import FeatureNotSupported, SyntaxError_
from engine.sql.statements import unquote

_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QNAME = rf"{_NAME}(?:\s*\.\s*{_NAME})?"


@dataclass(frozen=True)
class Truncate:
    names: tuple[str, ...]  # as written
    restart_identity: bool
    action: str = "TRUNCATE"
    cascade: bool = False  # tables referencing the truncated ones by foreign key are truncated too


@dataclass(frozen=True)
class AddPrimaryKey:
    table: str  # as written
    columns: tuple[str, ...]
    constraint: str | None  # ADD CONSTRAINT name PRIMARY KEY
    action: str = "ALTER TABLE"


@dataclass(frozen=True)
class Maintenance:
    """VACUUM, ANALYZE, CHECKPOINT: accepted, nothing to do."""
    command: str


_TRUNCATE = re.compile(rf"^\s*TRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?(?P<names>{_QNAME}\s*\*?(?:\s*,\s*(?:ONLY\s+)?{_QNAME}\s*\*?)*)"
                       r"(?P<identity>\s+(?:RESTART|CONTINUE)\s+IDENTITY)?(?P<cascade>\s+(?:CASCADE|RESTRICT))?\s*;?\s*$",
                       re.I | re.S)
_ADD_PK = re.compile(rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<table>{_QNAME})\s+ADD\s+"
                     rf"(?:CONSTRAINT\s+(?P<constraint>{_NAME})\s+)?PRIMARY\s+KEY\s*\((?P<cols>[^)]*)\)\s*;?\s*$",
                     re.I | re.S)
_MAINTENANCE = re.compile(r"^\s*(VACUUM|ANALYZE|ANALYSE|CHECKPOINT)\b", re.I)


def parse_truncate(sql: str) -> Truncate:
    m = _TRUNCATE.match(sql)
    if not m:
        raise SyntaxError_("syntax error in TRUNCATE")
    names = tuple(n.strip() for n in re.findall(_QNAME, re.sub(r"\bONLY\s+|\*", "", m.group("names"), flags=re.I)))
    identity = (m.group("identity") or "").split()
    return Truncate(names, bool(identity) and identity[0].upper() == "RESTART",
                    cascade=(m.group("cascade") or "").strip().upper() == "CASCADE")


def is_add_primary_key(sql: str) -> bool:
    return bool(re.search(r"\bADD\s+(?:CONSTRAINT\s+\S+\s+)?PRIMARY\s+KEY\b", sql, re.I))


def parse_add_primary_key(sql: str) -> AddPrimaryKey:
    m = _ADD_PK.match(sql)
    if not m:
        raise FeatureNotSupported("ALTER TABLE ... ADD PRIMARY KEY supports only "
                                  "ALTER TABLE [ONLY] t ADD [CONSTRAINT name] PRIMARY KEY (columns)")
    cols = tuple(unquote(c) for c in m.group("cols").split(",") if c.strip())
    if not cols:
        raise SyntaxError_("syntax error: PRIMARY KEY needs at least one column")
    return AddPrimaryKey(m.group("table"), cols, unquote(m.group("constraint")) if m.group("constraint") else None)


def parse_maintenance(sql: str) -> Maintenance | None:
    m = _MAINTENANCE.match(sql)
    return Maintenance(m.group(1).upper()) if m else None
