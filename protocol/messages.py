"""Decoding of frontend messages, and the small backend messages buenavista lacks."""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from buenavista.postgres import BVBuffer

from engine.errors import CharacterNotInRepertoire, EngineError, ProtocolViolation, stack_depth_exceeded

# Startup packet codes (they replace the protocol version in the first message).
PROTOCOL_3 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

EMPTY_QUERY_RESPONSE = b"I\x00\x00\x00\x04"
PARSE_COMPLETE = b"1\x00\x00\x00\x04"
BIND_COMPLETE = b"2\x00\x00\x00\x04"
NO_DATA = b"n\x00\x00\x00\x04"
# What a driver's executemany sends after each Bind: Describe and Execute of the unnamed
# portal, no row limit (protocol/batch.py reads runs of them straight off the buffer).
DESCRIBE_UNNAMED_PORTAL = b"D\x00\x00\x00\x06P\x00"
EXECUTE_UNNAMED_PORTAL = b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00"


class ClientGone(ConnectionError):
    """The client closed the socket (or sent a truncated message)."""


def _utf8_length(lead: int) -> int:
    """Bytes of a UTF-8 sequence by its first byte (Postgres's pg_utf_mblen)."""
    if lead & 0xE0 == 0xC0:
        return 2
    if lead & 0xF0 == 0xE0:
        return 3
    if lead & 0xF8 == 0xF0:
        return 4
    return 1


def decode_utf8(data: bytes) -> str:
    """Client text as str; invalid UTF-8 is 22021 naming the bad bytes, as Postgres says it."""
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise invalid_utf8(exc) from None


def invalid_utf8(exc: UnicodeDecodeError) -> CharacterNotInRepertoire:
    bad = exc.object[exc.start:exc.start + _utf8_length(exc.object[exc.start])]
    return CharacterNotInRepertoire(
        'invalid byte sequence for encoding "UTF8": ' + " ".join(f"0x{b:02x}" for b in bad))


def client_input_error(exc: BaseException) -> EngineError | None:
    """The Postgres error for a message the client got wrong, when `exc` is one (a short
    payload, undecodable text, a statement nested too deeply); None for anything else,
    which is tierd's own bug."""
    if isinstance(exc, struct.error):
        return ProtocolViolation("insufficient data left in message")
    if isinstance(exc, UnicodeDecodeError):
        return invalid_utf8(exc)
    if isinstance(exc, RecursionError):   # an expression nested too deeply to analyse
        return stack_depth_exceeded()
    return None


class MessageReader(BVBuffer):
    """BVBuffer over one message payload, plus the C strings Postgres messages are made of;
    a read past the end is 08P01, never a struct.error."""

    def __init__(self, payload: bytes):
        super().__init__(io.BytesIO(payload))

    def read_cstring(self) -> str:
        out = bytearray()
        while (ch := self.read_byte()) != b"\x00":
            if not ch:
                raise ProtocolViolation("invalid string in message")
            out += ch
        return decode_utf8(bytes(out))

    def read_exact(self, n: int) -> bytes:
        data = self.read_bytes(n)
        if len(data) != n:
            raise ProtocolViolation("insufficient data left in message")
        return data

    def read_int16(self) -> int:
        return struct.unpack("!h", self.read_exact(2))[0]

    def read_uint32(self) -> int:
        return struct.unpack("!I", self.read_exact(4))[0]

    def read_int32(self) -> int:
        return struct.unpack("!i", self.read_exact(4))[0]


@dataclass
class Bind:
    portal: str
    statement: str
    param_formats: list[int]
    values: list[bytes | None]
    result_formats: list[int]
    # What the Binds of one executemany share: the bytes before the values (portal,
    # statement, parameter formats, value count) and after them (result formats).
    frame: tuple[bytes, bytes] = (b"", b"")

    def format_of(self, index: int) -> int:
        return format_code(self.param_formats, index)


