"""Arrow arrays of a few Python values, built without letting go of the GIL.

`pa.array` releases the GIL and takes it back, three times for a one-value list. With one
client that is free; with many connection threads every release hands the GIL to another
thread and back (futex wake-ups and context switches: about 40 per single-row INSERT with 8
clients, doubling the daemon's CPU per row). A statement's few values are packed with
`struct` instead and wrapped by `Array.from_buffers`, which releases the GIL once. Only types
whose Python values map one to one onto the buffers take this path (integers for dates,
times and timestamps, in the type's unit, as pa.array takes them); anything else, a value of
another Python type, or more than a few values, gets None and the caller uses `pa.array`
(which also words the errors).
"""
from __future__ import annotations

import struct

import pyarrow as pa

MAX_VALUES = 16  # beyond this pa.array's own loop is cheaper than its GIL hand-offs

_INTS = {pa.int8(): "b", pa.int16(): "h", pa.int32(): "i", pa.int64(): "q",
         pa.uint8(): "B", pa.uint16(): "H", pa.uint32(): "I", pa.uint64(): "Q"}
_FLOATS = {pa.float32(): "f", pa.float64(): "d"}
_EXACT_INT_IN_FLOAT = 1 << 53
_STRING = pa.string()
_BINARY = pa.binary()
_BOOL = pa.bool_()
_INT32_MAX = (1 << 31) - 1


_TEMPORAL: dict[pa.DataType, str | None] = {}


def _temporal_code(typ: pa.DataType) -> str | None:
    """The struct code of a date, time, timestamp or interval type's integers (pa.array
    takes plain integers in the type's unit for these), else None."""
    code = _TEMPORAL.get(typ, "")
    if code == "":
        code = _TEMPORAL[typ] = (
            "q" if pa.types.is_timestamp(typ) or pa.types.is_date64(typ) or pa.types.is_time64(typ)
            or pa.types.is_duration(typ) else
            "i" if pa.types.is_date32(typ) or pa.types.is_time32(typ) else None)
    return code


def _bitmap(flags: list[bool]) -> bytes:
    out = bytearray((len(flags) + 7) // 8)
    for i, f in enumerate(flags):
        if f:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def small_array(values: list, typ: pa.DataType) -> pa.Array | None:
    """`values` as an Arrow array of `typ`, or None when this path does not apply."""
    n = len(values)
    if n > MAX_VALUES:
        return None
    nulls = values.count(None)
    validity = None if nulls == 0 else pa.py_buffer(_bitmap([v is not None for v in values]))
    code = _INTS.get(typ) or _temporal_code(typ)
    if code is not None:
        for v in values:
            if type(v) is not int and v is not None:
                return None
        data = [0 if v is None else v for v in values] if nulls else values
        try:
            packed = struct.pack(f"<{n}{code}", *data)
        except struct.error:  # out of range: pa.array words the error
            return None
        return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(packed)], null_count=nulls)
    code = _FLOATS.get(typ)
    if code is not None:
        for v in values:
            t = type(v)
            if t is not float and v is not None and not (t is int and -_EXACT_INT_IN_FLOAT <= v <= _EXACT_INT_IN_FLOAT):
                return None
        data = [0.0 if v is None else v for v in values] if nulls else values
        try:
            packed = struct.pack(f"<{n}{code}", *data)
        except (struct.error, OverflowError):  # a float32 out of range: pa.array decides
            return None
        return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(packed)], null_count=nulls)
    if typ == _STRING or typ == _BINARY:
        text = typ == _STRING
        encoded = []
        offsets = [0]
        for v in values:
            if v is None:
                b = b""
            elif text and type(v) is str:
                try:
                    b = v.encode()
                except UnicodeEncodeError:  # a lone surrogate: pa.array words the error
                    return None
            elif not text and type(v) is bytes:
                b = v
            else:
                return None
            encoded.append(b)
            offsets.append(offsets[-1] + len(b))
        if offsets[-1] > _INT32_MAX:
            return None
        return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(struct.pack(f"<{n + 1}i", *offsets)),
                                              pa.py_buffer(b"".join(encoded))], null_count=nulls)
    if typ == _BOOL:
        for v in values:
            if type(v) is not bool and v is not None:
                return None
        return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(_bitmap([v is True for v in values]))],
                                     null_count=nulls)
    return None
