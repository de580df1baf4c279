"""bool, integers, floats and numeric: result encoders and parameter decoders."""
from __future__ import annotations

import decimal
import re
import struct

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InvalidTextRepresentation, NumericValueOutOfRange

from . import oids
from .vector import as_text, big_endian, keep_nulls, to_binary

# --- results, text format -------------------------------------------------------------


def bool_text(values: pa.Array) -> pa.Array:
    return pc.if_else(values, pa.scalar(b"t", pa.large_binary()),
                      pa.scalar(b"f", pa.large_binary()))


int_text = as_text
decimal_text = as_text

# Arrow prints shortest round-trip digits like Postgres (extra_float_digits=1) but picks
# fixed vs exponent notation differently; these rewrites move a value to Postgres' choice.
# Postgres: float8 fixed iff -4 <= exponent < 15, float4 iff -4 <= exponent < 6; exponent
# has at least two digits. Arrow: fixed iff -7 < exponent < 10, exponent as short as can be.
_SPECIALS = [(r"^nan$", "NaN"), (r"^(-?)inf$", r"\1Infinity")]
_SMALL = [(r"^(-?)0\.00000([1-9])(\d*)$", r"\1\2.\3e-06"),
          (r"^(-?)0\.0000([1-9])(\d*)$", r"\1\2.\3e-05"),
          (r"\.e", "e"),
          (r"e([+-])(\d)$", r"e\g<1>0\2".replace(r"\g<1>", "\\1"))]
_FLOAT8_BIG = []
for _e in range(10, 15):
    _FLOAT8_BIG += [
        # 1.2345678901e+10 -> 12345678901 (digits beyond the exponent become a fraction)
        (rf"^(-?)(\d)\.(\d{{{_e}}})(\d+)e\+{_e}$", r"\1\2\3.\4"),
        # 1.5e+10 -> 15000000000: pad with zeros, then cut to exponent+1 digits
        (rf"^(-?)(\d)(?:\.(\d{{0,{_e}}}))?e\+{_e}$", r"\1\2\3" + "0" * _e + "#"),
        (rf"^(-?)(\d{{{_e + 1}}})\d*#$", r"\1\2"),
    ]
_FLOAT4_BIG = []
for _digits in range(7, 11):
    _FLOAT4_BIG.append((rf"^(-?)([1-9])(\d{{{_digits - 1}}})(?:\.(\d+))?$",
                        rf"\1\2.\3\4e+{_digits - 1:02d}"))
_FLOAT4_BIG += [(r"(\.\d*?)0+e", r"\1e"), (r"\.e", "e")]

_FLOAT8_NEEDS_FIX = r"[ne]|^-?0\.0000"
_FLOAT4_NEEDS_FIX = r"[ne]|^-?0\.0000|^-?\d{7}"


def _rewrite(text: pa.Array, needs_fix: str, rules: list[tuple[str, str]]) -> pa.Array:
    mask = pc.fill_null(pc.match_substring_regex(text, needs_fix), False)
    if not pc.any(mask).as_py():
        return text
    subset = pc.filter(text, mask)
    for pattern, replacement in rules:
        subset = pc.replace_substring_regex(subset, pattern, replacement)
    return pc.replace_with_mask(text, mask, subset)


def float8_text(values: pa.Array) -> pa.Array:
    text = pc.cast(values, pa.string())
    return to_binary(_rewrite(text, _FLOAT8_NEEDS_FIX, _SPECIALS + _SMALL + _FLOAT8_BIG))


def float4_text(values: pa.Array) -> pa.Array:
    text = pc.cast(values, pa.string())
    return to_binary(_rewrite(text, _FLOAT4_NEEDS_FIX, _SPECIALS + _SMALL + _FLOAT4_BIG))


# --- results, binary format -----------------------------------------------------------


def bool_binary(values: pa.Array) -> pa.Array:
    return pc.if_else(values, pa.scalar(b"\x01", pa.large_binary()),
                      pa.scalar(b"\x00", pa.large_binary()))


def int_binary(width: int):
    def encode(values: pa.Array) -> pa.Array:
        target = {2: pa.int16(), 4: pa.int32(), 8: pa.int64()}[width]
        return keep_nulls(big_endian(values.cast(target), width), values)
    return encode


def oid_binary(values: pa.Array) -> pa.Array:
    """oid is an unsigned 4-byte integer (DuckDB UINTEGER)."""
    return keep_nulls(big_endian(values.cast(pa.uint32()), 4), values)


def float_binary(width: int):
    def encode(values: pa.Array) -> pa.Array:
        target = pa.float32() if width == 4 else pa.float64()
        return keep_nulls(big_endian(values.cast(target), width), values)
    return encode


def numeric_binary(values: pa.Array) -> pa.Array:
    """Postgres binary numeric; a per-cell path (clients rarely ask numeric in binary)."""
    return pa.array([None if v is None else encode_numeric(v) for v in values.to_pylist()],
                    pa.large_binary())


