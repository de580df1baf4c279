"""Parameter casts in an INSERT's VALUES (`$1::BIGINT`, what SQLAlchemy's psycopg dialect and so
pandas send on every parameter), and a reader of such VALUES lists without sqlglot.

A cast keeps the fast INSERT path when the value already has the cast's type and that type is
the column's own (or, for integers, any integer column: the range is checked against both), so
the row types in Python exactly as DuckDB's cast would type it; anything else (a text value cast
to a number, a cast to another family) goes to DuckDB, which converts or words the error.
"""
from __future__ import annotations

import functools
import re
from decimal import Decimal

import pyarrow as pa

# cast name -> (family, integer width)
CASTS: dict[str, tuple[str, int | None]] = {
    "BIGINT": ("int", 64), "INT8": ("int", 64), "INTEGER": ("int", 32), "INT": ("int", 32),
    "INT4": ("int", 32), "SMALLINT": ("int", 16), "INT2": ("int", 16),
    "FLOAT": ("float8", None), "FLOAT8": ("float8", None), "DOUBLE PRECISION": ("float8", None),
    "DOUBLE": ("float8", None), "REAL": ("float4", None), "FLOAT4": ("float4", None),
    "VARCHAR": ("text", None), "TEXT": ("text", None), "CHARACTER VARYING": ("text", None),
    "NUMERIC": ("numeric", None), "DECIMAL": ("numeric", None), "BOOLEAN": ("bool", None),
    "BOOL": ("bool", None), "UUID": ("uuid", None),
}


def cast_of(name: str) -> str | None:
    """The canonical cast name if tierd can check it in Python, else None."""
    key = " ".join(name.upper().split())
    return key if key in CASTS else None


def value_fits(value, cast: str, column_type: pa.DataType, sql_type: str) -> bool:
    """Whether `value` cast to `cast` and stored in the column is `value` itself."""
    if value is None:
        return True
    family, bits = CASTS[cast]
    if family == "int":
        return (type(value) is int and -(1 << (bits - 1)) <= value < (1 << (bits - 1))
                and pa.types.is_integer(column_type))
    if family == "float8":
        return type(value) in (float, int) and pa.types.is_float64(column_type)
    if family == "float4":
        return type(value) in (float, int) and pa.types.is_float32(column_type)
    if family == "text":
        return type(value) is str and pa.types.is_string(column_type) and sql_type.upper() == "VARCHAR"
    if family == "numeric":
        return type(value) in (Decimal, int) and pa.types.is_decimal(column_type)
    if family == "bool":
        return type(value) is bool and pa.types.is_boolean(column_type)
    return sql_type.upper() == "UUID"  # uuid: canonicalised like an uncast value


_HEAD = re.compile(
    r'^\s*INSERT\s+INTO\s+(?:("[^"]+"|[A-Za-z_]\w*)\s*\.\s*)?("[^"]+"|[A-Za-z_]\w*)\s*'
    r'\(((?:\s*(?:"[^"]+"|[A-Za-z_]\w*)\s*,?)+)\)\s*VALUES\s*', re.I | re.S)
_ITEM = re.compile(
    r"\s*(?:\$(?P<p>\d+)(?:\s*::\s*(?P<cast>[A-Za-z_][A-Za-z0-9_]*(?:\s+PRECISION|\s+VARYING)?))?"
    r"|(?P<null>NULL)|(?P<bool>TRUE|FALSE)|(?P<num>-?\d+)|'(?P<str>(?:[^']|'')*)'"
    r"|(?P<now>CURRENT_TIMESTAMP|LOCALTIMESTAMP|now\(\s*\)|transaction_timestamp\(\s*\)))\s*(?P<end>[,)])",
    re.I | re.S)


@functools.lru_cache(maxsize=256)
def values_list(sql: str):
    """(namespace, table, columns, rows, body) of `INSERT INTO t (cols) VALUES (…), (…)` whose items
    are parameters (optionally cast), NULL, booleans, integers, plain strings or the transaction's
    timestamp: each row a tuple of ("p", index), ("pc", (index, cast)), ("c", constant) or
    ("now", None) (CURRENT_TIMESTAMP, LOCALTIMESTAMP, now()). None for anything else (the
    statement is then planned by sqlglot); body: the text from VALUES on, as DuckDB runs it.
    Linear in the text, where sqlglot takes seconds for a 1,000-row list."""
    m = _HEAD.match(sql)
    if m is None:
        return None
    unq = lambda n: n[1:-1] if n.startswith('"') else n.lower()  # noqa: E731
    columns = tuple(unq(c.strip()) for c in m.group(3).split(",") if c.strip())
    body_start = sql.upper().rindex("VALUES", 0, m.end())
    pos, rows, n = m.end(), [], len(sql)
    while True:
        if pos >= n or sql[pos] != "(":
            return None
        pos += 1
        row = []
        while True:
            item = _ITEM.match(sql, pos)
            if item is None:
                return None
            pos = item.end()
            if item.group("p") is not None:
                index = int(item.group("p")) - 1
                cast = item.group("cast")
                if cast is None:
                    row.append(("p", index))
                elif cast_of(cast) is None:
                    return None
                else:
                    row.append(("pc", (index, cast_of(cast))))
            elif item.group("null") is not None:
                row.append(("c", None))
            elif item.group("bool") is not None:
                row.append(("c", item.group("bool").upper() == "TRUE"))
            elif item.group("now") is not None:
                row.append(("now", None))
            elif item.group("num") is not None:
                row.append(("c", int(item.group("num"))))
            else:
                row.append(("c", item.group("str").replace("''", "'")))
            if item.group("end") == ")":
                break
        if len(row) != len(columns):
            return None
        rows.append(tuple(row))
        rest = re.match(r"\s*(,|;?\s*$)\s*", sql[pos:])
        if rest is None:
            return None
        if rest.group(1) != ",":
            break
        pos += rest.end()
    body = sql[body_start:].rstrip().rstrip(";")
    return (unq(m.group(1)) if m.group(1) else None, unq(m.group(2)), columns, tuple(rows), body)
