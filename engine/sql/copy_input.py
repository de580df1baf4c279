"""COPY FROM input, wire-agnostic: text and csv data cut into rows of text.

Input arrives as a stream of byte pieces (whatever the client sent) and is cut into blocks
of whole rows, so memory is bounded by the block size, not the COPY size. Each block is
parsed by pyarrow's CSV reader (vectorised, multi-threaded) into string columns, which the
session casts to the table's column types (engine/session/copy.py). Postgres text format
(tab-separated, `\\N` for NULL, backslash escapes) is parsed the same way: escapes are undone
afterwards, only in the values that hold a backslash, and a block where an escaped delimiter
or newline would fool a plain splitter is parsed by the row-at-a-time parser here instead.

Errors name the line, as Postgres does (`CONTEXT: COPY t, line 3, column x: "abc"`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from engine.errors import BadCopyFileFormat, CharacterNotInRepertoire, EngineError
from engine.sql.copy import CopyOptions

BLOCK_BYTES = 8 << 20  # rows are parsed, typed and staged this many input bytes at a time


@dataclass
class RawBlock:
    """Rows of one block as columns c0..cN (strings from text/csv, values from binary),
    the input line number of its first row, and the input bytes it came from (0: not known,
    binary COPY)."""

    rows: pa.Table
    first_line: int
    nbytes: int = 0


def _odd_backslashes_before(data: bytes, pos: int) -> bool:
    n = 0
    while pos - n - 1 >= 0 and data[pos - n - 1] == 0x5C:
        n += 1
    return n % 2 == 1


def _cut(data: bytes, opts: CopyOptions) -> int:
    """End of the last whole row in `data` (0: none yet)."""
    p = data.rfind(b"\n")
    if opts.format == "csv":
        quote = opts.quote.encode()
        esc = opts.escape_char.encode()

        def quotes(lo: int, hi: int) -> int:
            n = data.count(quote, lo, hi)
            return n - data.count(esc + quote, lo, hi) if esc != quote else n

        inside = quotes(0, p) % 2 if p >= 0 else 0
        while p >= 0 and inside:  # that newline is inside a quoted value
            q = data.rfind(b"\n", 0, p)
            inside ^= quotes(max(q, 0), p) % 2
            p = q
    else:
        while p >= 0 and _odd_backslashes_before(data, p):  # an escaped newline: data
            p = data.rfind(b"\n", 0, p)
    return p + 1


_END_MARKER = re.compile(rb"(?:^|\n)\\\.\r?(?:\n|$)")


def blocks(read: Callable[[], bytes], opts: CopyOptions, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Whole-row blocks of about `block_bytes` from the input pieces `read()` returns
    (b"" at the end). A `\\.` line ends the data; what follows is read and ignored."""
    pending: list[bytes] = []
    size, ended = 0, False
    want = block_bytes  # a row longer than a block doubles this: time stays linear in its size
    while True:
        piece = read()
        if not piece:
            break
        if ended:
            continue
        pending.append(piece)
        size += len(piece)
        if size < want:
            continue
        data = b"".join(pending)
        data, ended = _before_marker(data, final=False)
        cut = len(data) if ended else _cut(data, opts)
        if cut:
            yield data[:cut]
        pending, size = ([data[cut:]], len(data) - cut) if cut < len(data) else ([], 0)
        want = block_bytes if cut else 2 * size
    if pending and not ended:
        data, _ = _before_marker(b"".join(pending), final=True)
        if data:
            yield data


def _before_marker(data: bytes, final: bool) -> tuple[bytes, bool]:
    """`data` up to a `\\.` line, and whether there was one. Unless `final`, the last line
    may be incomplete (`\\.5` is an escaped value), so a marker there must end in a newline."""
    if b"\\." not in data:
        return data, False
    m = next((m for m in _END_MARKER.finditer(data) if final or m.group(0).endswith(b"\n")), None)
    if m is None:
        return data, False
    return data[:m.start() + (1 if m.group(0).startswith(b"\n") else 0)], True


