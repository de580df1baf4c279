"""Batched INSERTs: a pipelined executemany run as one engine call.

Drivers send executemany as Bind/Execute pairs of one prepared INSERT with no Sync between
them. When the engine says the statement is batchable, each Execute is held (its reply kept
in memory, in message order) instead of run, until a message that needs their outcome: a
different statement, Sync, Flush, Describe of a statement, anything outside Parse/Bind/
Describe/Execute. Then the held Executes run as one engine call and their replies are
written; an error answers its row's Execute and what came after is dropped, as Postgres
drops messages after an error until Sync. The Binds that follow a held Execute and repeat
its Bind's frame are read straight off the read buffer, decoded by that Bind's decoders
(`hold_following`); and once 256 are held, they run whenever the server would otherwise wait
for more of them (`run_while_waiting`), so a long executemany is written while it arrives.
`InsertBatching` is mixed into TierdHandler (protocol/connection.py), whose write file it
swaps for a buffer while Executes are held.
"""
from __future__ import annotations

import io
import struct

import pyarrow as pa

from engine import metrics

from . import messages
from .column_names import postgres_schema
from .rows import data_rows, each_data_row, plan_columns, row_description
from .session import ConnectionState, Portal, PreparedStatement

_LENGTH = struct.Struct("!i")
# Held Executes worth one engine call while the rest of their executemany is on its way.
RUN_WHILE_WAITING = 256
NO_ROWS = object()  # PreparedStatement.result_schema of a statement that returns no rows


class PendingBatch:
    """Executes of one batchable INSERT held back until a message that needs their outcome
    (a different statement, Sync, Flush...), then run by one engine call. Their replies wait
    in memory: `segments[i]` is what was written before Execute i's CommandComplete."""

    def __init__(self, state: ConnectionState, sql: str, out):
        self.state, self.sql, self.out = state, sql, out   # out: the real write file
        self.params: list[list] = []
        self.segments: list[bytes] = []
        self.columns: list = []   # per Execute: how its RETURNING rows are encoded (None: no rows)


class BatchFailed(Exception):
    """The held batch a message waited for failed (its error is sent): skip to Sync."""


