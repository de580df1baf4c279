"""Connection limits, as PostgreSQL sets them: how many clients, how long a login may take,
how large a message may be before the client has logged in.

`max_connections` counts sessions from the startup packet on; past it a client gets FATAL
53300 `sorry, too many clients already`, and the last `superuser_reserved_connections`
slots are for superusers only. A socket takes a thread until it has logged in or failed to,
which `authentication_timeout` bounds (the whole startup and SASL exchange); past a hard cap
of open sockets (ten times `max_connections`, at least 1,000) a socket is refused at once
with 53300, without a thread, so a storm of half-open connections cannot grow the threads
without bound; a message before authentication may be at most
`MAX_PREAUTH_MESSAGE` bytes, and a longer length is refused before anything is allocated.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.errors import TooManyConnections

MAX_STARTUP_PACKET = 10_000  # Postgres's MAX_STARTUP_PACKET_LENGTH
MAX_PREAUTH_MESSAGE = 65_535  # Postgres's PG_MAX_AUTH_TOKEN_LENGTH: a SASL message's limit
MAX_MESSAGE = 1 << 30  # after login: Postgres's 1 GB (a COPY row, a large Bind)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 100
    superuser_reserved_connections: int = 3
    authentication_timeout_s: float = 60.0
    idle_in_transaction_timeout_s: float = 60.0  # a writing transaction's wait on its client; 0: off

    def socket_cap(self) -> int:
        return max(1000, 10 * self.max_connections)

    def listen_backlog(self) -> int:
        """Postgres listens with a backlog of 2 * max_connections (at most 10,000)."""
        return max(64, min(10_000, 2 * self.max_connections))


class ConnectionSlots:
    """Sessions counted against max_connections; sockets against the hard cap."""

    def __init__(self, limits: ConnectionLimits):
        self.limits = limits
        self._lock = threading.Lock()
        self.sockets = 0
        self.sessions = 0

    def open_socket(self) -> bool:
        """At accept: False when the socket is to be refused without a thread."""
        with self._lock:
            if self.sockets >= self.limits.socket_cap():
                return False
            self.sockets += 1
            return True

    def close_socket(self) -> None:
        with self._lock:
            self.sockets -= 1

    def take(self, superuser: bool) -> None:
        """A slot for a session that has named its role; raise 53300 when none is left."""
        with self._lock:
            free = self.limits.max_connections - self.sessions
            if free <= 0:
                raise too_many()
            if free <= self.limits.superuser_reserved_connections and not superuser:
                raise TooManyConnections(
                    "remaining connection slots are reserved for roles with the SUPERUSER attribute")
            self.sessions += 1

    def give_back(self) -> None:
        with self._lock:
            self.sessions -= 1


def too_many() -> TooManyConnections:
    return TooManyConnections("sorry, too many clients already")
