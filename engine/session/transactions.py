"""Transactions of one session: BEGIN / COMMIT / ROLLBACK / savepoints, the write lock a
writing transaction holds (exclusive, or shared with row locks: engine/tiers/write_locks.py),
and how its writes become durable and visible.

A write transaction's batches wait in the session until COMMIT (or, for an implicit one, the
end of its statement or Sync), then go through group commit (engine/storage/group_commit.py):
queued under the write lock, the lock goes to the next writer, and COMMIT returns once a
shared fsync made them durable. Once the transaction reads through DuckDB, its writes also sit
in a DuckDB transaction (so those reads see them), and it commits as one LevelDB batch at
COMMIT.
"""
from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from engine.errors import ActiveSqlTransaction, FeatureNotSupported, NoActiveSqlTransaction, UndefinedObject
from engine.small_arrays import MAX_VALUES, small_array
from engine.tiers import views
from engine.results import StatementResult
from engine.session import transaction_ddl
from engine.session.state import SessionState
from engine.sql.parse import Begin, Commit, Rollback, Savepoint


def begin(s: SessionState, stmt: Begin, params: list) -> StatementResult:
    own_writes_visible(s)
    s.tx.explicit = True
    s.tx.savepoints = []
    return StatementResult("BEGIN")


def commit(s: SessionState, stmt: Commit, params: list) -> StatementResult:
    failed = s.tx.failed
    if failed:
        rollback_write(s)
    else:
        commit_write(s)
    s.tx.explicit = s.tx.failed = False
    s.end_transaction(committed=not failed)
    return StatementResult("ROLLBACK" if failed else "COMMIT")


def rollback(s: SessionState, stmt: Rollback, params: list) -> StatementResult:
    rollback_write(s)
    explicit = s.tx.explicit
    s.tx.explicit = s.tx.failed = False
    if explicit:
        s.end_transaction(committed=False)
    return StatementResult("ROLLBACK")


def savepoint(s: SessionState, stmt: Savepoint, params: list) -> StatementResult:
    """SAVEPOINT, RELEASE and ROLLBACK TO, as far as tierd can honour them: a savepoint
    marks how many writes the transaction has made, and ROLLBACK TO works when none were
    made since (it clears an error, as drivers' probes inside a transaction need); undoing
    writes back to a savepoint is not supported (0A000), the whole transaction can be."""
    tx = s.tx
    if not tx.explicit:
        raise NoActiveSqlTransaction(f"{stmt.verb} can only be used in transaction blocks")
    if stmt.verb == "SAVEPOINT":
        tx.savepoints.append((stmt.name, len(tx.pending), len(tx.ddl_before)))
        return StatementResult("SAVEPOINT")
    at = next((i for i in range(len(tx.savepoints) - 1, -1, -1) if tx.savepoints[i][0] == stmt.name), None)
    if at is None:
        raise UndefinedObject(f'savepoint "{stmt.name}" does not exist')
    if stmt.verb == "RELEASE":
        del tx.savepoints[at:]
        return StatementResult("RELEASE")
    if (len(tx.pending), len(tx.ddl_before)) != tx.savepoints[at][1:] or not _duck_txn_usable(s):
        raise FeatureNotSupported("ROLLBACK TO SAVEPOINT after writes or DDL is not supported by tierd",
                                  hint="ROLLBACK the whole transaction")
    del tx.savepoints[at + 1:]
    tx.failed = False
    return StatementResult("ROLLBACK")


def _duck_txn_usable(s: SessionState) -> bool:
    if not s.tx.in_duck_txn:
        return True
    try:
        s.cur.execute("SELECT 1")
        return True
    except duckdb.Error:
        return False


def statement_failed(s: SessionState) -> None:
    """An error fails an explicit transaction and rolls back an implicit one."""
    if s.tx.explicit:
        s.tx.failed = True
    else:
        rollback_write(s)


