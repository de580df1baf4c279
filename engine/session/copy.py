"""COPY in a session: FROM STDIN typed (DuckDB casts, Postgres text forms), key-checked and
staged in one write transaction, so every row commits together or none does; TO STDOUT as a
query. The statement's grammar is engine/sql/copy.py's, the parsing of its input
engine/sql/copy_input.py's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine import metrics
from engine.catalog import pg_catalog, privileges
from engine.catalog.tables import ROWID, Column, TableDef
from engine.catalog.pg_types import pg_type_name
from engine.errors import (DuplicateColumn, EngineError, InvalidTextRepresentation, NotNullViolation, QueryCanceled,
                           UndefinedColumn, from_duckdb)
from engine.tiers.hot import key_list
from engine.tiers import views
from engine.results import StatementResult, as_arrow
from engine.session.copy_segments import (STREAM_BYTES, FallBack, SegmentCopy, duplicate_at, stream_threshold,
                                          streamable)
from engine.session.keys import alive, hot_state
from engine.session.reads import query, query_batches
from engine.session.state import SessionState
from engine.session.transactions import begin_write, commit_write
from engine.session.writes import append, check_foreign_keys, owned, with_rowids
from engine.sql import dml
from engine.sql.copy import CopyCommand, TargetColumn
from engine.sql.copy_input import RawBlock, shown_value, with_context
from engine.sql.parse import Query


def target(s: SessionState, command: CopyCommand) -> list[TargetColumn]:
    """Check COPY FROM before any data flows: the columns it reads, in input order."""
    t = _copy_into(s, command)
    schema = s.engine.visible_schema(t)
    return [TargetColumn(c.name, schema.field(c.name).type, c.type) for c in target_columns(t, command)]


def _copy_into(s: SessionState, command: CopyCommand) -> TableDef:
    t = s.resolve(dml.Target(command.namespace, command.table, command.table))
    privileges.check_table(s.engine.roles, s.user, t, "INSERT")
    return t


@dataclass
class CopyProgress:
    """A running COPY FROM as pg_stat_progress_copy shows it (input from the client: PIPE).
    bytes_processed counts input bytes (for binary COPY, the decoded rows' size)."""
    pid: int | None
    relid: int
    command: str = "COPY FROM"
    type: str = "PIPE"
    bytes_processed: int = 0
    bytes_total: int = 0  # unknown for input from the client, as in Postgres
    tuples_processed: int = 0
    tuples_excluded: int = 0


def copy_from(s: SessionState, command: CopyCommand, blocks: Iterator[RawBlock]) -> StatementResult:
    """Read and type the data first, without the write lock: a client that stalls midway
    through its COPY holds up no other writer. A small COPY (or one inside a transaction)
    stages its rows and writes them to the hot tier under the lock; a large autocommit one
    goes on into Parquet segments once it has read `[copy] segment_threshold_rows` rows (engine/session/
    copy_segments.py), so its memory stays bounded."""
    t = _copy_into(s, command)
    targets = target_columns(t, command)
    schema = s.engine.visible_schema(t)
    staged: list[tuple[pa.Table, int]] = []
    staged_rows = staged_bytes = 0
    loader: SegmentCopy | None = None
    may_stream = streamable(s, t) and not t.foreign_keys  # a child's rows are checked in the hot tier
    progress = CopyProgress(getattr(s, "pid", None), pg_catalog.relation_oids(t.tid)[0])  # pid: pg_backend_pid()
    s.engine.running_copies[id(s)] = progress
    try:
        try:
            with s.running:
                for block in blocks:
                    if s.cancel_requested:
                        raise QueryCanceled("canceling statement due to user request")
                    # check_cur: a failed cast must not abort this transaction's DuckDB snapshot
                    rows = owned(s, t, typed_rows(s.check_cur, t, schema, targets, block.rows, block.first_line,
                                                  t.name))
                    progress.bytes_processed += block.nbytes or block.rows.nbytes
                    progress.tuples_processed += rows.num_rows  # read and typed: Postgres counts them so
                    if loader is not None:
                        try:
                            loader.add(rows, block.first_line)
                        except FallBack:
                            staged, loader, may_stream = _fall_back(loader)
                        continue
                    staged.append((rows, block.first_line))
                    staged_rows += rows.num_rows
                    staged_bytes += rows.nbytes
                    if may_stream and (staged_rows >= stream_threshold(s) or staged_bytes >= STREAM_BYTES):
                        loader = SegmentCopy(s, t)
                        try:
                            for rows, first_line in staged:
                                loader.add(rows, first_line)
                            staged = []
                        except FallBack:
                            staged, loader, may_stream = _fall_back(loader)
                if loader is not None:
                    try:
                        count = loader.finish()
                        metrics.inc("tierd_fast_path_total", path="copy_segments", outcome="used")
                        commit_write(s)  # nothing hot to commit: lets the write lock go
                        return StatementResult(f"COPY {count}")
                    except FallBack:  # holding the write lock now
                        staged, loader, may_stream = _fall_back(loader)
        except BaseException:
            if loader is not None:
                loader.abort()
            raise
        count = _to_hot(s, t, staged)
    finally:
        s.engine.running_copies.pop(id(s), None)
    if not s.tx.explicit:
        commit_write(s)
    return StatementResult(f"COPY {count}")


def _fall_back(loader: SegmentCopy) -> tuple[list[tuple[pa.Table, int]], None, bool]:
    metrics.inc("tierd_fast_path_total", path="copy_segments", outcome="fallback")
    return loader.give_back(), None, False


def _to_hot(s: SessionState, t: TableDef, staged: list[tuple[pa.Table, int]]) -> int:
    """Under the write lock: the staged rows key-checked and written to the hot tier."""
    begin_write(s)
    mark = len(s.tx.pending)
    count = 0
    with s.running:
        for rows, first_line in staged:
            keys = _check_keys(s, t, rows, first_line) if t.primary_key else None
            if ROWID not in rows.column_names:  # rows given back by a streamed COPY have theirs
                rows = with_rowids(s, t, rows)
            append(s, t, rows, deleted=False, keys=keys)
            count += rows.num_rows
        check_foreign_keys(s, t, mark)
    return count


def _check_keys(s: SessionState, t: TableDef, rows: pa.Table, first_line: int) -> list:
    """The write path's uniqueness check without a Python call per row; returns the keys."""
    keys = key_list(t, rows)
    if len(t.primary_key) == 1:
        repeated = len(pc.unique(rows.column(t.primary_key[0]))) != len(keys)
    else:
        repeated = len(set(keys)) != len(keys)
    if repeated:
        seen: set = set()
        for i, k in enumerate(keys):
            if k in seen:
                _duplicate(t, k, first_line + i)
            seen.add(k)
    unknown = keys
    pending, hot = s.tx.pending_index.get(t.tid, {}), s.engine.hot.index[t.tid]
    if pending or hot:
        known = [k for k in keys if k in pending or k in hot]
        expired = s.engine.hot.expired_seq(t)
        for k in known:
            if alive(hot_state(s, t, k), expired):
                _duplicate(t, k, first_line + keys.index(k))
        if known:
            known_set = set(known)
            unknown = [k for k in keys if k not in known_set]
    live = s.engine.cold.live_keys(s.check_cur, t, unknown)
    if live:
        i = next(i for i, k in enumerate(keys) if k in live)
        _duplicate(t, keys[i], first_line + i)
    return keys


def _duplicate(t: TableDef, key, line: int) -> None:
    raise duplicate_at(t, key, line)


def copy_to(s: SessionState, command: CopyCommand,
            emit: Callable[[pa.Table], None] | None = None) -> StatementResult:
    """COPY ... TO STDOUT: the rows to send (the front end encodes them); tag `COPY n`.
    With `emit`, the rows go to it a batch at a time as they are read (the result is never
    whole in memory) and the result carries no table."""
    if command.query is not None:
        sql = command.query
    else:
        t = s.resolve(dml.Target(command.namespace, command.table, command.table))
        cols = ", ".join(views.q(c.name) for c in target_columns(t, command))
        sql = f"SELECT {cols} FROM {views.q(t.namespace)}.{views.q(t.name)}"
    if emit is not None:
        return StatementResult(f"COPY {query_batches(s, sql, emit)}")
    table = as_arrow(query(s, Query(sql), []).table)  # a point lookup answers as Rows
    return StatementResult(f"COPY {table.num_rows}", table)


# ---------------------------------------------------------------------------------- typing
def target_columns(t: TableDef, cmd: CopyCommand) -> list[Column]:
    """The table columns COPY reads into, in input order (all of them by default)."""
    if not cmd.columns:
        return list(t.columns)
    by_name = {c.name: c for c in t.columns}
    seen: set[str] = set()
    out = []
    for name in cmd.columns:
        if name not in by_name:
            raise UndefinedColumn(f'column "{name}" of relation "{t.name}" does not exist')
        if name in seen:
            raise DuplicateColumn(f'column "{name}" specified more than once')
        seen.add(name)
        out.append(by_name[name])
    return out


def _cast(src: str, column: Column, raw_type: pa.DataType) -> str:
    """DuckDB expression turning raw input `src` into the column's type, reading the text
    forms Postgres writes where DuckDB's own cast differs (bytea hex, {a,b} arrays, on/off)."""
    typ = column.type
    if not (pa.types.is_string(raw_type) or pa.types.is_large_string(raw_type)):
        return f"CAST({src} AS {typ})"
    upper = typ.upper()
    if upper in ("BLOB", "BYTEA"):
        return f"CASE WHEN starts_with({src}, '\\x') THEN unhex({src}[3:]) ELSE CAST({src} AS BLOB) END"
    if upper.endswith("[]"):
        return f"CAST(CASE WHEN {src} LIKE '{{%}}' THEN '[' || {src}[2:-2] || ']' ELSE {src} END AS {typ})"
    if upper == "BOOLEAN":
        return (f"CASE lower(trim({src})) WHEN 'on' THEN true WHEN 'off' THEN false "
                f"ELSE CAST({src} AS BOOLEAN) END")
    return f"CAST({src} AS {typ})"


def typed_rows(cur: duckdb.DuckDBPyConnection, t: TableDef, schema: pa.Schema, targets: list[Column],
               raw: pa.Table, first_line: int, label: str) -> pa.Table:
    """`raw` (one column per target) as rows of the table's visible schema: values cast,
    columns COPY does not name filled with their defaults, NOT NULL enforced."""
    position = {c.name: i for i, c in enumerate(targets)}
    exprs = []
    direct: dict[str, pa.Array] = {}
    for c in t.columns:
        i = position.get(c.name)
        if i is not None:
            converted = _direct(raw.column(i), c, schema.field(c.name).type)
            if converted is not None:
                direct[c.name] = converted
                continue
            exprs.append(f"{_cast(f'c{i}', c, raw.schema.field(i).type)} AS {views.q(c.name)}")
        else:
            exprs.append(f"CAST({c.default if c.default is not None else 'NULL'} AS {c.type}) AS {views.q(c.name)}")
    if exprs:
        cur.register("__copy_raw", raw)
        try:
            try:
                cast = cur.execute(f"SELECT {', '.join(exprs)} FROM __copy_raw").to_arrow_table()
            except duckdb.Error as exc:
                raise _locate_bad_value(cur, targets, raw, first_line, label) or from_duckdb(exc) from None
        finally:
            cur.unregister("__copy_raw")
    out = pa.table([direct[c.name] if c.name in direct else cast.column(c.name) for c in t.columns],
                   names=[c.name for c in t.columns]) if direct else cast
    if out.schema != schema:
        out = out.cast(schema)
    for c, col in zip(t.columns, out.columns):
        if not c.nullable and col.null_count:
            line = first_line + pc.index(pc.is_null(col), True).as_py()
            raise with_context(NotNullViolation(
                f'null value in column "{c.name}" of relation "{t.name}" violates not-null constraint'),
                f"COPY {label}, line {line}")
    return out


# DuckDB types whose text forms pyarrow's cast reads exactly as DuckDB does, for the values it
# accepts (plain decimal numbers, ISO timestamps without a zone); a column with any other
# value (spaces, Infinity spelled otherwise, a zone, an overflow) is cast by DuckDB instead.
_DIRECT_TYPES = {"BIGINT", "INTEGER", "SMALLINT", "DOUBLE", "FLOAT", "TIMESTAMP", "VARCHAR"}


def _direct(col: pa.ChunkedArray, c: Column, typ: pa.DataType) -> pa.ChunkedArray | None:
    """Column `col` of text converted to `typ` by pyarrow (~10× cheaper than a DuckDB cast),
    or None when DuckDB must cast it."""
    if c.type.upper() not in _DIRECT_TYPES or not pa.types.is_string(col.type):
        return None
    if pa.types.is_string(typ):
        return col
    if not (pa.types.is_signed_integer(typ) or pa.types.is_floating(typ)
            or (pa.types.is_timestamp(typ) and typ.tz is None)):
        return None
    try:
        return pc.cast(col, typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _locate_bad_value(cur, targets: list[Column], raw: pa.Table, first_line: int,
                      label: str) -> EngineError | None:
    """After a failed cast: the first input value that does not convert, as Postgres reports it."""
    best = None
    for i, c in enumerate(targets):
        src = f"c{i}"
        expr = _cast(src, c, raw.schema.field(i).type).replace("CAST(", "TRY_CAST(")
        converted = cur.execute(f"SELECT {expr} FROM __copy_raw").to_arrow_table().column(0)
        bad = pc.and_(pc.is_null(converted), pc.is_valid(raw.column(i)))
        n = pc.index(bad, True).as_py()
        if n >= 0 and (best is None or n < best[0]):
            best = (n, c, raw.column(i)[n].as_py())
    if best is None:
        return None
    n, c, value = best
    shown = shown_value(value if isinstance(value, str) else str(value))
    err = InvalidTextRepresentation(f'invalid input syntax for type {pg_type_name(c.type)}: "{shown}"')
    return with_context(err, f'COPY {label}, line {first_line + n}, column {c.name}: "{shown}"')


