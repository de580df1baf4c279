"""ErrorResponse / NoticeResponse encoding (the error classes are engine.errors').

Every exception reaching the client goes through `error_response`: an `EngineError` keeps
its SQLSTATE, message, detail and hint; anything else is XX000 with its message.
"""
from __future__ import annotations

import struct

from engine.errors import EngineError


def error_fields(exc: BaseException, severity: str | None = None) -> list[tuple[bytes, str]]:
    if isinstance(exc, EngineError):
        severity = severity or exc.severity
        fields = [(b"S", severity), (b"V", severity), (b"C", exc.sqlstate), (b"M", exc.message)]
        if exc.detail:
            fields.append((b"D", exc.detail))
        if exc.hint:
            fields.append((b"H", exc.hint))
        if getattr(exc, "context", None):  # e.g. COPY's `COPY t, line 3, column x: "abc"`
            fields.append((b"W", exc.context))
        if exc.position:
            fields.append((b"P", str(exc.position)))
        return fields
    severity = severity or "ERROR"
    message = str(exc) or type(exc).__name__
    return [(b"S", severity), (b"V", severity), (b"C", "XX000"), (b"M", message)]


def _message(kind: bytes, fields: list[tuple[bytes, str]]) -> bytes:
    # a NUL inside a field (say, binary input quoted in a message) would end it early
    body = b"".join(code + value.replace("\x00", "\\0").encode("utf-8", "replace") + b"\x00"
                    for code, value in fields)
    body += b"\x00"
    return kind + struct.pack("!i", len(body) + 4) + body


def error_response(exc: BaseException, severity: str | None = None) -> bytes:
    """ErrorResponse ('E') for `exc`; pass severity="FATAL" for errors that end the session."""
    return _message(b"E", error_fields(exc, severity))


def notice_response(message: str, severity: str = "NOTICE", sqlstate: str = "00000") -> bytes:
    return _message(b"N", [(b"S", severity), (b"V", severity), (b"C", sqlstate), (b"M", message)])
