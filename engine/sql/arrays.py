"""PostgreSQL's array text (`{a,"b c",NULL,{1,2}}`) where DuckDB has lists (`['a', 'b c']`).

DuckDB casts only its own `[...]` spelling to a list, so a Postgres array literal is turned
into a DuckDB list literal where the statement names it (`'{1,2}'::int[]`, by pg_compat),
and a parameter sent as array text for an array-typed placeholder (`= ANY($1)` with
psycopg's `list[str]`) into a Python list before DuckDB binds it. The parser is also the
wire's decoder of text-format array parameters.
"""
from __future__ import annotations

import re
from typing import Callable

from engine.errors import InvalidTextRepresentation


def parse(text: str, element: Callable[[str], object] = str) -> list:
    """`{1,"a b",NULL,{2,3}}` -> ['1', 'a b', None, ['2', '3']], `element` decoding each item."""
    text = text.strip()
    if text.startswith("["):                      # explicit bounds: [1:2]={...}
        text = text[text.index("=") + 1:].strip()
    value, end = _parse_list(text, 0, element)
    if text[end:].strip():
        raise InvalidTextRepresentation(f'malformed array literal: "{text}"')
    return value


def _parse_list(text: str, pos: int, element) -> tuple[list, int]:
    if pos >= len(text) or text[pos] != "{":
        raise InvalidTextRepresentation(f'malformed array literal: "{text}"')
    pos += 1
    items: list = []
    while pos < len(text):
        ch = text[pos]
        if ch == "}":
            return items, pos + 1
        if ch in ", \t\n":
            pos += 1
        elif ch == "{":
            item, pos = _parse_list(text, pos, element)
            items.append(item)
        elif ch == '"':
            buf = []
            pos += 1
            while pos < len(text) and text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                buf.append(text[pos])
                pos += 1
            items.append(element("".join(buf)))
            pos += 1
        else:
            start = pos
            while pos < len(text) and text[pos] not in ",}":
                pos += 1
            word = text[start:pos].strip()
            items.append(None if word.upper() == "NULL" else element(word))
    raise InvalidTextRepresentation(f'malformed array literal: "{text}"')


def depth(value: list) -> int:
    """Dimensions of a parsed array (1 for `{1,2}`, 2 for `{{1,2},{3,4}}`)."""
    return 1 + depth(value[0]) if value and isinstance(value[0], list) else 1


def duckdb_list(value: list) -> str:
    """A parsed array as a DuckDB list literal of strings: `['1', NULL, ['2']]` (cast after)."""
    items = []
    for item in value:
        if isinstance(item, list):
            items.append(duckdb_list(item))
        elif item is None:
            items.append("NULL")
        else:
            items.append("'" + item.replace("'", "''") + "'")
    return "[" + ", ".join(items) + "]"


_ELEMENT = {"TINYINT": int, "SMALLINT": int, "INTEGER": int, "BIGINT": int, "HUGEINT": int, "OID": int,
            "INT": int, "INT2": int, "INT4": int, "INT8": int, "DOUBLE": float, "FLOAT": float, "REAL": float,
            "FLOAT4": float, "FLOAT8": float, "BOOLEAN": lambda v: v.lower() in ("t", "true", "1", "on", "yes", "y")}
_ARRAY_TYPE = re.compile(r"^(.*?)((?:\[\])+)$")


def coerce_params(params: list, param_types: list[str | None]) -> list:
    """Parameters sent as array text (`'{a,b}'`, type unknown to the driver) for placeholders
    the statement uses as arrays, as Python lists of the element type."""
    out = list(params)
    for i, (value, typ) in enumerate(zip(params, param_types)):
        if not isinstance(value, str) or not value.lstrip().startswith(("{", "[")) or not typ:
            continue
        m = _ARRAY_TYPE.match(typ.strip().upper())
        if m is None:
            continue
        element = _ELEMENT.get(m.group(1).split("(")[0].strip(), str)
        try:
            out[i] = parse(value, element)
        except (ValueError, IndexError):
            raise InvalidTextRepresentation(f'malformed array literal: "{value}"') from None
    return out
