"""COPY's data formats: binary COPY input decoded into Arrow blocks, and COPY TO output.

Binary COPY input (a PGCOPY header, tuples of length-prefixed fields, a -1 trailer) is
collected raw and decoded a column at a time, fixed-width columns with one byte swap; text
and csv input are parsed by the engine (engine/sql/copy_input.py). COPY TO output in text, csv or
binary is built a column at a time from the same vectorised encoders as DataRow and sent as
one CopyData message per row. The sub-protocol that carries them is protocol/copy.py.
"""
from __future__ import annotations

import struct
import uuid
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from engine.sql import copy_input
from engine.sql.copy import CopyCommand, CopyOptions, TargetColumn
from engine.sql.copy_input import RawBlock
from engine.errors import BadCopyFileFormat, FeatureNotSupported

from .rows import BINARY, TEXT, Column, join_rows, plan_columns, wire_fields
from .types import oids, pg_type_for
from .types.registry import BINARY_DECODERS
from .types.vector import big_endian, concat, to_binary

BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
OUT_CHUNK_ROWS = 65_536
BINARY_BLOCK_ROWS = 65_536


def copy_data(data: bytes | pa.Buffer) -> bytes:
    return b"d" + struct.pack("!i", len(data) + 4) + bytes(data)


# ---------------------------------------------------------------------------------- COPY FROM
def raw_blocks(cmd: CopyCommand, columns: list[TargetColumn],
               read: Callable[[], bytes], label: str) -> Iterator[RawBlock]:
    names = [c.name for c in columns]
    if cmd.options.format == "binary":
        return binary_blocks(read, columns, label)
    return copy_input.text_blocks(read, cmd.options, names, label)


class _Reader:
    """Exact-size reads over the CopyData pieces."""

    def __init__(self, read: Callable[[], bytes]):
        self._read = read
        self.buf = b""
        self.pos = 0

    def take(self, n: int) -> bytes | None:
        """`n` bytes, or None at the end of the data."""
        while len(self.buf) - self.pos < n:
            piece = self._read()
            if not piece:
                return None
            self.buf = self.buf[self.pos:] + piece
            self.pos = 0
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def _uuid(data: bytes) -> str:
    return str(uuid.UUID(bytes=data)) if len(data) == 16 else data.decode()


def _json(data: bytes) -> str:
    return data[1:].decode() if data[:1] == b"\x01" else data.decode()  # jsonb: version byte 1


# Columns whose Arrow type (a string) does not say how the client encodes them in binary;
# text encodings are accepted too, as clients that describe these columns as text send them.
_BY_DUCK_TYPE = {"UUID": _uuid, "JSON": _json}


def _binary_decoder(column: TargetColumn) -> Callable[[bytes], object]:
    decoder = _BY_DUCK_TYPE.get(column.duck_type.upper()) or \
        BINARY_DECODERS.get(pg_type_for(column.arrow_type).oid)
    if decoder is None:
        raise FeatureNotSupported(f"binary COPY into a {column.duck_type} column is not supported; use FORMAT csv")
    return decoder


def binary_blocks(read: Callable[[], bytes], columns: list[TargetColumn],
                  label: str) -> Iterator[RawBlock]:
    """Binary COPY input (PGCOPY header, tuples of length-prefixed fields, -1 trailer).
    Fields are collected raw; each column is then decoded at once (`_decode_column`)."""
    r = _Reader(read)
    header = r.take(len(BINARY_SIGNATURE) + 8)
    if header is None or not header.startswith(BINARY_SIGNATURE):
        raise BadCopyFileFormat("COPY file signature not recognized")
    flags, extension = struct.unpack_from("!iI", header, len(BINARY_SIGNATURE))
    if flags & 0x10000:
        raise BadCopyFileFormat("COPY with OIDs is not supported")
    if extension and r.take(extension) is None:
        raise BadCopyFileFormat("invalid COPY file header (missing extension)")
    decoders = [_binary_decoder(c) for c in columns]
    width = len(columns)
    line, first = 1, 1
    values: list[list] = [[] for _ in range(width)]
    h_from, i_from = struct.Struct("!h").unpack_from, struct.Struct("!i").unpack_from
    buf, pos = r.buf[r.pos:], 0
    while True:
        # one tuple: int16 field count, then per field an int32 length (-1: NULL) and its bytes
        row_start, n = pos, len(buf)
        row: list = []
        if pos + 2 <= n:
            (count,) = h_from(buf, pos)
            if count == -1:
                pos += 2
                break
            if count != width:
                raise copy_input.with_context(BadCopyFileFormat(f"row field count is {count}, expected {width}"),
                                        f"COPY {label}, line {line}")
            pos += 2
            while len(row) < width and pos + 4 <= n:
                (size,) = i_from(buf, pos)
                if size < 0:
                    row.append(None)
                    pos += 4
                elif pos + 4 + size <= n:
                    row.append(buf[pos + 4:pos + 4 + size])
                    pos += 4 + size
                else:
                    break
        if len(row) < width or pos - row_start < 2:  # the tuple goes on in the next piece
            piece = read()
            if not piece:
                raise copy_input.with_context(BadCopyFileFormat("unexpected EOF in COPY data"),
                                        f"COPY {label}, line {line}")
            buf, pos = buf[row_start:] + piece, 0
            continue
        for column, value in zip(values, row):
            column.append(value)
        line += 1
        if line - first >= BINARY_BLOCK_ROWS:
            yield RawBlock(_arrow_columns(values, columns, decoders, first, label), first)
            values = [[] for _ in range(width)]
            first = line
    if line > first:
        yield RawBlock(_arrow_columns(values, columns, decoders, first, label), first)
    while read():  # nothing may follow the trailer; Postgres reads it anyway
        pass


