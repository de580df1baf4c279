"""Arrow-compute building blocks that turn whole columns into wire bytes.

Result encoding must not make a Python call per cell, so every encoder is composed from
these: big-endian packing, hex, null re-masking, trimming of zero fractions.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SIGNED = {2: pa.int16(), 4: pa.int32(), 8: pa.int64()}
_NATIVE = {2: np.dtype("=u2"), 4: np.dtype("=u4"), 8: np.dtype("=u8")}
_BIG = {2: np.dtype(">u2"), 4: np.dtype(">u4"), 8: np.dtype(">u8")}
_HEX_TABLE = pa.array([f"{i:02x}".encode() for i in range(256)], pa.binary(2))


def keep_nulls(values: pa.Array, source: pa.Array) -> pa.Array:
    """`values` with NULL wherever `source` is NULL (encoders work on null-filled data)."""
    if source.null_count == 0:
        return values
    return pc.if_else(pc.is_valid(source), values, pa.scalar(None, values.type))


def big_endian(values: pa.Array, width: int) -> pa.Array:
    """Integers (or same-width floats) as fixed_size_binary(width) holding big-endian bytes.

    NULLs become zero bytes; callers re-mask with `keep_nulls`. Integers of another width
    (e.g. the int64 that int32 arithmetic with a Python int yields) are cast first, never
    reinterpreted: a raw view of a wider buffer would read the wrong elements. One numpy
    conversion of the value buffer to big-endian: a result of a few hundred rows costs one
    C call a column, not 3 × width Arrow compute calls shifting each byte into place.
    """
    raw = values.fill_null(0) if values.null_count else values
    if pa.types.is_integer(raw.type) and raw.type.bit_width != 8 * width:
        raw = raw.cast(_SIGNED[width])
    if raw.type.bit_width != 8 * width:
        raise TypeError(f"big_endian: {raw.type} is not {width} bytes wide")
    if not len(raw):
        return pa.array([], pa.binary(width))
    native = np.frombuffer(raw.buffers()[1], dtype=_NATIVE[width], count=len(raw), offset=raw.offset * width)
    return pa.Array.from_buffers(pa.binary(width), len(raw), [None, pa.py_buffer(native.astype(_BIG[width]))])


def to_binary(values: pa.Array) -> pa.Array:
    """Any string-like array as large_binary (the type DataRow assembly joins)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_fixed_size_binary(values.type) or pa.types.is_string_view(values.type) \
            or pa.types.is_binary_view(values.type):
        values = values.cast(pa.large_binary())
    return values.cast(pa.large_binary())


def hex_encode(values: pa.Array) -> pa.Array:
    """Binary values as lower-case hex text (large_binary), NULLs kept."""
    source = values
    values = to_binary(values)
    values = values.fill_null(b"") if values.null_count else values
    if len(values) == 0:
        return pa.array([], pa.large_binary())
    offsets = pa.Array.from_buffers(pa.int64(), len(values) + 1,
                                    [None, values.buffers()[1]], offset=values.offset)
    first = offsets[0].as_py()
    total = offsets[len(values)].as_py() - first
    data = pa.Array.from_buffers(pa.uint8(), total, [None, values.buffers()[2]], offset=first)
    hexed = pc.take(_HEX_TABLE, data)
    new_offsets = pc.multiply(pc.subtract(offsets, pa.scalar(first, pa.int64())),
                              pa.scalar(2, pa.int64()))
    out = pa.Array.from_buffers(pa.large_binary(), len(values),
                                [None, new_offsets.buffers()[1], hexed.buffers()[1]],
                                offset=new_offsets.offset)
    return keep_nulls(out, source)


def concat(*parts: pa.Array | bytes) -> pa.Array:
    """Element-wise concatenation of binary arrays and byte-string constants."""
    args = [pa.scalar(p, pa.large_binary()) if isinstance(p, bytes) else to_binary(p)
            for p in parts]
    return pc.binary_join_element_wise(*args, pa.scalar(b"", pa.large_binary()))


def trim_fraction(text: pa.Array) -> pa.Array:
    """Drop trailing zeros of a `.ffffff` fraction, and the dot if nothing is left."""
    text = pc.replace_substring_regex(text, r"(\.\d*?[1-9])0+$", r"\1")
    return pc.replace_substring_regex(text, r"\.0+$", "")


def as_text(values: pa.Array) -> pa.Array:
    """Arrow's own string cast, as binary; used where it already matches Postgres."""
    return to_binary(pc.cast(values, pa.string()))
