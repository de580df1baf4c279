"""The read path of a session: client SQL checked (sandbox, privileges), rewritten from
Postgres syntax, and run by DuckDB over the hot ∪ cold views; primary-key point lookups
answered without DuckDB; Describe of a statement without running it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from engine import metrics
from engine.catalog import pg_session, privileges
from engine.catalog.tables import TableDef
from engine.errors import InsufficientPrivilege, QueryCanceled
from engine.tiers import point_lookup, views
from engine.results import StatementResult, schema_with_sql_types, with_sql_types
from engine.session import settings
from engine.session.analyses import analysis
from engine.session.keys import own_version
from engine.session.state import SessionState
from engine.session.transactions import own_writes_visible
from engine.sql import aggregate_types, arrays, dml, pg_compat, sandbox
from engine.sql.division import checked_division
from engine.sql.param_types import infer_param_types
from engine.sql.parse import READ_STATEMENTS, WRITE_STATEMENTS, Query, Show
from engine.sql.split import max_placeholder

_HIDDEN = re.compile(r"\b_(seq|deleted|user_id)\b", re.I)
_INTERNAL = re.compile(r"__tierd", re.I)
_ACTIVITY = re.compile(r"pg_stat_activity", re.I)
_LOCKS = re.compile(r"pg_locks", re.I)
_CURSORS = re.compile(r"pg_cursors", re.I)
# DuckDB has a catalog named "system" too; client SQL means tierd's schema.
_SYSTEM = re.compile(r'(?<![.\w"])system\s*\.(?=\s*"?[A-Za-z_])', re.I)
# Catalog views and functions that read tierd's system tables (row counts, segment sizes).
_READS_SYSTEM_TABLES = re.compile(r"pg_stat|_size\s*\(", re.I)

# What asyncpg's pool sends (with CLOSE ALL; UNLISTEN *; RESET ALL) at each connection release.
_UNLOCK_ALL = re.compile(r"\s*SELECT\s+pg_advisory_unlock_all\s*\(\s*\)\s*;?\s*", re.I)
# A connection check (Django's health checks, PgBouncer 1.18's default server_check_query, many
# pools' validation query): DuckDB takes ~0.2 ms to parse, plan and run even this; the answer
# is known (int4, named `?column?` or as aliased).
_CONSTANT = re.compile(r'\s*SELECT\s+(-?[0-9]{1,9})(?:\s+AS\s+([A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")+"))?\s*;?\s*',
                       re.I)

JOB_SCHEMA = pa.schema([("job_id", pa.string()), ("status", pa.string()), ("message", pa.string())])


def check_select(s: SessionState, refs) -> None:
    """SELECT privilege on every tierd table a statement reads (sql/refs.py / dml plan refs)."""
    for t in privileges.resolve(s.engine.catalog, refs, s.schemas):
        privileges.check_table(s.engine.roles, s.user, t, "SELECT")


def _read_sql(s: SessionState, sql: str) -> tuple[str, bool, bool]:
    """Client read SQL as DuckDB runs it, whether it needs the system-column catalog, and
    whether it may read rows of tierd's tables (no: `SELECT pg_advisory_unlock_all()`, which
    asyncpg's pool sends at each release, needs no committed row appended to DuckDB first).
    Client SQL reaching DuckDB directly must only read, never tierd's internals (a write
    there would bypass LevelDB and the key index) and nothing outside the sandbox."""
    eng = s.engine
    compat = pg_compat.rewrite(sql, s.settings, _derived_settings(s))
    sql = compat.sql
    if compat.uses_catalog:
        eng.pg_catalog.refresh(eng.db, eng)
        if _ACTIVITY.search(sql):
            pg_session.refill_activity(s.cur, eng.sessions.table(), s.is_superuser)
        if _LOCKS.search(sql):
            pg_session.refill_locks(s.cur, eng.advisory_locks.rows(), eng.sessions.database_oid)
        if _CURSORS.search(sql):
            pg_session.refill_cursors(s.cur, s.pid, list(s.cursors.values()), eng.sessions.pids())
        if _READS_SYSTEM_TABLES.search(sql):
            eng.system_tables.refresh()
        if "pg_stat_progress" in sql.lower():
            eng.pg_catalog.refresh_progress(eng.db, list(eng.running_copies.values()))
    if _INTERNAL.search(compat.checked_sql):
        raise InsufficientPrivilege("permission denied: tierd's internal catalog __tierd is not accessible")
    refs = sandbox.check_query(compat.checked_sql)
    check_select(s, refs.tables)
    # a scalar catalog function reads no hot row, except those that count rows or bytes
    reads_tables = bool(refs.tables or refs.table_functions or refs.file_refs or _READS_SYSTEM_TABLES.search(sql))
    if _SYSTEM.search(sql):
        eng.system_tables.refresh(sql)
        sql = _SYSTEM.sub("memory.system.", sql)
        reads_tables = True
    return checked_division(sql), bool(_HIDDEN.search(sql)), reads_tables


def checked_read_sql(s: SessionState, sql: str) -> tuple[str, bool]:
    """`_read_sql` for other read paths (cursors): the checked, rewritten SQL and whether it
    needs the system-column catalog."""
    return _read_sql(s, sql)[:2]


def array_params(s: SessionState, sql: str, params: list) -> list:
    """Parameters sent as Postgres array text where the statement wants an array, as lists
    (see sql/arrays.py); only looked at when a text parameter starts like an array."""
    if not any(isinstance(p, str) and p[:1] in ("{", "[") for p in params):
        return params
    types = infer_param_types(sql, len(params), lambda table: _column_types(s, table))
    return arrays.coerce_params(params, types)


def _pg_aggregates(s: SessionState, sql: str) -> str:
    """sum/avg cast to PostgreSQL's result types (sql/aggregate_types.py); the probe that binds
    their arguments passes the same checks as the query. Worked out once per text until the
    catalog or the roles change (a parse and a DuckDB bind: ~1 ms of every analytic query)."""
    if not aggregate_types.calls_aggregates(sql):
        return sql

    def bind(probe: str) -> list[str]:
        return [str(t) for t in s.cur.sql(_read_sql(s, probe)[0]).types]
    return analysis(s, ("pg_aggregates", sql), lambda: aggregate_types.pg_aggregates(sql, bind),
                    path="read_analysis")


def query(s: SessionState, stmt: Query, params: list) -> StatementResult:
    """A read statement's rows: a primary-key point SELECT by the key index and the cold
    tier's key ranges (as Python values, engine/results.py Rows), anything else by DuckDB."""
    if not params and _UNLOCK_ALL.fullmatch(stmt.sql):  # as DuckDB's call of the function would answer
        s.advisory("unlock_all", (), False, False)
        metrics.inc("tierd_fast_path_total", path="unlock_all", outcome="used")
        return StatementResult("SELECT 1", pa.table({"pg_advisory_unlock_all": pa.nulls(1, pa.bool_())}))
    constant = None if params else _CONSTANT.fullmatch(stmt.sql)
    if constant is not None:  # a label after AS may be any word, as in PostgreSQL
        alias = constant.group(2)
        name = "?column?" if alias is None else alias[1:-1].replace('""', '"') if alias[0] == '"' else alias.lower()
        metrics.inc("tierd_fast_path_total", path="constant_select", outcome="used")
        return StatementResult("SELECT 1", pa.table({name: pa.array([int(constant.group(1))], pa.int32())}))
    if not s.tx.in_duck_txn:
        point = _point_plan(s, stmt.sql, params)
        if point is not None:
            plan, key_params = point
            own = (lambda t, key: own_version(s, t, key)) if s.tx.holds_lock else None
            table = s.engine.point_lookups.run(plan.query, key_params, plan.table.namespace, own)
            metrics.inc("tierd_fast_path_total", path="point_select", outcome="fallback" if table is None else "used")
            if table is not None:
                return StatementResult(f"SELECT {table.num_rows}", table)
    params = array_params(s, stmt.sql, params)
    sql, hidden, reads_tables = _read_sql(s, _pg_aggregates(s, stmt.sql))
    eng = s.engine
    s.check_user_scope()
    if reads_tables:  # else no row is read: nor this transaction's, which would need the lock alone
        own_writes_visible(s)
        eng.hot.materialize()
    with s.running, s.system_columns(hidden):
        s.cur.execute(sql, params)
        types = [d[1] for d in s.cur.description]
        table = with_sql_types(s.cur.to_arrow_table(), types)
    return StatementResult(f"SELECT {table.num_rows}", table)


