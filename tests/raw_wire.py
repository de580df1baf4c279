"""A raw Postgres wire client for tests that send what no driver would: malformed, oversized,
unknown or half-finished messages. It speaks just enough of the protocol (trust startup,
simple Query) to check that the server answers and stays in step.
"""
from __future__ import annotations

import socket
import struct

PROTOCOL_3 = 196608


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def startup_packet(user: str = "tierd", database: str = "tierd") -> bytes:
    body = struct.pack("!i", PROTOCOL_3) + f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!i", len(body) + 4) + body


def query(sql: bytes | str) -> bytes:
    return message(b"Q", (sql.encode() if isinstance(sql, str) else sql) + b"\0")


class RawClient:
    """One socket; `read()` returns the next backend message as (type, body), None at EOF."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def read(self) -> tuple[bytes, bytes] | None:
        if not self._fill(5):
            return None
        (length,) = struct.unpack_from("!i", self.buf, 1)
        if not self._fill(1 + length):
            return None
        kind, body = self.buf[:1], self.buf[5:1 + length]
        self.buf = self.buf[1 + length:]
        return kind, body

    def until_ready(self) -> list[tuple[bytes, bytes]]:
        """Messages up to and including ReadyForQuery (or up to EOF)."""
        out = []
        while (msg := self.read()) is not None:
            out.append(msg)
            if msg[0] == b"Z":
                break
        return out

    def login(self, user: str = "tierd") -> None:
        self.send(startup_packet(user))
        replies = self.until_ready()
        assert replies and replies[-1][0] == b"Z", f"startup failed: {replies}"

    def ask(self, sql: bytes | str) -> list[tuple[bytes, bytes]]:
        self.send(query(sql))
        return self.until_ready()


def error_fields(body: bytes) -> dict[str, str]:
    """An ErrorResponse's fields by code letter: {'C': '22021', 'M': ..., 'S': ...}."""
    out = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode(errors="replace")
    return out


def errors_in(replies: list[tuple[bytes, bytes]]) -> list[dict[str, str]]:
    return [error_fields(body) for kind, body in replies if kind == b"E"]


def small_and_vectorised(batch, columns) -> tuple[bytes, bytes]:
    """A batch's DataRows as the few-row per-value encoder gives them and as the vectorised
    assembly does (forced by lowering protocol.rows.SMALL_ROWS): the two must be equal."""
    from protocol import rows as wire_rows

    small = bytes(wire_rows.encode_batch(batch, columns))
    saved = wire_rows.SMALL_ROWS
    wire_rows.SMALL_ROWS = -1  # force the vectorised assembly
    try:
        return small, bytes(wire_rows.encode_batch(batch, columns))
    finally:
        wire_rows.SMALL_ROWS = saved
