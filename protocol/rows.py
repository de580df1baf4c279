"""RowDescription and DataRow messages built from Arrow results, a chunk of rows at a time.

Each column becomes one Arrow array of wire fields (4-byte big-endian length + bytes, or
ff ff ff ff for NULL); the fields of all columns are joined row-wise behind a DataRow header,
and the data buffer of that final array is the wire bytes of every row in the chunk.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import partial
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from .types import PgType, oids, pg_type_for
from .types.datetime import interval_iso8601_text, timestamptz_text
from .types.vector import big_endian, to_binary

CHUNK_ROWS = 65_536
TEXT, BINARY = 0, 1


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: PgType
    format: int   # the format actually sent: BINARY only if asked and the type has a codec

    def encode(self, values: pa.Array) -> pa.Array:
        encoder = self.pg_type.binary if self.format == BINARY else self.pg_type.text
        return encoder(values)


def expand_formats(count: int, formats: list[int] | tuple[int, ...]) -> list[int]:
    """Bind's result format codes: none = all text, one = applies to all, else per column."""
    if not formats:
        return [TEXT] * count
    if len(formats) == 1:
        return [formats[0]] * count
    return list(formats)


def plan_columns(schema: pa.Schema, formats: list[int] | tuple[int, ...] = (),
                 timezone: str = "UTC", interval_style: str = "postgres") -> list[Column]:
    """The wire columns of a result; `timezone` is the session TimeZone timestamptz text uses,
    `interval_style` the session IntervalStyle of interval text."""
    columns = []
    for field, fmt in zip(schema, expand_formats(len(schema), formats)):
        pg_type = pg_type_for(field.type, field.metadata)
        if pg_type.oid == oids.INTERVAL and fmt != BINARY and interval_style == "iso_8601":
            pg_type = PgType(oids.INTERVAL, interval_iso8601_text, pg_type.binary)
        if pg_type.oid == oids.TIMESTAMPTZ and fmt != BINARY and timezone != "UTC":
            pg_type = PgType(oids.TIMESTAMPTZ, partial(timestamptz_text, timezone=timezone),
                             pg_type.binary)
        if fmt == BINARY and pg_type.binary is None:
            # No binary codec: send the text form as a binary `text` value. Clients that
            # asked for binary (psycopg's binary cursors) apply one format to all columns.
            pg_type = PgType(oids.TEXT, pg_type.text, pg_type.text)
        columns.append(Column(field.name, pg_type, BINARY if fmt == BINARY else TEXT))
    return columns


def row_description(columns: list[Column]) -> bytes:
    body = bytearray(struct.pack("!h", len(columns)))
    for column in columns:
        body += column.name.encode() + b"\x00"
        body += struct.pack("!ihihih", 0, 0, column.pg_type.oid, column.pg_type.typlen, -1,
                            column.format)
    return b"T" + struct.pack("!i", len(body) + 4) + body


def data_rows(table: pa.Table, columns: list[Column]) -> Iterator[pa.Buffer | bytes]:
    """The DataRow messages of every row of `table`, one buffer per chunk of rows."""
    if not columns:
        if table.num_rows:
            yield b"D\x00\x00\x00\x06\x00\x00" * table.num_rows
        return
    for batch in table.to_batches(max_chunksize=CHUNK_ROWS):
        if batch.num_rows:
            yield encode_batch(batch, columns)


SMALL_ROWS = 16  # below this, assembling the DataRows in Python beats ~8 compute calls a column


def encode_batch(batch: pa.RecordBatch, columns: list[Column]) -> pa.Buffer | bytes:
    if batch.num_rows <= SMALL_ROWS:
        return _encode_small(batch, columns)
    fields, row_length = wire_fields(batch, columns)
    # DataRow length counts itself (4) and the column count (2), not the 'D'.
    header_length = big_endian(pc.add(row_length, 6).cast(pa.int32()), 4)
    parts = [pa.scalar(b"D", pa.large_binary()), to_binary(header_length),
             pa.scalar(struct.pack("!h", len(columns)), pa.large_binary())]
    return join_rows(parts + fields)


def wire_fields(batch: pa.RecordBatch, columns: list[Column]) -> tuple[list[pa.Array], pa.Array]:
    """Per column, its fields' 4-byte lengths and their bytes (a DataRow's or binary COPY
    row's body), and each row's total length of those fields."""
    fields = []
    row_length = None
    for values, column in zip(batch.columns, columns):
        encoded = to_binary(column.encode(values))
        lengths = pc.binary_length(encoded)
        # a NULL field costs 4 bytes (its -1 length), a value 4 + len
        wire = pc.add(lengths.fill_null(0), 4)
        row_length = wire if row_length is None else pc.add(row_length, wire)
        fields.append(to_binary(big_endian(lengths.fill_null(-1).cast(pa.int32()), 4)))
        fields.append(encoded.fill_null(b"") if encoded.null_count else encoded)
    return fields, row_length


def join_rows(parts: list[pa.Array | pa.Scalar]) -> pa.Buffer:
    """Join `parts` row-wise and return the bytes of all rows, back to back."""
    rows = pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.large_binary()))
    offsets = rows.buffers()[1]
    start, end = struct.unpack_from("<q", offsets, rows.offset * 8)[0], \
        struct.unpack_from("<q", offsets, (rows.offset + len(rows)) * 8)[0]
    return rows.buffers()[2][start:end]


def _encode_small(batch: pa.RecordBatch, columns: list[Column]) -> bytes:
    """A few rows (a point lookup, a RETURNING): the same bytes, values encoded by the same
    vectorised encoders, framed per row in Python."""
    return b"".join(each_data_row(batch, columns))


def each_data_row(batch: pa.RecordBatch, columns: list[Column]) -> list[bytes]:
    """One DataRow message per row, the values encoded once for all rows (a batch of
    INSERT … RETURNING answers each of its Executes with its own row)."""
    cells = [to_binary(column.encode(values)).to_pylist() for values, column in zip(batch.columns, columns)]
    count = struct.pack("!h", len(columns))
    out = []
    for i in range(batch.num_rows):
        body = bytearray(count)
        for col in cells:
            v = col[i]
            body += b"\xff\xff\xff\xff" if v is None else struct.pack("!i", len(v)) + v
        out.append(b"D" + struct.pack("!i", len(body) + 4) + bytes(body))
    return out
