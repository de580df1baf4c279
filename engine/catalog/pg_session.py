"""The session part of tierd's pg_catalog: `pg_stat_activity`, `pg_locks`, `pg_cursors` and
the macros of the functions that act on sessions (engine/session/functions.py registers what
they call).

Each view is over a private table that a reading session refills just before its query runs.
pg_stat_activity (from the live sessions, engine.activity) hides another role's query, state
and times unless the reader is a superuser, as PostgreSQL does. pg_locks shows the advisory
locks every session holds or waits for (tierd's other locks are not relation locks Postgres
would show). pg_cursors shows the reading session's own cursors (DECLARE), as in PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Iterable

import duckdb
import pyarrow as pa

from engine.catalog.pg_catalog import PG, PRIVATE

PID_VARIABLE = "tierd_pid"  # per DuckDB connection: the session's backend pid
READER_IS_SUPERUSER = "tierd_reader_superuser"  # set by the session that refills the table
ACTIVITY_TABLE = f"{PRIVATE}.activity"
LOCKS_TABLE = f"{PRIVATE}.locks"
CURSORS_TABLE = f"{PRIVATE}.cursors"
_CALLER = f"getvariable('{PID_VARIABLE}')"
_XACT = f"timezone('UTC', make_timestamp(__tierd_xact_start({_CALLER})))"  # NULL without a session

_ADVISORY = {  # PostgreSQL name -> (operation, shared, xact)
    "pg_advisory_lock": ("lock", False, False),
    "pg_advisory_lock_shared": ("lock", True, False),
    "pg_advisory_xact_lock": ("lock", False, True),
    "pg_advisory_xact_lock_shared": ("lock", True, True),
    "pg_try_advisory_lock": ("try", False, False),
    "pg_try_advisory_lock_shared": ("try", True, False),
    "pg_try_advisory_xact_lock": ("try", False, True),
    "pg_try_advisory_xact_lock_shared": ("try", True, True),
    "pg_advisory_unlock": ("unlock", False, False),
    "pg_advisory_unlock_shared": ("unlock", True, False),
}

MACROS: dict[str, str] = {
    "pg_backend_pid": f"() AS {_CALLER}::INTEGER",
    "pg_cancel_backend": f"(p) AS __tierd_signal({_CALLER}, 'cancel', p::BIGINT)",
    "pg_terminate_backend": (f"(p) AS __tierd_signal({_CALLER}, 'terminate', p::BIGINT), "
                             f"(p, t) AS __tierd_signal({_CALLER}, 'terminate', p::BIGINT)"),
    "pg_notify": f"(c, m) AS __tierd_notify({_CALLER}, c::VARCHAR, coalesce(m::VARCHAR, ''))",
    "pg_advisory_unlock_all": f"() AS __tierd_advisory({_CALLER}, 'unlock_all', false, false, 'bigint', 0, 0)",
    # a set-returning function in a select list, as in PostgreSQL (TABLE_MACROS: in FROM)
    "pg_listening_channels": f"() AS unnest(__tierd_listening({_CALLER}))",
    # PostgreSQL's clocks: the session's transaction start (engine/session/functions.py);
    # DuckDB's own on engine cursors, which have no session
    "now": f"() AS coalesce({_XACT}, system.main.now())",
    "get_current_timestamp": f"() AS coalesce({_XACT}, system.main.get_current_timestamp())",  # CURRENT_TIMESTAMP
    "transaction_timestamp": f"() AS coalesce({_XACT}, system.main.transaction_timestamp())",
    "current_localtimestamp": f"() AS coalesce(CAST({_XACT} AS TIMESTAMP), system.main.current_localtimestamp())",
    "current_date": f"() AS coalesce(CAST({_XACT} AS DATE), system.main.current_date())",
    "statement_timestamp": (f"() AS greatest(now(), coalesce(timezone('UTC', make_timestamp("
                            f"__tierd_statement_start({_CALLER}))), system.main.now()))"),
}
for _name, (_op, _shared, _xact) in _ADVISORY.items():
    _args = f"{_CALLER}, '{_op}', {str(_shared).lower()}, {str(_xact).lower()}"
    MACROS[_name] = (f"(k) AS __tierd_advisory({_args}, 'bigint', k::BIGINT, 0), "
                     f"(k1, k2) AS __tierd_advisory({_args}, 'int4', k1::INTEGER, k2::INTEGER)")
TABLE_MACROS = {
    "pg_listening_channels": f"() AS TABLE SELECT unnest(__tierd_listening({_CALLER})) AS pg_listening_channels",
}

# Parameter types of the functions (Describe reports them: asyncpg encodes by them), by
# argument count.
ARGUMENT_TYPES: dict[str, dict[int, list[str]]] = {
    name: {1: ["BIGINT"], 2: ["INTEGER", "INTEGER"]} for name in _ADVISORY}
ARGUMENT_TYPES.update({
    "pg_cancel_backend": {1: ["INTEGER"]},
    "pg_terminate_backend": {1: ["INTEGER"], 2: ["INTEGER", "BIGINT"]},
    "pg_notify": {2: ["VARCHAR", "VARCHAR"]},
})

_OWN = f"(usename = getvariable('tierd_user') OR coalesce(getvariable('{READER_IS_SUPERUSER}'), false))"
_PRIVATE_COLUMNS = {"client_addr", "client_port", "xact_start", "query_start", "state_change", "wait_event_type",
                    "wait_event", "state"}
NAMES = frozenset(MACROS) | frozenset(TABLE_MACROS) | {"pg_stat_activity", "pg_locks", "pg_cursors"}

# pg_locks' and pg_cursors' columns (PostgreSQL 15), oids as BIGINT as elsewhere in tierd's catalog
LOCKS_SCHEMA = pa.schema([
    ("locktype", pa.string()), ("database", pa.int64()), ("relation", pa.int64()), ("page", pa.int32()),
    ("tuple", pa.int16()), ("virtualxid", pa.string()), ("transactionid", pa.int64()), ("classid", pa.int64()),
    ("objid", pa.int64()), ("objsubid", pa.int16()), ("virtualtransaction", pa.string()), ("pid", pa.int32()),
    ("mode", pa.string()), ("granted", pa.bool_()), ("fastpath", pa.bool_()),
    ("waitstart", pa.timestamp("us", tz="UTC"))])
CURSORS_SCHEMA = pa.schema([
    ("name", pa.string()), ("statement", pa.string()), ("is_holdable", pa.bool_()), ("is_binary", pa.bool_()),
    ("is_scrollable", pa.bool_()), ("creation_time", pa.timestamp("us", tz="UTC"))])
_CURSORS_ROWS = pa.schema([("__pid", pa.int32())] + list(CURSORS_SCHEMA))  # the table: pg_cursors per session


def install(db: duckdb.DuckDBPyConnection, schema: pa.Schema) -> None:
    """The macros, the session tables (activity: columns of `schema`) and their views."""
    for name, body in MACROS.items():
        db.execute(f"CREATE OR REPLACE MACRO {PG}.{name}{body}")
    for name, body in TABLE_MACROS.items():
        db.execute(f"CREATE OR REPLACE MACRO {PG}.{name}{body}")
    _create_table(db, ACTIVITY_TABLE, schema)
    columns = []
    for name in schema.names:
        if name == "query":
            columns.append(f"CASE WHEN {_OWN} THEN query ELSE '<insufficient privilege>' END AS query")
        elif name in _PRIVATE_COLUMNS:
            columns.append(f"CASE WHEN {_OWN} THEN {name} END AS {name}")
        else:
            columns.append(name)
    db.execute(f"CREATE OR REPLACE VIEW {PG}.pg_stat_activity AS SELECT {', '.join(columns)} FROM {ACTIVITY_TABLE}")
    _create_table(db, LOCKS_TABLE, LOCKS_SCHEMA)
    db.execute(f"CREATE OR REPLACE VIEW {PG}.pg_locks AS SELECT * FROM {LOCKS_TABLE}")
    _create_table(db, CURSORS_TABLE, _CURSORS_ROWS)
    db.execute(f"CREATE OR REPLACE VIEW {PG}.pg_cursors AS SELECT {', '.join(CURSORS_SCHEMA.names)} "
               f"FROM {CURSORS_TABLE} WHERE __pid = {_CALLER}")


def _create_table(db: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema) -> None:
    db.register("__shape", schema.empty_table())
    try:
        db.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM __shape")
    finally:
        db.unregister("__shape")


def refill_locks(cur: duckdb.DuckDBPyConnection, advisory: list[tuple], database_oid: int) -> None:
    """Replace pg_locks' rows (one transaction: readers see the old or the new set) with the
    advisory locks [(pid, key, shared, granted, wait start)], numbered as PostgreSQL shows
    them: a bigint key split into classid (high half) and objid (low half), objsubid 1; two
    int4 keys as classid and objid, objsubid 2."""
    rows = []
    for pid, key, shared, granted, since in advisory:
        if key[0] == "bigint":
            classid, objid, sub = (key[1] >> 32) & 0xFFFFFFFF, key[1] & 0xFFFFFFFF, 1
        else:
            classid, objid, sub = key[1] & 0xFFFFFFFF, key[2] & 0xFFFFFFFF, 2
        rows.append({"locktype": "advisory", "database": database_oid, "classid": classid, "objid": objid,
                     "objsubid": sub, "virtualtransaction": f"{pid}/1", "pid": pid,
                     "mode": "ShareLock" if shared else "ExclusiveLock", "granted": granted, "fastpath": False,
                     "waitstart": None if since is None else int(since * 1_000_000)})
    _replace(cur, LOCKS_TABLE, pa.Table.from_pylist(rows, schema=LOCKS_SCHEMA), "true")


def refill_cursors(cur: duckdb.DuckDBPyConnection, pid: int, cursors: Iterable, live_pids: list[int]) -> None:
    """Replace the reading session's pg_cursors rows with its open `cursors`
    (engine/session/cursors.py's, which scan forward only), dropping those of ended sessions."""
    rows = [{"__pid": pid, "name": c.name, "statement": c.statement, "is_holdable": c.hold, "is_binary": c.binary,
             "is_scrollable": False, "creation_time": int(c.created * 1_000_000)} for c in cursors]
    table = pa.Table.from_pylist(rows, schema=_CURSORS_ROWS)
    pids = ", ".join(str(p) for p in [pid, *live_pids])
    _replace(cur, CURSORS_TABLE, table, f"__pid = {pid} OR __pid NOT IN ({pids})")


def _replace(cur: duckdb.DuckDBPyConnection, table: str, rows: pa.Table, which: str) -> None:
    cur.register("__session_rows", rows)
    try:
        cur.execute("BEGIN")
        cur.execute(f"DELETE FROM {table} WHERE {which}")
        cur.execute(f"INSERT INTO {table} SELECT * FROM __session_rows")
        cur.execute("COMMIT")
    except BaseException:
        try:
            cur.execute("ROLLBACK")
        except duckdb.Error:
            pass
        raise
    finally:
        cur.unregister("__session_rows")


def refill_activity(cur: duckdb.DuckDBPyConnection, rows: pa.Table, reader_is_superuser: bool) -> None:
    """Replace the activity rows (one transaction: readers see the old or the new set)."""
    cur.execute(f"SET VARIABLE {READER_IS_SUPERUSER} = {'true' if reader_is_superuser else 'false'}")
    _replace(cur, ACTIVITY_TABLE, rows, "true")
