"""SQL cursors: DECLARE ... CURSOR FOR query, FETCH, MOVE, CLOSE (psycopg's named cursors).

A cursor's query runs on a DuckDB connection of its own, as a stream: FETCH n reads record
batches until it has n rows and keeps the rest for the next FETCH, so a result of any size
passes through with memory for one batch, never the whole result. A cursor WITHOUT HOLD
(the default) lives until its transaction ends and can only be declared inside one; WITH
HOLD outlives it, until CLOSE or the end of the session. Cursors scan forward only (NO
SCROLL); the query sees the data committed when it was declared.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from engine.errors import DuplicateCursor, InvalidCursorName, NoActiveSqlTransaction
from engine.results import StatementResult, schema_with_sql_types
from engine.session import reads
from engine.session.state import SessionState
from engine.sql.parse import CloseCursor, DeclareCursor, FetchCursor

BATCH_ROWS = 8192  # rows DuckDB hands over per record batch


@dataclass
class Cursor:
    name: str
    statement: str
    hold: bool
    binary: bool
    con: duckdb.DuckDBPyConnection
    reader: pa.RecordBatchReader
    schema: pa.Schema                    # with SQL type metadata (uuid, json)
    reading: contextlib.ExitStack        # the cold files it reads outlive a compaction until CLOSE
    created: float = field(default_factory=time.time)
    left: pa.RecordBatch | None = None   # rows of the last batch not fetched yet
    done: bool = False

    def take(self, count: int | None) -> list[pa.RecordBatch]:
        """Up to `count` rows (None: all that remain), in order."""
        out: list[pa.RecordBatch] = []
        want = count
        while want is None or want > 0:
            batch = self.left
            self.left = None
            if batch is None:
                if self.done:
                    break
                try:
                    batch = self.reader.read_next_batch()
                except StopIteration:
                    self.done = True
                    break
            if want is not None and batch.num_rows > want:
                out.append(batch.slice(0, want))
                self.left = batch.slice(want)
                break
            out.append(batch)
            if want is not None:
                want -= batch.num_rows
        return out

    def close(self) -> None:
        try:
            self.con.close()
        except duckdb.Error:
            pass
        finally:
            self.reading.close()


def declare(s: SessionState, stmt: DeclareCursor, params: list) -> StatementResult:
    if not stmt.hold and not s.tx.explicit:
        raise NoActiveSqlTransaction("DECLARE CURSOR can only be used in transaction blocks")
    if stmt.name in s.cursors:
        raise DuplicateCursor(f'cursor "{stmt.name}" already exists')
    sql, hidden = reads.checked_read_sql(s, stmt.query)
    s.check_user_scope()
    s.engine.hot.materialize()
    with contextlib.ExitStack() as undo:   # on failure: the connection closed, the files let go
        reading = contextlib.ExitStack()
        reading.enter_context(s.engine.reaper.reading())
        undo.callback(reading.close)
        con = s.reader_connection(hidden)
        undo.callback(con.close)
        with s.running:
            s.fetching = con   # DuckDB runs the query up to its first rows here: cancellable
            try:
                con.execute(sql, params or None)
                types = [d[1] for d in con.description]
                reader = con.to_arrow_reader(BATCH_ROWS)
            finally:
                s.fetching = None
        undo.pop_all()
    schema = schema_with_sql_types(reader.schema, types)
    s.cursors[stmt.name] = Cursor(stmt.name, stmt.text or stmt.query, stmt.hold, stmt.binary, con, reader, schema, reading)
    return StatementResult("DECLARE CURSOR")


def _cursor(s: SessionState, name: str) -> Cursor:
    cursor = s.cursors.get(name)
    if cursor is None:
        raise InvalidCursorName(f'cursor "{name}" does not exist')
    return cursor


def fetch(s: SessionState, stmt: FetchCursor, params: list) -> StatementResult:
    cursor = _cursor(s, stmt.name)
    with s.running:
        s.fetching = cursor.con   # a cancel or statement_timeout interrupts the stream too
        try:
            batches = cursor.take(stmt.count)
        finally:
            s.fetching = None
    rows = sum(b.num_rows for b in batches)
    if stmt.move:
        return StatementResult(f"MOVE {rows}")
    table = pa.Table.from_batches(batches, schema=cursor.reader.schema)
    table = pa.Table.from_arrays(table.columns, schema=cursor.schema)
    return StatementResult(f"FETCH {rows}", table, binary=cursor.binary)


def close(s: SessionState, stmt: CloseCursor, params: list) -> StatementResult:
    if stmt.name is None:
        close_all(s)
    else:
        _cursor(s, stmt.name).close()
        del s.cursors[stmt.name]
    return StatementResult("CLOSE CURSOR")


def close_all(s: SessionState, keep_holdable: bool = False) -> None:
    """CLOSE ALL; at a transaction's end the cursors WITHOUT HOLD (`keep_holdable`)."""
    for name, cursor in list(s.cursors.items()):
        if keep_holdable and cursor.hold:
            continue
        cursor.close()
        del s.cursors[name]


def schema_of(s: SessionState, name: str) -> pa.Schema:
    """Describe of a cursor's portal: the columns its FETCHes return."""
    return _cursor(s, name).schema
