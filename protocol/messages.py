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
NO_DATA = b"n\x00\x00\x00\x04"


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

    def format_of(self, index: int) -> int:
        if not self.param_formats:
            return 0
        return self.param_formats[0] if len(self.param_formats) == 1 else \
            self.param_formats[index]


def parse_startup_params(payload: bytes) -> dict[str, str]:
    parts = payload.split(b"\x00")
    return {decode_utf8(k): decode_utf8(v) for k, v in zip(parts[::2], parts[1::2]) if k}


def read_query(payload: bytes) -> str:
    return MessageReader(payload).read_cstring()


def read_parse(payload: bytes) -> tuple[str, str, list[int]]:
    r = MessageReader(payload)
    name, sql = r.read_cstring(), r.read_cstring()
    count = r.read_int16()
    return name, sql, [r.read_uint32() for _ in range(count)]


def read_bind(payload: bytes) -> Bind:
    r = MessageReader(payload)
    portal, statement = r.read_cstring(), r.read_cstring()
    param_formats = [r.read_int16() for _ in range(r.read_int16())]
    values: list[bytes | None] = []
    for _ in range(r.read_int16() & 0xFFFF):
        length = r.read_int32()
        values.append(None if length < 0 else r.read_exact(length))
    result_formats = [r.read_int16() for _ in range(r.read_int16())]
    if len(param_formats) > 1 and len(param_formats) != len(values):
        raise ProtocolViolation(f"bind message has {len(param_formats)} parameter formats "
                                f"but {len(values)} parameters")
    return Bind(portal, statement, param_formats, values, result_formats)


def read_target(payload: bytes) -> tuple[str, str]:
    """Describe and Close: ('S' statement | 'P' portal, name)."""
    r = MessageReader(payload)
    kind = r.read_exact(1)
    if kind not in (b"S", b"P"):
        raise ProtocolViolation(f"invalid Describe/Close message subtype {kind[0]}")
    return kind.decode(), r.read_cstring()


def read_execute(payload: bytes) -> tuple[str, int]:
    r = MessageReader(payload)
    return r.read_cstring(), r.read_int32()


def parameter_description(oids: list[int]) -> bytes:
    return b"t" + struct.pack(f"!ih{len(oids)}I", 6 + 4 * len(oids), len(oids), *oids)


def command_complete(tag: str) -> bytes:
    body = tag.encode() + b"\x00"
    return b"C" + struct.pack("!i", len(body) + 4) + body
