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
    table: pa.Table | None = None
    notices: tuple[str, ...] = ()
    binary: bool = False  # rows go out in binary format (FETCH from a BINARY cursor, simple query)

    @property
    def returns_rows(self) -> bool:
        return self.table is not None


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
