"""COPY, wire-agnostic: the statement's grammar, and text/csv input cut into rows of text.

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
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from engine.errors import (
    BadCopyFileFormat,
    CharacterNotInRepertoire,
    EngineError,
    FeatureNotSupported,
    InsufficientPrivilege,
    InvalidParameterValue,
    SyntaxError_,
)
from engine.sql.statements import matching_paren

BLOCK_BYTES = 8 << 20  # rows are parsed, typed and staged this many input bytes at a time



# ---------------------------------------------------------------------------------- grammar
@dataclass
class CopyOptions:
    format: str = "text"  # text | csv | binary
    header: bool = False
    delimiter: str | None = None  # None: the format's default (tab, or comma for csv)
    null: str | None = None  # None: the format's default (\N, or empty for csv)
    quote: str = '"'
    escape: str | None = None  # None: same as quote
    force_quote: list[str] | bool = field(default_factory=list)  # True: FORCE_QUOTE *

    @property
    def sep(self) -> str:
        return self.delimiter if self.delimiter is not None else ("," if self.format == "csv" else "\t")

    @property
    def null_string(self) -> str:
        return self.null if self.null is not None else ("" if self.format == "csv" else "\\N")

    @property
    def escape_char(self) -> str:
        return self.escape if self.escape is not None else self.quote


@dataclass
class CopyCommand:
    direction: str  # "from" (STDIN) or "to" (STDOUT)
    namespace: str | None = None
    table: str | None = None
    columns: list[str] | None = None
    query: str | None = None  # COPY (query) TO STDOUT
    options: CopyOptions = field(default_factory=CopyOptions)

    @property
    def label(self) -> str:
        """How error contexts name the COPY (Postgres: the table's name)."""
        return self.table or "query"


_TOKEN = re.compile(r"""\s+|(?P<t>[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|"(?:[^"]|"")*"|[(),;.]|[^\s(),;.'"]+)""", re.S)
_IS_COPY = re.compile(r"^\s*COPY\b", re.I)


def is_copy(sql: str) -> bool:
    return bool(_IS_COPY.match(sql))


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SyntaxError_(f'syntax error at or near "{text[pos:pos + 10]}"')
        if m.group("t"):
            out.append(m.group("t"))
        pos = m.end()
    return out


def _ident(tok: str) -> str:
    if tok.startswith('"'):
        return tok[1:-1].replace('""', '"')
    if not re.match(r"^[A-Za-z_]\w*$", tok):
        raise SyntaxError_(f'syntax error at or near "{tok}"')
    return tok.lower()


def _string(tok: str) -> str:
    if tok[:2] in ("E'", "e'"):
        body = tok[2:-1].replace("''", "'")
        return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(m.group(1), m.group(1)), body)
    if tok.startswith("'"):
        return tok[1:-1].replace("''", "'")
    raise SyntaxError_(f'syntax error at or near "{tok}": a quoted string is expected')


