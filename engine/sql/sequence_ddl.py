"""The grammar of sequences: CREATE / ALTER / DROP SEQUENCE, and the column forms that make
one (SMALLSERIAL / SERIAL / BIGSERIAL, GENERATED ... AS IDENTITY) inside CREATE TABLE.

A serial or identity column is rewritten to its integer type with NOT NULL and the default
`nextval('ns.t_col_seq')` before DuckDB parses the column list, as Postgres does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.catalog.sequences import TYPE_ALIASES, SequenceOptions
from engine.errors import FeatureNotSupported, SyntaxError_
from engine.sql.statements import matching_paren, split_qualified, unquote

_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QNAME = rf"{_NAME}(?:\s*\.\s*{_NAME})?"
_TOKEN = re.compile(rf"\s*(-?\d+|{_NAME}(?:\s*\.\s*{_NAME}){{0,2}})", re.S)


@dataclass(frozen=True)
class CreateSequence:
    name: str  # as written
    if_not_exists: bool
    options: SequenceOptions
    action: str = "CREATE SEQUENCE"


@dataclass(frozen=True)
class AlterSequence:
    name: str
    if_exists: bool
    options: SequenceOptions
    action: str = "ALTER SEQUENCE"


@dataclass(frozen=True)
class DropSequence:
    names: tuple[str, ...]
    if_exists: bool
    cascade: bool
    action: str = "DROP SEQUENCE"


def _options(text: str, what: str, altering: bool = False) -> SequenceOptions:
    """Sequence options (Postgres's order-free list) from `text`."""
    toks = []
    pos = 0
    text = text.strip().rstrip(";").strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SyntaxError_(f"syntax error at or near {text[pos:].split()[0]!r} in {what}")
        toks.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
    o = SequenceOptions()
    i = 0

    def word(k: int) -> str:
        return toks[k].upper() if k < len(toks) else ""

    def number(k: int, name: str) -> int:
        if k >= len(toks) or not toks[k].lstrip("-").isdigit():
            raise SyntaxError_(f"syntax error: {name} needs an integer in {what}")
        return int(toks[k])

    while i < len(toks):
        w = word(i)
        if w == "AS":
            typ = TYPE_ALIASES.get(toks[i + 1].lower() if i + 1 < len(toks) else "")
            if typ is None:
                raise FeatureNotSupported(f"sequence type {toks[i + 1] if i + 1 < len(toks) else ''} is not "
                                          "supported: use smallint, integer or bigint")
            o.data_type, i = typ, i + 2
        elif w == "INCREMENT":
            i += 2 if word(i + 1) == "BY" else 1
            o.increment, i = number(i, "INCREMENT"), i + 1
        elif w in ("MINVALUE", "MAXVALUE"):
            setattr(o, "min_value" if w == "MINVALUE" else "max_value", number(i + 1, w))
            i += 2
        elif w == "NO" and word(i + 1) in ("MINVALUE", "MAXVALUE"):
            setattr(o, "min_value" if word(i + 1) == "MINVALUE" else "max_value", False)
            i += 2
        elif w == "NO" and word(i + 1) == "CYCLE":
            o.cycle, i = False, i + 2
        elif w == "CYCLE":
            o.cycle, i = True, i + 1
        elif w == "START":
            i += 2 if word(i + 1) == "WITH" else 1
            o.start, i = number(i, "START"), i + 1
        elif w == "RESTART" and altering:
            if word(i + 1) == "WITH":
                o.restart, i = number(i + 2, "RESTART"), i + 3
            elif i + 1 < len(toks) and toks[i + 1].lstrip("-").isdigit():
                o.restart, i = int(toks[i + 1]), i + 2
            else:
                o.restart, i = True, i + 1
        elif w == "CACHE":
            o.cache, i = number(i + 1, "CACHE"), i + 2
        elif w == "OWNED" and word(i + 1) == "BY":
            target = toks[i + 2] if i + 2 < len(toks) else ""
            if target.upper() == "NONE":
                o.owned_by = False
            else:
                parts = [unquote(p) for p in re.findall(_NAME, target)]
                if len(parts) < 2:
                    raise SyntaxError_("invalid OWNED BY option: specify OWNED BY table.column or OWNED BY NONE")
                o.owned_by = parts[-3:] if len(parts) == 3 else parts
            i += 3
        elif w == "SEQUENCE" and word(i + 1) == "NAME":
            raise FeatureNotSupported("SEQUENCE NAME in identity options is not supported")
        else:
            raise SyntaxError_(f'syntax error at or near "{toks[i]}" in {what}')
    return o


_CREATE = re.compile(rf"^\s*CREATE\s+(?:(?:TEMP|TEMPORARY|UNLOGGED)\s+)?SEQUENCE\s+(IF\s+NOT\s+EXISTS\s+)?({_QNAME})(.*)$",
                     re.I | re.S)
_ALTER = re.compile(rf"^\s*ALTER\s+SEQUENCE\s+(IF\s+EXISTS\s+)?({_QNAME})(.*)$", re.I | re.S)
_DROP = re.compile(rf"^\s*DROP\s+SEQUENCE\s+(IF\s+EXISTS\s+)?(.+?)(\s+CASCADE|\s+RESTRICT)?\s*;?\s*$", re.I | re.S)


def parse_sequence_command(sql: str) -> CreateSequence | AlterSequence | DropSequence:
    m = _CREATE.match(sql)
    if m:
        return CreateSequence(m.group(2), bool(m.group(1)), _options(m.group(3), "CREATE SEQUENCE"))
    m = _ALTER.match(sql)
    if m:
        rest = m.group(3)
        if re.match(r"\s*(RENAME|OWNER|SET)\b", rest, re.I):
            raise FeatureNotSupported(f"ALTER SEQUENCE ... {rest.split()[0].upper()} is not supported by tierd")
        return AlterSequence(m.group(2), bool(m.group(1)), _options(rest, "ALTER SEQUENCE", altering=True))
    m = _DROP.match(sql)
    if m:
        names = tuple(n.strip() for n in m.group(2).split(","))
        if not all(re.fullmatch(_QNAME, n) for n in names):
            raise SyntaxError_("syntax error in DROP SEQUENCE")
        return DropSequence(names, bool(m.group(1)), (m.group(3) or "").strip().upper() == "CASCADE")
    raise SyntaxError_("syntax error in sequence statement")


# --- serial and identity columns in CREATE TABLE --------------------------------------
_SERIAL_TYPES = {"SMALLSERIAL": "smallint", "SERIAL2": "smallint", "SERIAL": "integer", "SERIAL4": "integer",
                 "BIGSERIAL": "bigint", "SERIAL8": "bigint"}
_DUCK_TYPES = {"smallint": "SMALLINT", "integer": "INTEGER", "bigint": "BIGINT"}
_COLUMN = re.compile(rf"^\s*({_NAME})\s+({_NAME})(.*)$", re.S)
_IDENTITY = re.compile(r"\bGENERATED\s+(ALWAYS|BY\s+DEFAULT)\s+AS\s+IDENTITY\b\s*(\()?", re.I | re.S)
_CONSTRAINT_WORDS = {"PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "CONSTRAINT", "EXCLUDE", "LIKE"}


@dataclass
class AutoColumn:
    """A column that draws its values from a sequence created with the table."""
    column: str
    sequence: str  # t_col_seq
    options: SequenceOptions
    identity: str | None  # "ALWAYS" | "BY DEFAULT"; None: serial


@dataclass
class TableBody:
    body: str  # the column list DuckDB parses
    auto: list[AutoColumn] = field(default_factory=list)


def split_top_level(body: str) -> list[str]:
    """The items of a column list, split at top-level commas (quotes and parentheses kept)."""
    items, depth, start, i = [], 0, 0, 0
    while i < len(body):
        c = body[i]
        if c in "'\"":
            j = body.find(c, i + 1)
            while j != -1 and j + 1 < len(body) and body[j + 1] == c:
                j = body.find(c, j + 2)
            i = len(body) if j == -1 else j
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(body[start:i])
            start = i + 1
        i += 1
    items.append(body[start:])
    return items


def rewrite_auto_columns(body: str, namespace: str, table: str) -> TableBody:
    """Serial and identity columns as integer columns defaulting to their sequence's nextval."""
    out = TableBody(body)
    items = split_top_level(body)
    changed = False
    for k, item in enumerate(items):
        m = _COLUMN.match(item)
        if not m or m.group(1).upper() in _CONSTRAINT_WORDS:
            continue
        name, typ, rest = unquote(m.group(1)), m.group(2), m.group(3)
        serial = _SERIAL_TYPES.get(typ.upper())
        ident = _IDENTITY.search(rest)
        if serial is None and ident is None:
            continue
        options = SequenceOptions()
        if ident is not None:
            kind = "ALWAYS" if ident.group(1).upper() == "ALWAYS" else "BY DEFAULT"
            seq_type = TYPE_ALIASES.get(typ.lower())
            if seq_type is None:
                raise SyntaxError_("identity column type must be smallint, integer, or bigint")
            if serial is not None:
                raise SyntaxError_(f'both default and identity specified for column "{name}" of table "{table}"')
            end = ident.end()
            if ident.group(2):
                close = matching_paren(rest, ident.end() - 1, "CREATE TABLE")
                options = _options(rest[ident.end():close], "identity options")
                end = close + 1
            rest = rest[:ident.start()] + " " + rest[end:]
        else:
            kind, seq_type = None, serial
        if re.search(r"\bDEFAULT\b", rest, re.I):
            raise SyntaxError_(f'multiple default values specified for column "{name}" of table "{table}"')
        options.data_type = options.data_type or seq_type
        seq = f"{table}_{name}_seq"
        options.owned_by = [table, name]
        out.auto.append(AutoColumn(name, seq, options, kind))
        default = f"nextval('{namespace}.{seq}')" if re.fullmatch(r"[a-z_][a-z0-9_$]*", namespace + seq) else \
            "nextval('" + ('"' + namespace.replace('"', '""') + '"."' + seq.replace('"', '""') + '"').replace("'", "''") + "')"
        items[k] = f"{m.group(1)} {_DUCK_TYPES[seq_type]} DEFAULT {default} NOT NULL{rest}"
        changed = True
    if changed:
        out.body = ",".join(items)
    return out


_REGCLASS_ARGUMENT = re.compile(r"\b(nextval|currval|setval)\s*\(\s*('(?:[^']|'')*')\s*::\s*regclass\b", re.I)


def without_regclass_casts(sql: str) -> str:
    """`nextval('s'::regclass)` (pg_dump's defaults, psql's display) as `nextval('s')`: the
    sequence functions take the name; DuckDB knows no regclass type in DML and DDL."""
    if "regclass" not in sql.lower():
        return sql
    return _REGCLASS_ARGUMENT.sub(lambda m: f"{m.group(1)}({m.group(2)}", sql)


def sequence_name(qname: str, default_ns: str) -> tuple[str, str]:
    return split_qualified(qname, default_ns)
