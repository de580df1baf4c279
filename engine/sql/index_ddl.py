"""CREATE INDEX and DROP INDEX as ORMs and migration tools write them, parsed.

tierd keeps an index as a catalog record only (DuckDB scans; the primary key has its own
lookup path), so what is parsed is what the catalog shows: name, table, plain columns and
UNIQUE. What would change behaviour tierd does not have (expressions, partial indexes,
INCLUDE, opclasses) is refused with 0A000 naming the part.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import FeatureNotSupported, SyntaxError_
from engine.sql.statements import matching_paren, unquote

_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QNAME = rf"{_IDENT}(?:\s*\.\s*{_IDENT})?"
_CREATE = re.compile(
    rf"^\s*CREATE\s+(?P<unique>UNIQUE\s+)?INDEX\s+(?P<conc>CONCURRENTLY\s+)?(?P<ine>IF\s+NOT\s+EXISTS\s+)?"
    rf"(?:(?P<name>{_IDENT})\s+)?ON\s+(?:ONLY\s+)?(?P<table>{_QNAME})\s*"
    rf"(?:USING\s+(?P<method>\w+)\s*)?(?P<open>\()", re.I | re.S)
_DROP = re.compile(rf"^\s*DROP\s+INDEX\s+(?:CONCURRENTLY\s+)?(?P<ie>IF\s+EXISTS\s+)?"
                   rf"(?P<names>{_QNAME}(?:\s*,\s*{_QNAME})*)\s*(?P<mode>CASCADE|RESTRICT)?\s*;?\s*$", re.I | re.S)
_COLUMN = re.compile(rf"^(?P<name>{_IDENT})(?:\s+(?:ASC|DESC))?(?:\s+NULLS\s+(?:FIRST|LAST))?$", re.I)
_WITH = re.compile(r"^\s*WITH\s*\([^)]*\)\s*$", re.I | re.S)


@dataclass(frozen=True)
class CreateIndex:
    name: str | None  # None: Postgres's generated name (<table>_<columns>_idx)
    table: str        # as written (qualified or not)
    columns: tuple[str, ...]
    unique: bool
    if_not_exists: bool


@dataclass(frozen=True)
class DropIndex:
    names: tuple[str, ...]  # as written (qualified or not)
    if_exists: bool


def name(text: str) -> str:
    """An identifier as written: quoted keeps its case, unquoted folds to lower case."""
    return unquote(text) if text.startswith('"') else text.lower()


def parse_create_index(sql: str) -> CreateIndex:
    m = _CREATE.match(sql)
    if not m:
        raise SyntaxError_("syntax error in CREATE INDEX: expected CREATE [UNIQUE] INDEX [IF NOT EXISTS] name "
                           "ON table (column [, ...])")
    close = matching_paren(sql, m.start("open"), "CREATE INDEX")
    cols, rest = sql[m.end("open"):close], sql[close + 1:].strip().rstrip(";").strip()
    method = (m.group("method") or "btree").lower()
    if method not in ("btree", "hash"):
        raise FeatureNotSupported(f'access method "{method}" is not supported by tierd (indexes are btree only)')
    if rest and not _WITH.match(rest):   # WITH (fillfactor = ...) is a storage option: accepted
        word = rest.split()[0].upper()
        raise FeatureNotSupported(f"CREATE INDEX ... {word} is not supported by tierd",
                                  hint="tierd indexes list plain columns only.")
    columns = []
    for part in _split_commas(cols):
        c = _COLUMN.match(part.strip())
        if not c:
            raise FeatureNotSupported(f"CREATE INDEX on the expression {part.strip()!r} is not supported by tierd",
                                      hint="tierd indexes list plain columns only.")
        columns.append(name(c.group("name")))
    if not columns:
        raise SyntaxError_('syntax error at or near ")"')
    return CreateIndex(name(m.group("name")) if m.group("name") else None, m.group("table"), tuple(columns),
                       bool(m.group("unique")), bool(m.group("ine")))


def parse_drop_index(sql: str) -> DropIndex:
    m = _DROP.match(sql)
    if not m:
        raise SyntaxError_("syntax error in DROP INDEX: expected DROP INDEX [IF EXISTS] name [, ...]")
    names = tuple(n.strip() for n in _split_commas(m.group("names")))
    return DropIndex(names, bool(m.group("ie")))


def _split_commas(text: str) -> list[str]:
    """Split on commas outside parentheses and double quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]