class InsertBatching:
    """Holding and running the Executes of a pipelined executemany (part of TierdHandler)."""

    batch: PendingBatch | None = None

    def batchable(self, state: ConnectionState, statement: PreparedStatement) -> bool:
        if statement.batchable is None:
            statement.batchable = state.session.batchable(statement.sql)
        return statement.batchable

    def batch_columns(self, state: ConnectionState, portal: Portal) -> list | None:
        """How a batchable portal's rows (INSERT … RETURNING columns) go on the wire, from the
        statement's described schema (asked of the engine once per statement, and planned once
        per result formats and time zone); None: no rows."""
        if portal.columns is None:
            statement = portal.statement
            if statement.result_schema is None:
                if statement.description is None:
                    statement.description = state.session.describe(statement.sql)
                schema = statement.description[1]
                statement.result_schema = NO_ROWS if schema is None else schema
            if statement.result_schema is not NO_ROWS:
                key = (tuple(portal.result_formats), state.timezone)
                columns = statement.batch_columns.get(key)
                if columns is None:
                    columns = statement.batch_columns[key] = plan_columns(
                        postgres_schema(statement.sql, statement.result_schema), *key)
                portal.columns = columns
        return portal.columns

    def hold_execute(self, state: ConnectionState, portal: Portal) -> None:
        """Hold this Execute in the pending batch (started here if it holds another
        statement's): its reply is written when the batch runs."""
        sql = portal.statement.sql
        if self.batch is not None and self.batch.sql != sql:
            self.run_held(state)
        portal.executed = True
        portal.tag = "INSERT 0 1"
        if self.batch is None:
            self.batch = PendingBatch(state, sql, self.wfile)
            self.wfile = io.BytesIO()
        self.batch.params.append(portal.params)
        self.batch.columns.append(self.batch_columns(state, portal))
        self.batch.segments.append(self.wfile.getvalue())
        self.wfile.seek(0)
        self.wfile.truncate()
        if self.rpos < len(self.rbuf) and self.rbuf[self.rpos] == 66 and state.portals.get("") is portal:
            self.hold_following(state, portal)   # a Bind ('B') already follows

    def hold_following(self, state: ConnectionState, portal: Portal) -> None:
        """Hold the rest of an executemany that is already in the read buffer without a
        handler per message: every Bind of the same statement into the unnamed portal that
        repeats this one's frame (statement, formats, value count, result formats), each with
        its Describe of that portal or none, and its Execute. Stops, leaving the rest to the
        message loop, at any other message, one not yet whole, or a value its decoder refuses
        (whose Bind handler then answers with Postgres's error)."""
        if portal.frame is None or portal.decoders is None:
            return
        (oids_, _, zone), decoders = portal.decoders
        if oids_ != portal.statement.bind_oids or zone != state.timezone:
            return   # a Describe retyped the statement, or a SET moved the zone, since that Bind
        head, tail = portal.frame
        buf, pos, end = self.rbuf, self.rpos, len(self.rbuf)
        columns = self.batch.columns[-1]
        bare = messages.BIND_COMPLETE
        described = bare + (messages.NO_DATA if columns is None else row_description(columns))
        params_out, columns_out, segments_out = self.batch.params, self.batch.columns, self.batch.segments
        unpack, tail_size, head_size = _LENGTH.unpack_from, len(tail), len(head)
        describe, execute = messages.DESCRIBE_UNNAMED_PORTAL, messages.EXECUTE_UNNAMED_PORTAL
        params = None
        held = 0
        while pos + 5 <= end and buf[pos] == 66:   # 'B'
            stop = pos + 1 + unpack(buf, pos + 1)[0]
            if stop > end or not buf.startswith(head, pos + 5):
                break
            at = pos + 5 + head_size
            values = []
            try:
                for decode in decoders:
                    (size,) = unpack(buf, at)
                    at += 4
                    if size < 0:
                        values.append(None)
                    elif at + size > stop:
                        raise ValueError("value past its message")
                    else:
                        values.append(decode(buf[at:at + size]))
                        at += size
            except Exception:
                break
            if at + tail_size != stop or not buf.startswith(tail, at):
                break
            segment = bare
            if buf.startswith(describe, stop):
                stop += len(describe)
                segment = described
            if not buf.startswith(execute, stop):
                break
            params = values
            params_out.append(values)
            columns_out.append(columns)
            segments_out.append(segment)
            pos = stop + len(execute)
            held += 1
        if held:
            self.rpos = pos
            state.portals[""] = Portal(portal.statement, params, portal.result_formats, executed=True,
                                       tag="INSERT 0 1", frame=portal.frame, decoders=portal.decoders)
            metrics.inc("tierd_fast_path_total", held, path="bind_run", outcome="used")

    def run_while_waiting(self, state: ConnectionState) -> None:
        """Before waiting for more of a long executemany, run the Executes held so far (as
        Postgres runs each as it comes, still in the one implicit transaction up to Sync), so
        the engine's work overlaps the client's sending rather than following it."""
        if self.batch is not None and len(self.batch.params) >= RUN_WHILE_WAITING:
            self.run_batch()
            if state.skip_until_sync:
                self.flush()   # a row failed: its error goes out now, the rest is skipped to Sync

    def run_held(self, state: ConnectionState) -> None:
        """Run the pending batch before a message that depends on its outcome; raises
        BatchFailed when it failed (that message is then skipped, as after any error)."""
        if self.batch is not None:
            self.run_batch()
            if state.skip_until_sync:
                raise BatchFailed()

    def run_batch(self) -> None:
        """Run the held Executes as one engine call and write the replies in message order;
        an error answers its row's Execute, and what came after it is dropped (skipped until
        Sync, as Postgres does; the engine rolled the implicit transaction back)."""
        batch, self.batch = self.batch, None
        after = self.wfile.getvalue()
        self.wfile = batch.out
        state = batch.state
        state.session.begin_segment()
        results, error = state.session.execute_batch(batch.sql, batch.params)
        rows = _one_row_each(results, batch.columns)
        for i, (segment, result, columns) in enumerate(zip(batch.segments, results, batch.columns)):
            self.write(segment)
            self.send_notices(result.notices)
            if rows is not None:
                self.write(rows[i])
            elif result.table is not None and columns is not None:
                for chunk in data_rows(result.table, columns):
                    self.write(chunk)
            self.write(messages.command_complete(result.tag))
        if error is None:
            self.write(after)
            return
        self.write(batch.segments[len(results)])
        self.send_error(error)
        state.skip_until_sync = True


def _one_row_each(results: list, columns: list) -> list[bytes] | None:
    """The DataRow of each result when every result is one RETURNING row encoded alike (the
    common case of a batch), encoded together; None: encode result by result."""
    if not results or columns[0] is None or any(
            r.table is None or r.table.num_rows != 1 or c != columns[0] for r, c in zip(results, columns)):
        return None
    table = pa.concat_tables([r.table for r in results]).combine_chunks()
    return each_data_row(table.to_batches()[0], columns[0])
