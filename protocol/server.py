"""The Postgres wire server: buenavista's socket server and handler, corrected for tierd.

buenavista 0.5.0 is kept for its threading TCP server, its message constants and
buffer/response helpers; the message handlers are overridden because as shipped they guess
parameter types (through a date parser), execute statements on Describe, send booleans as
`true`, drop SQLSTATEs, and encode rows one Python call per cell. Each override says why.
"""
from __future__ import annotations

import io
import ipaddress
import logging
import re
import socket
import ssl
import struct
from itertools import zip_longest

from buenavista.core import Connection
from buenavista.postgres import BuenaVistaHandler, BuenaVistaServer

from engine.sql.copy import is_copy, parse_copy
from engine.errors import EngineError

from . import messages
from .copy import COPY_DONE, CopyInStream, copy_out_messages, copy_response, raw_blocks
from .auth import AuthConfig, authenticate
from engine.errors import FatalProtocolViolation, InvalidAuthorizationSpecification, InvalidSqlStatementName, \
    ProtocolViolation, SyntaxError_

from .errors import error_response, notice_response
from .column_names import postgres_schema
from .rows import data_rows, plan_columns, row_description
from .session import ConnectionState, Portal, PreparedStatement
from .types import decode_param, oid_for_sql_type

from engine.sql.split import split_statements

log = logging.getLogger("tierd.protocol")

MAX_MESSAGE = 1 << 30
# Settings a startup packet may carry (the encodings stay UTF8 whatever a client asks).
STARTUP_SETTINGS = frozenset({"timezone", "datestyle", "intervalstyle", "application_name",
                              "search_path"})
EXTENDED = frozenset(b"PBDECH")   # type bytes whose failure makes us skip until Sync
# Prepared statements are protocol state, so the SQL that drops them is answered here.
_DEALLOCATE = re.compile(r'^\s*DEALLOCATE\s+(?:PREPARE\s+)?(ALL|"[^"]+"|\w+)\s*;?\s*$', re.I)


class PendingBatch:
    """Executes of one batchable INSERT held back until a message that needs their outcome
    (a different statement, Sync, Flush...), then run by one engine call. Their replies wait
    in memory: `segments[i]` is what was written before Execute i's CommandComplete."""

    def __init__(self, state: ConnectionState, sql: str, out):
        self.state, self.sql, self.out = state, sql, out   # out: the real write file
        self.params: list[list] = []
        self.segments: list[bytes] = []


class BatchFailed(Exception):
    """The held batch a message waited for failed (its error is sent): skip to Sync."""


class ClientGone(ConnectionError):
    """The client closed the socket (or sent a truncated message)."""


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