def query_batches(s: SessionState, sql: str, emit: Callable[[pa.Table], None],
                  batch_rows: int = 65_536) -> int:
    """A read whose rows go to `emit` a batch at a time as DuckDB produces them (COPY TO
    STDOUT of a large table: memory holds a batch, not the result); the first call has no
    rows and carries the schema. Returns the number of rows."""
    sql, hidden, _ = _read_sql(s, _pg_aggregates(s, sql))
    own_writes_visible(s)
    s.check_user_scope()
    s.engine.hot.materialize()
    count = 0
    with s.running, s.system_columns(hidden):
        s.cur.execute(sql)
        types = [d[1] for d in s.cur.description]
        reader = s.cur.fetch_record_batch(batch_rows)
        emit(with_sql_types(reader.schema.empty_table(), types))
        for batch in reader:
            if s.cancel_requested:
                raise QueryCanceled("canceling statement due to user request")
            count += batch.num_rows
            emit(with_sql_types(pa.Table.from_batches([batch]), types))
    return count


def _derived_settings(s: SessionState) -> dict[str, str]:
    """Settings that follow from the session's role rather than from SET."""
    return {"is_superuser": "on" if s.is_superuser else "off", "session_authorization": s.user}


# A point SELECT's integer literal key (simple protocol: psql, pgbench -M simple), cut out so
# that one analysis serves every key.
_LITERAL_KEY = re.compile(r"=\s*(-?\d{1,18})\s*;?\s*$")
_MAX_PLANS = 256


