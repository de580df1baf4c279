"""date, time, timestamp(tz) and interval: result encoders and parameter decoders.

timestamptz prints in the session TimeZone (text format); binary values are UTC micros.
"""
from __future__ import annotations

import datetime as dt
import functools
import struct
import zoneinfo

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InvalidTextRepresentation

from . import oids
from .vector import as_text, big_endian, concat, keep_nulls, to_binary, trim_fraction

PG_EPOCH_DAYS = 10957                      # 2000-01-01 - 1970-01-01
PG_EPOCH_US = PG_EPOCH_DAYS * 86_400_000_000
PG_EPOCH_DATE = dt.date(2000, 1, 1)
PG_EPOCH = dt.datetime(2000, 1, 1)
UTC = dt.timezone.utc

# DuckDB stores 'infinity' and '-infinity' as the largest value of the storage integer and its
# negation; Postgres prints them as words and sends them in binary as its own extremes.
_TS_INFINITY = (1 << 63) - 1
_DATE_INFINITY = (1 << 31) - 1
_PG_TS_NOEND, _PG_TS_NOBEGIN = (1 << 63) - 1, -(1 << 63)  # Postgres's DT_NOEND, DT_NOBEGIN
_PG_DATE_NOEND, _PG_DATE_NOBEGIN = (1 << 31) - 1, -(1 << 31)  # DATEVAL_NOEND, DATEVAL_NOBEGIN
_PG_TS_EXTREMES = (pa.scalar(_PG_TS_NOEND, pa.int64()), pa.scalar(_PG_TS_NOBEGIN, pa.int64()))
_PG_DATE_EXTREMES = (pa.scalar(_PG_DATE_NOEND, pa.int32()), pa.scalar(_PG_DATE_NOBEGIN, pa.int32()))


def _infinities(values: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array] | None:
    """(+infinity mask, -infinity mask, `values` with those replaced by the epoch) of a
    date32 or timestamp[us] column, or None when it holds neither (one min_max call)."""
    if pa.types.is_date32(values.type):
        storage, bound = pa.int32(), _DATE_INFINITY
    elif pa.types.is_timestamp(values.type) and values.type.unit == "us":
        storage, bound = pa.int64(), _TS_INFINITY
    else:
        return None
    raw = pa.Array.from_buffers(storage, len(values), values.buffers()[:2], offset=values.offset)
    extremes = pc.min_max(raw)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    if low is None or (low > -bound and high < bound):
        return None
    positive = pc.fill_null(pc.equal(raw, pa.scalar(bound, storage)), False)
    negative = pc.fill_null(pc.equal(raw, pa.scalar(-bound, storage)), False)
    finite = pc.if_else(pc.or_(positive, negative), pa.scalar(0, storage), raw)
    return positive, negative, pa.Array.from_buffers(values.type, len(finite), finite.buffers()[:2],
                                                      offset=finite.offset)


def _words(text: pa.Array, infinite: tuple[pa.Array, pa.Array, pa.Array]) -> pa.Array:
    positive, negative, _ = infinite
    return pc.if_else(positive, pa.scalar(b"infinity", text.type),
                      pc.if_else(negative, pa.scalar(b"-infinity", text.type), text))


def _extremes(out: pa.Array, infinite, extremes: tuple[pa.Scalar, pa.Scalar]) -> pa.Array:
    if infinite is None:
        return out
    positive, negative, _ = infinite
    return pc.if_else(positive, extremes[0], pc.if_else(negative, extremes[1], out))


def _text_with_infinities(encode):
    """A text encoder that prints 'infinity' and '-infinity' as Postgres does."""
    @functools.wraps(encode)
    def text(values: pa.Array, *args, **kwargs) -> pa.Array:
        infinite = _infinities(values)
        if infinite is None:
            return encode(values, *args, **kwargs)
        return _words(encode(infinite[2], *args, **kwargs), infinite)
    return text


# --- results, text format -------------------------------------------------------------


@_text_with_infinities
def date_text(values: pa.Array) -> pa.Array:
    return as_text(values.cast(pa.date32()))