def text_blocks(read: Callable[[], bytes], opts: CopyOptions, columns: list[str], label: str,
                block_bytes: int = BLOCK_BYTES) -> Iterator[RawBlock]:
    """COPY FROM input in text or csv format as string-column blocks, header skipped."""
    line = 1
    skip_header = opts.header
    for data in blocks(read, opts, block_bytes):
        if skip_header:
            skip_header = False
            end = _header_end(data, opts)
            data, line = data[end:], 2
            if not data:
                continue
        rows = parse_block(data, opts, columns, line, label)
        yield RawBlock(rows, line, len(data))
        line += rows.num_rows


def _header_end(data: bytes, opts: CopyOptions) -> int:
    """End of the first row (a CSV header may quote a newline)."""
    p = data.find(b"\n")
    if opts.format == "csv":
        quote = opts.quote.encode()
        while p >= 0 and data.count(quote, 0, p) % 2:
            p = data.find(b"\n", p + 1)
    return len(data) if p < 0 else p + 1


_NEEDS_SLOW = {}  # delimiter -> regex of an escaped delimiter, CR or LF (odd backslash run)
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", re.S)
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _unescape_match(m: re.Match) -> str:
    s = m.group(1)
    if s[0] == "x" and len(s) > 1:
        return chr(int(s[1:], 16))
    if s[0] in "01234567":
        return chr(int(s, 8) & 0xFF)
    return _SIMPLE_ESCAPES.get(s, s)


def unescape(value: str) -> str:
    """Undo Postgres text-format backslash escapes in one value."""
    return _ESCAPE.sub(_unescape_match, value)


def _slow_pattern(sep: str) -> re.Pattern:
    pat = _NEEDS_SLOW.get(sep)
    if pat is None:
        pat = _NEEDS_SLOW[sep] = re.compile(rb"(?<!\\)(?:\\\\)*\\[" + re.escape(sep.encode()) + rb"\r\n]")
    return pat


def with_context(err: EngineError, context: str) -> EngineError:
    """Attach Postgres' CONTEXT line (`COPY t, line 3, column x: "abc"`) to an error."""
    err.context = context
    return err


def shown_value(value: str) -> str:
    """A value as an error message quotes it: the first 100 characters."""
    return value if len(value) <= 100 else value[:100] + "..."


def split_text_rows(block: bytes, opts: CopyOptions) -> list[list[str | None]]:
    """The row-at-a-time text-format parser: exact Postgres semantics (escaped delimiters
    and newlines included), for blocks the vectorised reader cannot take."""
    text = _decode(block)
    null, sep = opts.null_string, opts.sep
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    rows, i = [], 0
    while i < len(lines):
        line = lines[i]
        while _odd_backslashes_before(line.encode(), len(line.encode())) and i + 1 < len(lines):
            i += 1
            line += "\n" + lines[i]  # an escaped newline is part of the value
        if line.endswith("\r") and not _odd_backslashes_before(line[:-1].encode(), len(line[:-1].encode())):
            line = line[:-1]
        fields, cur, j = [], [], 0
        while j < len(line):
            ch = line[j]
            if ch == "\\" and j + 1 < len(line):
                cur.append(line[j:j + 2])
                j += 2
                continue
            if ch == sep:
                fields.append("".join(cur))
                cur = []
            else:
                cur.append(ch)
            j += 1
        fields.append("".join(cur))
        rows.append([None if f == null else unescape(f) for f in fields])
        i += 1
    return rows


def _decode(block: bytes) -> str:
    try:
        return block.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CharacterNotInRepertoire(
            f'invalid byte sequence for encoding "UTF8": 0x{block[exc.start]:02x}') from None


def _names(width: int) -> list[str]:
    return [f"c{i}" for i in range(width)]


