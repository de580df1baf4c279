"""ALTER TABLE's grammar: `ALTER TABLE [IF EXISTS] [ONLY] ns.t action [, action ...]`, and
COMMENT ON TABLE / COLUMN.

Actions are typed here; engine/session/alter.py applies them. Column types, defaults and
USING expressions stay text for DuckDB to parse. A variant tierd does not run answers 0A000
naming the part.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import FeatureNotSupported, SyntaxError_
from engine.sql.foreign_key_ddl import ForeignKeyClause, parse_table_constraint, split_foreign_keys
from engine.sql.statements import split_actions, unquote

_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QNAME = rf"{_NAME}(?:\s*\.\s*{_NAME})?"


@dataclass(frozen=True)
class AddColumn:
    definition: str  # "name type [DEFAULT ...] [NOT NULL]", DuckDB column syntax
    name: str
    if_not_exists: bool


@dataclass(frozen=True)
class DropColumn:
    name: str
    if_exists: bool
    cascade: bool


@dataclass(frozen=True)
class RenameColumn:
    old: str
    new: str


@dataclass(frozen=True)
class RenameTable:
    new: str


@dataclass(frozen=True)
class SetDefault:
    column: str
    default: str | None  # None: DROP DEFAULT


@dataclass(frozen=True)
class SetNotNull:
    column: str
    not_null: bool


@dataclass(frozen=True)
class SetType:
    column: str
    type: str
    using: str | None


@dataclass(frozen=True)
class AddForeignKey:
    clause: ForeignKeyClause


@dataclass(frozen=True)
class DropConstraint:
    name: str
    if_exists: bool
    cascade: bool


AlterAction = (AddColumn | DropColumn | RenameColumn | RenameTable | SetDefault | SetNotNull | SetType | AddForeignKey
               | DropConstraint)


@dataclass(frozen=True)
class AlterTable:
    table: str  # as written (quoting kept)
    if_exists: bool
    actions: tuple[AlterAction, ...]


@dataclass(frozen=True)
class CommentOn:
    """COMMENT ON TABLE ns.t | COLUMN ns.t.c IS '...' | NULL."""
    kind: str  # "TABLE" | "COLUMN"
    target: str  # as written
    text: str | None


_HEAD = re.compile(rf"^\s*ALTER\s+TABLE\s+(?P<if>IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<name>{_QNAME})\s*\*?\s*", re.I | re.S)
_RENAME_TABLE = re.compile(rf"^RENAME\s+TO\s+(?P<new>{_NAME})$", re.I | re.S)
_RENAME_COLUMN = re.compile(rf"^RENAME\s+(?:COLUMN\s+)?(?P<old>{_NAME})\s+TO\s+(?P<new>{_NAME})$", re.I | re.S)
_ADD = re.compile(rf"^ADD\s+(?:COLUMN\s+)?(?P<if>IF\s+NOT\s+EXISTS\s+)?(?P<def>(?P<name>{_NAME})\s+.+)$", re.I | re.S)
_DROP = re.compile(rf"^DROP\s+(?:COLUMN\s+)?(?P<if>IF\s+EXISTS\s+)?(?P<name>{_NAME})(?:\s+(?P<mode>CASCADE|RESTRICT))?$",
                   re.I | re.S)
_ALTER_COLUMN = re.compile(rf"^ALTER\s+(?:COLUMN\s+)?(?P<name>{_NAME})\s+(?P<rest>.+)$", re.I | re.S)
_TYPE = re.compile(r"^(?:SET\s+DATA\s+)?TYPE\s+(?P<type>.+?)(?:\s+COLLATE\s+\S+)?(?:\s+USING\s+(?P<using>.+))?$",
                   re.I | re.S)
_COMMENT = re.compile(rf"^\s*COMMENT\s+ON\s+(?P<kind>TABLE|COLUMN)\s+(?P<target>{_NAME}(?:\s*\.\s*{_NAME}){{0,2}})\s+IS\s+"
                      r"(?P<text>NULL|'(?:[^']|'')*'|E'(?:[^'\\]|\\.|'')*')\s*;?\s*$", re.I | re.S)
# Column constraints ADD COLUMN does not run (the table's primary key is fixed).
_CONSTRAINT_WORDS = re.compile(r"\b(PRIMARY\s+KEY|UNIQUE|REFERENCES|CHECK|GENERATED|COLLATE)\b", re.I)
_ADD_HEAD = re.compile(r"ADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?", re.I)
_DROP_CONSTRAINT = re.compile(rf"^DROP\s+CONSTRAINT\s+(?P<if>IF\s+EXISTS\s+)?(?P<name>{_NAME})(?:\s+(?P<mode>CASCADE|RESTRICT))?$",
                              re.I | re.S)


def parse_alter_table(sql: str) -> AlterTable:
    m = _HEAD.match(sql)
    if not m:
        raise SyntaxError_("syntax error in ALTER TABLE")
    body = sql[m.end():].strip().rstrip(";").strip()
    if not body:
        raise SyntaxError_("syntax error at end of input")
    actions = tuple(x for a in split_actions(body) for x in _with_references(_action(a) if not _inline_reference(a) else None, a))
    if len(actions) > 1 and any(isinstance(a, (RenameColumn, RenameTable)) for a in actions):
        raise SyntaxError_('syntax error at or near ","', hint="RENAME is an ALTER TABLE of its own")
    return AlterTable(m.group("name"), bool(m.group("if")), actions)


def _inline_reference(text: str) -> bool:
    """ADD [COLUMN] ... REFERENCES p: a new column and its foreign key."""
    unquoted = re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", "''", text)
    return bool(_ADD_HEAD.match(text)) and not re.match(r"ADD\s+(CONSTRAINT|FOREIGN)\b", text, re.I) \
        and bool(re.search(r"\bREFERENCES\b", unquoted, re.I))


def _with_references(action: AlterAction | None, text: str) -> tuple[AlterAction, ...]:
    """The action, or for ADD COLUMN ... REFERENCES: the column, then its foreign key."""
    if action is not None:
        return (action,)
    head = _ADD_HEAD.match(text)
    column, clauses = split_foreign_keys(text[head.end():])
    return (_action(head.group(0) + column),) + tuple(AddForeignKey(c) for c in clauses)


def _action(text: str) -> AlterAction:
    words = text.split(None, 2)
    head = " ".join(words[:2]).upper() if words else ""
    if not words:
        raise SyntaxError_('syntax error at or near ","')
    verb = words[0].upper()
    if verb == "RENAME":
        m = _RENAME_TABLE.match(text)
        if m:
            return RenameTable(unquote(m.group("new")))
        m = _RENAME_COLUMN.match(text)
        if m:
            return RenameColumn(unquote(m.group("old")), unquote(m.group("new")))
        if head.startswith("RENAME CONSTRAINT"):
            raise FeatureNotSupported("ALTER TABLE ... RENAME CONSTRAINT is not supported by tierd")
        raise SyntaxError_(f"syntax error in ALTER TABLE at or near {text[:30]!r}")
    if verb == "ADD":
        second = words[1].upper() if len(words) > 1 else ""
        fk = parse_table_constraint(text[3:]) if second in ("CONSTRAINT", "FOREIGN") else None
        if fk is not None:
            return AddForeignKey(fk)
        if second in ("PRIMARY", "CONSTRAINT", "UNIQUE", "CHECK", "FOREIGN", "EXCLUDE"):
            raise FeatureNotSupported(f"ALTER TABLE ... {_words(text, 2)} is not supported by tierd",
                                      hint="tierd tables have one constraint: their primary key.")
        m = _ADD.match(text)
        if not m:
            raise SyntaxError_(f"syntax error in ALTER TABLE at or near {text[:30]!r}")
        constraint = _CONSTRAINT_WORDS.search(m.group("def"))
        if constraint:
            raise FeatureNotSupported(
                f"ALTER TABLE ... ADD COLUMN with {constraint.group(1).upper()} is not supported by tierd")
        return AddColumn(m.group("def"), unquote(m.group("name")), bool(m.group("if")))
    if verb == "DROP":
        second = words[1].upper() if len(words) > 1 else ""
        if second == "CONSTRAINT":
            m = _DROP_CONSTRAINT.match(text)
            if not m:
                raise SyntaxError_(f"syntax error in ALTER TABLE at or near {text[:30]!r}")
            return DropConstraint(unquote(m.group("name")), bool(m.group("if")),
                                  (m.group("mode") or "").upper() == "CASCADE")
        m = _DROP.match(text)
        if not m:
            raise SyntaxError_(f"syntax error in ALTER TABLE at or near {text[:30]!r}")
        return DropColumn(unquote(m.group("name")), bool(m.group("if")), (m.group("mode") or "").upper() == "CASCADE")
    if verb == "ALTER":
        m = _ALTER_COLUMN.match(text)
        if not m or m.group("name").upper() == "CONSTRAINT":
            raise FeatureNotSupported(f"ALTER TABLE ... {_words(text, 2)} is not supported by tierd")
        return _alter_column(unquote(m.group("name")), m.group("rest").strip())
    raise FeatureNotSupported(f"ALTER TABLE ... {_words(text, 2)} is not supported by tierd",
                              hint="tierd runs ADD/DROP/RENAME COLUMN, RENAME TO, ALTER COLUMN "
                                   "SET/DROP DEFAULT, SET/DROP NOT NULL, TYPE and OWNER TO")


def _alter_column(name: str, rest: str) -> AlterAction:
    words = rest.split()
    upper = [w.upper() for w in words]
    if upper[:2] == ["SET", "DEFAULT"]:
        return SetDefault(name, rest.split(None, 2)[2] if len(words) > 2 else _missing("DEFAULT"))
    if upper == ["DROP", "DEFAULT"]:
        return SetDefault(name, None)
    if upper == ["SET", "NOT", "NULL"]:
        return SetNotNull(name, True)
    if upper == ["DROP", "NOT", "NULL"]:
        return SetNotNull(name, False)
    m = _TYPE.match(rest)
    if m:
        return SetType(name, m.group("type").strip(), (m.group("using") or "").strip() or None)
    raise FeatureNotSupported(f"ALTER TABLE ... ALTER COLUMN {' '.join(upper[:3])} is not supported by tierd")


def _missing(what: str) -> str:
    raise SyntaxError_(f"syntax error: {what} needs an expression")


def _words(text: str, n: int) -> str:
    return " ".join(text.split()[:n]).upper()


def parse_comment(sql: str) -> CommentOn:
    m = _COMMENT.match(sql)
    if not m:
        kind = (sql.split() + ["", "", ""])[2].upper()
        if kind not in ("TABLE", "COLUMN"):
            raise FeatureNotSupported(f"COMMENT ON {kind} is not supported by tierd (only TABLE and COLUMN)")
        raise SyntaxError_("syntax error in COMMENT: expected COMMENT ON TABLE|COLUMN name IS 'text' | NULL")
    text = m.group("text")
    if text.upper() == "NULL":
        value = None
    elif text[0] in "Ee":
        value = text[2:-1].replace("''", "'").encode("latin-1", "backslashreplace").decode("unicode_escape")
    else:
        value = text[1:-1].replace("''", "'")
    return CommentOn(m.group("kind").upper(), m.group("target"), value or None)
