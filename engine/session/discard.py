"""DISCARD: a session's state back to how the connection started.

Connection poolers send `DISCARD ALL` before they hand a server connection to the next client
(PgBouncer's default `server_reset_query`, Npgsql's pool), so nothing of one client's session
leaks into the next one's. As in PostgreSQL, DISCARD ALL is CLOSE ALL, RESET ALL, DEALLOCATE
ALL (the front end drops its prepared statements on this command tag), UNLISTEN *,
pg_advisory_unlock_all(), DISCARD PLANS and DISCARD SEQUENCES; tierd has no temporary tables,
so DISCARD TEMP has nothing to drop. There is no SET ROLE to undo either.
"""
from __future__ import annotations

from engine.errors import ActiveSqlTransaction
from engine.results import StatementResult
from engine.session import cursors, settings
from engine.session.state import SessionState
from engine.sql.parse import Discard, ResetSetting


def discard(s: SessionState, stmt: Discard, params: list) -> StatementResult:
    if stmt.what == "ALL":
        if s.tx.explicit:
            raise ActiveSqlTransaction("DISCARD ALL cannot run inside a transaction block")
        cursors.close_all(s)
        settings.change_in_session(s, ResetSetting("all"), [])
        s.listen_changes.append(("", "unlisten"))  # UNLISTEN *: applied as the statement commits
        s.advisory("unlock_all", (), False, False)
    if stmt.what in ("ALL", "PLANS"):  # analyses are worked out again on next use
        s.write_analyses.clear()
        s.point_plans.clear()
    if stmt.what in ("ALL", "SEQUENCES"):  # currval and lastval are undefined again
        s.engine.sequences.forget_session(s.session_id)
    return StatementResult(f"DISCARD {stmt.what}")