def format_code(formats, index: int) -> int:
    """Value `index`'s format code, by a Bind's format list (none: all text; one: all alike)."""
    if not formats:
        return 0
    return formats[0] if len(formats) == 1 else formats[index]


def parse_startup_params(payload: bytes) -> dict[str, str]:
    parts = payload.split(b"\x00")
    return {decode_utf8(k): decode_utf8(v) for k, v in zip(parts[::2], parts[1::2]) if k}


_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")


def _cstring(payload: bytes, pos: int) -> tuple[str, int]:
    """The C string at `pos` and the position after its NUL (08P01 without one)."""
    end = payload.find(b"\x00", pos)
    if end < 0:
        raise ProtocolViolation("invalid string in message")
    return decode_utf8(payload[pos:end]), end + 1


def _int16s(payload: bytes, pos: int) -> tuple[list[int], int]:
    """A count, then that many int16s (format codes)."""
    (count,) = _INT16.unpack_from(payload, pos)
    pos += 2
    if count <= 0:
        return [], pos
    if count == 1:
        return [_INT16.unpack_from(payload, pos)[0]], pos + 2
    return list(struct.unpack_from(f"!{count}h", payload, pos)), pos + 2 * count


def _short(fn):
    """Messages are parsed with struct straight off the payload; a payload shorter than its
    fields say is 08P01 `insufficient data left in message`, as in Postgres."""
    def parse(payload: bytes):
        try:
            return fn(payload)
        except struct.error:
            raise ProtocolViolation("insufficient data left in message") from None
    parse.__doc__, parse.__name__ = fn.__doc__, fn.__name__
    return parse


@_short
def read_query(payload: bytes) -> str:
    return _cstring(payload, 0)[0]


@_short
def read_parse(payload: bytes) -> tuple[str, str, list[int]]:
    name, pos = _cstring(payload, 0)
    sql, pos = _cstring(payload, pos)
    (count,) = _INT16.unpack_from(payload, pos)
    return name, sql, list(struct.unpack_from(f"!{max(count, 0)}I", payload, pos + 2))


@_short
def read_bind(payload: bytes) -> Bind:
    portal, pos = _cstring(payload, 0)
    statement, pos = _cstring(payload, pos)
    param_formats, pos = _int16s(payload, pos)
    (count,) = _INT16.unpack_from(payload, pos)
    pos += 2
    head = pos
    values: list[bytes | None] = []
    unpack, size = _INT32.unpack_from, len(payload)
    for _ in range(count & 0xFFFF):
        (length,) = unpack(payload, pos)
        pos += 4
        if length < 0:
            values.append(None)
            continue
        if pos + length > size:
            raise ProtocolViolation("insufficient data left in message")
        values.append(payload[pos:pos + length])
        pos += length
    tail = pos
    result_formats, pos = _int16s(payload, pos)
    if len(param_formats) > 1 and len(param_formats) != len(values):
        raise ProtocolViolation(f"bind message has {len(param_formats)} parameter formats "
                                f"but {len(values)} parameters")
    return Bind(portal, statement, param_formats, values, result_formats, (payload[:head], payload[tail:]))


@_short
def read_target(payload: bytes) -> tuple[str, str]:
    """Describe and Close: ('S' statement | 'P' portal, name)."""
    kind = payload[:1]
    if kind not in (b"S", b"P"):
        if not kind:
            raise ProtocolViolation("insufficient data left in message")
        raise ProtocolViolation(f"invalid Describe/Close message subtype {kind[0]}")
    return kind.decode(), _cstring(payload, 1)[0]


@_short
def read_execute(payload: bytes) -> tuple[str, int]:
    name, pos = _cstring(payload, 0)
    return name, _INT32.unpack_from(payload, pos)[0]


def parameter_description(oids: list[int]) -> bytes:
    return b"t" + struct.pack(f"!ih{len(oids)}I", 6 + 4 * len(oids), len(oids), *oids)


def command_complete(tag: str) -> bytes:
    body = tag.encode() + b"\x00"
    return b"C" + struct.pack("!i", len(body) + 4) + body
