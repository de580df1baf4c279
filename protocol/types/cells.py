"""Per-value wire encoders for results of a few rows (a point lookup, a RETURNING row).

The vectorised encoders (protocol/types/*.py) cost ~8 Arrow compute calls a column, ~100 µs
for a one-row result; for a handful of rows a Python call per value is cheaper. Each
encoder here gives byte for byte what the vectorised one of the same column gives
(tests/test_row_cells.py compares them); a column type not listed, or a value one cannot
take (a timestamp outside Python's datetime range), keeps the vectorised encoder.
"""
from __future__ import annotations

import datetime as dt
import struct
from typing import Callable

import pyarrow as pa

from . import oids
from .datetime import PG_EPOCH_DAYS, PG_EPOCH_US

Cell = Callable[[object], bytes]

_UNIX_EPOCH = dt.datetime(1970, 1, 1)
_DAYS = dt.timedelta(days=1)
_UTC_NAMES = ("UTC", "GMT", "Z", "ETC/UTC")


def _int_text(value: int) -> bytes:
    return str(value).encode()


def _bool_text(value: bool) -> bytes:
    return b"t" if value else b"f"


def _str_text(value: str) -> bytes:
    return value.encode()


def float8_text(value: float) -> bytes:
    """Postgres's float8 output (shortest round-trip digits, extra_float_digits=1): fixed
    notation iff -4 <= exponent < 15, else d.ddde±XX with at least two exponent digits."""
    if value != value:
        return b"NaN"
    if value in (float("inf"), float("-inf")):
        return b"Infinity" if value > 0 else b"-Infinity"
    text = repr(value)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    if exp_text:  # d[.ddd]e±X: one digit before the point
        digits, exponent = (whole + fraction).rstrip("0"), int(exp_text)
    elif whole != "0":
        digits, exponent = (whole + fraction).rstrip("0"), len(whole) - 1
    else:
        stripped = fraction.lstrip("0")
        digits, exponent = stripped.rstrip("0"), -(len(fraction) - len(stripped)) - 1
    if not digits:
        return (sign + "0").encode()
    if -4 <= exponent < 15:
        if exponent >= 0:
            head = digits[:exponent + 1].ljust(exponent + 1, "0")
            tail = digits[exponent + 1:]
            return (sign + head + ("." + tail if tail else "")).encode()
        return (sign + "0." + "0" * (-exponent - 1) + digits).encode()
    rest = "." + digits[1:] if len(digits) > 1 else ""
    return f"{sign}{digits[0]}{rest}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}".encode()


def _decimal_text(value) -> bytes:
    return format(value, "f").encode()


def _micros_text(micros: int) -> str:
    text = (_UNIX_EPOCH + dt.timedelta(microseconds=micros)).isoformat(" ")
    return text.rstrip("0") if "." in text else text


def _timestamp_text(micros: int) -> bytes:
    return _micros_text(micros).encode()


def _timestamptz_utc_text(micros: int) -> bytes:
    return (_micros_text(micros) + "+00").encode()


def _date_text(days: int) -> bytes:
    return (_UNIX_EPOCH + days * _DAYS).date().isoformat().encode()


_INT2, _INT4, _INT8, _UINT4, _F8 = (struct.Struct(f).pack for f in ("!h", "!i", "!q", "!I", "!d"))
_BINARY_INT = {oids.INT2: _INT2, oids.INT4: _INT4, oids.INT8: _INT8, oids.OID: _UINT4}
_STRING_OIDS = {oids.TEXT, oids.VARCHAR, oids.BPCHAR, oids.NAME, oids.CHAR, oids.JSON}


def _timestamp_binary(micros: int) -> bytes:
    return _INT8(micros - PG_EPOCH_US)


def _date_binary(days: int) -> bytes:
    return _INT4(days - PG_EPOCH_DAYS)


def cell_encoder(dtype: pa.DataType, oid: int, binary: bool, timezone: str) -> tuple[Cell, pa.DataType | None] | None:
    """The per-value encoder of a result column, and the Arrow type its values are read as
    first (None: as they are); None when only the vectorised encoder is exact."""
    if pa.types.is_boolean(dtype) and oid == oids.BOOL:
        return ((lambda v: b"\x01" if v else b"\x00") if binary else _bool_text), None
    if pa.types.is_integer(dtype) and oid in _BINARY_INT:
        return (_BINARY_INT[oid] if binary else _int_text), None
    if pa.types.is_float64(dtype) and oid == oids.FLOAT8:
        return (_F8 if binary else float8_text), None
    if (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)) and \
            (oid in _STRING_OIDS or (oid in (oids.JSONB, oids.UUID) and not binary)):
        return _str_text, None
    if pa.types.is_decimal(dtype) and oid == oids.NUMERIC and not binary:
        return _decimal_text, None
    if pa.types.is_date32(dtype) and oid == oids.DATE:
        return (_date_binary if binary else _date_text), pa.int32()
    if pa.types.is_timestamp(dtype) and dtype.unit == "us":
        if binary and oid in (oids.TIMESTAMP, oids.TIMESTAMPTZ):
            return _timestamp_binary, pa.int64()
        if dtype.tz is None and oid == oids.TIMESTAMP:
            return _timestamp_text, pa.int64()
        if oid == oids.TIMESTAMPTZ and timezone.upper() in _UTC_NAMES:
            return _timestamptz_utc_text, pa.int64()
    return None


def encode_cells(values: pa.Array, encoder: tuple[Cell, pa.DataType | None]) -> list[bytes | None] | None:
    """The wire bytes of each value (None for NULL), or None if a value is out of the
    encoder's reach (the caller then uses the vectorised encoder)."""
    cell, read_as = encoder
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if read_as is not None:
        values = values.view(read_as) if values.type.bit_width == read_as.bit_width else values.cast(read_as)
    try:
        return [None if v is None else cell(v) for v in values.to_pylist()]
    except (OverflowError, ValueError):
        return None
