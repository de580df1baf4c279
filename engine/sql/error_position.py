"""Where in the client's SQL an error is, read from DuckDB's `LINE n: ...` excerpt.

Postgres reports a 1-based character position (ErrorResponse field P) and psql draws its
own `LINE 1: ... ^` from it, so the excerpt leaves the message and becomes the position; the
lines DuckDB adds after the first (`Did you mean ...`, candidate bindings) become the hint.
"""
from __future__ import annotations

import re

from engine.errors import EngineError

_EXCERPT = re.compile(r"\n*LINE (\d+): (.*)\n( *)\^\s*$")


def locate(err: EngineError, sql: str) -> EngineError:
    """Move DuckDB's excerpt out of `err.message`: position when it matches `sql`, and the
    message's extra lines into the hint."""
    match = _EXCERPT.search(err.message)
    if match is None:
        return err
    body = err.message[:match.start()]
    first, _, rest = body.partition("\n")
    err.message = first
    extra = rest.strip()
    if extra and not err.hint:
        err.hint = extra
    err.position = _position(sql, int(match.group(1)), match.group(2),
                             len(match.group(3)) - len(f"LINE {match.group(1)}: "))
    err.args = (err.message,)
    return err


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
