"""The wire server as the daemon runs it: connections counted, and drained on SIGTERM.

`ServiceHandler` is protocol.connection's TierdHandler plus bookkeeping: each connection is
registered while it lives and marked busy from reading a message until it asks for the next
one. Draining lets busy connections finish the statement they are running; a connection
asking for its next message then gets FATAL 57P01 (as PostgreSQL's fast shutdown sends) and
is closed, its open transaction rolled back. Idle connections are woken by shutting down the
read side of their socket, so the FATAL still reaches the client.
"""
from __future__ import annotations

import logging
import re
import select
import socket
import threading
import time

from engine import metrics
from engine.errors import AdminShutdown, QueryCanceled
from protocol.connection import TierdHandler
from protocol.messages import ClientGone

log = logging.getLogger("tierd.wire")

_ROWS_TAG = re.compile(r"^(?:INSERT \d+|COPY) (\d+)$")


def _shutdown_error() -> AdminShutdown:
    return AdminShutdown("terminating connection due to administrator command",
                         detail="tierd is shutting down")


class Connections:
    """The live client connections of one server, and the drain at shutdown."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handlers: set[ServiceHandler] = set()
        self.draining = False

    def add(self, h: ServiceHandler) -> None:
        with self.lock:
            self.handlers.add(h)

    def discard(self, h: ServiceHandler) -> None:
        with self.lock:
            self.handlers.discard(h)

    def snapshot(self) -> list[ServiceHandler]:
        with self.lock:
            return list(self.handlers)

    def count(self) -> int:
        with self.lock:
            return len(self.handlers)

    def watch_disconnects(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Cancel the running statement of a client that has gone (its socket hung up), so a
        long query whose client disconnected does not run on for nothing. Runs on a thread
        of its own until `stop` is set."""
        gone = select.POLLRDHUP | select.POLLHUP | select.POLLERR
        while not stop.wait(interval):
            if self.draining:   # the drain shuts sockets itself and cancels what must be
                continue
            busy = {h.fileno(): h for h in self.snapshot() if h.busy and not h.cancelled_gone}
            busy.pop(-1, None)
            if not busy:
                continue
            poller = select.poll()
            for fd in busy:
                poller.register(fd, gone)
            try:
                events = poller.poll(0)
            except OSError:
                continue
            for fd, event in events:
                h = busy.get(fd)
                if h is not None and event & gone:
                    h.cancelled_gone = True
                    log.info("client %s disconnected; cancelling its running statement", h.client_address[0])
                    h.cancel_statement()

    def drain(self, cancel_at: float, deadline: float, on_wait=lambda busy: None) -> int:
        """Close every connection once its running statement (if any) has finished; at
        `cancel_at` cancel the statements still running (their sessions end with FATAL
        57P01); at `deadline` close what is left. Returns how many had to be cancelled."""
        self.draining = True
        announced = None
        while True:
            live = self.snapshot()
            busy = [h for h in live if h.busy]
            for h in live:
                if not h.busy:
                    h.shut(socket.SHUT_RD)  # wakes a read blocked on an idle client
            if not live:
                return 0
            if busy and len(busy) != announced:
                announced = len(busy)
                on_wait(len(busy))
            if time.monotonic() >= cancel_at:
                break
            time.sleep(0.02)
        cancelled = [h for h in self.snapshot() if h.busy]
        for h in cancelled:
            log.warning("shutdown: cancelling a statement still running after the grace period (%s)",
                        h.client_address[0])
            h.cancel_statement(shutdown=True)
        while self.snapshot() and time.monotonic() < deadline:
            for h in self.snapshot():
                if not h.busy:
                    h.shut(socket.SHUT_RD)
            time.sleep(0.02)
        for h in self.snapshot():  # e.g. blocked writing to a client that reads nothing
            log.warning("shutdown: closing a connection that did not finish (%s)", h.client_address[0])
            h.shut(socket.SHUT_RDWR)
        return len(cancelled)


