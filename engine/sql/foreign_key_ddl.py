"""Foreign-key clauses as written in CREATE TABLE and ALTER TABLE ... ADD: inline
`col type REFERENCES p [(col)]` and table-level `[CONSTRAINT name] FOREIGN KEY (cols)
REFERENCES p [(cols)]`, with their MATCH, ON DELETE / ON UPDATE and DEFERRABLE options.

CREATE TABLE's column list goes to DuckDB without them (`split_foreign_keys`): DuckDB would
enforce its own foreign keys against its own tables; engine/session/foreign_keys.py resolves
the clauses against tierd's catalog and enforces them. Variants tierd does not run answer
0A000 naming the part.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import FeatureNotSupported, SyntaxError_
from engine.sql.statements import split_actions, unquote

_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QNAME = rf"{_NAME}(?:\s*\.\s*{_NAME})?"
# Postgres's referential actions as pg_constraint codes (confupdtype, confdeltype)
ACTIONS = {"NO ACTION": "a", "RESTRICT": "r", "CASCADE": "c", "SET NULL": "n", "SET DEFAULT": "d"}
ACTION_WORDS = {code: words for words, code in ACTIONS.items()}


@dataclass(frozen=True)
class ForeignKeyClause:
    name: str | None  # CONSTRAINT name; None: Postgres's <table>_<cols>_fkey
    columns: tuple[str, ...]  # the referencing columns
    parent: str  # the referenced table, as written
    parent_columns: tuple[str, ...] | None  # None: the parent's primary key
    on_delete: str = "a"
    on_update: str = "a"
    match: str = "s"  # "s" SIMPLE, "f" FULL
    deferrable: bool = False


_TABLE_LEVEL = re.compile(rf"^(?:CONSTRAINT\s+(?P<name>{_NAME})\s+)?FOREIGN\s+KEY\s*\((?P<cols>[^)]*)\)\s*", re.I | re.S)
_REFERENCES = re.compile(rf"REFERENCES\s+(?P<parent>{_QNAME})\s*(?:\((?P<pcols>[^)]*)\))?", re.I | re.S)
_INLINE = re.compile(rf"(?:\bCONSTRAINT\s+(?P<name>{_NAME})\s+)?\bREFERENCES\b", re.I)
_OPTION = re.compile(
    r"\s*(?:MATCH\s+(?P<match>FULL|PARTIAL|SIMPLE)\b"
    r"|ON\s+(?P<event>DELETE|UPDATE)\s+(?P<action>NO\s+ACTION|RESTRICT|CASCADE|SET\s+NULL|SET\s+DEFAULT)\b"
    r"(?P<setcols>\s*\([^)]*\))?"
    r"|(?P<not>NOT\s+)?DEFERRABLE\b"
    r"|INITIALLY\s+(?P<initially>DEFERRED|IMMEDIATE)\b"
    r"|(?P<notvalid>NOT\s+VALID)\b)", re.I | re.S)
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(unquote(n) for n in re.findall(_NAME, text))
    if not names:
        raise SyntaxError_('syntax error at or near ")"')
    return names


def _options(text: str, pos: int, fields: dict) -> int:
    """MATCH / ON DELETE / ON UPDATE / DEFERRABLE options from `pos` on; the end of the last."""
    while True:
        m = _OPTION.match(text, pos)
        if not m:
            return pos
        if m.group("match"):
            kind = m.group("match").upper()
            if kind == "PARTIAL":
                raise FeatureNotSupported("MATCH PARTIAL not yet implemented")
            fields["match"] = kind[0].lower()
        elif m.group("event"):
            if m.group("setcols"):
                raise FeatureNotSupported(f"ON DELETE {' '.join(m.group('action').upper().split())} (columns) "
                                          "is not supported by tierd")
            key = "on_delete" if m.group("event").upper() == "DELETE" else "on_update"
            fields[key] = ACTIONS[" ".join(m.group("action").upper().split())]
        elif m.group("initially"):
            if m.group("initially").upper() == "DEFERRED":
                raise FeatureNotSupported(
                    "INITIALLY DEFERRED foreign keys are not supported by tierd",
                    hint="tierd checks foreign keys at the end of each statement (INITIALLY IMMEDIATE).")
        elif m.group("notvalid"):
            raise FeatureNotSupported("NOT VALID foreign keys are not supported by tierd")
        else:
            fields["deferrable"] = not m.group("not")
        pos = m.end()


def _clause(text: str, at: int, name: str | None, columns: tuple[str, ...]) -> tuple[ForeignKeyClause, int]:
    """The REFERENCES part starting at `at` in `text`, and where it ends."""
    m = _REFERENCES.match(text, at)
    if not m:
        raise SyntaxError_("syntax error in REFERENCES: expected REFERENCES table [(columns)]")
    fields: dict = {}
    end = _options(text, m.end(), fields)
    pcols = _names(m.group("pcols")) if m.group("pcols") is not None else None
    return ForeignKeyClause(name, columns, m.group("parent"), pcols, **fields), end


def parse_table_constraint(text: str) -> ForeignKeyClause | None:
    """`[CONSTRAINT name] FOREIGN KEY (cols) REFERENCES ...` (the whole text), else None."""
    m = _TABLE_LEVEL.match(text.strip())
    if not m:
        return None
    body = text.strip()
    name = unquote(m.group("name")) if m.group("name") else None
    clause, end = _clause(body, m.end(), name, _names(m.group("cols")))
    if body[end:].strip():
        raise SyntaxError_(f'syntax error at or near "{body[end:].split()[0]}"')
    return clause


def split_foreign_keys(body: str) -> tuple[str, list[ForeignKeyClause]]:
    """CREATE TABLE's column list without its foreign keys, and the foreign keys."""
    if not re.search(r"\bREFERENCES\b", _QUOTED.sub("''", body), re.I):
        return body, []
    kept, clauses = [], []
    for item in split_actions(body):
        table_level = parse_table_constraint(item)
        if table_level is not None:
            clauses.append(table_level)
            continue
        masked = _QUOTED.sub(lambda q: "x" * len(q.group(0)), item)
        m = _INLINE.search(masked)
        if m is None:
            kept.append(item)
            continue
        column = re.match(_NAME, item)
        if column is None:
            raise SyntaxError_(f"syntax error at or near {item[:30]!r}")
        name = unquote(item[m.start("name"):m.end("name")]) if m.group("name") else None
        clause, end = _clause(item, m.end() - len("REFERENCES"), name, (unquote(column.group(0)),))
        clauses.append(clause)
        kept.append(item[:m.start()] + " " + item[end:])
    return ", ".join(kept), clauses
