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

    @property
    def returns_rows(self) -> bool:
        return self.table is not None
