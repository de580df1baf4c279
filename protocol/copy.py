"""COPY on the wire: the copy-in/copy-out sub-protocol, as a COPY statement runs it.

COPY FROM STDIN: after CopyInResponse the client streams CopyData and ends with CopyDone
(or CopyFail, which aborts the COPY with 57014 and writes nothing). Postgres ignores Flush
and Sync while copying in; an error found while data is still arriving is reported only
after the client's CopyDone/CopyFail, and the rest of the data is read and dropped.
COPY TO STDOUT: CopyOutResponse, one CopyData per chunk of rows, CopyDone, `COPY n`.
The data formats themselves are protocol/copy_formats.py. `CopyExchange` is mixed into
TierdHandler (protocol/connection.py); a COPY runs from a simple Query or at Execute.
"""
from __future__ import annotations

import queue
import struct
import threading
from typing import Callable

from engine.sql.copy import parse_copy
from engine.errors import IdleInTransactionSessionTimeout, ProtocolViolation, QueryCanceled

from . import messages
from .copy_formats import copy_out_messages, raw_blocks
from .messages import ClientGone
from .rows import BINARY, TEXT
from .session import ConnectionState

COPY_DONE = b"c\x00\x00\x00\x04"


def copy_response(kind: bytes, binary: bool, width: int) -> bytes:
    """CopyInResponse ('G') or CopyOutResponse ('H')."""
    fmt = BINARY if binary else TEXT
    body = struct.pack(f"!bh{width}h", fmt, width, *([fmt] * width))
    return kind + struct.pack("!i", len(body) + 4) + body


class CopyInStream:
    """The client's CopyData payloads, one per `read()`, b"" after CopyDone.

    A reader thread receives the messages while the engine parses and stages the previous
    block (socket reads, pyarrow and DuckDB all release the GIL), a bounded queue ahead.
    CopyFail raises 57014; a message that has no place in COPY is a protocol violation.
    `drain()` reads and drops the rest after the engine has given up on the data."""

    AHEAD = 32  # messages received ahead of the engine

    def __init__(self, read_message: Callable[[], tuple[bytes, bytes]]):
        self._read_message = read_message
        self._queue: queue.Queue = queue.Queue(self.AHEAD)
        self._thread = threading.Thread(target=self._receive, name="copy-in", daemon=True)
        self._thread.start()
        self.finished = False

    def _receive(self) -> None:
        try:
            while True:
                kind, payload = self._read_message()
                if kind == b"d":
                    if payload:
                        self._queue.put(payload)
                elif kind == b"c":
                    self._queue.put(b"")
                    return
                elif kind == b"f":
                    reason = payload.rstrip(b"\x00").decode("utf-8", "replace")
                    self._queue.put(QueryCanceled(f"COPY from stdin failed: {reason}"))
                    return
                elif kind not in (b"H", b"S"):  # Postgres ignores Flush and Sync during COPY IN
                    self._queue.put(ProtocolViolation(
                        f"unexpected message type 0x{kind[0]:02x} during COPY from stdin"))
                    return
        except BaseException as exc:  # the client went away: the engine sees it at its next read
            self._queue.put(exc)

    def read(self) -> bytes:
        if self.finished:
            return b""
        item = self._queue.get()
        if isinstance(item, BaseException):
            self.finished = True
            self._thread.join()
            raise item
        if not item:
            self.finished = True
            self._thread.join()
        return item

    def drain(self) -> None:
        try:
            while self.read():
                pass
        except (QueryCanceled, ProtocolViolation):
            pass


class CopyExchange:
    """COPY FROM STDIN and COPY TO STDOUT on one client connection (part of TierdHandler)."""

    def run_copy(self, state: ConnectionState, sql: str) -> None:
        """COPY FROM STDIN / TO STDOUT, in the simple or the extended protocol; ends with
        CommandComplete `COPY n` (or raises, after reading the client's data to its end)."""
        cmd = parse_copy(sql)
        binary = cmd.options.format == "binary"
        if cmd.direction == "to":
            # Streamed: each batch of rows is encoded and written as the engine reads it (the
            # first call, without rows, gives the columns; a header rides with the first row).
            empty, sent = [], []

            def emit(rows) -> None:
                if not empty:
                    empty.append(rows)
                    self.write(copy_response(b"H", binary, rows.num_columns))
                elif rows.num_rows:
                    for chunk in copy_out_messages(rows, cmd.options, first=not sent, last=False):
                        self.write(chunk)
                    sent.append(True)

            result = state.session.copy_to(cmd, emit)
            for chunk in copy_out_messages(None if sent else empty[0], cmd.options, first=not sent, last=True):
                self.write(chunk)
            self.write(COPY_DONE)
            self.write(messages.command_complete(result.tag))
            return
        columns = state.session.copy_target(cmd)
        self.write(copy_response(b"G", binary, len(columns)))
        self.flush()
        # Inside a transaction that has written (it holds the write lock), each wait for the
        # client's next CopyData is bounded by idle_in_transaction_session_timeout, as any wait
        # of such a transaction on its client is (FATAL 25P03); other COPYs wait as long as
        # the client takes: they read their data before they take the lock.
        stream = CopyInStream(lambda: self.next_message(state))
        try:
            result = state.session.copy_from(cmd, raw_blocks(cmd, columns, stream.read, cmd.label))
        except ConnectionError:
            raise
        except IdleInTransactionSessionTimeout as exc:  # the session ends, its transaction rolled back
            self.send_fatal(exc)
            raise ClientGone() from None
        except Exception:
            stream.drain()  # Postgres reports the error after the client's CopyDone/CopyFail
            raise
        self.write(messages.command_complete(result.tag))