@dataclass(frozen=True)
class PointPlan:
    """What a point SELECT's text resolves to for one session: its shape and table, its
    SELECT privilege checked. Valid while the catalog (tables, grants, namespaces), the
    roles and the session's search path are what they were when it was made."""
    query: point_lookup.PointQuery
    table: TableDef
    made_under: tuple


_NOT_POINT = PointPlan(None, None, ())  # type: ignore[arg-type]  # a text of another shape


def _point_plan(s: SessionState, sql: str, params: list) -> tuple[PointPlan, list] | None:
    """The analysis of `sql` as a point lookup on a tierd table, and the key parameters
    (a literal key becomes $1), cached per session by text so that a repeated statement
    pays no parse, name resolution or privilege check; None: not a point lookup. The
    privilege check raises 42501 as the general path would."""
    text, key_params = sql, params
    if not params:
        m = _LITERAL_KEY.search(sql)
        if m is not None:
            text, key_params = sql[:m.start(1)] + "$1" + sql[m.end(1):], [int(m.group(1))]
    eng = s.engine
    made_under = (eng.catalog.generation, eng.roles.generation, s.schemas)
    plan = s.point_plans.get(text)
    if plan is _NOT_POINT:
        return None
    if plan is None or plan.made_under != made_under:
        q = point_lookup.match(text)
        if q is None:
            plan = _NOT_POINT
        else:
            t = eng.catalog.find(q.namespace, q.table) if q.namespace else s.find_table(q.table)
            if t is None:
                return None  # the general path says what is wrong
            privileges.check_table(eng.roles, s.user, t, "SELECT")
            plan = PointPlan(q, t, (made_under[0], made_under[1], list(s.schemas)))
        if len(s.point_plans) >= _MAX_PLANS:
            s.point_plans.clear()
        s.point_plans[text] = plan
        if plan is _NOT_POINT:
            return None
    return plan, key_params


def show(s: SessionState, stmt: Show, params: list) -> StatementResult:
    shown = settings.show(s.settings, stmt.name, _derived_settings(s))
    return shown if shown is not None else query(s, Query(stmt.sql), params)


def param_types(s: SessionState, sql: str) -> list[str | None]:
    return infer_param_types(sql, max_placeholder(sql), lambda table: _column_types(s, table))


def describe(s: SessionState, sql: str, words: list[str]) -> tuple[list[str | None], pa.Schema | None]:
    """Parameter types (DuckDB type names, None if unknown) and the result schema (None: no
    rows) of one statement, without running it."""
    first = words[0]
    params = infer_param_types(sql, max_placeholder(sql), lambda table: _column_types(s, table))
    if first == "SHOW" and len(words) > 1 and words[1].lower() in s.settings:
        return params, pa.schema([(words[1].lower(), pa.string())])
    if first in READ_STATEMENTS:
        sql, hidden, _ = _read_sql(s, _pg_aggregates(s, sql))
        with s.system_columns(hidden):
            return params, _schema_of(s, sql, params)
    if first in WRITE_STATEMENTS:
        p = dml.plan(sql)
        sandbox.check_write(p)  # binding may already touch files (a table function's glob)
        if p.returning is None:
            return params, None
        t = s.resolve(p.target)
        returning = f"SELECT {p.returning} FROM {views.visible_view(t)} AS {views.q(p.target.alias)}"
        used = max_placeholder(p.returning)
        return params, _schema_of(s, returning, params[:used] + [None] * (used - len(params)))
    if first in ("RETRY", "KILL") or (first == "STORAGE" and words[1:2] != ["CHECK"]):
        return params, JOB_SCHEMA
    return params, None


def _schema_of(s: SessionState, sql: str, param_types: list[str | None]) -> pa.Schema:
    """The Arrow schema `sql` would produce, from DuckDB's binder (LIMIT 0, no rows read).
    Parameters of unknown type are bound as text, as they are at Bind."""
    values = ["" if typ is None or typ == "VARCHAR" else None for typ in param_types]
    rel = s.cur.sql(sql, params=values or None)
    return schema_with_sql_types(rel.limit(0).to_arrow_table().schema, rel.types)


def _column_types(s: SessionState, table) -> dict[str, str]:
    """Column name -> DuckDB type of a table named in client SQL (for parameter types)."""
    t = s.engine.catalog.find(table.db, table.name) if table.db else s.find_table(table.name)
    if t is not None:
        return {c.name: c.type for c in t.columns}
    name = ".".join(views.q(part) for part in (table.catalog, table.db, table.name) if part)
    sql = _read_sql(s, f"SELECT * FROM {name}")[0]
    rel = s.cur.sql(sql)
    return {n: str(typ) for n, typ in zip(rel.columns, rel.types)}