def own_writes_visible(s: SessionState) -> None:
    """An implicit transaction's writes wait for Sync outside DuckDB; before anything
    reads, move them into a DuckDB transaction so the segment sees its own writes."""
    tx = s.tx
    if not tx.holds_lock or tx.in_duck_txn or tx.applied:
        return
    begin_write(s)  # the DuckDB snapshot is taken alone: a row-locking transaction upgrades
    s.engine.hot.settle()
    s.cur.execute("BEGIN")
    tx.in_duck_txn = True
    for tid, _first, batch in tx.pending:
        t = s.engine.catalog.by_tid(tid)
        s.cur.register("__batch", batch)
        try:
            s.cur.execute(f"INSERT INTO {views.hot_table(t)} SELECT * FROM __batch")
        finally:
            s.cur.unregister("__batch")


def _holder(s: SessionState) -> str:
    return f'a transaction of role "{s.user}"'


def begin_write(s: SessionState) -> None:
    """Take the write lock exclusive (a transaction holding it shared upgrades, and its writes
    get their _seq numbers now). The transaction's DuckDB snapshot opens only when something
    reads through DuckDB (`own_writes_visible`): while exclusive writers are serialized by this
    lock, a snapshot taken later holds the same committed rows, and key-addressed statements
    and point reads (which read the transaction's own writes first) need none at all."""
    tx = s.tx
    if tx.holds_lock and not tx.shared:
        return
    s.engine.hot.acquire(_holder(s), token=s, waiting=_waiting(s, "relation"))
    if tx.shared:
        _number_writes(s)
        tx.shared = False
    tx.holds_lock = True


def begin_keyed(s: SessionState, tid: int, keys: list) -> None:
    """Before a write addressed by key whose rows are typed without DuckDB: the write lock
    shared, then a row lock on each key (waiting, as PostgreSQL does, for a transaction that
    holds one; engine/tiers/write_locks.py). A transaction already exclusive just goes on."""
    tx, hot = s.tx, s.engine.hot
    if tx.holds_lock and not tx.shared:
        return
    timeout = s.lock_timeout_ms / 1000 if s.lock_timeout_ms else None
    if not tx.holds_lock:
        hot.acquire_shared(_holder(s), s, timeout)
        tx.holds_lock = tx.shared = True
    for k in keys:
        hot.lock_row(s, tid, k, timeout, _waiting(s, "tuple"), lambda: s.cancel_requested)


def _waiting(s: SessionState, event: str):
    """pg_stat_activity's wait event while a lock wait lasts, as PostgreSQL names it: `tuple`
    for a row, `relation` for the write lock held alone."""
    def waiting(on: bool) -> None:
        s.activity.wait_event_type, s.activity.wait_event = ("Lock", event) if on else (None, None)
    return waiting


def allocate(s: SessionState, n: int) -> int:
    """`n` _seq numbers for new row versions of this transaction: the hot tier's under the
    exclusive lock; the transaction's own while it holds the lock shared (`_number_writes`
    turns them into the hot tier's, in commit order)."""
    tx = s.tx
    if not tx.shared:
        return s.engine.hot.allocate(n)
    first = tx.next_seq
    tx.next_seq += n
    return first


def _number_writes(s: SessionState) -> None:
    """Under `commit_lock` or the exclusive lock: the transaction's own _seq numbers become
    the next ones of the hot tier (same order), in its batches and its key states."""
    tx, hot = s.tx, s.engine.hot
    n = tx.next_seq - 1
    tx.next_seq = 1
    if n == 0:
        return
    offset = hot.allocate(n) - 1
    numbered = []
    for tid, first, batch in tx.pending:
        schema = batch.schema
        at = schema.get_field_index("_seq")
        start, n = first + offset, batch.num_rows
        seqs = small_array(list(range(start, start + n)), pa.int64()) if n <= MAX_VALUES else \
            pa.array(np.arange(start, start + n, dtype=np.int64))
        columns = batch.columns
        columns[at] = seqs
        numbered.append((tid, start, pa.Table.from_arrays(columns, schema=schema)))
    tx.pending = numbered
    tx.pending_index = {tid: {k: type(st)(st + offset) for k, st in states.items()}
                        for tid, states in tx.pending_index.items()}


