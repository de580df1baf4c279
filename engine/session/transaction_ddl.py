"""DDL inside an explicit transaction (joined by `transactions.join_ddl`) (BEGIN; DROP TABLE t; CREATE TABLE t ...; INSERT ...;
COMMIT, what pandas' `to_sql(if_exists='replace')` and Alembic migrations send): all of it
happens at COMMIT, or none of it (ROLLBACK, an error, a crash).

How: the transaction holds the write lock from its first DDL on, so no other writer, flush or
compaction changes its tables meanwhile. Table changes take effect in DuckDB at once (one
DuckDB transaction can only write one attached database, and a table spans two), so from the
first DDL the transaction's own rows go straight into the hot tables too ("applied" mode):
other sessions may read them before COMMIT (read uncommitted, for that transaction only).
Nothing reaches LevelDB before COMMIT, which writes the rows, the changed catalog records
and the removal of dropped tables' row batches in one synced WriteBatch; then the dropped
tables' cold files are deleted. A crash before that batch leaves everything as it was, since
start-up rebuilds DuckDB from LevelDB and the manifests. ROLLBACK puts back each changed
table as it was, rebuilt the same way, and removes the transaction's rows from the others.
"""
from __future__ import annotations

import logging

from engine.catalog.tables import TableDef
from engine.session.state import SessionState
from engine.tiers import views

log = logging.getLogger("tierd.transactions")


def changing(s: SessionState, before: TableDef | None, tid: int | None = None) -> None:
    """Before a transaction's DDL changes a table: remember it as it was (None: created by
    this transaction, `tid` then names it) for ROLLBACK, once per table."""
    key = before.tid if before is not None else tid
    s.tx.ddl_before.setdefault(key, before)


def commit(s: SessionState) -> None:
    """COMMIT of a transaction with DDL: one WriteBatch, then the dropped tables' files."""
    eng, tx = s.engine, s.tx
    catalog, hot = eng.catalog, eng.hot
    dropped = [t for tid, t in tx.ddl_before.items() if catalog.by_tid(tid) is None and t is not None]
    gone = set(tx.ddl_before) - {tid for tid in tx.ddl_before if catalog.by_tid(tid) is not None}
    records: dict[str, dict | None] = {}
    for tid in tx.ddl_before:
        t = catalog.by_tid(tid)
        records[catalog.record_key(tid)] = t.to_json() if t is not None else None
    deletes = [key for t in dropped for key, _ in hot.store.batch_keys(t.tid)]
    batches = [b for b in tx.pending if b[0] not in gone]
    eng.failpoints.hit("commit.before_ddl_batch")
    hot.store.commit(batches, hot.seq, records, deletes)  # the commit point
    eng.failpoints.hit("commit.after_ddl_batch")
    hot.mark_visible(hot.seq)
    hot.apply_changes({tid: idx for tid, idx in tx.pending_index.items() if tid not in gone})
    for tid in gone:
        hot.forget_table(tid)
    for t in dropped:
        try:
            eng.purge_table(t)
        except Exception as exc:  # committed: leftover files are orphans, not a failed COMMIT
            log.warning("COMMIT: files of dropped table '%s' not removed: %s", t.qualified, exc)
    for tid in tx.ddl_before:  # altered tables' Iceberg schemas follow
        t = catalog.by_tid(tid)
        if t is not None:
            eng.tiering.publish_soon(t)


def rollback(s: SessionState) -> None:
    """ROLLBACK of a transaction with DDL: its tables back as LevelDB and the manifests hold
    them, its rows gone from the tables it did not change."""
    eng, tx = s.engine, s.tx
    for tid, before in reversed(list(tx.ddl_before.items())):
        eng.undo_table(eng.catalog.by_tid(tid), before)
        eng.tiering.policies.schema_changed(tid)
    firsts: dict[int, int] = {}
    for tid, first, _ in tx.pending:
        firsts[tid] = min(first, firsts.get(tid, first))
    for tid, first in firsts.items():
        t = eng.catalog.by_tid(tid)
        if t is not None and tid not in tx.ddl_before:
            eng.admin.execute(f"DELETE FROM {views.hot_table(t)} WHERE _seq >= {first}")
