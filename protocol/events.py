"""What other sessions send a connection while it may be idle: NotificationResponse for a
LISTENed channel, and the FATAL of pg_terminate_backend.

The engine calls back from the sending session's thread (engine/notifications.py; the
session's `attach_front_end`). Writes to the socket stay one at a time: the connection's own
thread holds `busy` while it handles a message, and whoever finds it free writes what is
queued, so a notification reaches an idle client at once and a busy one right after the
message it is handling. Notifications wait while the session is inside a transaction block
(PostgreSQL delivers them between transactions). TLS connections are written from their own
thread only (OpenSSL objects are not shared between threads): there queued notifications go
out after the client's next message.
"""
from __future__ import annotations

import collections
import logging
import socket
import ssl
import struct
import threading

from buenavista.postgres import TransactionStatus

from engine.errors import AdminShutdown

from .errors import error_response

log = logging.getLogger("tierd.protocol")


def notification_response(pid: int, channel: str, payload: str) -> bytes:
    body = struct.pack("!i", pid) + channel.encode() + b"\x00" + payload.encode() + b"\x00"
    return b"A" + struct.pack("!i", len(body) + 4) + body


class SessionEvents:
    """The queue of one connection's notifications and termination."""

    def __init__(self, handler, state):
        self.handler = handler
        self.state = state
        self.busy = threading.Lock()
        self.queue: collections.deque = collections.deque()
        self.own_thread = threading.get_ident()
        attach = getattr(state.session, "attach_front_end", None)
        if attach is not None:
            attach(self.notify, self.terminate)

    def notify(self, pid: int, channel: str, payload: str) -> None:
        self.queue.append(notification_response(pid, channel, payload))
        self.deliver()

    def terminate(self) -> None:
        self.queue.append(None)  # None: the FATAL, then the connection closes
        self.deliver()

    def deliver(self) -> None:
        """Write what is queued if the connection is free (and outside a transaction for
        notifications); otherwise its own thread does after the message it handles."""
        if not self.queue:
            return
        if isinstance(self.handler.request, ssl.SSLSocket) and threading.get_ident() != self.own_thread:
            return
        if not self.busy.acquire(blocking=False):
            return
        try:
            self._write()
        except OSError:
            pass
        finally:
            self.busy.release()

    def _write(self) -> None:
        h = self.handler
        idle = self.state.transaction_status() == TransactionStatus.IDLE
        wrote = False
        kept = collections.deque()
        while self.queue:
            item = self.queue.popleft()
            if item is None:
                h.wfile.write(error_response(
                    AdminShutdown("terminating connection due to administrator command"), "FATAL"))
                h.wfile.flush()
                try:
                    h.request.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.queue.clear()
                return
            if idle:
                h.wfile.write(item)
                wrote = True
            else:
                kept.append(item)
        self.queue.extendleft(reversed(kept))
        if wrote:
            h.wfile.flush()