def join_ddl(s: SessionState) -> bool:
    """Called first by a DDL handler: True when the DDL belongs to an explicit transaction
    (engine/session/transaction_ddl.py), which then holds the write lock and applies its
    writes to the hot tables directly from here on."""
    tx = s.tx
    if not tx.explicit:
        return False
    begin_write(s)
    if tx.in_duck_txn:  # the rows written so far become applied rows
        s.cur.execute("COMMIT")
        tx.in_duck_txn = False
        s.engine.cold.shadow(tx.pending_shadow)
    elif not tx.applied:  # written but not read yet: the rows are in no DuckDB table so far
        s.engine.hot.settle()
        for tid, _first, batch in tx.pending:
            s.cur.register("__batch", batch)
            try:
                s.cur.execute(f"INSERT INTO {views.hot_table(s.engine.catalog.by_tid(tid))} SELECT * FROM __batch")
            finally:
                s.cur.unregister("__batch")
    tx.applied = True
    return True


def _release(s: SessionState) -> None:
    s.tx.clear_writes()
    s.engine.hot.release(token=s)


def end_implicit(s: SessionState) -> None:
    """After a write statement: commit it unless a transaction (explicit, or the messages up
    to Sync) goes on."""
    if not s.tx.explicit and not s.tx.segment:
        commit_write(s)


def commit_write(s: SessionState) -> None:
    tx, eng = s.tx, s.engine
    if not tx.holds_lock:
        return
    if tx.applied:
        written = list(tx.pending_index)
        try:
            transaction_ddl.commit(s)
        except BaseException:
            rollback_write(s)
            raise
        finally:
            if tx.holds_lock:
                _release(s)
        eng.tiering.policies.on_commit(written)
        return
    if not tx.in_duck_txn:
        _group_commit(s)
        return
    written = list(tx.pending_index)
    try:
        if tx.pending:  # the queue was drained when this transaction began
            eng.hot.store.commit(tx.pending, eng.hot.seq)
    except BaseException:
        rollback_write(s)
        raise
    try:
        s.cur.execute("COMMIT")
        eng.hot.mark_visible(eng.hot.seq)
        eng.cold.shadow(tx.pending_shadow)
        eng.hot.apply_changes(tx.pending_index)
    finally:
        _release(s)
    if written:
        eng.tiering.policies.on_commit(written)


def _group_commit(s: SessionState) -> None:
    """Autocommit: queue the batches, let the next writer in, and return once they are
    durable (engine/storage/group_commit.py). The key index is updated before the lock goes,
    so the next writer's uniqueness check already sees these keys."""
    tx, hot = s.tx, s.engine.hot
    written = list(tx.pending_index)
    if not tx.pending:
        _release(s)
        return
    if tx.shared:  # numbered now, in queue order, beside other row-locking writers
        with hot.commit_lock:
            _number_writes(s)
            undo = hot.apply_changes(tx.pending_index)
            ticket = hot.commits.enqueue(tx.pending, hot.seq, undo)
    else:
        undo = hot.apply_changes(tx.pending_index)
        ticket = hot.commits.enqueue(tx.pending, hot.seq, undo)
    _release(s)
    hot.commits.wait(ticket)
    s.engine.tiering.policies.on_commit(written)


def rollback_write(s: SessionState) -> None:
    if not s.tx.holds_lock:
        return
    try:
        if s.tx.in_duck_txn:
            s.cur.execute("ROLLBACK")
        elif s.tx.applied:
            transaction_ddl.rollback(s)
    except duckdb.Error:
        pass
    finally:
        s.stages.clear()  # temp tables created inside the transaction are gone
        if s.catalog_dirty:
            s.restore_catalog()
        _release(s)


def begin_ddl(s: SessionState, action: str, at_once_in_transaction: bool = False) -> None:
    """Before DDL that is not transactional (superusers only): it ends an implicit transaction
    and is refused inside an explicit one that has written, unless it takes effect at once
    even there (`at_once_in_transaction`: sequence DDL, which needs no write lock; SQLAlchemy's
    create_all sends CREATE SEQUENCE after CREATE TABLE in one transaction)."""
    s.require_superuser(action)
    if s.tx.holds_lock and not s.tx.explicit:
        commit_write(s)
    if s.tx.holds_lock and not at_once_in_transaction:
        raise ActiveSqlTransaction("DDL inside a transaction that has already written is not supported")
