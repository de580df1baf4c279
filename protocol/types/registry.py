"""One map from Arrow types to Postgres types, and one from OIDs to parameter decoders.

Result side: `pg_type_for(field)` gives the OID and the vectorised encoders (Arrow array ->
large_binary array of wire values, NULLs kept) for a result column.
Parameter side: `decode_param(oid, format, data)` turns a Bind value into the Python object
the engine binds. Families live in numeric.py, datetime.py, string.py, array.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import FeatureNotSupported
from engine.results import SQL_TYPE
from engine.sql import arrays

from . import array, datetime, numeric, oids, string
from .vector import to_binary

Encoder = Callable[[pa.Array], pa.Array]

# Field metadata key an engine may set to pick the Postgres type of a column whose Arrow
# type is ambiguous (json, jsonb, uuid, varchar stored as Arrow strings).
PG_OID_METADATA = b"pg_type_oid"


@dataclass(frozen=True)
class PgType:
    oid: int
    text: Encoder
    binary: Encoder | None = None  # None: this type is always sent in text format

    @property
    def typlen(self) -> int:
        return oids.typlen(self.oid)


def _casting(target: pa.DataType, encoder: Encoder) -> Encoder:
    return lambda values: encoder(values.cast(target))


def _python_text(values: pa.Array) -> pa.Array:
    """Last resort for Arrow types Postgres has no match for (struct, map): Python str()."""
    try:
        return to_binary(pc.cast(values, pa.string()))
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if v is None else str(v).encode() for v in values.to_pylist()],
                        pa.large_binary())


def _all_null(values: pa.Array) -> pa.Array:
    return pa.nulls(len(values), pa.large_binary())


_TEXT = PgType(oids.TEXT, string.text_text, string.text_text)
_BYTEA = PgType(oids.BYTEA, string.bytea_text, to_binary)

# Non-parametric Arrow types, keyed by the type itself.
BY_ARROW_TYPE: dict[pa.DataType, PgType] = {
    pa.null(): PgType(oids.TEXT, _all_null, _all_null),
    pa.bool_(): PgType(oids.BOOL, numeric.bool_text, numeric.bool_binary),
    pa.int8(): PgType(oids.INT2, numeric.int_text, numeric.int_binary(2)),
    pa.uint8(): PgType(oids.INT2, numeric.int_text, numeric.int_binary(2)),
    pa.int16(): PgType(oids.INT2, numeric.int_text, numeric.int_binary(2)),
    pa.uint16(): PgType(oids.INT4, numeric.int_text, numeric.int_binary(4)),
    pa.int32(): PgType(oids.INT4, numeric.int_text, numeric.int_binary(4)),
    pa.uint32(): PgType(oids.OID, numeric.int_text, numeric.oid_binary),  # catalog oid columns
    pa.int64(): PgType(oids.INT8, numeric.int_text, numeric.int_binary(8)),
    pa.uint64(): PgType(oids.NUMERIC, numeric.int_text, numeric.numeric_binary),
    pa.float16(): PgType(oids.FLOAT4, _casting(pa.float32(), numeric.float4_text),
                         numeric.float_binary(4)),
    pa.float32(): PgType(oids.FLOAT4, numeric.float4_text, numeric.float_binary(4)),
    pa.float64(): PgType(oids.FLOAT8, numeric.float8_text, numeric.float_binary(8)),
    pa.string(): _TEXT,
    pa.large_string(): _TEXT,
    pa.string_view(): _TEXT,
    pa.binary(): _BYTEA,
    pa.large_binary(): _BYTEA,
    pa.binary_view(): _BYTEA,
    pa.date32(): PgType(oids.DATE, datetime.date_text, datetime.date_binary),
    pa.date64(): PgType(oids.DATE, datetime.date_text, datetime.date_binary),
    pa.month_day_nano_interval(): PgType(oids.INTERVAL, datetime.interval_text,
                                         datetime.interval_binary),
}

# Arrow extension types that name a Postgres type.
BY_EXTENSION: dict[str, PgType] = {
    "arrow.uuid": PgType(oids.UUID, string.uuid_text, string.uuid_binary),
    "arrow.json": PgType(oids.JSON, lambda v: string.text_text(v.storage), None),
}

# Postgres types an engine can request through PG_OID_METADATA on a string column.
BY_METADATA_OID: dict[int, PgType] = {
    oids.JSON: PgType(oids.JSON, string.text_text, string.text_text),
    oids.JSONB: PgType(oids.JSONB, string.text_text, string.jsonb_binary),
    oids.UUID: PgType(oids.UUID, string.text_text, string.uuid_binary),
    oids.VARCHAR: PgType(oids.VARCHAR, string.text_text, string.text_text),
    oids.BPCHAR: PgType(oids.BPCHAR, string.text_text, string.text_text),
    oids.NAME: PgType(oids.NAME, string.text_text, string.text_text),
    oids.CHAR: PgType(oids.CHAR, string.text_text, string.text_text),
    oids.TEXT: _TEXT,
}


def pg_type_for(dtype: pa.DataType, metadata: dict | None = None) -> PgType:
    """The Postgres type (OID + encoders) of an Arrow result column."""
    if metadata and PG_OID_METADATA in metadata:
        chosen = BY_METADATA_OID.get(int(metadata[PG_OID_METADATA]))
        if chosen is not None:
            return chosen
    if metadata and SQL_TYPE in metadata:
        sql_type = metadata[SQL_TYPE].decode()
        if sql_type.endswith("[]") and (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)):
            return _list_type(BY_METADATA_OID[oid_for_sql_type(sql_type[:-2])], nested=False)
        chosen = BY_METADATA_OID.get(oid_for_sql_type(sql_type))
        if chosen is not None:
            return chosen
    found = BY_ARROW_TYPE.get(dtype)
    if found is not None:
        return found
    if isinstance(dtype, pa.ExtensionType):
        if dtype.extension_name in BY_EXTENSION:
            return BY_EXTENSION[dtype.extension_name]
        inner = pg_type_for(dtype.storage_type)
        return PgType(inner.oid, lambda v: inner.text(v.storage),
                      inner.binary and (lambda v: inner.binary(v.storage)))
    if pa.types.is_dictionary(dtype):
        inner = pg_type_for(dtype.value_type)
        return PgType(inner.oid, lambda v: inner.text(v.dictionary_decode()),
                      inner.binary and (lambda v: inner.binary(v.dictionary_decode())))
    if pa.types.is_decimal(dtype):
        return PgType(oids.NUMERIC, numeric.decimal_text, numeric.numeric_binary)
    if pa.types.is_timestamp(dtype):
        if dtype.tz is None:
            return PgType(oids.TIMESTAMP, datetime.timestamp_text, datetime.timestamp_binary)
        return PgType(oids.TIMESTAMPTZ, datetime.timestamptz_text, datetime.timestamp_binary)
    if pa.types.is_time(dtype):
        return PgType(oids.TIME, datetime.time_text, datetime.time_binary)
    if pa.types.is_duration(dtype):
        return PgType(oids.INTERVAL, datetime.interval_text, datetime.interval_binary)
    if pa.types.is_fixed_size_binary(dtype):
        return _BYTEA
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) \
            or pa.types.is_fixed_size_list(dtype):
        nested = pa.types.is_list(dtype.value_type) or pa.types.is_large_list(dtype.value_type) \
            or pa.types.is_fixed_size_list(dtype.value_type)
        return _list_type(pg_type_for(dtype.value_type), nested)
    return PgType(oids.TEXT, _python_text)


def _list_type(element: PgType, nested: bool) -> PgType:
    oid = element.oid if nested else oids.ARRAY_OF.get(element.oid, 1009)
    binary = None
    if not nested and element.binary is not None and element.oid in oids.ARRAY_OF:
        binary = partial(array.list_binary, element_binary=element.binary,
                         element_oid=element.oid)
    return PgType(oid, partial(array.list_text, element_text=element.text, nested=nested),
                  binary)


# --- parameters ----------------------------------------------------------------------

# DuckDB type names (as the engine reports parameter types) -> Postgres OIDs.
BY_SQL_TYPE: dict[str, int] = {
    "BOOLEAN": oids.BOOL, "BOOL": oids.BOOL,
    "TINYINT": oids.INT2, "UTINYINT": oids.INT2, "SMALLINT": oids.INT2, "INT2": oids.INT2,
    "USMALLINT": oids.INT4, "INTEGER": oids.INT4, "INT": oids.INT4, "INT4": oids.INT4,
    "UINTEGER": oids.INT8, "BIGINT": oids.INT8, "INT8": oids.INT8,
    "UBIGINT": oids.NUMERIC, "HUGEINT": oids.NUMERIC, "UHUGEINT": oids.NUMERIC,
    "DECIMAL": oids.NUMERIC, "NUMERIC": oids.NUMERIC,
    "FLOAT": oids.FLOAT4, "REAL": oids.FLOAT4, "FLOAT4": oids.FLOAT4,
    "DOUBLE": oids.FLOAT8, "FLOAT8": oids.FLOAT8, "DOUBLE PRECISION": oids.FLOAT8,
    "VARCHAR": oids.TEXT, "TEXT": oids.TEXT, "STRING": oids.TEXT, "CHAR": oids.BPCHAR,
    "BPCHAR": oids.BPCHAR, "BLOB": oids.BYTEA, "BYTEA": oids.BYTEA,
    "DATE": oids.DATE, "TIME": oids.TIME, "TIMESTAMP": oids.TIMESTAMP,
    "TIMESTAMP WITH TIME ZONE": oids.TIMESTAMPTZ, "TIMESTAMPTZ": oids.TIMESTAMPTZ,
    "INTERVAL": oids.INTERVAL, "UUID": oids.UUID, "JSON": oids.JSON, "JSONB": oids.JSONB,
    "OID": oids.OID,
}


def oid_for_sql_type(name: str | None) -> int:
    """The OID to describe a parameter of DuckDB type `name` with (text when unknown)."""
    if not name:
        return oids.TEXT
    name = name.strip().upper()
    if name.endswith("[]"):
        element = oid_for_sql_type(name[:-2])
        return oids.ARRAY_OF.get(element, oids.ARRAY_OF[oids.TEXT])
    if name.startswith("VARCHAR("):
        return oids.VARCHAR
    return BY_SQL_TYPE.get(name.split("(")[0].strip(), oids.TEXT)


TEXT_DECODERS: dict[int, Callable[[str], object]] = (
    numeric.TEXT_DECODERS | datetime.TEXT_DECODERS | string.TEXT_DECODERS)
BINARY_DECODERS: dict[int, Callable[[bytes], object]] = (
    numeric.BINARY_DECODERS | datetime.BINARY_DECODERS | string.BINARY_DECODERS)


def decode_param(oid: int, fmt: int, data: bytes | None, timezone: str = "UTC") -> object:
    """A Bind parameter value as a Python object, by its declared OID and format code.

    OID 0 (unspecified) or an unknown OID in text format stays `str`: the engine casts it
    from the statement's context, as Postgres does with `unknown` literals. OID 0 in binary
    format stays `bytes` (bytea): node-postgres sends Buffer values that way. A timestamptz
    in text without an offset is read in `timezone` (the session's).
    """
    if data is None:
        return None
    return param_decoder(oid, fmt, timezone)(bytes(data))


@lru_cache(maxsize=1024)
def param_decoder(oid: int, fmt: int, timezone: str = "UTC") -> Callable[[bytes], object]:
    """`decode_param` of one parameter's non-NULL `bytes` values, worked out once per type,
    format and zone: a statement bound 100k times looks its decoders up once."""
    if fmt == 0:
        if oid == oids.TIMESTAMPTZ and timezone != "UTC":
            return lambda data: datetime.timestamptz_from_text(data.decode(), timezone)
        if oid in oids.ELEMENT_OF:
            element = TEXT_DECODERS.get(oids.ELEMENT_OF[oid], str)
            return lambda data: arrays.parse(data.decode(), element)
        text = TEXT_DECODERS.get(oid)
        if text is None:
            return bytes.decode
        return lambda data: text(data.decode())
    if oid in oids.ELEMENT_OF:
        return lambda data: array.parse_binary_array(data, _binary_decoder)
    if oid == 0:
        return bytes
    binary = BINARY_DECODERS.get(oid)
    if binary is None:   # unsupported: 0A000 at the first non-NULL value, as before
        return lambda data: _binary_decoder(oid)(data)
    return binary


def _binary_decoder(oid: int) -> Callable[[bytes], object]:
    try:
        return BINARY_DECODERS[oid]
    except KeyError:
        raise FeatureNotSupported(
            f"binary format for parameters of type OID {oid} is not supported") from None