def _naive_micros(values: pa.Array) -> pa.Array:
    """A timestamp column as naive timestamp[us] (UTC wall time for tz-aware ones)."""
    unit = values.type.unit
    naive = pa.Array.from_buffers(pa.timestamp(unit), len(values), values.buffers()[:2],
                                  offset=values.offset)
    return naive.cast(pa.timestamp("us"), safe=False) if unit == "ns" else naive


@_text_with_infinities
def timestamp_text(values: pa.Array) -> pa.Array:
    return trim_fraction(as_text(_naive_micros(values)))


@_text_with_infinities
def timestamptz_text(values: pa.Array, timezone: str = "UTC") -> pa.Array:
    """`2024-01-01 13:00:00+01`: wall time in the session TimeZone and its UTC offset
    (`+05:30` when not whole hours), as Postgres prints timestamptz."""
    utc = _naive_micros(values)
    if timezone.upper() in ("UTC", "GMT", "Z", "ETC/UTC"):
        return keep_nulls(concat(trim_fraction(as_text(utc)), b"+00"), values)
    zoned = pa.Array.from_buffers(pa.timestamp("us", tz=timezone), len(utc), utc.buffers()[:2],
                                  offset=utc.offset)
    local = pc.local_timestamp(zoned)
    offset = pc.divide(pc.subtract(local.cast(pa.int64()), utc.cast(pa.int64())), 60_000_000)
    minutes = pc.abs(offset).fill_null(0)
    sign = pc.if_else(pc.less(offset.fill_null(0), 0), b"-", b"+")
    hours = pc.utf8_lpad(pc.cast(pc.divide(minutes, 60), pa.string()), 2, "0")
    rest = pc.subtract(minutes, pc.multiply(pc.divide(minutes, 60), 60))
    suffix = pc.if_else(pc.equal(rest, 0), b"",
                        concat(b":", to_binary(pc.utf8_lpad(pc.cast(rest, pa.string()), 2, "0"))))
    return keep_nulls(concat(trim_fraction(as_text(local)), sign, hours, suffix), values)


@functools.lru_cache(maxsize=64)
def valid_timezone(name: str) -> bool:
    """Whether Arrow knows the zone (an IANA name or a fixed offset)."""
    try:
        pa.array([0], pa.timestamp("us", tz=name)).cast(pa.string())
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def time_text(values: pa.Array) -> pa.Array:
    if values.type == pa.time64("ns"):
        values = values.cast(pa.time64("us"), safe=False)
    return trim_fraction(as_text(values))