def parse_copy(sql: str) -> CopyCommand:
    """`COPY t [(cols)] FROM STDIN [...]` or `COPY t|(query) TO STDOUT [...]`, in both the
    current option syntax `WITH (FORMAT csv, ...)` and the old one (`WITH CSV HEADER`)."""
    text = sql.strip().rstrip(";").strip()
    m = _IS_COPY.match(text)
    if not m:
        raise SyntaxError_("not a COPY statement")
    rest = text[m.end():].lstrip()
    cmd = CopyCommand(direction="")
    if rest.upper().startswith("BINARY ") and not rest[6:].lstrip().upper().startswith(("FROM", "TO")):
        cmd.options.format = "binary"  # pre-7.3 syntax: COPY BINARY t FROM STDIN
        rest = rest[6:].lstrip()
    if rest.startswith("("):
        end = matching_paren(rest, 0, "COPY")
        cmd.query = rest[1:end].strip()
        toks = _tokens(rest[end + 1:])
    else:
        toks = _tokens(rest)
        if not toks:
            raise SyntaxError_("syntax error at end of input")
        name = [_ident(toks.pop(0))]
        while toks and toks[0] == ".":
            toks.pop(0)
            name.append(_ident(toks.pop(0)))
        if len(name) > 2:
            raise FeatureNotSupported("cross-database references are not implemented")
        cmd.namespace, cmd.table = (name[0], name[1]) if len(name) == 2 else (None, name[0])
        if toks and toks[0] == "(":
            toks.pop(0)
            cmd.columns = []
            while toks and toks[0] != ")":
                tok = toks.pop(0)
                if tok != ",":
                    cmd.columns.append(_ident(tok))
            if not toks:
                raise SyntaxError_("syntax error: unbalanced parentheses in COPY")
            toks.pop(0)
    if not toks:
        raise SyntaxError_("syntax error at end of input")
    direction = toks.pop(0).upper()
    if direction not in ("FROM", "TO"):
        raise SyntaxError_(f'syntax error at or near "{direction}"')
    cmd.direction = direction.lower()
    if cmd.query is not None and cmd.direction == "from":
        raise SyntaxError_('syntax error at or near "FROM": COPY (query) only writes TO')
    where = toks.pop(0).upper() if toks else ""
    if where != ("STDIN" if cmd.direction == "from" else "STDOUT"):
        if where == "PROGRAM" or where.startswith("'"):
            raise InsufficientPrivilege(  # the sandbox (engine/sql/sandbox.py), as Postgres for non-superusers
                f"permission denied: COPY {direction} a file or program is not allowed",
                hint=f"Use COPY ... {direction} {'STDIN' if direction == 'FROM' else 'STDOUT'}, "
                     "or psql's \\copy, which reads and writes the file on the client.")
        raise SyntaxError_(f'syntax error at or near "{where or "end of input"}"')
    _parse_options(toks, cmd.options)
    _check_options(cmd.options)
    return cmd


def _parse_options(toks: list[str], opts: CopyOptions) -> None:
    if toks and toks[0].upper() == "WITH":
        toks.pop(0)
    if toks and toks[0] == "(":
        toks.pop(0)
        while toks and toks[0] != ")":
            name = toks.pop(0).upper()
            args: list[str] = []
            while toks and toks[0] not in (",", ")"):
                if toks[0] == "(":  # FORCE_QUOTE (a, b)
                    toks.pop(0)
                    while toks and toks[0] != ")":
                        tok = toks.pop(0)
                        if tok != ",":
                            args.append(tok)
                    toks.pop(0)
                else:
                    args.append(toks.pop(0))
            _set_option(opts, name, args)
            if toks and toks[0] == ",":
                toks.pop(0)
        if not toks:
            raise SyntaxError_("syntax error: unbalanced parentheses in COPY options")
        toks.pop(0)
    else:  # the old syntax: keywords in any order
        while toks:
            word = toks.pop(0).upper()
            if word == "BINARY":
                opts.format = "binary"
            elif word == "CSV":
                opts.format = "csv"
            elif word == "HEADER":
                opts.header = True
            elif word in ("DELIMITER", "NULL", "QUOTE", "ESCAPE"):
                if toks and toks[0].upper() == "AS":
                    toks.pop(0)
                if not toks:
                    raise SyntaxError_(f"syntax error: {word} needs a value")
                _set_option(opts, word, [toks.pop(0)])
            elif word == "FORCE":
                what = " ".join(t.upper() for t in toks[:2])
                if toks and toks[0].upper() == "QUOTE":
                    toks.pop(0)
                    cols = []
                    while toks and (toks[0] == "," or not cols or cols[-1] == ","):
                        cols.append(toks.pop(0))
                    _set_option(opts, "FORCE_QUOTE", [c for c in cols if c != ","])
                else:
                    raise FeatureNotSupported(f"COPY option FORCE {what} is not supported by tierd")
            else:
                raise SyntaxError_(f'syntax error at or near "{word}"')
    if toks and toks[0].upper() == "WHERE":
        raise FeatureNotSupported("COPY ... WHERE is not supported by tierd")
    if toks:
        raise SyntaxError_(f'syntax error at or near "{toks[0]}"')


