"""A connection's first phase: the startup packet, TLS, authentication, the engine session.

Before the first startup packet a client may ask for TLS (SSLRequest, answered 'S' when the
server has a certificate, else 'N') or GSS encryption (always 'N'), or send a cancel request
for another connection's statement. Then the startup packet names the user and database;
after authentication (protocol/auth.py) the engine session is opened, the startup options that
are session settings are applied, and the client gets AuthenticationOk, the ParameterStatus
values, BackendKeyData and ReadyForQuery. `Startup` is mixed into TierdHandler
(protocol/connection.py), whose reads, writes and ParameterStatus reports it uses.
"""
from __future__ import annotations

import logging
import re
import ssl
import struct
import time

from buenavista.core import Connection

from engine.errors import FatalProtocolViolation, InvalidAuthorizationSpecification

from . import messages
from .auth import authenticate
from .limits import MAX_MESSAGE, MAX_STARTUP_PACKET, too_many
from .messages import ClientGone
from .session import ConnectionState

log = logging.getLogger("tierd.protocol")

# Startup packet keys that are not settings.
NOT_SETTINGS = frozenset({"user", "database", "options", "replication"})


def startup_settings(params: dict[str, str]) -> dict[str, str]:
    """Settings a startup packet carries: its own keys (pgjdbc's TimeZone, asyncpg's
    `server_settings`, application_name) and `options`' `-c name=value` / `--name=value`
    (libpq's `options=` / PGOPTIONS)."""
    out = {k: v for k, v in params.items() if k not in NOT_SETTINGS}
    words = re.split(r"(?<!\\)\s+", params.get("options", "").strip())
    i = 0
    while i < len(words):
        word = words[i].replace("\\ ", " ")
        if word == "-c" and i + 1 < len(words):
            word, i = "--" + words[i + 1].replace("\\ ", " "), i + 1
        elif word.startswith("-c"):
            word = "--" + word[2:]
        if word.startswith("--") and "=" in word:
            name, value = word[2:].split("=", 1)
            out[name.replace("-", "_")] = value
        i += 1
    return out


class EngineConnection(Connection):
    """buenavista's Connection, backed by the tierd engine: one engine session per client."""

    SERVER_PARAMETERS = {
        "server_version": "15.0",
        "server_encoding": "UTF8",
        "client_encoding": "UTF8",
        "DateStyle": "ISO, MDY",
        "IntervalStyle": "postgres",
        "TimeZone": "UTC",
        "integer_datetimes": "on",
        "standard_conforming_strings": "on",
    }

    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    def parameters(self) -> dict[str, str]:
        return dict(self.SERVER_PARAMETERS)

    def open_session(self, user: str, database: str):
        return self.engine.connect(user, database)


class Startup:
    """Startup, TLS and authentication of one client connection (part of TierdHandler)."""

    login_deadline = float("inf")  # time.monotonic() by which the client must have logged in
    has_slot = False  # counted against max_connections

    def arm_login_timeout(self) -> None:
        """Before each read of the login: what is left of authentication_timeout bounds it."""
        left = self.login_deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("authentication timed out")
        self.request.settimeout(left)

    def read_login_message(self) -> tuple[bytes, bytes]:
        self.arm_login_timeout()
        return self.read_message()

    def recv_exact(self, n: int) -> bytes:
        """Read the startup packets straight from the socket, never past them: bytes a client
        sent after its SSLRequest must reach the TLS handshake, not a plaintext buffer."""
        data = b""
        while len(data) < n:
            self.arm_login_timeout()
            chunk = self.request.recv(n - len(data))
            if not chunk:
                raise ClientGone()
            data += chunk
        return data

    def start_tls(self) -> None:
        """Answer an SSLRequest with 'S' and run the TLS handshake; reads and writes go
        through TLS from here on."""
        self.request.sendall(b"S")
        for f in (self.rfile, self.wfile):
            f.close()
        try:
            tls = self.server.ssl_context.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake with %s failed: %s", self.client_address[0], exc)
            raise ClientGone() from None
        self.request = self.connection = tls
        self.rfile = tls.makefile("rb", self.rbufsize)
        self.wfile = tls.makefile("wb", self.wbufsize)

    def handle_startup(self, conn: EngineConnection) -> ConnectionState | None:
        """SSLRequest starts TLS when configured ('S') or is declined ('N'); GSSENCRequest is
        declined; cancel requests are served; then protocol 3.0."""
        encrypted = False
        self.login_deadline = time.monotonic() + self.server.limits.authentication_timeout_s
        while True:
            (length,) = struct.unpack("!i", self.recv_exact(4))
            if length < 8 or length > MAX_STARTUP_PACKET:
                raise FatalProtocolViolation(f"invalid startup packet length {length}")
            payload = self.recv_exact(length - 4)
            (code,) = struct.unpack_from("!i", payload)
            if code == messages.SSL_REQUEST and self.server.ssl_context is not None and not encrypted:
                self.start_tls()
                encrypted = True
                continue
            if code in (messages.SSL_REQUEST, messages.GSSENC_REQUEST):
                if encrypted:
                    raise FatalProtocolViolation("SSLRequest or GSSENCRequest over an encrypted connection")
                self.request.sendall(b"N")
                continue
            if code == messages.CANCEL_REQUEST:
                self.cancel(*struct.unpack_from("!ii", payload, 4))
                return None
            if code >> 16 != 3:
                raise FatalProtocolViolation(
                    f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: "
                    "server supports 3.0")
            break
        params = messages.parse_startup_params(payload[4:])
        user = params.get("user")
        if not user:
            raise InvalidAuthorizationSpecification("no PostgreSQL user name specified in startup packet")
        database = params.get("database") or user
        if self.server.ssl_required and not encrypted:
            raise InvalidAuthorizationSpecification(
                f'connection refused for host "{self.client_address[0]}", user "{user}", database '
                f'"{database}", no encryption', hint="This server requires TLS: connect with sslmode=require.")
        slots = self.server.slots
        if slots.sessions >= slots.limits.max_connections:
            raise too_many()  # before authentication, as Postgres's postmaster refuses
        authenticate(self.server.auth_config, self.server.engine.roles, user, self.read_login_message,
                     self.write, self.flush)
        role = self.server.engine.roles.get(user)
        slots.take(superuser=bool(getattr(role, "superuser", False)))
        self.has_slot = True
        session = conn.open_session(user, database)
        state = ConnectionState(session, params)
        if hasattr(session, "connected_from"):
            session.connected_from(*self.client_address[:2])
        try:   # startup options set session settings (pgjdbc: TimeZone; psql: options=-c ...)
            for name, value in startup_settings(params).items():
                session.startup_setting(name, value.strip("'"))
        except Exception:
            session.close()
            raise
        self.send_authentication_ok()
        state.reported = conn.parameters() | {
            "application_name": params.get("application_name", ""),
            "session_authorization": user,
            "is_superuser": "on" if getattr(session, "is_superuser", False) else "off",
        }
        self.report_settings(state, initial=True)
        self.send_backend_key_data(state)
        self.send_ready_for_query(state)
        self.flush()
        self.request.settimeout(None)
        self.max_message = MAX_MESSAGE
        return state

    def cancel(self, process_id: int, secret_key: int) -> None:
        """Cancel requests come on a fresh connection; a wrong key is silently ignored."""
        target = self.server.ctxts.get(process_id)
        if target is not None and target.secret_key == secret_key:
            log.info("cancel request for backend %d", process_id)
            target.session.cancel()
