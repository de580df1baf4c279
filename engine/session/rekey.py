"""TRUNCATE, and ALTER TABLE ... ADD PRIMARY KEY: statements that change how a table's rows
are stored as a whole.

ADD PRIMARY KEY re-keys a table created without one (rows told apart by a hidden row id):
1. the table is flushed and compacted (each step crash-safe on its own), so every live row is
   in base segments, one version each, and hot holds nothing;
2. under the write lock, with hot still empty, the new key's columns are checked for
   duplicates (23505) and NULLs (23502) over those rows;
3. the catalog records the new key in one synced LevelDB write: the commit point. A crash
   before it leaves the table keyed by row id; after it, rows are keyed by the new key. The
   row id column stays stored, so no segment is rewritten.
"""
from __future__ import annotations

from engine.catalog.tables import OWNER, TableDef
from engine.errors import (FeatureNotSupported, InvalidTableDefinition, NotNullViolation, ObjectInUse,
                           UndefinedColumn, UndefinedTable, UniqueViolation)
from engine.results import StatementResult
from engine.session import foreign_keys
from engine.session.state import SessionState
from engine.session.transactions import begin_ddl
from engine.sql.table_commands import AddPrimaryKey, Truncate
from engine.tiering.truncate import truncate_table
from engine.tiers import views

_ATTEMPTS = 5


def _table(s: SessionState, written: str) -> TableDef:
    ns, name = s.split_name(written)
    t = s.engine.catalog.find(ns, name)
    if t is None:
        raise UndefinedTable(f'relation "{name}" does not exist')
    return t


def _quiet(s: SessionState, t: TableDef):
    """The write lock, held while no flush or compaction of `t` runs (returns the release)."""
    eng = s.engine
    for _ in range(_ATTEMPTS):
        eng.tiering.stop_table_job(t)
        eng.hot.acquire()
        if eng.tiering.jobs.active_job(t.qualified) is None:
            return
        eng.hot.release()
    raise ObjectInUse(f'table "{t.name}" is being flushed or compacted; try again')


def truncate(s: SessionState, stmt: Truncate, params: list) -> StatementResult:
    begin_ddl(s, stmt.action)
    eng = s.engine
    with eng.ddl_lock:
        tables = []
        for written in stmt.names:
            t = _table(s, written)
            if t not in tables:
                tables.append(t)
        tables, notices = foreign_keys.truncated_with(s, tables, stmt.cascade)
        for t in tables:
            _quiet(s, t)
            try:
                truncate_table(eng.admin, eng.hot, eng.cold, eng.reaper, eng.failpoints, t)
            finally:
                eng.hot.release()
            eng.tiering.publish_soon(t)  # the Iceberg table empties too
            if stmt.restart_identity:
                for d in eng.sequences.owned_by(t.namespace, t.name):
                    eng.sequences.save(d, restart=d.start)
    return StatementResult("TRUNCATE TABLE", notices=tuple(notices))


def _rows_settled(s: SessionState, t: TableDef) -> bool:
    """Every row in base segments, one version each; nothing hot."""
    eng = s.engine
    if eng.hot.index.get(t.tid) or eng.hot.queued(t.tid):
        return False
    if eng.admin.execute(f"SELECT count(*) FROM {views.hot_table(t)}").fetchone()[0]:
        return False
    return all(seg.kind == "base" for m in eng.cold.scopes(t).values() for seg in m.segments)


def add_primary_key(s: SessionState, stmt: AddPrimaryKey, params: list) -> StatementResult:
    begin_ddl(s, stmt.action)
    eng = s.engine
    with eng.ddl_lock:
        t = _table(s, stmt.table)
        if t.primary_key:
            raise InvalidTableDefinition(f'multiple primary keys for table "{t.name}" are not allowed')
        if t.is_stream:
            raise FeatureNotSupported("ADD PRIMARY KEY on a STREAM table is not supported")
        for c in stmt.columns:
            if c not in t.column_names:
                raise UndefinedColumn(f'column "{c}" of relation "{t.name}" does not exist')
        cols = list(stmt.columns)
        _check(s, t, cols)  # early, before the work of settling the rows
        for _ in range(_ATTEMPTS):
            if eng.hot.index.get(t.tid):
                eng.tiering.request("flush", t, wait=True)
            if not _rows_settled(s, t):
                eng.tiering.request("compact", t, wait=True)
            _quiet(s, t)
            try:
                if not _rows_settled(s, t):
                    continue
                _check(s, t, cols)
                eng.failpoints.hit("add_primary_key.before_commit")
                t.primary_key = cols
                for c in t.columns:
                    if c.name in cols:
                        c.nullable = False
                eng.catalog.save_table(t)  # the commit point
                eng.failpoints.hit("add_primary_key.after_commit")
                eng.admin.execute(views.full_view_sql(t, t.tid in eng.cold.shadowing))
                eng.hot.index[t.tid] = {}
                s.stages.pop(t.tid, None)
            finally:
                eng.hot.release()
            return StatementResult("ALTER TABLE")
        raise ObjectInUse(f'table "{t.name}" is being written; could not settle its rows for ADD PRIMARY KEY')


def _check(s: SessionState, t: TableDef, cols: list[str]) -> None:
    """Postgres's errors for a primary key over duplicate or NULL values."""
    eng = s.engine
    eng.hot.settle()
    view = views.full_view(t)
    with_user = [OWNER] if t.is_user else []
    key = ", ".join(views.q(c) for c in with_user + cols)
    cur = eng.db.cursor()
    try:
        if t.is_user:  # every user's rows: the key is unique per user
            views.set_session_user(cur, s.user, True)
        for c in cols:
            row = cur.execute(f"SELECT 1 FROM {view} WHERE {views.q(c)} IS NULL LIMIT 1").fetchone()
            if row:
                raise NotNullViolation(f'column "{c}" of relation "{t.name}" contains null values')
        dup = cur.execute(f"SELECT {', '.join(views.q(c) for c in cols)} FROM {view} GROUP BY {key} "
                          f"HAVING count(*) > 1 LIMIT 1").fetchone()
    finally:
        cur.close()
    if dup:
        values = ", ".join("" if v is None else str(v) for v in dup)
        raise UniqueViolation(f'could not create unique index "{t.name}_pkey"',
                              detail=f"Key ({', '.join(cols)})=({values}) is duplicated.")