class TierdServer(BuenaVistaServer):
    """A thread per connection; daemon threads so shutdown never waits on idle clients."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], engine, auth: AuthConfig,
                 ssl_context: ssl.SSLContext | None = None, ssl_required: bool = False):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, EngineConnection(engine))
        # BuenaVistaServer hard-wires its own handler class.
        self.RequestHandlerClass = TierdHandler
        self.engine = engine
        self.auth_config = auth
        self.ssl_context = ssl_context  # None: SSLRequest is answered 'N'
        self.ssl_required = ssl_required  # refuse startup packets that did not come over TLS

    def verify_request(self, request, client_address) -> bool:
        """Trust mode serves loopback clients only; with a password anyone may try."""
        if not self.auth_config.trust:
            return True
        try:
            return ipaddress.ip_address(client_address[0]).is_loopback
        except ValueError:
            return False


def make_server(engine, host: str, port: int, auth: AuthConfig, ssl_context: ssl.SSLContext | None = None,
                ssl_required: bool = False) -> TierdServer:
    """Bind (but do not start) the wire server; call `serve_forever()` on the result."""
    return TierdServer((host, port), engine, auth, ssl_context, ssl_required)


class TierdHandler(BuenaVistaHandler):
    """One client connection, read top to bottom: startup, authentication, message loop."""

    wbufsize = 1 << 16   # buffer writes; flushed at ReadyForQuery, Flush and auth steps
    batch: PendingBatch | None = None

    # --- plumbing ------------------------------------------------------------------

    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        state = None
        try:
            state = self.handle_startup(self.server.conn)
            if state is not None:
                self.server.ctxts[state.process_id] = state
                self.serve_messages(state)
        except (ClientGone, ConnectionError, TimeoutError):
            pass
        except EngineError as exc:   # startup and authentication failures are FATAL
            self.send_fatal(exc)
        except Exception as exc:
            log.exception("connection failed")
            self.send_fatal(exc)
        finally:
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

    def read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) != n:
            raise ClientGone()
        return data

    def read_message(self) -> tuple[bytes, bytes]:
        kind = self.rfile.read(1)
        if not kind:
            raise ClientGone()
        (length,) = struct.unpack("!i", self.read_exact(4))
        if length < 4 or length > MAX_MESSAGE:
            raise FatalProtocolViolation(f"invalid message length {length}")
        return kind, self.read_exact(length - 4)

    # --- startup -------------------------------------------------------------------

    def recv_exact(self, n: int) -> bytes:
        """Read the startup packets straight from the socket, never past them: bytes a client
        sent after its SSLRequest must reach the TLS handshake, not a plaintext buffer."""
        data = b""
        while len(data) < n:
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
        while True:
            (length,) = struct.unpack("!i", self.recv_exact(4))
            if length < 8 or length > 10_000:
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
        authenticate(self.server.auth_config, self.server.engine.roles, user, self.read_message, self.write,
                     self.flush)
        session = conn.open_session(user, database)
        state = ConnectionState(session, params)
        settings = getattr(session, "settings", {})
        for name, value in params.items():   # startup options set session settings (pgjdbc: TimeZone)
            if name.lower() in STARTUP_SETTINGS and name.lower() in settings:
                settings[name.lower()] = value.strip("'")
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
        return state

    def cancel(self, process_id: int, secret_key: int) -> None:
        """Cancel requests come on a fresh connection; a wrong key is silently ignored."""
        target = self.server.ctxts.get(process_id)
        if target is not None and target.secret_key == secret_key:
            log.info("cancel request for backend %d", process_id)
            target.session.cancel()

    # --- message loop --------------------------------------------------------------

    def serve_messages(self, state: ConnectionState) -> None:
        handlers = {
            b"Q": self.handle_query, b"P": self.handle_parse, b"B": self.handle_bind,
            b"D": self.handle_describe, b"E": self.handle_execute, b"C": self.handle_close,
            b"H": self.handle_flush,
        }
        while True:
            kind, payload = self.read_message()
            if kind == b"X":
                return
            if kind == b"S":
                if self.batch is not None:
                    self.run_batch()
                self.handle_sync(state)
                continue
            if self.batch is not None and kind not in b"PBDE":
                self.run_batch()    # the held Executes run before anything that may see them
            if state.skip_until_sync:
                continue            # Postgres discards messages after an error until Sync
            if kind in (b"d", b"c", b"f"):
                continue            # stray COPY data after a failed COPY is ignored
            handler = handlers.get(kind)
            try:
                if handler is None:
                    raise ProtocolViolation(f"invalid frontend message type {kind!r}")
                handler(state, payload)
            except (ClientGone, ConnectionError):
                raise
            except BatchFailed:
                continue
            except Exception as exc:
                self.send_error(exc)
                if kind[0] in EXTENDED:
                    state.skip_until_sync = True
                    self.flush()    # a client waiting after Flush (asyncpg) must see it now

    def send_error(self, exc: BaseException, ctx=None) -> None:
        """Errors carry severity, SQLSTATE, message, detail and hint (buenavista: message only)."""
        if not isinstance(exc, EngineError):
            log.exception("unexpected error", exc_info=exc)
        self.write(error_response(exc))

    def send_notices(self, notices) -> None:
        for notice in notices:
            self.write(notice_response(notice))

    # --- simple query --------------------------------------------------------------

    def handle_query(self, state: ConnectionState, payload: bytes) -> None:
        """One engine call per statement, each result sent before the next runs."""
        sql = messages.read_query(payload)
        try:
            statements = split_statements(sql)
            if not statements:
                self.write(messages.EMPTY_QUERY_RESPONSE)
            for statement in statements:
                tag = deallocate(state, statement)
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
                    self.send_notices(result.notices)
                    self.send_result(state, result.tag, result.table, statement)
                    if result.tag in ("SET", "RESET"):
                        self.report_settings(state)
        except (ClientGone, ConnectionError):
            raise
        except Exception as exc:
            self.send_error(exc)
        self.send_ready_for_query(state)
        self.flush()

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

    def send_result(self, state: ConnectionState, tag: str, table, sql: str) -> None:
        if table is not None:
            columns = plan_columns(postgres_schema(sql, table.schema), timezone=state.timezone)
            self.write(row_description(columns))
            for chunk in data_rows(table, columns):
                self.write(chunk)
        self.write(messages.command_complete(tag))

    # --- COPY ----------------------------------------------------------------------

    def run_copy(self, state: ConnectionState, sql: str) -> None:
        """COPY FROM STDIN / TO STDOUT, in the simple or the extended protocol; ends with
        CommandComplete `COPY n` (or raises, after reading the client's data to its end)."""
        cmd = parse_copy(sql)
        binary = cmd.options.format == "binary"
        if cmd.direction == "to":
            result = state.session.copy_to(cmd)
            self.write(copy_response(b"H", binary, result.table.num_columns))
            for chunk in copy_out_messages(result.table, cmd.options):
                self.write(chunk)
            self.write(COPY_DONE)
            self.write(messages.command_complete(result.tag))
            return
        columns = state.session.copy_target(cmd)
        self.write(copy_response(b"G", binary, len(columns)))
        self.flush()
        stream = CopyInStream(self.read_message)
        try:
            result = state.session.copy_from(cmd, raw_blocks(cmd, columns, stream.read, cmd.label))
        except ConnectionError:
            raise
        except Exception:
            stream.drain()  # Postgres reports the error after the client's CopyDone/CopyFail
            raise
        self.write(messages.command_complete(result.tag))

    # --- extended query ------------------------------------------------------------

    def handle_parse(self, state: ConnectionState, payload: bytes) -> None:
        name, sql, param_oids = messages.read_parse(payload)
        if len(split_statements(sql)) > 1:
            raise SyntaxError_("cannot insert multiple commands into a prepared statement")
        state.add_statement(name, PreparedStatement(sql, param_oids))
        self.send_parse_complete()

    def handle_bind(self, state: ConnectionState, payload: bytes) -> None:
        """Parameters are decoded by their declared OID only (never guessed from content)."""
        bind = messages.read_bind(payload)
        statement = state.statement(bind.statement)
        required = max(len(statement.param_oids), statement.placeholders)
        if len(bind.values) != required:
            raise ProtocolViolation(
                f"bind message supplies {len(bind.values)} parameters, but prepared "
                f'statement "{bind.statement}" requires {required}')
        declared = statement.param_oids
        params = [decode_param(declared[i] if i < len(declared) else 0, bind.format_of(i), value)
                  for i, value in enumerate(bind.values)]
        if not bind.portal:
            state.portals.pop("", None)
        state.add_portal(bind.portal, Portal(statement, params, bind.result_formats))
        self.send_bind_complete()

    def handle_describe(self, state: ConnectionState, payload: bytes) -> None:
        """Describe never runs a statement twice: a portal runs once, here or at Execute."""
        kind, name = messages.read_target(payload)
        if kind == "S":
            self.describe_statement(state, state.statement(name))
            return
        portal = state.portal(name)
        if portal.statement.is_copy or (not portal.executed and self.batchable(state, portal.statement)):
            self.write(messages.NO_DATA)   # runs at Execute (COPY: where its data flows)
            return
        self.run_portal(state, portal)
        if portal.table is None:
            self.write(messages.NO_DATA)
        else:
            self.write(row_description(portal.columns))

    def describe_statement(self, state: ConnectionState, statement: PreparedStatement) -> None:
        """ParameterDescription with inferred types, then RowDescription or NoData; the
        statement is bound by DuckDB (LIMIT 0) but never run."""
        self.run_held(state)
        param_types, schema = state.session.describe(statement.sql)
        statement.param_oids = [declared or oid_for_sql_type(inferred) for declared, inferred in
                                zip_longest(statement.param_oids, param_types)]
        self.write(messages.parameter_description(statement.param_oids))
        if schema is None:
            self.write(messages.NO_DATA)
        else:
            self.write(row_description(plan_columns(postgres_schema(statement.sql, schema),
                                                    timezone=state.timezone)))

    def run_portal(self, state: ConnectionState, portal: Portal) -> None:
        if portal.executed:
            return
        self.run_held(state)
        portal.executed = True
        state.session.begin_segment()
        tag = deallocate(state, portal.statement.sql)
        if tag:
            portal.tag = tag
            return
        results = state.session.execute(portal.statement.sql, portal.params)
        if not results:
            portal.empty_query = True
            return
        result = results[-1]
        self.send_notices(result.notices)
        if result.tag in ("SET", "RESET"):
            self.report_settings(state)
        portal.tag, portal.table = result.tag, result.table
        if result.table is not None:
            portal.columns = plan_columns(postgres_schema(portal.statement.sql, result.table.schema),
                                          portal.result_formats, state.timezone)

    def handle_execute(self, state: ConnectionState, payload: bytes) -> None:
        """Row limits are honoured: send that many rows, then PortalSuspended."""
        name, max_rows = messages.read_execute(payload)
        portal = state.portal(name)
        if portal.statement.is_copy:
            if portal.executed:
                raise ProtocolViolation("COPY portal already ran")
            self.run_held(state)
            portal.executed = True
            self.run_copy(state, portal.statement.sql)
            return
        if not portal.executed and self.batchable(state, portal.statement):
            self.hold_execute(state, portal)
            return
        self.run_portal(state, portal)
        if portal.empty_query:
            self.write(messages.EMPTY_QUERY_RESPONSE)
            return
        if portal.table is None:
            self.write(messages.command_complete(portal.tag))
            return
        count = portal.remaining if max_rows <= 0 else min(max_rows, portal.remaining)
        for chunk in data_rows(portal.table.slice(portal.position, count), portal.columns):
            self.write(chunk)
        suspended_before = portal.position > 0
        portal.position += count
        if max_rows > 0 and portal.remaining > 0:
            self.send_portal_suspend()
        elif suspended_before and portal.tag.startswith("SELECT"):
            self.write(messages.command_complete(f"SELECT {count}"))
        else:
            self.write(messages.command_complete(portal.tag))

    # --- batched INSERTs (a pipelined executemany) -------------------------------------

    def batchable(self, state: ConnectionState, statement: PreparedStatement) -> bool:
        if statement.batchable is None:
            statement.batchable = state.session.batchable(statement.sql)
        return statement.batchable

    def hold_execute(self, state: ConnectionState, portal: Portal) -> None:
        """Hold this Execute in the pending batch (started here if it holds another
        statement's): its reply is written when the batch runs."""
        sql = portal.statement.sql
        if self.batch is not None and self.batch.sql != sql:
            self.run_held(state)
        portal.executed = True
        portal.tag = "INSERT 0 1"
        if self.batch is None:
            self.batch = PendingBatch(state, sql, self.wfile)
            self.wfile = io.BytesIO()
        self.batch.params.append(portal.params)
        self.batch.segments.append(self.wfile.getvalue())
        self.wfile.seek(0)
        self.wfile.truncate()

    def run_held(self, state: ConnectionState) -> None:
        """Run the pending batch before a message that depends on its outcome; raises
        BatchFailed when it failed (that message is then skipped, as after any error)."""
        if self.batch is not None:
            self.run_batch()
            if state.skip_until_sync:
                raise BatchFailed()

    def run_batch(self) -> None:
        """Run the held Executes as one engine call and write the replies in message order;
        an error answers its row's Execute, and what came after it is dropped (skipped until
        Sync, as Postgres does; the engine rolled the implicit transaction back)."""
        batch, self.batch = self.batch, None
        after = self.wfile.getvalue()
        self.wfile = batch.out
        state = batch.state
        state.session.begin_segment()
        results, error = state.session.execute_batch(batch.sql, batch.params)
        for segment, result in zip(batch.segments, results):
            self.write(segment)
            self.send_notices(result.notices)
            self.write(messages.command_complete(result.tag))
        if error is None:
            self.write(after)
            return
        self.write(batch.segments[len(results)])
        self.send_error(error)
        state.skip_until_sync = True

    def handle_close(self, state: ConnectionState, payload: bytes) -> None:
        kind, name = messages.read_target(payload)   # closing a missing object is no error
        (state.statements if kind == "S" else state.portals).pop(name, None)
        self.send_close_complete()

    def handle_flush(self, state: ConnectionState, payload: bytes) -> None:
        self.flush()

    def handle_sync(self, state: ConnectionState) -> None:
        """Sync ends the implicit transaction of the messages before it: commit or, after an
        error, the rollback already done."""
        state.skip_until_sync = False
        try:
            state.session.end_segment()
        except (ClientGone, ConnectionError):
            raise
        except Exception as exc:
            self.send_error(exc)
        state.end_of_transaction()
        self.send_ready_for_query(state)
        self.flush()


def deallocate(state: ConnectionState, sql: str) -> str | None:
    """Run `DEALLOCATE name|ALL` (psycopg sends it on rollback) against protocol state;
    returns its command tag, or None when `sql` is something else."""
    match = _DEALLOCATE.match(sql)
    if not match:
        return None
    name = match.group(1)
    if name.upper() == "ALL":
        state.statements.clear()
        return "DEALLOCATE ALL"
    name = name[1:-1] if name.startswith('"') else name.lower()
    if state.statements.pop(name, None) is None:
        raise InvalidSqlStatementName(f'prepared statement "{name}" does not exist')
    return "DEALLOCATE"
