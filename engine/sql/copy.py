"""The COPY statement, wire-agnostic: its grammar (`parse_copy`) and options, as Postgres
spells them. Reading its input is engine/sql/copy_input.py's; typing and storing the rows,
engine/session/copy.py's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

from engine.errors import FeatureNotSupported, InsufficientPrivilege, InvalidParameterValue, SyntaxError_
from engine.sql.statements import matching_paren


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


@dataclass(frozen=True)
class TargetColumn:
    """A column COPY FROM reads: its name, Arrow type and DuckDB type name."""

    name: str
    arrow_type: pa.DataType
    duck_type: str
