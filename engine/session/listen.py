"""LISTEN, UNLISTEN and NOTIFY: a session's part of engine/notifications.py. All three take
effect when the transaction commits (at once in autocommit), as in PostgreSQL."""
from __future__ import annotations

from engine.errors import InvalidParameterValue
from engine.notifications import MAX_PAYLOAD
from engine.results import StatementResult
from engine.session.state import SessionState
from engine.sql.parse import Listen, Notify, Unlisten


def listen(s: SessionState, stmt: Listen, params: list) -> StatementResult:
    s.listen_changes.append((stmt.channel, "listen"))
    return StatementResult("LISTEN")


def unlisten(s: SessionState, stmt: Unlisten, params: list) -> StatementResult:
    s.listen_changes.append((stmt.channel or "", "unlisten"))
    return StatementResult("UNLISTEN")


def notify(s: SessionState, stmt: Notify, params: list) -> StatementResult:
    if len(stmt.payload.encode()) > MAX_PAYLOAD:
        raise InvalidParameterValue("payload string too long")
    s.queue_notification(stmt.channel, stmt.payload)
    return StatementResult("NOTIFY")
