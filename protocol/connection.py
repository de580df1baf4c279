"""One client connection: the message loop, the simple query protocol, and the plumbing.

`TierdHandler` is buenavista 0.5.0's BuenaVistaHandler with its message handlers replaced:
as shipped they guess parameter types (through a date parser), execute statements on
Describe, send booleans as `true`, drop SQLSTATEs, and encode rows one Python call per cell.
A connection is read top to bottom: startup (protocol/startup.py), then a loop that hands
each message to its handler through one dispatch dict: Query here, the extended protocol's
messages in protocol/extended.py (with held INSERT batches, protocol/batch.py), COPY in
protocol/copy.py. Those phases are mixins of this class; this module keeps what they share:
framed reads, buffered writes, errors, notices and ParameterStatus reports.
"""
from __future__ import annotations

import logging
import socket
import ssl
import struct

from buenavista.postgres import BuenaVistaHandler

from engine.errors import (EngineError, FatalProtocolViolation, FeatureNotSupported,
                           IdleInTransactionSessionTimeout)
from engine.session.settings import duration_seconds
from engine.sql.copy import is_copy
from engine.sql.split import split_statements

from . import messages
from .batch import BatchFailed, InsertBatching
from .column_names import postgres_schema
from .copy import CopyExchange
from .errors import error_response, notice_response
from .events import SessionEvents
from .extended import ExtendedQuery
from .limits import MAX_PREAUTH_MESSAGE
from .messages import ClientGone, client_input_error
from .rows import data_rows, plan_columns, row_description
from .session import SETTINGS_TAGS, ConnectionState
from .startup import Startup

log = logging.getLogger("tierd.protocol")

_LENGTH = struct.Struct("!i")
EXTENDED = frozenset(b"PBDECH")   # type bytes whose failure makes us skip until Sync
# What Postgres's SocketBackend accepts after startup; any other type byte ends the session.
FRONTEND_TYPES = frozenset(b"QFXBCDEHPSdcf")


