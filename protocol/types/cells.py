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

Cell = Callable[[object], bytes]

_PG_EPOCH = dt.datetime(2000, 1, 1)
_PG_EPOCH_DATE = dt.date(2000, 1, 1)
_MICROSECOND = dt.timedelta(microseconds=1)
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


def _wall(value: dt.datetime) -> dt.datetime:
    """A timestamp's UTC wall time (tz-aware values are converted, naive ones are UTC)."""
    return value if value.tzinfo is None else value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _timestamp_text(value: dt.datetime) -> bytes:
    text = value.isoformat(" ")
    return (text.rstrip("0") if "." in text else text).encode()


def _timestamptz_utc_text(value: dt.datetime) -> bytes:
    return _timestamp_text(_wall(value)) + b"+00"


def _date_text(value: dt.date) -> bytes:
    return value.isoformat().encode()


_INT2, _INT4, _INT8, _UINT4, _F8 = (struct.Struct(f).pack for f in ("!h", "!i", "!q", "!I", "!d"))
_BINARY_INT = {oids.INT2: _INT2, oids.INT4: _INT4, oids.INT8: _INT8, oids.OID: _UINT4}
_STRING_OIDS = {oids.TEXT, oids.VARCHAR, oids.BPCHAR, oids.NAME, oids.CHAR, oids.JSON}


def _timestamp_binary(value: dt.datetime) -> bytes:
    return _INT8((_wall(value) - _PG_EPOCH) // _MICROSECOND)


def _date_binary(value: dt.date) -> bytes:
    return _INT4((value - _PG_EPOCH_DATE).days)


def cell_encoder(dtype: pa.DataType, oid: int, binary: bool, timezone: str) -> Cell | None:
    """The per-value encoder of a result column, taking the Python value `to_pylist` gives;
    None when only the vectorised encoder is exact."""
    if pa.types.is_boolean(dtype) and oid == oids.BOOL:
        return ((lambda v: b"\x01" if v else b"\x00") if binary else _bool_text)
    if pa.types.is_integer(dtype) and oid in _BINARY_INT:
        return (_BINARY_INT[oid] if binary else _int_text)
    if pa.types.is_float64(dtype) and oid == oids.FLOAT8:
        return (_F8 if binary else float8_text)
    if (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)) and \
            (oid in _STRING_OIDS or (oid in (oids.JSONB, oids.UUID) and not binary)):
        return _str_text
    if pa.types.is_decimal(dtype) and oid == oids.NUMERIC and not binary:
        return _decimal_text
    if pa.types.is_date32(dtype) and oid == oids.DATE:
        return (_date_binary if binary else _date_text)
    if pa.types.is_timestamp(dtype) and dtype.unit == "us":
        if binary and oid in (oids.TIMESTAMP, oids.TIMESTAMPTZ):
            return _timestamp_binary
        if dtype.tz is None and oid == oids.TIMESTAMP:
            return _timestamp_text
        if oid == oids.TIMESTAMPTZ and timezone.upper() in _UTC_NAMES:
            return _timestamptz_utc_text
    return None


def encode_cells(values: pa.Array, cell: Cell) -> list[bytes | None] | None:
    """The wire bytes of each value (None for NULL), or None if a value is out of the
    encoder's reach (the caller then uses the vectorised encoder)."""
    try:
        return [None if v is None else cell(v) for v in values.to_pylist()]
    except (OverflowError, ValueError, TypeError):
        return None


def encode_rows(rows: list[tuple], cells: list[Cell]) -> bytes:
    """DataRow messages of rows of Python values, each column by its encoder."""
    count = _INT16(len(cells))
    out = []
    for row in rows:
        body = [count]
        for v, cell in zip(row, cells):
            if v is None:
                body.append(_NULL_FIELD)
            else:
                v = cell(v)
                body.append(_INT32(len(v)) + v)
        data = b"".join(body)
        out.append(b"D" + _INT32(len(data) + 4) + data)
    return b"".join(out)


_INT16, _INT32 = struct.Struct("!h").pack, struct.Struct("!i").pack
_NULL_FIELD = b"\xff\xff\xff\xff"
