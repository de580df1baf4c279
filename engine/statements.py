"""Parsing of tierd's own statements and the DDL whose options DuckDB does not know.

Everything else (SELECT and the DML bodies) is left to DuckDB and sqlglot.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import SyntaxError_

_NAME = r'(?:"[^"]+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QNAME = rf"({_NAME}(?:\s*\.\s*{_NAME})?)"


def unquote(name: str) -> str:
    name = name.strip()
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


def split_qualified(qname: str, default_ns: str) -> tuple[str, str]:
    parts = [unquote(p) for p in re.findall(_NAME, qname)]
    if len(parts) == 1:
        return default_ns, parts[0]
    return parts[0], parts[1]


@dataclass
class CreateTable:
    keyword_type: str | None
    if_not_exists: bool
    namespace: str
    name: str
    body: str  # column and constraint list, DuckDB syntax
    options: dict[str, str]


_CREATE_TABLE = re.compile(
    rf"^\s*CREATE\s+(?:(USER|SHARED|STREAM)\s+)?TABLE\s+(IF\s+NOT\s+EXISTS\s+)?{_QNAME}\s*\(",
    re.I | re.S,
)
_OPTION = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^']|'')*'|[^,\s)]+)\s*(,|$)", re.S)


def _matching_paren(sql: str, open_at: int) -> int:
    depth, i, n = 0, open_at, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = sql.find(c, i + 1)
            while j != -1 and j + 1 < n and sql[j + 1] == c:
                j = sql.find(c, j + 2)
            if j == -1:
                break
            i = j
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise SyntaxError_("syntax error: unbalanced parentheses in CREATE TABLE")


def parse_create_table(sql: str, default_ns: str) -> CreateTable:
    m = _CREATE_TABLE.match(sql)
    if not m:
        raise SyntaxError_("syntax error in CREATE TABLE")
    close = _matching_paren(sql, m.end() - 1)
    body = sql[m.end() : close]
    rest = sql[close + 1 :].strip().rstrip(";").strip()
    options: dict[str, str] = {}
    if rest:
        wm = re.match(r"^WITH\s*\((.*)\)$", rest, re.I | re.S)
        if not wm:
            raise SyntaxError_(f"syntax error at or near {rest.split()[0]!r} in CREATE TABLE")
        text = wm.group(1).strip()
        pos = 0
        while pos < len(text):
            om = _OPTION.match(text, pos)
            if not om:
                raise SyntaxError_(f"syntax error in WITH options near {text[pos:pos + 30]!r}")
            value = om.group(2)
            if value.startswith("'"):
                value = value[1:-1].replace("''", "'")
            options[om.group(1).upper()] = value
            pos = om.end()
    ns, name = split_qualified(m.group(3), default_ns)
    return CreateTable(
        keyword_type=m.group(1).upper() if m.group(1) else None,
        if_not_exists=bool(m.group(2)),
        namespace=ns,
        name=name,
        body=body,
        options=options,
    )


@dataclass
class Command:
    """A parsed tierd command: `kind` plus its arguments."""

    kind: str
    args: dict


_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("create_namespace", re.compile(rf"^\s*CREATE\s+(?:NAMESPACE|SCHEMA)\s+(IF\s+NOT\s+EXISTS\s+)?(?P<name>{_NAME})\s*;?\s*$", re.I)),
    ("drop_namespace", re.compile(rf"^\s*DROP\s+(?:NAMESPACE|SCHEMA)\s+(IF\s+EXISTS\s+)?(?P<name>{_NAME})(?P<cascade>\s+CASCADE|\s+RESTRICT)?\s*;?\s*$", re.I)),
    ("drop_table", re.compile(rf"^\s*DROP\s+(?:(?:USER|SHARED|STREAM)\s+)?TABLE\s+(IF\s+EXISTS\s+)?(?P<name>{_QNAME[1:-1]})(?P<cascade>\s+CASCADE|\s+RESTRICT)?\s*;?\s*$", re.I)),
    ("flush_table", re.compile(rf"^\s*STORAGE\s+FLUSH\s+TABLE\s+(?P<name>{_QNAME[1:-1]})(?P<wait>\s+WAIT)?\s*;?\s*$", re.I)),
    ("flush_all", re.compile(rf"^\s*STORAGE\s+FLUSH\s+ALL(?:\s+IN\s+(?P<ns>{_NAME}))?(?P<wait>\s+WAIT)?\s*;?\s*$", re.I)),
    ("compact_table", re.compile(rf"^\s*STORAGE\s+COMPACT\s+TABLE\s+(?P<name>{_QNAME[1:-1]})(?P<wait>\s+WAIT)?\s*;?\s*$", re.I)),
    ("compact_all", re.compile(rf"^\s*STORAGE\s+COMPACT\s+ALL(?:\s+IN\s+(?P<ns>{_NAME}))?(?P<wait>\s+WAIT)?\s*;?\s*$", re.I)),
    ("retry_job", re.compile(r"^\s*RETRY\s+JOB\s+'(?P<job>[^']*)'\s*;?\s*$", re.I)),
    ("kill_job", re.compile(r"^\s*KILL\s+JOB\s+'(?P<job>[^']*)'\s*;?\s*$", re.I)),
]


_PAIR = re.compile(r"\s*,?\s*([A-Za-z_]+)\s+'((?:[^']|'')*)'", re.S)


def parse_pairs(text: str) -> dict[str, str]:
    """`KEY 'value' [,] KEY 'value' ...` as used by CREATE/ALTER STORAGE."""
    out: dict[str, str] = {}
    pos = 0
    text = text.strip().rstrip(";").rstrip()
    while pos < len(text):
        m = _PAIR.match(text, pos)
        if not m:
            raise SyntaxError_(f"syntax error at or near {text[pos:pos + 30].strip()!r}: expected KEY 'value'")
        key = m.group(1).upper()
        if key in out:
            raise SyntaxError_(f"option {key} given twice")
        out[key] = m.group(2).replace("''", "'")
        pos = m.end()
    return out


_STORAGE_ID = r"(?P<id>[A-Za-z_][A-Za-z0-9_\-]*)"
_STORAGE_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("create_storage", re.compile(rf"^\s*CREATE\s+STORAGE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?{_STORAGE_ID}\s+(?P<rest>.*)$", re.I | re.S)),
    ("alter_storage", re.compile(rf"^\s*ALTER\s+STORAGE\s+{_STORAGE_ID}\s+SET\s+(?P<rest>.*)$", re.I | re.S)),
    ("drop_storage", re.compile(rf"^\s*DROP\s+STORAGE\s+(?P<ie>IF\s+EXISTS\s+)?{_STORAGE_ID}\s*;?\s*$", re.I)),
    ("show_storages", re.compile(r"^\s*SHOW\s+STORAGES\s*;?\s*$", re.I)),
    ("check_storage", re.compile(rf"^\s*STORAGE\s+CHECK\s+{_STORAGE_ID}\s*;?\s*$", re.I)),
]


def parse_storage_command(sql: str) -> Command | None:
    for kind, pat in _STORAGE_PATTERNS:
        m = pat.match(sql)
        if m:
            args = m.groupdict()
            if "rest" in args:
                args["options"] = parse_pairs(args.pop("rest"))
            return Command(kind, args)
    return None


def parse_command(sql: str) -> Command | None:
    for kind, pat in _PATTERNS:
        m = pat.match(sql)
        if m:
            args = {k: v for k, v in m.groupdict().items()}
            args["if"] = bool(m.group(1)) if kind in ("create_namespace", "drop_namespace", "drop_table") else False
            return Command(kind, args)
    return None
