"""Where a statement is dispatched: the handler of each statement type `parse` returns.

A handler is `handler(session, statement, params) -> StatementResult`; the session runs it
inside its error handling (engine/session/session.py `guarded`)."""
from __future__ import annotations

from typing import Callable

from engine.results import StatementResult
from engine.session import admin, ddl, keyed_writes, reads, settings, transactions
from engine.session.state import SessionState
from engine.sql import parse as p
from engine.sql import statements as st

Handler = Callable[[SessionState, object, list], StatementResult]


def _change_setting(s: SessionState, stmt: p.SetSetting | p.ResetSetting, params: list) -> StatementResult:
    return settings.change(s.settings, stmt)


HANDLERS: dict[type, Handler] = {
    p.Empty: lambda s, stmt, params: StatementResult(""),
    p.Begin: transactions.begin,
    p.Commit: transactions.commit,
    p.Rollback: transactions.rollback,
    p.Savepoint: transactions.savepoint,
    p.Query: reads.query,
    p.Show: reads.show,
    p.Write: keyed_writes.write,
    p.SetSetting: _change_setting,
    p.ResetSetting: _change_setting,
    p.CreateTableStatement: ddl.create_table,
    st.CreateNamespace: ddl.create_namespace,
    st.DropNamespace: ddl.drop_namespace,
    st.DropTable: ddl.drop_table,
    p.AlterTableOwner: admin.alter_table_owner,
    st.CreateRole: admin.role_command,
    st.AlterRole: admin.role_command,
    st.DropRole: admin.role_command,
    st.Grant: admin.grant,
    st.CreateStorage: admin.storage_definition,
    st.AlterStorage: admin.storage_definition,
    st.DropStorage: admin.storage_definition,
    st.ShowStorages: admin.storage_definition,
    st.CheckStorage: admin.storage_definition,
    st.StorageJob: admin.storage_job,
    st.JobCommand: admin.job_command,
}


def dispatch(s: SessionState, stmt: object, params: list) -> StatementResult:
    return HANDLERS[type(stmt)](s, stmt, params)