class CountingSession:
    """The engine session of one connection, counting statements and ingested rows."""

    def __init__(self, session) -> None:
        self._session = session

    # Read at every message (transaction status, the idle-in-transaction check): forwarded
    # directly rather than through __getattr__, which Python reaches only after a failed lookup.
    in_transaction = property(lambda self: self._session.in_transaction)
    failed = property(lambda self: self._session.failed)
    holds_write_lock = property(lambda self: self._session.holds_write_lock)

    def __getattr__(self, name):
        value = getattr(self._session, name)
        if getattr(value, "__self__", None) is self._session and getattr(type(self._session), name, None) is not None:
            self.__dict__[name] = value  # a method of the session's class: found once, not at every message
        return value

    def execute(self, sql: str, params: list | None = None):
        try:
            results = self._session.execute(sql, params)
        except Exception:
            metrics.inc("tierd_statements_total")
            raise
        metrics.inc("tierd_statements_total", max(1, len(results)))
        for r in results:
            m = _ROWS_TAG.match(r.tag or "")
            if m and int(m.group(1)):
                metrics.inc("tierd_rows_ingested_total", int(m.group(1)))
        return results

    def pool_reset(self, sql: str):
        results = self._session.pool_reset(sql)
        if results is not None:
            metrics.inc("tierd_statements_total", len(results))
        return results

    def execute_batch(self, sql: str, param_rows: list[list]):
        results, error = self._session.execute_batch(sql, param_rows)
        metrics.inc("tierd_statements_total", len(results) + (error is not None))
        ingested = sum(int(m.group(1)) for r in results if (m := _ROWS_TAG.match(r.tag or "")))
        if ingested:
            metrics.inc("tierd_rows_ingested_total", ingested)
        return results, error


class ServiceHandler(TierdHandler):
    """TierdHandler with connection bookkeeping and a graceful drain."""

    busy = False
    state = None
    cancelled_gone = False  # its statement was cancelled because the client hung up
    cancelled_for_shutdown = False  # its statement was cancelled at the end of the grace period

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self)
        metrics.inc("tierd_connections_opened_total")

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.connections.discard(self)
            metrics.inc("tierd_connections_closed_total")

    def handle_startup(self, conn):
        state = super().handle_startup(conn)
        if state is not None:
            state.session = CountingSession(state.session)
        self.state = state
        return state

    def read_message(self) -> tuple[bytes, bytes]:
        draining = self.server.connections
        self.busy = False
        if self.cancelled_for_shutdown:   # its FATAL 57P01 has been sent: just close
            raise ClientGone()
        if draining.draining:
            raise _shutdown_error()
        try:
            message = super().read_message()
        except (ClientGone, ConnectionError):
            if draining.draining:
                raise _shutdown_error() from None
            raise
        if draining.draining:  # a statement that arrives now is refused, never half-run
            raise _shutdown_error()
        self.busy = True
        return message

    def send_error(self, exc: BaseException, ctx=None) -> None:
        if self.cancelled_for_shutdown and isinstance(exc, QueryCanceled):
            # Postgres's fast shutdown ends the session: FATAL 57P01, not 57014
            self.send_fatal(_shutdown_error())
            return
        metrics.inc("tierd_errors_total", severity="ERROR")
        super().send_error(exc, ctx)

    def send_fatal(self, exc: BaseException) -> None:
        metrics.inc("tierd_errors_total", severity="FATAL")
        super().send_fatal(exc)

    def send_ready_for_query(self, state) -> None:
        if not self.cancelled_for_shutdown:   # after FATAL 57P01 nothing more is sent
            super().send_ready_for_query(state)

    # --- used by Connections.drain and watch_disconnects (other threads) ---------------
    def fileno(self) -> int:
        try:
            return self.request.fileno()
        except OSError:
            return -1

    def shut(self, how: int) -> None:
        try:
            self.request.shutdown(how)
        except OSError:
            pass

    def cancel_statement(self, shutdown: bool = False) -> None:
        self.cancelled_for_shutdown = shutdown
        state = self.state
        if state is not None:
            try:
                state.session.cancel()
            except Exception:
                log.exception("cancelling a statement at shutdown")