def interval_parts(values: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(months int32, days int32, microseconds int64) of an interval or duration column."""
    if pa.types.is_duration(values.type):
        micros = values.cast(pa.duration("us"), safe=False)
        micros = pa.Array.from_buffers(pa.int64(), len(micros), micros.buffers()[:2],
                                       offset=micros.offset)
        zeros = pa.nulls(len(values), pa.int32()).fill_null(0)
        return zeros, zeros, micros
    # month_day_nano is 16 bytes per value: int32 months, int32 days, int64 nanoseconds.
    packed = pa.Array.from_buffers(pa.binary(16), len(values), [None, values.buffers()[1]],
                                   offset=values.offset)

    def field(start: int, width: int, dtype: pa.DataType) -> pa.Array:
        raw = pc.binary_slice(packed, start, start + width)
        return pa.Array.from_buffers(dtype, len(raw), [None, raw.buffers()[1]], offset=raw.offset)
    nanos = field(8, 8, pa.int64())
    return field(0, 4, pa.int32()), field(4, 4, pa.int32()), pc.divide(nanos, 1000)


def _unit_part(count: pa.Array, unit: str, previous_negative: pa.Array, first: pa.Array):
    """` +2 mons` style fragment, '' when count is 0 (Postgres AddPostgresIntPart)."""
    nonzero = pc.not_equal(count, 0)
    sign = pc.if_else(pc.and_(previous_negative, pc.greater(count, 0)), b"+", b"")
    space = pc.if_else(first, b"", b" ")
    plural = pc.if_else(pc.equal(count, 1), b"", b"s")
    text = concat(space, sign, as_text(count), f" {unit}".encode(), plural)
    return pc.if_else(nonzero, text, b""), nonzero, pc.less(count, 0)


def interval_text(values: pa.Array) -> pa.Array:
    """IntervalStyle postgres: `1 year 2 mons 3 days 04:05:06.5`, `-1 days +01:00:00`."""
    source = values
    months, days, micros = (p.fill_null(0) for p in interval_parts(values))
    years, mons = pc.divide(months, 12), pc.subtract(months, pc.multiply(pc.divide(months, 12), 12))
    first = pc.equal(months, months)           # all-true: nothing printed yet
    negative = pc.not_equal(months, months)    # all-false
    parts = []
    for count, unit in ((years, "year"), (mons, "mon"), (days, "day")):
        text, nonzero, is_negative = _unit_part(count, unit, negative, first)
        parts.append(text)
        negative = pc.if_else(nonzero, is_negative, negative)
        first = pc.and_(first, pc.invert(nonzero))
    absolute = pc.abs(micros)
    hours = pc.divide(absolute, 3_600_000_000)
    minutes = pc.divide(pc.subtract(absolute, pc.multiply(hours, 3_600_000_000)), 60_000_000)
    rest = pc.subtract(absolute, pc.multiply(pc.divide(absolute, 60_000_000), 60_000_000))
    seconds = pc.divide(rest, 1_000_000)
    fraction = pc.subtract(rest, pc.multiply(seconds, 1_000_000))
    clock = concat(
        pc.if_else(first, b"", b" "),
        pc.if_else(pc.less(micros, 0), b"-", pc.if_else(negative, b"+", b"")),
        _pad2(hours), b":", _pad2(minutes), b":", _pad2(seconds),
        trim_fraction(concat(b".", pc.utf8_lpad(pc.cast(fraction, pa.string()), 6, "0"))))
    show_clock = pc.or_(first, pc.not_equal(micros, 0))
    parts.append(pc.if_else(show_clock, clock, b""))
    return keep_nulls(concat(*parts), source)


def interval_iso8601_text(values: pa.Array) -> pa.Array:
    """IntervalStyle iso_8601: `P1Y2M3DT4H5M6.5S`, each part signed, `PT0S` for zero."""
    source = values
    months, days, micros = (p.fill_null(0) for p in interval_parts(values))
    years = pc.divide(months, 12)
    mons = pc.subtract(months, pc.multiply(years, 12))
    hours = pc.divide(micros, 3_600_000_000)
    rest = pc.subtract(micros, pc.multiply(hours, 3_600_000_000))
    minutes = pc.divide(rest, 60_000_000)
    rest = pc.subtract(rest, pc.multiply(minutes, 60_000_000))
    seconds = pc.abs(pc.divide(rest, 1_000_000))
    fraction = pc.abs(pc.subtract(pc.abs(rest), pc.multiply(seconds, 1_000_000)))

    def part(count: pa.Array, letter: bytes) -> pa.Array:
        return pc.if_else(pc.not_equal(count, 0), concat(as_text(count), letter), b"")

    secs = concat(pc.if_else(pc.less(rest, 0), b"-", b""), as_text(seconds),
                  trim_fraction(concat(b".", pc.utf8_lpad(pc.cast(fraction, pa.string()), 6, "0"))), b"S")
    clock = concat(b"T", part(hours, b"H"), part(minutes, b"M"), pc.if_else(pc.not_equal(rest, 0), secs, b""))
    text = concat(b"P", part(years, b"Y"), part(mons, b"M"), part(days, b"D"),
                  pc.if_else(pc.not_equal(micros, 0), clock, b""))
    zero = pc.and_(pc.and_(pc.equal(months, 0), pc.equal(days, 0)), pc.equal(micros, 0))
    return keep_nulls(pc.if_else(zero, b"PT0S", text), source)


def _pad2(values: pa.Array) -> pa.Array:
    return to_binary(pc.utf8_lpad(pc.cast(values, pa.string()), 2, "0"))


# --- results, binary format -----------------------------------------------------------


def date_binary(values: pa.Array) -> pa.Array:
    dates = values.cast(pa.date32())
    infinite = _infinities(dates)
    days = pa.Array.from_buffers(pa.int32(), len(dates), dates.buffers()[:2], offset=dates.offset)
    epoch = pa.scalar(PG_EPOCH_DAYS, pa.int32())   # keep int32: 4 bytes per value on the wire
    return keep_nulls(big_endian(_extremes(pc.subtract(days, epoch), infinite, _PG_DATE_EXTREMES), 4), values)


def timestamp_binary(values: pa.Array) -> pa.Array:
    naive = _naive_micros(values).cast(pa.timestamp("us"))
    infinite = _infinities(naive)
    micros = pa.Array.from_buffers(pa.int64(), len(naive), naive.buffers()[:2], offset=naive.offset)
    return keep_nulls(big_endian(_extremes(pc.subtract(micros, PG_EPOCH_US), infinite, _PG_TS_EXTREMES), 8),
                      values)


def time_binary(values: pa.Array) -> pa.Array:
    micros = values.cast(pa.time64("us"), safe=False)
    micros = pa.Array.from_buffers(pa.int64(), len(micros), micros.buffers()[:2],
                                   offset=micros.offset)
    return keep_nulls(big_endian(micros, 8), values)


def interval_binary(values: pa.Array) -> pa.Array:
    months, days, micros = (p.fill_null(0) for p in interval_parts(values))
    return keep_nulls(concat(big_endian(micros, 8), big_endian(days, 4), big_endian(months, 4)),
                      values)


# --- parameters ----------------------------------------------------------------------


_INFINITY_WORDS = {"infinity": "infinity", "+infinity": "infinity", "-infinity": "-infinity"}


def _parse(kind: str, parse, text: str):
    word = _INFINITY_WORDS.get(text.strip().lower())
    if word is not None and kind != "time":
        return word  # no Python value: the engine casts the word, as DuckDB reads it
    try:
        return parse(text.strip())
    except ValueError:
        raise InvalidTextRepresentation(
            f'invalid input syntax for type {kind}: "{text}"') from None


def date_from_text(text: str) -> dt.date | str:
    return _parse("date", dt.date.fromisoformat, text)


def time_from_text(text: str) -> dt.time:
    return _parse("time", dt.time.fromisoformat, text)


def timestamp_from_text(text: str) -> dt.datetime | str:
    value = _parse("timestamp", dt.datetime.fromisoformat, text)
    return value if isinstance(value, str) else value.replace(tzinfo=None)


def timestamptz_from_text(text: str, timezone: str = "UTC") -> dt.datetime | str:
    """Text without an offset is wall time in the session TimeZone, as Postgres reads it."""
    value = _parse("timestamp with time zone", dt.datetime.fromisoformat, text)
    if isinstance(value, str) or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=_zone(timezone))


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC


def interval_from_binary(data: bytes) -> dt.timedelta | str:
    micros, days, months = struct.unpack("!qii", data)
    if months:
        return f"{months} months {days} days {micros} microseconds"
    return dt.timedelta(days=days, microseconds=micros)


TEXT_DECODERS = {
    oids.DATE: date_from_text,
    oids.TIME: time_from_text,
    oids.TIMESTAMP: timestamp_from_text,
    oids.TIMESTAMPTZ: timestamptz_from_text,
    oids.INTERVAL: str,   # the engine casts; Postgres interval syntax is richer than ISO
    oids.TIMETZ: str,
}

def _date_from_binary(data: bytes) -> dt.date | str:
    (days,) = struct.unpack("!i", data)
    if days in (_PG_DATE_NOEND, _PG_DATE_NOBEGIN):  # asyncpg sends date.max / date.min so
        return "infinity" if days > 0 else "-infinity"
    return PG_EPOCH_DATE + dt.timedelta(days=days)


def _timestamp_from_binary(data: bytes, zone: dt.tzinfo | None = None) -> dt.datetime | str:
    (micros,) = struct.unpack("!q", data)
    if micros in (_PG_TS_NOEND, _PG_TS_NOBEGIN):  # asyncpg sends datetime.max / datetime.min so
        return "infinity" if micros > 0 else "-infinity"
    value = PG_EPOCH + dt.timedelta(microseconds=micros)
    return value if zone is None else value.replace(tzinfo=zone)


BINARY_DECODERS = {
    oids.DATE: _date_from_binary,
    oids.TIME: lambda data: (dt.datetime.min + dt.timedelta(
        microseconds=struct.unpack("!q", data)[0])).time(),
    oids.TIMESTAMP: _timestamp_from_binary,
    oids.TIMESTAMPTZ: lambda data: _timestamp_from_binary(data, UTC),
    oids.INTERVAL: interval_from_binary,
}