def encode_numeric(value: decimal.Decimal | int) -> bytes:
    value = decimal.Decimal(value)
    if value.is_nan():
        return struct.pack("!hhHh", 0, 0, 0xC000, 0)
    sign, digits, exponent = value.as_tuple()
    dscale = max(0, -exponent)
    text = "".join(map(str, digits))
    # Pad so the decimal point falls on a base-10000 group boundary on both sides.
    int_len = len(text) + exponent if exponent < 0 else len(text)
    int_part = text[:int_len] if exponent < 0 else text + "0" * exponent
    frac_part = text[int_len:] if exponent < 0 else ""
    if int_len < 0:
        frac_part = "0" * -int_len + text
        int_part = ""
    int_part = int_part.lstrip("0")
    int_part = "0" * (-len(int_part) % 4) + int_part
    frac_part = frac_part + "0" * (-len(frac_part) % 4)
    groups = [int(int_part[i:i + 4]) for i in range(0, len(int_part), 4)]
    weight = len(groups) - 1
    groups += [int(frac_part[i:i + 4]) for i in range(0, len(frac_part), 4)]
    while groups and groups[-1] == 0:
        groups.pop()
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    if not groups:
        weight = 0
    return struct.pack(f"!hhHh{len(groups)}H", len(groups), weight,
                       0x4000 if sign else 0, dscale, *groups)


# --- parameters ----------------------------------------------------------------------

_INT_RANGE = {oids.INT2: (16, "smallint"), oids.INT4: (32, "integer"),
              oids.INT8: (64, "bigint"), oids.OID: (33, "oid")}
_TRUE = {"t", "true", "y", "yes", "on", "1"}
_FALSE = {"f", "false", "n", "no", "off", "0"}


_INTEGER_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)   # what Postgres's integer input reads


def int_from_text(oid: int):
    bits, name = _INT_RANGE[oid]

    def decode(text: str) -> int:
        if not _INTEGER_TEXT.fullmatch(text):   # Python's int() also takes "7_0" and non-ASCII digits
            raise InvalidTextRepresentation(f'invalid input syntax for type {name}: "{text}"')
        value = int(text)
        if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
            raise NumericValueOutOfRange(f'value "{text}" is out of range for type {name}')
        return value
    return decode


def float_from_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidTextRepresentation(
            f'invalid input syntax for type double precision: "{text}"') from None


def numeric_from_text(text: str) -> decimal.Decimal:
    try:
        return decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        raise InvalidTextRepresentation(
            f'invalid input syntax for type numeric: "{text}"') from None


def bool_from_text(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE or (len(word) > 1 and any(w.startswith(word) for w in ("true", "yes"))):
        return True
    if word in _FALSE or (len(word) > 1 and any(w.startswith(word) for w in ("false", "no"))):
        return False
    raise InvalidTextRepresentation(f'invalid input syntax for type boolean: "{text}"')


def numeric_from_binary(data: bytes) -> decimal.Decimal:
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHh", data)
    if sign == 0xC000:
        return decimal.Decimal("NaN")
    if sign in (0xD000, 0xF000):
        return decimal.Decimal("Infinity" if sign == 0xD000 else "-Infinity")
    groups = struct.unpack_from(f"!{ndigits}H", data, 8)
    value = 0
    for group in groups:
        value = value * 10000 + group
    exponent = (weight - ndigits + 1) * 4
    result = decimal.Decimal(value).scaleb(exponent)
    if sign == 0x4000:
        result = -result
    return result.quantize(decimal.Decimal(1).scaleb(-dscale)) if ndigits else \
        decimal.Decimal(0).quantize(decimal.Decimal(1).scaleb(-dscale))


TEXT_DECODERS = {
    oids.BOOL: bool_from_text,
    oids.INT2: int_from_text(oids.INT2),
    oids.INT4: int_from_text(oids.INT4),
    oids.INT8: int_from_text(oids.INT8),
    oids.OID: int_from_text(oids.OID),
    oids.FLOAT4: float_from_text,
    oids.FLOAT8: float_from_text,
    oids.NUMERIC: numeric_from_text,
}

BINARY_DECODERS = {
    oids.BOOL: lambda data: data != b"\x00",
    oids.INT2: lambda data: struct.unpack("!h", data)[0],
    oids.INT4: lambda data: struct.unpack("!i", data)[0],
    oids.INT8: lambda data: struct.unpack("!q", data)[0],
    oids.OID: lambda data: struct.unpack("!I", data)[0],
    oids.FLOAT4: lambda data: struct.unpack("!f", data)[0],
    oids.FLOAT8: lambda data: struct.unpack("!d", data)[0],
    oids.NUMERIC: numeric_from_binary,
}
