"""Where a statement is dispatched: the handler of each statement type `parse` returns.

A handler is `handler(session, statement, params) -> StatementResult`; the session runs it
inside its error handling (engine/session/session.py `guarded`)."""
from __future__ import annotations

from typing import Callable

from engine.results import StatementResult
from engine.session import (admin, alter, cursors, ddl, discard, indexes, keyed_writes, listen, reads, rekey, sequences,
                            settings, transactions)
from engine.sql import index_ddl as ix
from engine.sql import sequence_ddl as sq
from engine.sql import table_commands as tc
from engine.session.state import SessionState
from engine.sql import parse as p
from engine.sql import alter as al
from engine.sql import statements as st

Handler = Callable[[SessionState, object, list], StatementResult]


HANDLERS: dict[type, Handler] = {
    p.Empty: lambda s, stmt, params: StatementResult(""),
    p.Begin: transactions.begin,
    p.Commit: transactions.commit,
    p.Rollback: transactions.rollback,
    p.Savepoint: transactions.savepoint,
    p.Query: reads.query,
    p.Show: reads.show,
    p.Write: keyed_writes.write,
    p.SetSetting: settings.change_in_session,
    p.ResetSetting: settings.change_in_session,
    p.CreateTableStatement: ddl.create_table,
    st.CreateNamespace: ddl.create_namespace,
    st.DropNamespace: ddl.drop_namespace,
    st.DropTable: ddl.drop_table,
    p.AlterTableOwner: admin.alter_table_owner,
    al.AlterTable: alter.alter_table,
    al.CommentOn: alter.comment_on,
    ix.CreateIndex: indexes.create_index,
    ix.DropIndex: indexes.drop_index,
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
    p.Listen: listen.listen,
    p.Unlisten: listen.unlisten,
    p.Notify: listen.notify,
    p.DeclareCursor: cursors.declare,
    p.FetchCursor: cursors.fetch,
    p.CloseCursor: cursors.close,
    p.Discard: discard.discard,
    sq.CreateSequence: sequences.create_sequence,
    sq.AlterSequence: sequences.alter_sequence,
    sq.DropSequence: sequences.drop_sequence,
    tc.Truncate: rekey.truncate,
    tc.AddPrimaryKey: rekey.add_primary_key,
    tc.Maintenance: lambda s, stmt, params: StatementResult(stmt.command),
}


def dispatch(s: SessionState, stmt: object, params: list) -> StatementResult:
    return HANDLERS[type(stmt)](s, stmt, params)
