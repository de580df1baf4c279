"""The session part of tierd's pg_catalog: `pg_stat_activity` and the macros of the functions
that act on sessions (engine/session/functions.py registers what they call).

pg_stat_activity is a view over a private table that each reading session refills from the
live sessions just before its query runs (engine.activity); the view hides another role's
query, state and times unless the reader is a superuser, as PostgreSQL does.
"""
from __future__ import annotations

import duckdb
import pyarrow as pa

from engine.catalog.pg_catalog import PG, PRIVATE

PID_VARIABLE = "tierd_pid"  # per DuckDB connection: the session's backend pid
READER_IS_SUPERUSER = "tierd_reader_superuser"  # set by the session that refills the table
ACTIVITY_TABLE = f"{PRIVATE}.activity"
_CALLER = f"getvariable('{PID_VARIABLE}')"

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
NAMES = frozenset(MACROS) | frozenset(TABLE_MACROS) | {"pg_stat_activity"}


def install(db: duckdb.DuckDBPyConnection, schema: pa.Schema) -> None:
    """The macros, the activity table (columns of `schema`) and the pg_stat_activity view."""
    for name, body in MACROS.items():
        db.execute(f"CREATE OR REPLACE MACRO {PG}.{name}{body}")
    for name, body in TABLE_MACROS.items():
        db.execute(f"CREATE OR REPLACE MACRO {PG}.{name}{body}")
    db.register("__activity_shape", schema.empty_table())
    try:
        db.execute(f"CREATE OR REPLACE TABLE {ACTIVITY_TABLE} AS SELECT * FROM __activity_shape")
    finally:
        db.unregister("__activity_shape")
    columns = []
    for name in schema.names:
        if name == "query":
            columns.append(f"CASE WHEN {_OWN} THEN query ELSE '<insufficient privilege>' END AS query")
        elif name in _PRIVATE_COLUMNS:
            columns.append(f"CASE WHEN {_OWN} THEN {name} END AS {name}")
        else:
            columns.append(name)
    db.execute(f"CREATE OR REPLACE VIEW {PG}.pg_stat_activity AS SELECT {', '.join(columns)} FROM {ACTIVITY_TABLE}")


def refill_activity(cur: duckdb.DuckDBPyConnection, rows: pa.Table, reader_is_superuser: bool) -> None:
    """Replace the activity rows (one transaction: readers see the old or the new set)."""
    cur.execute(f"SET VARIABLE {READER_IS_SUPERUSER} = {'true' if reader_is_superuser else 'false'}")
    cur.register("__activity_rows", rows)
    try:
        cur.execute("BEGIN")
        cur.execute(f"DELETE FROM {ACTIVITY_TABLE}")
        cur.execute(f"INSERT INTO {ACTIVITY_TABLE} SELECT * FROM __activity_rows")
        cur.execute("COMMIT")
    except BaseException:
        try:
            cur.execute("ROLLBACK")
        except duckdb.Error:
            pass
        raise
    finally:
        cur.unregister("__activity_rows")
