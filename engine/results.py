"""What executing one SQL statement gives back to the front end."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass
class StatementResult:
    """One statement's outcome.

    `table` is None for statements that return no rows (DDL, DML without RETURNING);
    otherwise it carries the rows as Arrow, whose schema decides the wire types.
    `tag` is the Postgres command tag, e.g. "SELECT 3", "INSERT 0 3", "UPDATE 2".
    """

    tag: str
    table: "pa.Table | Rows | None" = None
    notices: tuple[str, ...] = ()
    binary: bool = False  # rows go out in binary format (FETCH from a BINARY cursor, simple query)

    @property
    def returns_rows(self) -> bool:
        return self.table is not None


class Rows:
    """A few rows as Python values (what `to_pylist` gives), typed by an Arrow schema: a
    point lookup's answer, which building as a one-row Arrow table would cost more than the
    lookup. Quacks like the pa.Table a front end reads (num_rows, schema, slice);
    `to_arrow()` for whoever wants the real thing."""

    __slots__ = ("schema", "rows")

    def __init__(self, schema: pa.Schema, rows: list[tuple]):
        self.schema = schema
        self.rows = rows

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    @property
    def num_columns(self) -> int:
        return len(self.schema)

    def slice(self, offset: int = 0, length: int | None = None) -> "Rows":
        end = None if length is None else offset + length
        return Rows(self.schema, self.rows[offset:end])

    def to_arrow(self) -> pa.Table:
        columns = [pa.array([r[i] for r in self.rows], f.type) for i, f in enumerate(self.schema)]
        return pa.Table.from_arrays(columns, schema=self.schema)


def as_arrow(table: "pa.Table | Rows") -> pa.Table:
    """A result's rows as Arrow, whichever form they came in."""
    return table.to_arrow() if isinstance(table, Rows) else table


# Field metadata naming a column's SQL type where its Arrow type alone loses it: DuckDB
# hands UUID and JSON values to Arrow as plain strings.
SQL_TYPE = b"sql_type"
_KEPT_TYPES = frozenset({"UUID", "JSON", "UUID[]", "JSON[]"})


def with_sql_types(table: pa.Table, types) -> pa.Table:
    """`table` with SQL_TYPE metadata on the columns whose DuckDB type Arrow cannot tell."""
    names = [str(t) for t in types]
    if not _KEPT_TYPES.intersection(names):
        return table
    fields = [f.with_metadata({SQL_TYPE: n.encode()}) if n in _KEPT_TYPES else f
              for f, n in zip(table.schema, names)]
    return pa.Table.from_arrays(table.columns, schema=pa.schema(fields))


def schema_with_sql_types(schema: pa.Schema, types) -> pa.Schema:
    return with_sql_types(schema.empty_table(), types).schema