_EPOCH_2000_DAYS = 10_957
_EPOCH_2000_US = 946_684_800_000_000
# OID -> (field width, Arrow type of the big-endian value, how to finish it)
_FIXED = {
    oids.INT2: (2, pa.int16(), None), oids.INT4: (4, pa.int32(), None), oids.INT8: (8, pa.int64(), None),
    oids.FLOAT4: (4, pa.float32(), None), oids.FLOAT8: (8, pa.float64(), None),
    oids.DATE: (4, pa.int32(), lambda a: pc.add(a, pa.scalar(_EPOCH_2000_DAYS, pa.int32())).cast(pa.date32())),
    oids.TIMESTAMP: (8, pa.int64(), lambda a: pc.add(a, _EPOCH_2000_US).cast(pa.timestamp("us"))),
    oids.TIMESTAMPTZ: (8, pa.int64(), lambda a: pc.add(a, _EPOCH_2000_US).cast(pa.timestamp("us", "UTC"))),
}


def _decode_fixed(raw: list, column: TargetColumn) -> pa.Array | None:
    """A whole column of fixed-width binary values decoded at once; None if it is not one
    (or a value has the wrong width: the per-value decoder then reports it)."""
    spec = _FIXED.get(pg_type_for(column.arrow_type).oid) if column.duck_type.upper() not in _BY_DUCK_TYPE else None
    if spec is None:
        return None
    width, dtype, finish = spec
    present = [v for v in raw if v is not None]
    if set(map(len, present)) - {width}:
        return None
    nulls = len(present) != len(raw)
    data = b"".join(v if v is not None else bytes(width) for v in raw) if nulls else b"".join(present)
    unsigned = pa.Array.from_buffers(pa.int64() if width == 8 else pa.int32() if width == 4 else pa.int16(),
                                     len(raw), [None, pa.py_buffer(data)])
    swapped = big_endian(unsigned, width)  # byte order reversed: native values now
    values = pa.Array.from_buffers(dtype, len(raw), [None, swapped.buffers()[1]], offset=swapped.offset)
    if finish is not None:
        values = finish(values)
    if nulls:
        values = pc.if_else(pa.array([v is not None for v in raw]), values, pa.scalar(None, values.type))
    return values