def _set_option(opts: CopyOptions, name: str, args: list[str]) -> None:
    value = args[0] if args else None
    if name == "FORMAT":
        fmt = (value or "").strip("'").lower()
        if fmt not in ("text", "csv", "binary"):
            raise InvalidParameterValue(f'COPY format "{fmt}" not recognized')
        opts.format = fmt
    elif name == "HEADER":
        word = (value or "true").strip("'").lower()
        if word == "match":
            raise FeatureNotSupported("COPY HEADER MATCH is not supported by tierd")
        opts.header = word in ("true", "on", "1", "yes")
    elif name in ("DELIMITER", "NULL", "QUOTE", "ESCAPE", "ENCODING"):
        if value is None:
            raise SyntaxError_(f"syntax error: COPY option {name} needs a value")
        text = _string(value)
        if name == "ENCODING":
            if text.upper().replace("-", "") not in ("UTF8", "UNICODE", "SQL_ASCII"):
                raise FeatureNotSupported(f"COPY ENCODING '{text}' is not supported: tierd reads UTF8")
        else:
            setattr(opts, name.lower(), text)
    elif name == "FORCE_QUOTE":
        opts.force_quote = True if args == ["*"] else [_ident(a) for a in args]
    elif name == "FREEZE":
        pass  # a loading hint; every COPY is already one batch
    else:
        raise FeatureNotSupported(f'COPY option "{name.lower()}" is not supported by tierd')


def _check_options(o: CopyOptions) -> None:
    """Postgres' own checks of the option combination."""
    if o.format == "binary" and (o.delimiter is not None or o.null is not None or o.header):
        raise SyntaxError_("cannot specify DELIMITER, NULL or HEADER in BINARY mode")
    if o.format != "csv" and (o.quote != '"' or o.escape is not None or o.force_quote):
        raise FeatureNotSupported("COPY QUOTE, ESCAPE and FORCE_QUOTE are available only in CSV mode")
    if len(o.sep) != 1 or len(o.sep.encode()) != 1:
        raise FeatureNotSupported("COPY delimiter must be a single one-byte character")
    if len(o.quote) != 1 or len(o.escape_char) != 1:
        raise FeatureNotSupported("COPY quote and escape must be single one-byte characters")
    if o.sep in "\r\n" or (o.format == "text" and (o.sep == "\\" or o.sep in "abcdefghijklmnopqrstuvwxyz0123456789.")):
        raise InvalidParameterValue(f'COPY delimiter cannot be "{o.sep}"')
    if "\r" in o.null_string or "\n" in o.null_string:
        raise InvalidParameterValue("COPY null representation cannot use newline or carriage return")
    if o.format == "csv" and o.sep == o.quote:
        raise InvalidParameterValue("COPY delimiter and quote must be different")


# ---------------------------------------------------------------------------------- reading
@dataclass
class RawBlock:
    """Rows of one block as columns c0..cN (strings from text/csv, values from binary),
    and the input line number of its first row."""

    rows: pa.Table
    first_line: int


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
    while True:
        piece = read()
        if not piece:
            break
        if ended:
            continue
        pending.append(piece)
        size += len(piece)
        if size < block_bytes:
            continue
        data = b"".join(pending)
        data, ended = _before_marker(data, final=False)
        cut = len(data) if ended else _cut(data, opts)
        if cut:
            yield data[:cut]
        pending, size = ([data[cut:]], len(data) - cut) if cut < len(data) else ([], 0)
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
        yield RawBlock(rows, line)
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

    def read(threads: bool, skip_empty: bool = False) -> pa.Table:
        csv_mode = opts.format == "csv"
        esc = opts.escape_char
        return pacsv.read_csv(
            pa.py_buffer(block),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=threads, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(
                delimiter=opts.sep, quote_char=opts.quote if csv_mode else False,
                double_quote=csv_mode and esc == opts.quote,
                escape_char=esc if csv_mode and esc != opts.quote else False,
                newlines_in_values=csv_mode, ignore_empty_lines=skip_empty, invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, null_values=[opts.null_string],
                strings_can_be_null=True, quoted_strings_can_be_null=False))

    try:
        table = read(True)
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


# ---------------------------------------------------------------------------------- typing
@dataclass(frozen=True)
class TargetColumn:
    """A column COPY FROM reads: its name, Arrow type and DuckDB type name."""

    name: str
    arrow_type: pa.DataType
    duck_type: str
