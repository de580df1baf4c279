"""Result types of sum() and avg() as PostgreSQL gives them.

PostgreSQL: sum(smallint/integer) is bigint, sum(bigint) numeric, avg() of any integer or
numeric is numeric. DuckDB: sum of any integer is HUGEINT (shown as numeric) and avg is
DOUBLE. Which applies depends on the argument's type, which only DuckDB's binder knows
(columns of views, expressions), so a query that calls sum/avg has its arguments bound once
(`bind`: a SELECT of them over the query's own FROM clause, not run) and the calls wrapped in
the cast that gives PostgreSQL's type. Queries without sum( or avg( are not looked at.
"""
from __future__ import annotations

import re
from typing import Callable

import duckdb
import sqlglot
from sqlglot import exp

_AGGREGATE = re.compile(r"\b(sum|avg)\s*\(", re.I)
_INT4 = {"TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT"}
_EXACT = _INT4 | {"BIGINT", "HUGEINT", "UINTEGER", "UBIGINT"}
AVG_NUMERIC = "DECIMAL(38,16)"  # PostgreSQL shows avg of integers with 16 or more decimals


def calls_aggregates(sql: str) -> bool:
    """Whether `sql` may call sum or avg (only then is it parsed and its arguments bound)."""
    return _AGGREGATE.search(sql) is not None


def pg_aggregates(sql: str, bind: Callable[[str], list[str]]) -> str:
    """`sql` with each sum/avg whose PostgreSQL type differs from DuckDB's cast to it."""
    if not _AGGREGATE.search(sql):
        return sql
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.SqlglotError:
        return sql
    calls = list(tree.find_all(exp.Sum, exp.Avg))
    casts: list[str | None] = []
    aliases: list[str | None] = []
    for call in calls:
        top = call
        while isinstance(top.parent, (exp.Filter, exp.Window)):
            top = top.parent
        # an unaliased select item keeps PostgreSQL's column name (sum, avg), not "cast"
        aliases.append(call.key if isinstance(top.parent, exp.Select) and top.arg_key == "expressions" else None)
        arg = call.this
        if isinstance(arg, exp.Distinct):
            arg = arg.expressions[0] if arg.expressions else None
        select = call.find_ancestor(exp.Select)
        casts.append(_cast_for(call, arg, select, tree, bind) if arg is not None and select is not None else None)
    if not any(casts):
        return sql
    return _wrap(sql, casts, aliases)


def _cast_for(call: exp.Expression, arg: exp.Expression, select: exp.Select, root: exp.Expression,
              bind) -> str | None:
    probe = exp.select(arg.copy())
    for key in ("from_", "joins"):
        if select.args.get(key):
            probe.set(key, select.args[key].copy() if key == "from_" else [j.copy() for j in select.args[key]])
    ctes = select.args.get("with_") or root.args.get("with_")
    if ctes is not None:
        probe.set("with_", ctes.copy())
    try:
        (typ,) = bind(probe.sql(dialect="postgres"))
    except (duckdb.Error, ValueError, sqlglot.errors.SqlglotError):
        return None
    except Exception:  # noqa: BLE001 - the probe is best effort: DuckDB's types stand
        return None
    base = typ.split("(")[0].strip().upper()
    if isinstance(call, exp.Sum):
        return "BIGINT" if base in _INT4 else None
    return AVG_NUMERIC if base in _EXACT or base == "DECIMAL" else None


def _wrap(sql: str, casts: list[str | None], aliases: list[str | None]) -> str:
    """Wrap the n-th sum/avg call of `sql` (in text order) in CAST(... AS casts[n]), named
    aliases[n] when that is given."""
    from engine.sql.pg_compat import tokens

    toks = tokens(sql)
    found = [i for i, t in enumerate(toks)
             if t.low in ("sum", "avg") and i + 1 < len(toks) and toks[i + 1].text == "("
             and not (i and toks[i - 1].text == ".")]
    if len(found) != len(casts):
        return sql  # the two readings disagree: leave the query as it is
    out = []
    pos = 0
    for i, cast, alias in zip(found, casts, aliases):
        if cast is None:
            continue
        close = _call_end(toks, i + 1)
        if close is None:
            return sql
        start = sum(len(t.pre) + len(t.text) for t in toks[:i]) + len(toks[i].pre)
        end = sum(len(t.pre) + len(t.text) for t in toks[:close + 1])
        out.append((start, end, cast, f' AS "{alias}"' if alias else ""))
    text = sql
    for start, end, cast, named in reversed(out):
        text = f"{text[:start]}CAST({text[start:end]} AS {cast}){named}{text[end:]}"
    return text


def _call_end(toks, open_at: int) -> int | None:
    """The call's end: its closing parenthesis, or the end of a FILTER (...) / OVER (...) after it."""
    depth = 0
    j = open_at
    while j < len(toks):
        depth += {"(": 1, ")": -1}.get(toks[j].text, 0)
        if depth == 0:
            break
        j += 1
    else:
        return None
    while j + 2 < len(toks) and toks[j + 1].low in ("filter", "over"):
        if toks[j + 2].text != "(":
            return j + 2 if toks[j + 1].low == "over" else j  # OVER w (a named window)
        depth, k = 0, j + 2
        while k < len(toks):
            depth += {"(": 1, ")": -1}.get(toks[k].text, 0)
            if depth == 0:
                break
            k += 1
        j = k
    return j
