"""DISCARD: a session's state back to how the connection started.

Connection poolers send `DISCARD ALL` before they hand a server connection to the next client
(PgBouncer's default `server_reset_query`, Npgsql's pool), so nothing of one client's session
leaks into the next one's. As in PostgreSQL, DISCARD ALL is CLOSE ALL, RESET ALL, DEALLOCATE
ALL (the front end drops its prepared statements on this command tag), UNLISTEN *,
pg_advisory_unlock_all(), DISCARD PLANS and DISCARD SEQUENCES; tierd has no temporary tables,
so DISCARD TEMP has nothing to drop. There is no SET ROLE to undo either.

asyncpg's pool resets a connection at each release with a script of four statements instead
(`POOL_RESET`); `pool_reset` answers it as those statements would, in one statement wrapper:
every pooled query pays for it, and as four it cost about half of a pooled INSERT.
"""
from __future__ import annotations

import re

import pyarrow as pa

from engine import metrics
from engine.errors import ActiveSqlTransaction
from engine.results import StatementResult
from engine.session import cursors, settings
from engine.session.state import SessionState
from engine.sql.parse import Discard, ResetSetting

# asyncpg's Connection.get_reset_query() for a server with advisory locks, CLOSE ALL,
# notifications and RESET (what tierd reports being: PostgreSQL 15)
POOL_RESET = re.compile(r"\s*SELECT\s+pg_advisory_unlock_all\(\);\s*CLOSE\s+ALL;\s*UNLISTEN\s+\*;"
                        r"\s*RESET\s+ALL;\s*", re.I)


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


def pool_reset(s: SessionState) -> list[StatementResult]:
    """The results of `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`
    outside a transaction block, each as its own statement answers it."""
    s.advisory("unlock_all", (), False, False)
    metrics.inc("tierd_fast_path_total", path="unlock_all", outcome="used")
    cursors.close_all(s)
    s.listen_changes.append(("", "unlisten"))  # applied as the statement commits
    reset = settings.change_in_session(s, ResetSetting("all"), [])
    metrics.inc("tierd_fast_path_total", path="pool_reset", outcome="used")
    return [StatementResult("SELECT 1", pa.table({"pg_advisory_unlock_all": pa.nulls(1, pa.bool_())})),
            StatementResult("CLOSE CURSOR"), StatementResult("UNLISTEN"), reset]
