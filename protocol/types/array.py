"""Arrays: list columns as `{a,b}` text, and array parameters as Python lists."""
from __future__ import annotations

import struct
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc


from .vector import concat, keep_nulls, to_binary

_NEEDS_QUOTES = r'^$|[{}," \\\t\n\r\v\f]|^[nN][uU][lL][lL]$'


def list_text(values: pa.Array, element_text: Callable[[pa.Array], pa.Array],
              nested: bool) -> pa.Array:
    """Postgres array_out, vectorised: encode all elements at once, then join per list."""
    if pa.types.is_fixed_size_list(values.type):
        values = values.cast(pa.list_(values.type.value_type))
    flat = values.values.slice(values.offsets[0].as_py(),
                               values.offsets[len(values)].as_py() - values.offsets[0].as_py()) \
        if len(values) else values.values.slice(0, 0)
    encoded = element_text(flat).cast(pa.large_string())
    if not nested:
        quoted = pc.replace_substring_regex(encoded, r'(["\\])', r"\\\1")
        quoted = concat(b'"', quoted, b'"').cast(pa.large_string())
        needs = pc.fill_null(pc.match_substring_regex(encoded, _NEEDS_QUOTES), False)
        encoded = pc.if_else(needs, quoted, encoded)
    encoded = encoded.fill_null("NULL")
    offsets = pc.subtract(values.offsets.cast(pa.int64()), values.offsets[0].cast(pa.int64()))
    lists = pa.LargeListArray.from_arrays(offsets, encoded)
    joined = pc.binary_join(lists, pa.scalar(",", pa.large_string()))
    return keep_nulls(concat(b"{", to_binary(joined), b"}"), values)


def parse_binary_array(data: bytes, element_for: Callable[[int], Callable[[bytes], object]]):
    """Postgres array_send format: ndim, has_null, element oid, dims, then length-prefixed items."""
    ndim, _has_null, oid = struct.unpack_from("!iiI", data)
    if ndim == 0:
        return []
    dims = [struct.unpack_from("!ii", data, 12 + 8 * i)[0] for i in range(ndim)]
    decode = element_for(oid)
    pos = 12 + 8 * ndim
    flat = []
    for _ in range(_product(dims)):
        (length,) = struct.unpack_from("!i", data, pos)
        pos += 4
        if length < 0:
            flat.append(None)
        else:
            flat.append(decode(data[pos:pos + length]))
            pos += length
    return _reshape(flat, dims)


def _product(dims: list[int]) -> int:
    total = 1
    for d in dims:
        total *= d
    return total


def _reshape(flat: list, dims: list[int]) -> list:
    if len(dims) == 1:
        return flat
    step = len(flat) // dims[0]
    return [_reshape(flat[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]


def list_binary(values: pa.Array, element_binary: Callable[[pa.Array], pa.Array],
                element_oid: int) -> pa.Array:
    """Postgres array_send for one-dimensional lists, vectorised like DataRow assembly."""
    from .vector import big_endian

    if pa.types.is_fixed_size_list(values.type):
        values = values.cast(pa.list_(values.type.value_type))
    start = values.offsets[0].as_py() if len(values) else 0
    stop = values.offsets[len(values)].as_py() if len(values) else 0
    flat = values.values.slice(start, stop - start)
    encoded = to_binary(element_binary(flat))
    lengths = pc.binary_length(encoded)
    items = concat(big_endian(lengths.fill_null(-1).cast(pa.int32()), 4),
                   encoded.fill_null(b"") if encoded.null_count else encoded)
    offsets = pc.subtract(values.offsets.cast(pa.int64()), pa.scalar(start, pa.int64()))
    joined = pc.binary_join(pa.LargeListArray.from_arrays(offsets, items.cast(pa.large_binary())),
                            pa.scalar(b"", pa.large_binary()))
    sizes = pc.list_value_length(values).fill_null(0).cast(pa.int32())
    has_null = b"\x00\x00\x00\x01" if flat.null_count else b"\x00\x00\x00\x00"
    oid = struct.pack("!I", element_oid)
    header = pc.if_else(pc.equal(sizes, 0),
                        pa.scalar(b"\x00\x00\x00\x00" + has_null + oid, pa.large_binary()),
                        concat(b"\x00\x00\x00\x01" + has_null + oid, big_endian(sizes, 4),
                               b"\x00\x00\x00\x01"))
    return keep_nulls(concat(header, joined), values)
