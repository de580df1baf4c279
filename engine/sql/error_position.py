"""Where in the client's SQL an error is, read from DuckDB's `LINE n: ...` excerpt.

Postgres reports a 1-based character position (ErrorResponse field P) and psql draws its
own `LINE 1: ... ^` from it, so the excerpt leaves the message and becomes the position; the
lines DuckDB adds after the first (`Did you mean ...`, candidate bindings) become the hint.
"""
from __future__ import annotations

import re
from typing import Callable

import sqlglot
from sqlglot import exp

from engine.errors import EngineError, NumericValueOutOfRange, pg_type_name

_EXCERPT = re.compile(r"\n*LINE (\d+): (.*)\n( *)\^\s*$")


def locate(err: EngineError, sql: str) -> EngineError:
    """Move DuckDB's excerpt out of `err.message`: position when it matches `sql`, and the
    message's extra lines into the hint."""
    match = _EXCERPT.search(err.message)
    if match is None:
        if err.message == "syntax error at end of input" and err.position is None:
            err.position = len(sql.rstrip().rstrip(";").rstrip()) + 1  # as Postgres: after the last token
        return err
    body = err.message[:match.start()]
    first, _, rest = body.partition("\n")
    err.message = first
    extra = rest.strip()
    if extra and not err.hint:
        err.hint = extra
    err.position = _position(sql, int(match.group(1)), match.group(2),
                             len(match.group(3)) - len(f"LINE {match.group(1)}: "))
    if isinstance(err, NumericValueOutOfRange):
        err.position = None  # found while running, not parsing: Postgres gives none
    elif err.position and sql[err.position - 1:err.position + 1] == "::":
        err.position = _cast_operand(sql, err.position - 1)  # Postgres points at the value
    err.args = (err.message,)
    return err


def _cast_operand(sql: str, cast_at: int) -> int:
    """1-based position of the quoted literal that ends just before `::` at `cast_at`."""
    end = cast_at - 1
    if end >= 0 and sql[end] == "'":
        start = end - 1
        while start >= 0 and not (sql[start] == "'" and (start == 0 or sql[start - 1] != "'")):
            start -= 1
        if start >= 0:
            return start + 1
    return cast_at + 1


def _position(sql: str, line_no: int, shown: str, column: int) -> int | None:
    lines = sql.split("\n")
    if not 0 < line_no <= len(lines) or column < 0:
        return None
    line = lines[line_no - 1]
    start = 0
    if shown.startswith("..."):        # DuckDB cut the start of a long line
        shown, column = shown[3:], column - 3
        start = line.find(shown[:20])
        if start < 0 or column < 0:
            return None
    elif not line.startswith(shown.rstrip(".")[:40]):
        return None                    # DuckDB ran rewritten SQL: no honest position
    before = sum(len(x) + 1 for x in lines[:line_no - 1])
    return before + start + column + 1


def function_arg_types(sql: str, name: str, bind: Callable[[str], list[str]]) -> list[str] | None:
    """PostgreSQL's names of the argument types of the first call of `name` in `sql`, for
    `function f(integer) does not exist`: literals typed as Postgres types them (a quoted
    string is `unknown`), other arguments bound by `bind(select_sql)` (DuckDB type names)
    over the call's FROM clause. None when the call cannot be found or bound."""
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.SqlglotError:
        return None
    call = next((f for f in tree.find_all(exp.Anonymous) if f.name.lower() == name.lower()), None)
    if call is None:
        return None
    types: list[str | None] = [_literal_type(a) for a in call.expressions]
    unknown = [a for a, t in zip(call.expressions, types) if t is None]
    if unknown:
        probe = exp.select(*[a.copy() for a in unknown])
        select = call.find_ancestor(exp.Select)
        if select is not None:
            for key in ("from_", "joins"):
                if select.args.get(key):
                    probe.set(key, select.args[key].copy() if key == "from_" else [j.copy() for j in select.args[key]])
        try:
            bound = iter(bind(probe.sql(dialect="duckdb")))
        except Exception:  # noqa: BLE001 - any failure: no argument types to show
            return None
        types = [t if t is not None else pg_type_name(next(bound)) for t in types]
    return [t for t in types if t is not None]


def _literal_type(arg: exp.Expression) -> str | None:
    if isinstance(arg, exp.Literal):
        if arg.is_string:
            return "unknown"
        text = arg.this
        if any(c in text for c in ".eE"):
            return "numeric"
        return "integer" if -2**31 <= int(text) < 2**31 else "bigint" if -2**63 <= int(text) < 2**63 else "numeric"
    if isinstance(arg, exp.Null):
        return "unknown"
    if isinstance(arg, exp.Boolean):
        return "boolean"
    return None