def _arrow_columns(values: list[list], columns: list[TargetColumn], decoders: list, first: int,
                   label: str) -> pa.Table:
    arrays = []
    for raw, column, decode in zip(values, columns, decoders):
        fixed = _decode_fixed(raw, column)
        if fixed is not None:
            arrays.append(fixed)
            continue
        vals = []
        for n, data in enumerate(raw):
            try:
                vals.append(None if data is None else decode(data))
            except Exception as exc:
                raise copy_input.with_context(
                    BadCopyFileFormat(f"incorrect binary data format in column {column.name}: {exc}"),
                    f"COPY {label}, line {first + n}, column {column.name}") from None
        try:
            arrays.append(pa.array(vals, type=column.arrow_type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            arrays.append(pa.array([None if v is None else str(v) for v in vals], pa.string()))
    return pa.table(arrays, names=[f"c{i}" for i in range(len(columns))])


# ---------------------------------------------------------------------------------- COPY TO
def copy_out_messages(table: pa.Table | None, opts: CopyOptions, first: bool = True,
                      last: bool = True) -> Iterator[bytes | pa.Buffer]:
    """COPY TO output for `table` as CopyData messages, a chunk of rows per item; a result
    sent in parts calls this per part (`first`: the header goes out, `last`: the binary
    trailer; `table` None: nothing but what `last` adds).

    One CopyData per row, as Postgres sends them (psycopg's row readers rely on it); the
    binary header rides in the first row's message and the trailer has its own."""
    binary = opts.format == "binary"
    if table is None:
        if last and binary:
            yield copy_data(b"\xff\xff")
        return
    columns = plan_columns(table.schema, [BINARY if binary else TEXT])
    header = BINARY_SIGNATURE + b"\x00" * 8 if binary and first else b""
    if opts.header and not binary and first:
        names = [pa.array([name.encode()], pa.large_binary()) for name in table.schema.names]
        escape = (lambda v: _csv_quote(v, opts, False)) if opts.format == "csv" else \
            (lambda v: _text_escape(v, opts))
        yield copy_data(_line([escape(n) for n in names], opts)[0].as_py())
    for batch in table.to_batches(max_chunksize=OUT_CHUNK_ROWS):
        if not batch.num_rows:
            continue
        if binary:
            fields, _ = wire_fields(batch, columns)
            rows = concat(struct.pack("!h", len(columns)), *fields)
        else:
            rows = _text_rows(batch, columns, opts)
        if header:
            rows = pc.if_else(pc.equal(pa.array(range(batch.num_rows)), 0), concat(header, rows), rows)
            header = b""
        lengths = big_endian(pc.add(pc.binary_length(rows), 4).cast(pa.int32()), 4)
        yield join_rows([pa.scalar(b"d", pa.large_binary()), to_binary(lengths), rows])
    if header:
        yield copy_data(header)
    if binary and last:
        yield copy_data(b"\xff\xff")


def _text_rows(batch: pa.RecordBatch, columns: list[Column], opts: CopyOptions) -> pa.Array:
    forced = opts.force_quote
    cols = []
    for values, column in zip(batch.columns, columns):
        encoded = to_binary(column.encode(values))
        if opts.format == "csv":
            force = forced is True or (isinstance(forced, list) and column.name in forced)
            encoded = _csv_quote(encoded, opts, force)
        else:
            encoded = _text_escape(encoded, opts)
        cols.append(encoded.fill_null(opts.null_string.encode()) if encoded.null_count else encoded)
    if not cols:
        return pa.array([b"\n"] * batch.num_rows, pa.large_binary())
    return _line(cols, opts)


def _line(cols: list, opts: CopyOptions) -> pa.Array:
    """Each row's fields joined by the delimiter, ending in a newline."""
    sep = opts.sep.encode()
    parts: list = []
    for i, col in enumerate(cols):
        parts += [sep, col] if i else [col]
    return concat(*parts, b"\n")


_TEXT_ESCAPES = ((b"\\", b"\\\\"), (b"\n", b"\\n"), (b"\r", b"\\r"), (b"\t", b"\\t"))


def _text_escape(values: pa.Array, opts: CopyOptions) -> pa.Array:
    sep = opts.sep.encode()
    escapes = _TEXT_ESCAPES + (() if sep == b"\t" else ((sep, b"\\" + sep),))
    for raw, escaped in escapes:
        if pc.any(pc.match_substring(values, raw.decode())).as_py():
            values = pc.replace_substring(values, raw, escaped)
    return values


def _csv_quote(values: pa.Array, opts: CopyOptions, force: bool) -> pa.Array:
    """Quote what must be: values holding the delimiter, quote, CR or LF, and a value equal
    to the NULL string (so it reads back as that string, not NULL); or all, if forced."""
    quote, esc = opts.quote.encode(), opts.escape_char.encode()
    if force:
        needs = pc.is_valid(values)
    else:
        pattern = "[" + "".join("\\" + c if c in "]\\^-[" else c for c in (opts.sep + opts.quote + "\r\n")) + "]"
        needs = pc.or_(pc.match_substring_regex(values, pattern),
                       pc.equal(values, pa.scalar(opts.null_string.encode(), pa.large_binary())))
        needs = needs.fill_null(False)
        if not pc.any(needs).as_py():
            return values
    if opts.escape_char != opts.quote and pc.any(pc.match_substring(values, opts.escape)).as_py():
        values = pc.replace_substring(values, esc, esc + esc)
    quoted = concat(quote, pc.replace_substring(values, quote, esc + quote), quote)
    return pc.if_else(needs, quoted, values)