def _width_error(columns: list[str], got: int, line: int, text: str, label: str) -> EngineError:
    if got < len(columns):
        err = BadCopyFileFormat(f'missing data for column "{columns[got]}"')
    else:
        err = BadCopyFileFormat("extra data after last expected column")
    return with_context(err, f'COPY {label}, line {line}: "{shown_value(text)}"')


def parse_block(block: bytes, opts: CopyOptions, columns: list[str], first_line: int, label: str) -> pa.Table:
    """One block of text/csv rows as string columns c0.. (one per target column), NULLs as
    nulls; a row with too few or too many fields is an error naming its line."""
    width = len(columns)
    names = _names(width)
    if opts.format == "text" and b"\\" in block and _slow_pattern(opts.sep).search(block):
        return _rows_table(split_text_rows(block, opts), columns, first_line, label)
    empty_line = block.startswith((b"\n", b"\r\n")) or b"\n\n" in block or b"\n\r\n" in block
    if opts.format == "text" and empty_line and width > 1:
        return _rows_table(split_text_rows(block, opts), columns, first_line, label)  # raises
    bad: list = []

    def invalid(row) -> str:
        bad.append(row)
        return "skip"

    def read(threads: bool, skip_empty: bool = False, block_size: int = 1 << 22) -> pa.Table:
        csv_mode = opts.format == "csv"
        esc = opts.escape_char
        return pacsv.read_csv(
            pa.py_buffer(block),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=threads, block_size=block_size),
            parse_options=pacsv.ParseOptions(
                delimiter=opts.sep, quote_char=opts.quote if csv_mode else False,
                double_quote=csv_mode and esc == opts.quote,
                escape_char=esc if csv_mode and esc != opts.quote else False,
                newlines_in_values=csv_mode, ignore_empty_lines=skip_empty, invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, null_values=[opts.null_string],
                strings_can_be_null=True, quoted_strings_can_be_null=False))

    try:
        try:
            table = read(True)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc):
                raise
            # a row longer than the reader's block: read the whole block as one
            table = read(False, block_size=min(len(block) + 1, (1 << 31) - 1))
    except pa.ArrowInvalid as exc:
        _decode(block)  # invalid UTF-8 is the usual cause: report it as Postgres does
        raise BadCopyFileFormat(f"could not parse COPY data: {exc}").with_traceback(None) from None
    if bad:
        bad.clear()
        read(False)  # single-threaded, the reader numbers the rows
        row = bad[0]
        return _raise(_width_error(columns, row.actual_columns, first_line + (row.number or 1) - 1,
                                   row.text, label))
    if opts.format == "csv" and empty_line and width > 1 and read(False, True).num_rows != table.num_rows:
        nulls = pc.and_(*[pc.is_null(c) for c in table.columns]) if width > 1 else None
        index = pc.index(nulls, True).as_py()
        return _raise(_width_error(columns, 1, first_line + max(index, 0), "", label))
    if opts.format == "text" and b"\\" in block:
        table = pa.table([_unescape_column(col) for col in table.columns], names=names)
    return table


def _raise(err: EngineError):
    raise err


def _unescape_column(col: pa.ChunkedArray) -> pa.Array:
    col = col.combine_chunks()
    has = pc.match_substring(col, "\\").fill_null(False)
    if not pc.any(has).as_py():
        return col
    fixed = pa.array([unescape(v) for v in col.filter(has).to_pylist()], pa.string())
    return pc.replace_with_mask(col, has, fixed)


def _rows_table(rows: list[list[str | None]], columns: list[str], first_line: int, label: str) -> pa.Table:
    width = len(columns)
    for i, row in enumerate(rows):
        if len(row) != width:
            text = "\t".join("\\N" if f is None else f for f in row)
            raise _width_error(columns, len(row), first_line + i, text, label)
    cols = list(zip(*rows)) if rows else [() for _ in range(width)]
    return pa.table([pa.array(list(c), pa.string()) for c in cols], names=_names(width))
