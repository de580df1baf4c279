"""DDL of a session: CREATE TABLE, CREATE / DROP NAMESPACE (SCHEMA), DROP TABLE.

DDL is superuser-only and not transactional: it ends an implicit transaction, and is refused
inside an explicit one that has written. The catalog changes under the engine's DDL lock; the
DuckDB objects of a table change under the write lock, so no write sees half a table.
"""
from __future__ import annotations

from engine.catalog.tables import SYSTEM_COLUMNS, TableDef, check_identifier, parse_table_options
from engine.errors import ActiveSqlTransaction, DuplicateTable, InvalidSchemaName, InvalidTableDefinition, \
    ObjectInUse, UndefinedTable
from engine.tiers import views
from engine.results import StatementResult
from engine.session.state import SessionState
from engine.session.transactions import commit_write
from engine.sql.parse import CreateTableStatement
from engine.sql.statements import CreateNamespace, DropNamespace, DropTable, unquote


def _begin_ddl(s: SessionState, action: str) -> None:
    s.require_superuser(action)
    if s.tx.holds_lock and not s.tx.explicit:
        commit_write(s)  # DDL is not transactional: it ends an implicit transaction
    if s.tx.holds_lock:
        raise ActiveSqlTransaction("DDL inside a transaction that has already written is not supported")


def create_table(s: SessionState, stmt: CreateTableStatement, params: list) -> StatementResult:
    _begin_ddl(s, stmt.action)
    eng, ct = s.engine, stmt.table
    check_identifier(ct.name, "table")
    with eng.ddl_lock:
        eng.catalog.require_namespace(ct.namespace)
        if eng.catalog.find(ct.namespace, ct.name):
            if ct.if_not_exists:
                return StatementResult("CREATE TABLE")
            raise DuplicateTable(f'relation "{ct.namespace}.{ct.name}" already exists')
        opts = parse_table_options(ct.options, ct.keyword_type)
        eng.storages.get(opts.storage_id)  # it must exist
        columns, pk = eng.probe_columns(ct.body)
        if not pk:
            raise InvalidTableDefinition(
                f'table "{ct.namespace}.{ct.name}" needs a PRIMARY KEY',
                hint="tierd keeps the newest version of each primary key; declare one, e.g. id BIGINT PRIMARY KEY",
            )
        for c in columns:
            if c.name.lower() in SYSTEM_COLUMNS:
                raise InvalidTableDefinition(f'column name "{c.name}" is reserved for a system column')
        t = TableDef(tid=0, namespace=ct.namespace, name=ct.name, columns=columns, primary_key=pk,
                     table_type=opts.table_type, storage_id=opts.storage_id,
                     flush_policy=opts.flush_policy, ttl_seconds=opts.ttl_seconds, owner=s.user,
                     iceberg=opts.iceberg, iceberg_table=opts.iceberg_table)
        with eng.hot.locked():
            eng.create_table(t)
    return StatementResult("CREATE TABLE")


def create_namespace(s: SessionState, stmt: CreateNamespace, params: list) -> StatementResult:
    _begin_ddl(s, stmt.action)
    eng = s.engine
    name = unquote(stmt.name)
    with eng.ddl_lock:
        if eng.catalog.create_namespace(name, if_not_exists=stmt.if_not_exists):
            views.create_namespace(eng.admin, name)
    return StatementResult("CREATE SCHEMA")


def drop_namespace(s: SessionState, stmt: DropNamespace, params: list) -> StatementResult:
    _begin_ddl(s, stmt.action)
    eng = s.engine
    name = unquote(stmt.name)
    with eng.ddl_lock:
        if name not in eng.catalog.namespaces:
            if stmt.if_exists:
                return StatementResult("DROP SCHEMA")
            raise InvalidSchemaName(f'namespace "{name}" does not exist')
        tables = eng.catalog.tables_in(name)
        if tables and not stmt.cascade:
            raise ObjectInUse(
                f'cannot drop namespace "{name}" because {len(tables)} table(s) depend on it',
                hint="Use DROP NAMESPACE ... CASCADE to drop the tables too.",
            )
        for t in tables:
            eng.tiering.stop_table_job(t)
        with eng.hot.locked():
            for t in tables:
                eng.drop_table(t)
        views.drop_namespace(eng.admin, name)
        eng.catalog.drop_namespace(name)
    return StatementResult("DROP SCHEMA")


def drop_table(s: SessionState, stmt: DropTable, params: list) -> StatementResult:
    _begin_ddl(s, stmt.action)
    eng = s.engine
    ns, name = s.split_name(stmt.name)
    with eng.ddl_lock:
        t = eng.catalog.find(ns, name)
        if t is None:
            if stmt.if_exists:
                return StatementResult("DROP TABLE")
            raise UndefinedTable(f'table "{ns}.{name}" does not exist')
        eng.tiering.stop_table_job(t)
        with eng.hot.locked():
            eng.drop_table(t)
        s.stages.discard(t.tid)
    return StatementResult("DROP TABLE")
