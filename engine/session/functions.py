"""PostgreSQL functions that act on sessions, callable anywhere in client SQL:
pg_backend_pid(), pg_cancel_backend(pid), pg_terminate_backend(pid), pg_notify(channel,
payload), pg_listening_channels(), and the advisory lock family (pg_advisory_lock,
pg_try_advisory_lock, pg_advisory_unlock, pg_advisory_unlock_all, the _shared and _xact
variants, with a bigint key or two int4 keys).

They have effects, so they are Python functions DuckDB calls (registered once on the shared
database, never folded as constants), behind macros in tierd's pg_catalog that pass the
calling session's pid (a per-connection DuckDB variable a client cannot set): the Python side
finds the session, checks what it may do and acts. Client SQL cannot name the `__tierd_*`
functions themselves (reads refuse `__tierd`).

The clocks read the session too: `now()`, `CURRENT_TIMESTAMP`, `transaction_timestamp()`,
`LOCALTIMESTAMP` and `CURRENT_DATE` are the transaction's start (BEGIN's, in a transaction
block; DuckDB's own is a transaction of its own per statement until something is written),
`statement_timestamp()` the statement's.
"""
from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from typing import Callable

import duckdb

from engine import activity
from engine.catalog import pg_session
from engine.errors import EngineError, InvalidParameterValue
from engine.notifications import MAX_PAYLOAD

PID_VARIABLE = pg_session.PID_VARIABLE
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _reported(fn: Callable, engine) -> Callable:
    """An EngineError raised inside DuckDB reaches the client as itself (DuckDB would wrap it
    as an "Invalid Input Error"): kept on the calling session, which raises it instead."""
    @functools.wraps(fn)  # DuckDB counts the parameters of fn
    def call(caller, *args):
        try:
            return fn(caller, *args)
        except EngineError as err:
            activity = engine.sessions.get(int(caller)) if caller is not None else None
            if activity is not None and activity.owner is not None:
                activity.owner.udf_error = err
            raise
    return call


def install(db: duckdb.DuckDBPyConnection, engine) -> None:
    """Register the functions on the engine's database and their macros in pg_catalog."""
    def session(pid):
        s = engine.sessions.get(int(pid)) if pid is not None else None
        if s is None or s.owner is None:
            raise RuntimeError("no such session")
        return s.owner

    def acting(fn: Callable) -> Callable:
        """No effect while the caller's statement is only being described (Describe runs
        DuckDB's binder and a LIMIT 0 that may still call the function)."""
        @functools.wraps(fn)
        def call(caller, *args):
            if caller is not None and getattr(engine.sessions.get(int(caller)), "owner", None) is not None \
                    and session(caller).describing:
                return None
            return fn(caller, *args)
        return call

    def signal(caller, action, pid):
        if pid is None:
            return None
        s = session(caller)
        return engine.sessions.signal(s.activity, engine.roles.is_superuser, int(pid), action)

    def notify(caller, channel, payload):
        if not channel:  # NULL or ''
            raise InvalidParameterValue("channel name cannot be empty")
        if len(payload.encode()) > MAX_PAYLOAD:
            raise InvalidParameterValue("payload string too long")
        session(caller).queue_notification(channel, payload)
        return None

    def advisory(caller, op, shared, xact, space, k1, k2):
        if k1 is None or k2 is None:
            return None
        s = session(caller)
        key = ("bigint", int(k1)) if space == "bigint" else ("int4", int(k1), int(k2))
        return s.advisory(op, key, bool(shared), bool(xact))

    def listening(caller):
        return engine.notifications.channels(int(caller))

    def started_at(field: str) -> Callable:
        def read(caller):
            """When the caller's statement (`query_start`) or transaction (`xact_start`) began,
            µs since the epoch; None on engine cursors, whose macros then read DuckDB's clock."""
            s = engine.sessions.get(int(caller)) if caller is not None else None
            value = getattr(s, field, None) if s is not None else None
            if value is None:
                return None
            # rounded as datetime.fromtimestamp rounds: the instant the Python-typed write
            # paths store for now() (engine/session/writes.py `_transaction_start`)
            return (datetime.fromtimestamp(value, timezone.utc) - _EPOCH) // _MICROSECOND
        return read

    fns = (("__tierd_signal", signal, ["BIGINT", "VARCHAR", "BIGINT"], "BOOLEAN"),
           ("__tierd_notify", notify, ["BIGINT", "VARCHAR", "VARCHAR"], "VARCHAR"),
           ("__tierd_advisory", advisory, ["BIGINT", "VARCHAR", "BOOLEAN", "BOOLEAN", "VARCHAR", "BIGINT", "BIGINT"],
            "BOOLEAN"),
           ("__tierd_listening", listening, ["BIGINT"], "VARCHAR[]"))
    for name, fn, params, result in fns:
        db.create_function(name, _reported(acting(fn), engine), params, result, side_effects=True, null_handling="special")
    # No effect and a constant argument: DuckDB calls them once per statement, not per row.
    for name, field in (("__tierd_statement_start", "query_start"), ("__tierd_xact_start", "xact_start")):
        db.create_function(name, started_at(field), ["BIGINT"], "BIGINT", side_effects=False, null_handling="special")
    pg_session.install(db, activity.SCHEMA)