class TierdHandler(Startup, ExtendedQuery, InsertBatching, CopyExchange, BuenaVistaHandler):
    """One client connection, read top to bottom: startup, authentication, message loop."""

    wbufsize = 1 << 16   # buffer writes; flushed at ReadyForQuery, Flush and auth steps
    max_message = MAX_PREAUTH_MESSAGE   # raised once the client has logged in

    # --- plumbing ------------------------------------------------------------------

    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        state = None
        try:
            state = self.handle_startup(self.server.conn)
            if state is not None:
                self.server.ctxts[state.process_id] = state
                self.events = SessionEvents(self, state)
                self.serve_messages(state)
        except (ClientGone, ConnectionError):
            pass
        except TimeoutError:
            if state is None:
                log.info("client %s: authentication timed out", self.client_address[0])
        except EngineError as exc:   # startup and authentication failures are FATAL
            self.log_client_error(exc)
            self.send_fatal(exc)
        except Exception as exc:
            error = client_input_error(exc)
            if error is None:
                log.exception("connection failed")
            else:
                self.log_client_error(error)
            self.send_fatal(error or exc)
        finally:
            if self.has_slot:
                self.has_slot = False
                self.server.slots.give_back()
            if state is not None:
                self.server.ctxts.pop(state.process_id, None)
                try:
                    state.session.close()
                except Exception:
                    log.exception("closing session failed")

    def finish(self) -> None:
        super().finish()
        if isinstance(self.request, ssl.SSLSocket):  # socketserver closes only the plain socket
            for step in (lambda: self.request.shutdown(socket.SHUT_WR), self.request.close):
                try:
                    step()
                except OSError:
                    pass

    def write(self, data) -> None:
        self.wfile.write(data)

    def flush(self) -> None:
        if self.batch is not None:
            self.run_batch()
        self.wfile.flush()

    def send_fatal(self, exc: BaseException) -> None:
        try:
            self.write(error_response(exc, "FATAL"))
            self.flush()
        except OSError:
            pass

    # Messages are read out of one buffer filled a packet at a time (`rfile.read1`), so the
    # handler knows whether the client's next message has already arrived: a driver sends a
    # prepared statement's Bind/Describe/Execute/Sync in one packet, and they are handled as
    # one group (`serve_messages`), without a wait, an idle timeout or a lock per message.
    rbuf: bytes = b""
    rpos: int = 0

    def read_exact(self, n: int) -> bytes:
        buf, pos = self.rbuf, self.rpos
        if len(buf) - pos >= n:
            self.rpos = pos + n
            return buf[pos:pos + n]
        head = buf[pos:]
        self.rbuf, self.rpos = b"", 0
        data = self.rfile.read(n - len(head))   # the rest of a large message, read exactly
        if data is None or len(data) != n - len(head):
            raise ClientGone()
        return head + data

    def read_message(self) -> tuple[bytes, bytes]:
        buf, pos = self.rbuf, self.rpos
        if len(buf) - pos < 5:
            buf, pos = self.fill(5)
        (length,) = _LENGTH.unpack_from(buf, pos + 1)
        if length < 4 or length > self.max_message:
            raise FatalProtocolViolation(f"invalid message length {length}")
        self.rpos = pos + 5
        return buf[pos:pos + 1], self.read_exact(length - 4) if length > 4 else b""

    def fill(self, need: int) -> tuple[bytes, int]:
        """At least `need` unread bytes in the buffer, waiting for the client as needed."""
        buf = self.rbuf[self.rpos:]
        while len(buf) < need:
            chunk = self.rfile.read1(1 << 16)
            if not chunk:
                raise ClientGone()
            buf += chunk
        self.rbuf, self.rpos = buf, 0
        return buf, 0

    def message_arrived(self) -> bool:
        """Whether the client's next message is already whole in the buffer (no wait)."""
        buf, pos = self.rbuf, self.rpos
        if len(buf) - pos < 5:
            return False
        return len(buf) - pos > _LENGTH.unpack_from(buf, pos + 1)[0]

    # --- message loop --------------------------------------------------------------

    def serve_messages(self, state: ConnectionState) -> None:
        handlers = {
            b"Q": self.handle_query, b"P": self.handle_parse, b"B": self.handle_bind,
            b"D": self.handle_describe, b"E": self.handle_execute, b"C": self.handle_close,
            b"H": self.handle_flush,
        }
        while True:
            kind, payload = self.next_message(state)
            with self.events.busy:   # other sessions' notifications wait while messages are handled
                while True:
                    if kind == b"X":
                        return
                    if kind[0] not in FRONTEND_TYPES:   # even while skipping to Sync, as Postgres
                        raise FatalProtocolViolation(f"invalid frontend message type {kind[0]}")
                    self.handle_message(state, handlers, kind, payload)
                    if not self.message_arrived():
                        self.run_while_waiting(state)
                        break
                    kind, payload = self.read_message()   # the rest of a group sent in one packet
            self.events.deliver()

    def handle_message(self, state: ConnectionState, handlers: dict, kind: bytes, payload: bytes) -> None:
        if kind == b"S":
            if self.batch is not None:
                self.run_batch()
            self.handle_sync(state)
            return
        if self.batch is not None and kind not in b"PBDE":
            self.run_batch()    # the held Executes run before anything that may see them
            if state.skip_until_sync:
                self.flush()    # a row's error: a client waiting after Flush must see it now
        if state.skip_until_sync:
            return              # Postgres discards messages after an error until Sync
        if kind in (b"d", b"c", b"f"):
            return              # stray COPY data after a failed COPY is ignored
        handler = handlers.get(kind, self.handle_function_call)
        try:
            handler(state, payload)
        except (ClientGone, ConnectionError):
            raise
        except BatchFailed:
            return
        except Exception as exc:
            if kind in b"PB" and self.batch is not None:
                self.run_batch()   # the held Executes came first: their replies, then this error
                if state.skip_until_sync:
                    return         # one of them failed: that error is the answer
            self.send_error(exc)
            if kind in b"PB":   # no statement ran: the engine learns of the error here (and
                state.session.front_end_error()   # rolls back the held Executes' writes too)
            if kind[0] in EXTENDED:
                state.skip_until_sync = True
                self.flush()    # a client waiting after Flush (asyncpg) must see it now

    def next_message(self, state: ConnectionState) -> tuple[bytes, bytes]:
        """The client's next message. A transaction that has written holds the write lock:
        left idle longer than idle_in_transaction_session_timeout, it ends (FATAL 25P03,
        rolled back), so no client can stall every writer by going quiet. The socket has that
        timeout only while it waits for such a message (not while results are sent)."""
        if self.message_arrived() or not getattr(state.session, "holds_write_lock", False):
            return self.read_message()   # already here, or no transaction holding writers up
        idle = self.idle_in_transaction_timeout(state)
        if not idle:
            return self.read_message()
        self.request.settimeout(idle)
        try:
            return self.read_message()
        except TimeoutError:
            log.info("client %s: idle in a writing transaction for %gs, terminating it",
                     self.client_address[0], idle)
            raise IdleInTransactionSessionTimeout(
                "terminating connection due to idle-in-transaction timeout") from None
        finally:
            try:
                self.request.settimeout(None)
            except OSError:
                pass

    idle_setting: tuple = (None, None)   # (setting text, its seconds): read once per value

    def idle_in_transaction_timeout(self, state: ConnectionState) -> float:
        """The session's idle_in_transaction_session_timeout (SET may change it), in seconds."""
        text = state.settings.get("idle_in_transaction_session_timeout")
        if text is not None and text == self.idle_setting[0]:
            seconds = self.idle_setting[1]
        else:
            seconds = duration_seconds(text) if text is not None else None
            self.idle_setting = (text, seconds)
        return self.server.limits.idle_in_transaction_timeout_s if seconds is None else seconds

    def send_error(self, exc: BaseException, ctx=None) -> None:
        """Errors carry severity, SQLSTATE, message, detail and hint (buenavista: message only).
        A message the client got wrong is answered as Postgres does and logged in one line;
        a traceback is logged only for what is tierd's own bug."""
        if not isinstance(exc, EngineError):
            error = client_input_error(exc)
            if error is None:
                log.exception("unexpected error", exc_info=exc)
            else:
                exc = error
        self.log_client_error(exc)
        self.write(error_response(exc))

    def log_client_error(self, exc: BaseException) -> None:
        """One line for a malformed message (08P01) or undecodable text (22021)."""
        code = getattr(exc, "sqlstate", "")
        if code.startswith("08") or code == "22021":
            log.info("client %s: %s %s", self.client_address[0], code, getattr(exc, "message", exc))

    def send_notices(self, notices) -> None:
        for notice in notices:
            self.write(notice_response(notice))

    def report_settings(self, state: ConnectionState, initial: bool = False) -> None:
        """ParameterStatus for every reported setting at startup, and after a SET/RESET for
        each one whose value changed (drivers track TimeZone, DateStyle, application_name)."""
        settings = getattr(state.session, "settings", {})
        changed = {}
        for name, value in state.reported.items():
            current = settings.get(name.lower(), value)
            if initial or current != value:
                changed[name] = current
        state.reported.update(changed)
        self.send_parameter_status(changed)

    # --- simple query --------------------------------------------------------------

    def handle_function_call(self, state: ConnectionState, payload: bytes) -> None:
        """FunctionCall ('F', the fast-path interface): refused, and the client may go on."""
        self.send_error(FeatureNotSupported("fast-path function calls are not supported"))
        self.send_ready_for_query(state)
        self.flush()

    def handle_query(self, state: ConnectionState, payload: bytes) -> None:
        """One engine call per statement, each result sent before the next runs; whatever
        fails, the client gets its ErrorResponse and ReadyForQuery."""
        try:
            text = messages.read_query(payload)
            statements = split_statements(text)
            if not statements:
                self.write(messages.EMPTY_QUERY_RESPONSE)
            if len(statements) > 1 and self.answer_pool_reset(state, text, statements):
                statements = []
            for statement in statements:
                tag = state.deallocate(statement)
                if tag:
                    self.write(messages.command_complete(tag))
                    continue
                if is_copy(statement):
                    self.run_copy(state, statement)
                    continue
                results = state.session.execute(statement)
                if not results:
                    self.write(messages.EMPTY_QUERY_RESPONSE)
                for result in results:
                    self.send_statement_result(state, result, statement)
        except (ClientGone, ConnectionError):
            raise
        except Exception as exc:
            self.send_error(exc)
        self.send_ready_for_query(state)
        self.flush()

    def answer_pool_reset(self, state: ConnectionState, text: str, statements: list[str]) -> bool:
        """asyncpg's reset script at a pool release, answered by one engine call (the engine
        says whether `text` is that script); False: run it statement by statement."""
        results = state.session.pool_reset(text)
        if results is None:
            return False
        for statement, result in zip(statements, results):
            self.send_statement_result(state, result, statement)
        return True

    def send_statement_result(self, state: ConnectionState, result, statement: str) -> None:
        """One statement's answer to a simple Query: its notices, rows and tag, and the
        settings a SET, RESET or DISCARD ALL changed."""
        self.send_notices(result.notices)
        self.send_result(state, result.tag, result.table, statement, result.binary)
        if result.tag in SETTINGS_TAGS:
            state.after_settings_change(result.tag)
            self.report_settings(state)

    def send_result(self, state: ConnectionState, tag: str, table, sql: str, binary: bool = False) -> None:
        if table is not None:
            columns = plan_columns(postgres_schema(sql, table.schema), (1,) if binary else (),
                                   timezone=state.timezone, interval_style=state.interval_style)
            self.write(row_description(columns))
            for chunk in data_rows(table, columns):
                self.write(chunk)
        self.write(messages.command_complete(tag))
