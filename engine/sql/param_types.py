"""Types of a statement's `$n` parameters, inferred from the SQL without running it.

Postgres answers Describe of a prepared statement with the type of every parameter, and
drivers (asyncpg, pgjdbc) encode their arguments by that answer. DuckDB does not report
the types it binds parameters to, so they are read off the statement here, the way the
Postgres parser would see them: the column a parameter is compared with, assigned to or
inserted into, the type it is cast to, the other operand of arithmetic, LIMIT/OFFSET.
A parameter with none of these stays None (the caller sends `text`, like Postgres' unknown).
"""
from __future__ import annotations

import re
from typing import Callable

import sqlglot
from sqlglot import exp

from engine.catalog import pg_session

ColumnTypes = Callable[[exp.Table], dict[str, str]]

_OTHER_OPERAND = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ,
                  exp.NullSafeNEQ, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.IntDiv)
_TEXT_OPERAND = (exp.Like, exp.ILike, exp.DPipe, exp.RegexpLike, exp.SimilarTo)
_BOOLEAN_OPERAND = (exp.And, exp.Or, exp.Not)
_ARRAY_CAST = re.compile(r"\$(\d+)\s*::\s*([A-Za-z_][\w ]*?)\s*((?:\[\])+)")


_INTEGER_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*")


def integer_text(text: str) -> int | None:
    """The integer an untyped text parameter names, as Postgres's integer input reads it
    (spaces around, a sign, leading zeros); None when the text is no integer."""
    if not _INTEGER_TEXT.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than Python converts: no column's range holds it
        return None


def infer_param_types(sql: str, count: int, column_types: ColumnTypes) -> list[str | None]:
    """DuckDB type names (or None) of parameters $1..$count of `sql`."""
    from engine.sql.dml import space_params

    found: list[str | None] = [None] * count
    if count == 0:
        return found
    for m in _ARRAY_CAST.finditer(sql):  # `$1::oid[]`: a type name sqlglot does not know
        if 0 < int(m.group(1)) <= count:
            found[int(m.group(1)) - 1] = m.group(2).upper() + m.group(3)
    try:
        tree = sqlglot.parse_one(space_params(sql), read="postgres")
    except sqlglot.errors.SqlglotError:
        return found
    scope = _Scope(tree, column_types)
    for node in tree.find_all(exp.Parameter, exp.Placeholder):
        text = node.sql(dialect="postgres").lstrip("$")
        if not text.isdigit() or not 0 < int(text) <= count:
            continue
        index = int(text) - 1
        if found[index] is None:
            try:
                found[index] = scope.param_type(node)
            except Exception:   # inference is best effort: text is always a valid answer
                found[index] = None
    return found


class _Scope:
    """The tables a statement names, and the types of their columns (looked up lazily)."""

    def __init__(self, tree: exp.Expression, column_types: ColumnTypes):
        self.tree = tree
        self.column_types = column_types
        self.tables: dict[str, exp.Table] = {}
        for table in tree.find_all(exp.Table):
            if table.name:
                self.tables.setdefault((table.alias_or_name or table.name).lower(), table)
        self._cache: dict[int, dict[str, str]] = {}

    def columns(self, table: exp.Table) -> dict[str, str]:
        key = id(table)
        if key not in self._cache:
            try:
                self._cache[key] = {k.lower(): v for k, v in self.column_types(table).items()}
            except Exception:
                self._cache[key] = {}
        return self._cache[key]

    def column_type(self, column: exp.Column) -> str | None:
        name = column.name.lower()
        if column.table:
            table = self.tables.get(column.table.lower())
            return self.columns(table).get(name) if table is not None else None
        matches = {self.columns(t).get(name) for t in self.tables.values()} - {None}
        return matches.pop() if len(matches) == 1 else None

    def type_of(self, node: exp.Expression | None) -> str | None:
        """The type of an operand, where it is evident without DuckDB's binder."""
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Column):
            return self.column_type(node)
        if isinstance(node, exp.Cast):
            return node.to.sql(dialect="duckdb")
        if isinstance(node, exp.Boolean):
            return "BOOLEAN"
        if isinstance(node, exp.Literal):
            if node.is_string:
                return "VARCHAR"
            return "INTEGER" if node.this.lstrip("-").isdigit() else "DECIMAL"
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)):
            return self.type_of(node.this) or self.type_of(node.expression)
        return None

    def param_type(self, node: exp.Expression) -> str | None:
        child, parent = node, node.parent
        while isinstance(parent, exp.Paren):
            child, parent = parent, parent.parent
        if isinstance(parent, exp.Cast):
            return parent.to.sql(dialect="duckdb")
        if isinstance(parent, exp.Any) or (isinstance(parent, exp.Anonymous) and parent.name.upper() == "ALL"):
            compared = parent.parent  # x = ANY($1), x <> ALL($1): an array of x's type
            if isinstance(compared, _OTHER_OPERAND) and compared.expression is parent:
                element = self.type_of(compared.this)
                return element + "[]" if element else None
            return None
        if isinstance(parent, _OTHER_OPERAND):
            other = parent.expression if child is parent.this else parent.this
            return self.type_of(other)
        if isinstance(parent, _TEXT_OPERAND):
            return "VARCHAR"
        if isinstance(parent, _BOOLEAN_OPERAND):
            return "BOOLEAN"
        if isinstance(parent, exp.In):
            if child is parent.this:
                return next(filter(None, map(self.type_of, parent.expressions)), None)
            return self.type_of(parent.this)
        if isinstance(parent, exp.Between):
            if child is parent.this:
                return self.type_of(parent.args.get("low")) or self.type_of(parent.args.get("high"))
            return self.type_of(parent.this)
        if isinstance(parent, (exp.Limit, exp.Offset, exp.Fetch)):
            return "BIGINT"
        if isinstance(parent, exp.Encode):  # PostgreSQL's encode(bytea, format)
            return "BLOB" if child is parent.this else "VARCHAR"
        if isinstance(parent, exp.Decode):  # decode(text, format)
            return "VARCHAR"
        if isinstance(parent, exp.Anonymous):
            args = parent.expressions
            types = pg_session.ARGUMENT_TYPES.get(parent.name.lower(), {}).get(len(args))
            return types[args.index(child)] if types and child in args else None
        if isinstance(parent, exp.Tuple) and isinstance(parent.parent, exp.Values):
            return self._inserted_column_type(parent.expressions.index(child), parent.parent)
        return None

    def _inserted_column_type(self, position: int, values: exp.Values) -> str | None:
        insert = values.parent
        if not isinstance(insert, exp.Insert):
            return None
        target = insert.this
        if isinstance(target, exp.Schema):
            names = [c.name for c in target.expressions]
            table = target.this
        else:
            table, names = target, None
        if not isinstance(table, exp.Table):
            return None
        columns = self.columns(table)
        if names is None:
            names = list(columns)
        return columns.get(names[position].lower()) if position < len(names) else None
