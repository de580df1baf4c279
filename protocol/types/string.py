"""text, bytea, uuid and json: result encoders and parameter decoders."""
from __future__ import annotations

import struct
import uuid

import pyarrow as pa
import pyarrow.compute as pc

from engine.sql.bytea import bytea_from_text
from engine.errors import InvalidTextRepresentation

from . import oids
from .vector import concat, hex_encode, keep_nulls, to_binary

# --- results --------------------------------------------------------------------------


def text_text(values: pa.Array) -> pa.Array:
    """Text is its own wire form (text and binary formats alike)."""
    return to_binary(values)


def bytea_text(values: pa.Array) -> pa.Array:
    return keep_nulls(concat(b"\\x", hex_encode(values)), values)


def uuid_text(values: pa.Array) -> pa.Array:
    """16-byte uuids as 8-4-4-4-12 hex; string uuids pass through."""
    if pa.types.is_string(values.storage_type if isinstance(values.type, pa.ExtensionType)
                          else values.type):
        return to_binary(values)
    raw = values.storage if isinstance(values, pa.ExtensionArray) else values
    hexed = hex_encode(raw).cast(pa.large_string())
    pieces = [pc.utf8_slice_codeunits(hexed, a, b) for a, b in
              ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))]
    return keep_nulls(pc.binary_join_element_wise(*[to_binary(p) for p in pieces],
                                                  pa.scalar(b"-", pa.large_binary())), values)


_NIBBLE = pa.array([int(chr(i), 16) if chr(i) in "0123456789abcdefABCDEF" else 0
                    for i in range(256)], pa.uint8())
_ZERO_UUID = "0" * 32


def uuid_binary(values: pa.Array) -> pa.Array:
    raw = values.storage if isinstance(values, pa.ExtensionArray) else values
    if pa.types.is_fixed_size_binary(raw.type):
        return to_binary(raw)
    # Canonical uuid text (DuckDB's), vectorised: 32 hex digits -> 16 bytes per value.
    digits = pc.replace_substring(raw.cast(pa.large_string()), "-", "")
    digits = digits.fill_null(_ZERO_UUID) if digits.null_count else digits
    data = digits.buffers()[2]
    start = struct.unpack_from("<q", digits.buffers()[1], 8 * digits.offset)[0]
    count = 32 * len(digits)
    chars = pa.Array.from_buffers(pa.uint8(), count, [None, data], offset=start)
    nibbles = pc.take(_NIBBLE, chars)
    # adjacent nibbles read as one little-endian uint16: high digit in the low byte
    pairs = pa.Array.from_buffers(pa.uint16(), count // 2, [None, nibbles.buffers()[1]])
    high = pc.shift_left(pc.bit_wise_and(pairs, pa.scalar(0xF, pa.uint16())),
                         pa.scalar(4, pa.uint16()))
    octets = pc.bit_wise_or(high, pc.shift_right(pairs, pa.scalar(8, pa.uint16())))
    octets = octets.cast(pa.uint8())
    out = pa.Array.from_buffers(pa.binary(16), len(digits), [None, octets.buffers()[1]])
    return keep_nulls(to_binary(out), values)


def jsonb_binary(values: pa.Array) -> pa.Array:
    """jsonb binary format is a version byte (1) followed by the JSON text."""
    return keep_nulls(concat(b"\x01", to_binary(values)), values)


# --- parameters ----------------------------------------------------------------------

def uuid_from_text(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        raise InvalidTextRepresentation(f'invalid input syntax for type uuid: "{text}"') from None


def jsonb_from_binary(data: bytes) -> str:
    return data[1:].decode() if data[:1] == b"\x01" else data.decode()


_TEXT_OIDS = (oids.TEXT, oids.VARCHAR, oids.BPCHAR, oids.NAME, oids.CHAR, oids.UNKNOWN, 0)

TEXT_DECODERS = {oid: str for oid in _TEXT_OIDS} | {
    oids.BYTEA: bytea_from_text,
    oids.UUID: uuid_from_text,
    oids.JSON: str,
    oids.JSONB: str,
}

BINARY_DECODERS = {oid: bytes.decode for oid in _TEXT_OIDS if oid} | {
    oids.BYTEA: bytes,
    oids.UUID: lambda data: uuid.UUID(bytes=data),
    oids.JSON: bytes.decode,
    oids.JSONB: jsonb_from_binary,
}
