"""The Postgres type a column was declared with, where DuckDB's own type forgets it.

DuckDB stores `jsonb` and `json` as JSON, `timetz` as TIME WITH TIME ZONE's nearest kin and
`varchar(20)` as VARCHAR; Postgres's catalog (and so SQLAlchemy reflection, Alembic's type
comparison, psql's `\\d`) shows what was declared. Only those spellings are kept: every other
type's catalog entry follows from its DuckDB type, as before.
"""
from __future__ import annotations

import re

from engine.sql.sequence_ddl import split_top_level
from engine.sql.statements import unquote

_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z_0-9$]*)'
_COLUMN = re.compile(rf"^\s*({_NAME})\s+(.*)$", re.S)
_CONSTRAINT_WORDS = {"PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "CONSTRAINT", "EXCLUDE", "LIKE"}
_KINDS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^jsonb\b(?!\s*\[)", re.I), "jsonb"),
    (re.compile(r"^json\b(?!\s*\[)", re.I), "json"),
    (re.compile(r"^(?:timetz|time\s*(?:\(\s*\d+\s*\))?\s+with\s+time\s+zone)\b(?!\s*\[)", re.I),
     "time with time zone"),
    (re.compile(r"^(?:varchar|character\s+varying)\s*\(\s*(\d+)\s*\)(?!\s*\[)", re.I), "character varying({})"),
    (re.compile(r"^(?:char|character|bpchar)\s*\(\s*(\d+)\s*\)(?!\s*\[)", re.I), "character({})"),
)


def declared_type(type_text: str) -> str | None:
    """format_type()'s spelling of a declared type DuckDB would forget, else None."""
    text = type_text.strip()
    if text.lower().startswith("pg_catalog."):
        text = text[len("pg_catalog."):]
    for pattern, spelling in _KINDS:
        m = pattern.match(text)
        if m:
            return spelling.format(*m.groups())
    return None


def declared_types(body: str) -> dict[str, str]:
    """Column name -> declared spelling, for the columns of a CREATE TABLE body that have one."""
    out: dict[str, str] = {}
    for item in split_top_level(body):
        m = _COLUMN.match(item)
        if not m or m.group(1).upper() in _CONSTRAINT_WORDS:
            continue
        spelling = declared_type(m.group(2))
        if spelling:
            out[unquote(m.group(1))] = spelling
    return out
