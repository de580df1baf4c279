"""DDL of a session: CREATE TABLE, CREATE / DROP NAMESPACE (SCHEMA), DROP TABLE.

DDL is superuser-only and not transactional: it ends an implicit transaction, and is refused
inside an explicit one that has written. The catalog changes under the engine's DDL lock; the
DuckDB objects of a table change under the write lock, so no write sees half a table.
"""
from __future__ import annotations

import contextlib
import dataclasses

from engine.catalog.tables import SYSTEM_COLUMNS, TableDef, check_identifier, parse_table_options
from engine.errors import ActiveSqlTransaction, DuplicateTable, InvalidSchemaName, InvalidTableDefinition, \
    ObjectInUse, UndefinedTable
from engine.tiers import views
from engine.results import StatementResult
from engine.session import foreign_keys, sequences, transaction_ddl
from engine.session.state import SessionState
from engine.session.transactions import commit_write, join_ddl
from engine.sql.foreign_key_ddl import split_foreign_keys
from engine.sql.parse import CreateTableStatement
from engine.sql.sequence_ddl import rewrite_auto_columns, without_regclass_casts
from engine.sql.statements import CreateNamespace, DropNamespace, DropTable, unquote


def begin_ddl(s: SessionState, action: str, transactional: bool = True) -> bool:
    """Before a DDL statement: True when it joins the session's explicit transaction
    (engine/session/transaction_ddl.py: it then holds the write lock, and the change takes
    effect durably at COMMIT); otherwise it ends an implicit transaction and commits at once."""
    s.require_superuser(action)
    if transactional and join_ddl(s):
        return True
    if s.tx.holds_lock and not s.tx.explicit:
        commit_write(s)  # an implicit transaction ends here
    if s.tx.holds_lock:
        raise ActiveSqlTransaction(f"{action} inside a transaction that has already written is not supported")
    return False


def write_locked(s: SessionState, in_transaction: bool):
    """The write lock for one DDL statement, unless its transaction holds it already."""
    return contextlib.nullcontext() if in_transaction else s.engine.hot.locked()


def create_table(s: SessionState, stmt: CreateTableStatement, params: list) -> StatementResult:
    in_tx = begin_ddl(s, stmt.action)
    eng, ct = s.engine, stmt.table
    if not ct.namespace:
        ct = dataclasses.replace(ct, namespace=s.creation_namespace)
    check_identifier(ct.name, "table")
    with eng.ddl_lock:
        eng.catalog.require_namespace(ct.namespace)
        if eng.catalog.find(ct.namespace, ct.name):
            if ct.if_not_exists:
                return StatementResult("CREATE TABLE")
            raise DuplicateTable(f'relation "{ct.namespace}.{ct.name}" already exists')
        opts = parse_table_options(ct.options, ct.keyword_type)
        eng.storages.get(opts.storage_id)  # it must exist
        columns_sql, fk_clauses = split_foreign_keys(ct.body)
        body = rewrite_auto_columns(without_regclass_casts(columns_sql), ct.namespace, ct.name)
        columns, pk = eng.probe_columns(body.body)
        identity = {a.column: a.identity for a in body.auto}
        for c in columns:
            if c.name.lower() in SYSTEM_COLUMNS:
                raise InvalidTableDefinition(f'column name "{c.name}" is reserved for a system column')
            c.identity = identity.get(c.name)
        if eng.sequences.find(ct.namespace, ct.name):
            raise DuplicateTable(f'relation "{ct.name}" already exists')
        t = TableDef(tid=0, namespace=ct.namespace, name=ct.name, columns=columns, primary_key=pk,
                     table_type=opts.table_type, storage_id=opts.storage_id,
                     flush_policy=opts.flush_policy, ttl_seconds=opts.ttl_seconds, owner=s.user,
                     iceberg=opts.iceberg, iceberg_table=opts.iceberg_table,
                     rowid=not pk)  # no primary key: rows are told apart by a hidden row id
        taken = foreign_keys.constraint_names(s, ct.namespace) | ({f"{ct.name}_pkey"} if pk else set())
        for clause in fk_clauses:  # a self-reference names table id 0 until the table has its id
            fk = foreign_keys.declare(s, t, clause, taken)
            t.foreign_keys.append(fk)
            taken.add(fk["name"])
        sequences.create_owned(s, ct.namespace, body.auto)
        with write_locked(s, in_tx):
            eng.create_table(t, durable=not in_tx)
        if in_tx:
            transaction_ddl.changing(s, None, t.tid)
    return StatementResult("CREATE TABLE")


def create_namespace(s: SessionState, stmt: CreateNamespace, params: list) -> StatementResult:
    begin_ddl(s, stmt.action, transactional=False)
    eng = s.engine
    name = unquote(stmt.name)
    with eng.ddl_lock:
        if eng.catalog.create_namespace(name, if_not_exists=stmt.if_not_exists):
            views.create_namespace(eng.admin, name)
    return StatementResult("CREATE SCHEMA")


def drop_namespace(s: SessionState, stmt: DropNamespace, params: list) -> StatementResult:
    begin_ddl(s, stmt.action, transactional=False)
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
        foreign_keys.drop_dependents(s, tables, True, False)  # other namespaces' references to them
        for t in tables:
            eng.tiering.stop_table_job(t)
        with eng.hot.locked():
            for t in tables:
                eng.drop_table(t)
        for d in [d for d in eng.sequences.defs.values() if d.namespace == name]:
            eng.sequences.drop(d)
        views.drop_namespace(eng.admin, name)
        eng.catalog.drop_namespace(name)
    return StatementResult("DROP SCHEMA")


def drop_table(s: SessionState, stmt: DropTable, params: list) -> StatementResult:
    """DROP TABLE [IF EXISTS] a [, b ...]: every named table must exist (or IF EXISTS skips
    it) before any is dropped, as in Postgres; each drop takes its owned sequences along.
    Inside a transaction the tables' rows and files go at COMMIT."""
    in_tx = begin_ddl(s, stmt.action)
    eng = s.engine
    with eng.ddl_lock:
        found = []
        for written in stmt.names or (stmt.name,):
            ns, name = s.split_name(written)
            t = eng.catalog.find(ns, name)
            if t is None:
                if stmt.if_exists:
                    continue
                raise UndefinedTable(f'table "{ns}.{name}" does not exist')
            if t not in found:
                found.append(t)
        notices = foreign_keys.drop_dependents(s, found, stmt.cascade, in_tx)
        for t in found:
            eng.tiering.stop_table_job(t)
            if in_tx:
                transaction_ddl.changing(s, t)
                eng.detach_table(t, durable=False)
            else:
                with eng.hot.locked():
                    eng.drop_table(t)
            sequences.drop_owned(s, t)
            s.stages.pop(t.tid, None)
    return StatementResult("DROP TABLE", notices=tuple(notices))
