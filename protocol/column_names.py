"""Result column names as Postgres gives them (`count`, `?column?`, `upper`), not DuckDB's.

DuckDB names an unaliased expression by its SQL text (`count_star()`, `(a + 1)`, `1`);
Postgres names it by the function called, the column referenced, the type cast to, or
`?column?`. Clients show these names and ORMs key rows by them. Only statements with a
name that is not a plain identifier are parsed (with sqlglot), once per SQL text; explicit
aliases and plain column references keep DuckDB's name, which already is the Postgres one.
"""
from __future__ import annotations

import functools
import re

import pyarrow as pa
import sqlglot
from sqlglot import exp

from engine.sql.dml import space_params

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CALL = re.compile(r'^"?([A-Za-z_][A-Za-z0-9_]*)"?\(')
UNNAMED = "?column?"

_TYPE_NAMES = {
    exp.DataType.Type.INT: "int4", exp.DataType.Type.BIGINT: "int8",
    exp.DataType.Type.SMALLINT: "int2", exp.DataType.Type.TINYINT: "int2",
    exp.DataType.Type.BOOLEAN: "bool", exp.DataType.Type.FLOAT: "float4",
    exp.DataType.Type.DOUBLE: "float8", exp.DataType.Type.DECIMAL: "numeric",
    exp.DataType.Type.TEXT: "text", exp.DataType.Type.VARCHAR: "varchar",
    exp.DataType.Type.CHAR: "bpchar", exp.DataType.Type.VARBINARY: "bytea",
    exp.DataType.Type.TIMESTAMPTZ: "timestamptz", exp.DataType.Type.TIMESTAMP: "timestamp",
}
# Calls tierd rewrites for DuckDB (engine/sql/pg_compat.py, functions.py): DuckDB's name is of
# the rewritten call (tierd_to_char, unnest, cast), so the client's function names the column.
_REWRITTEN_CALLS = ((exp.ExplodingGenerateSeries, "generate_series"), (exp.TimeToStr, "to_char"),
                    (exp.StrToTime, "to_timestamp"), (exp.StrToDate, "to_date"), (exp.ToNumber, "to_number"),
                    (exp.Format, "format"))
_KEYWORD_NAMES = ((exp.Count, "count"), (exp.Case, "case"), (exp.If, "case"),
                  (exp.Coalesce, "coalesce"), (exp.Array, "array"), (exp.Exists, "exists"),
                  (exp.Greatest, "greatest"), (exp.Least, "least"), (exp.Boolean, "bool"))


def postgres_schema(sql: str, schema: pa.Schema) -> pa.Schema:
    """`schema` with its fields renamed the way Postgres names the columns of `sql`."""
    names = schema.names
    if all(_PLAIN.match(n) for n in names):
        return schema
    renamed = _names(sql, tuple(names))
    if list(renamed) == names:
        return schema
    return pa.schema([f.with_name(n) for f, n in zip(schema, renamed)])


@functools.lru_cache(maxsize=1024)
def _names(sql: str, names: tuple[str, ...]) -> tuple[str, ...]:
    try:
        tree = sqlglot.parse_one(space_params(sql), read="postgres")
    except sqlglot.errors.SqlglotError:
        return names
    items = _output_items(tree)
    if items is None:
        return names
    stars = [i for i, item in enumerate(items) if item.is_star]
    result = list(names)
    if stars:   # a star expands to an unknown number of columns: align both ends on it
        head, tail = items[:stars[0]], items[stars[-1] + 1:]
        pairs = list(zip(head, range(len(head))))
        pairs += list(zip(tail, range(len(names) - len(tail), len(names))))
    elif len(items) == len(names):
        pairs = list(zip(items, range(len(names))))
    else:
        return names
    for item, position in pairs:
        name = _name_of(item, names[position])
        if name is not None:
            result[position] = name
    return tuple(result)


def _output_items(tree: exp.Expression) -> list[exp.Expression] | None:
    if isinstance(tree, (exp.Insert, exp.Update, exp.Delete)):
        returning = tree.args.get("returning")
        return returning.expressions if returning is not None else None
    while isinstance(tree, exp.SetOperation):
        tree = tree.this
    if isinstance(tree, exp.Subquery):
        tree = tree.unnest()
    return tree.expressions if isinstance(tree, exp.Select) else None


def _name_of(item: exp.Expression, duckdb_name: str) -> str | None:
    """Postgres' name for an output expression (FigureColname); None keeps DuckDB's."""
    while isinstance(item, exp.Paren):
        item = item.this
    if isinstance(item, exp.Alias):
        return None
    if isinstance(item, exp.Column):
        return item.name
    if isinstance(item, (exp.Cast, exp.TryCast)):
        inner = _name_of(item.this, "")
        if inner and inner != UNNAMED:
            return inner
        to = item.to
        if to.this == exp.DataType.Type.ARRAY and to.expressions:
            to = to.expressions[0]  # '{a}'::text[] is named text, as the type's own name
        return _TYPE_NAMES.get(to.this, to.sql(dialect="postgres").lower())
    if isinstance(item, exp.Binary):
        return UNNAMED  # an operator (@>, #>>, ?, ||, ->): tierd may run it as a call
    for kind, name in _REWRITTEN_CALLS:
        if isinstance(item, kind):
            return name
    if isinstance(item, exp.Anonymous):
        return item.name.lower()
    for kind, name in _KEYWORD_NAMES:
        if isinstance(item, kind):
            return name
    if isinstance(item, exp.Func):
        call = _CALL.match(duckdb_name)
        if call:
            return call.group(1).lower()
        if isinstance(item, exp.Anonymous):
            return item.name.lower()
        return item.sql_name().lower()
    return UNNAMED
