"""Batched INSERTs: a pipelined executemany run as one engine call.

Drivers send executemany as Bind/Execute pairs of one prepared INSERT with no Sync between
them. When the engine says the statement is batchable, each Execute is held (its reply kept
in memory, in message order) instead of run, until a message that needs their outcome: a
different statement, Sync, Flush, Describe of a statement, anything outside Parse/Bind/
Describe/Execute. Then the held Executes run as one engine call and their replies are
written; an error answers its row's Execute and what came after is dropped, as Postgres
drops messages after an error until Sync. `InsertBatching` is mixed into TierdHandler
(protocol/connection.py), whose write file it swaps for a buffer while Executes are held.
"""
from __future__ import annotations

import io

from . import messages
from .session import ConnectionState, Portal, PreparedStatement


class PendingBatch:
    """Executes of one batchable INSERT held back until a message that needs their outcome
    (a different statement, Sync, Flush...), then run by one engine call. Their replies wait
    in memory: `segments[i]` is what was written before Execute i's CommandComplete."""

    def __init__(self, state: ConnectionState, sql: str, out):
        self.state, self.sql, self.out = state, sql, out   # out: the real write file
        self.params: list[list] = []
        self.segments: list[bytes] = []


class BatchFailed(Exception):
    """The held batch a message waited for failed (its error is sent): skip to Sync."""


class InsertBatching:
    """Holding and running the Executes of a pipelined executemany (part of TierdHandler)."""

    batch: PendingBatch | None = None

    def batchable(self, state: ConnectionState, statement: PreparedStatement) -> bool:
        if statement.batchable is None:
            statement.batchable = state.session.batchable(statement.sql)
        return statement.batchable

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
        self.batch.segments.append(self.wfile.getvalue())
        self.wfile.seek(0)
        self.wfile.truncate()

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
        for segment, result in zip(batch.segments, results):
            self.write(segment)
            self.send_notices(result.notices)
            self.write(messages.command_complete(result.tag))
        if error is None:
            self.write(after)
            return
        self.write(batch.segments[len(results)])
        self.send_error(error)
        state.skip_until_sync = True
