"""Division by zero is an error (SQLSTATE 22012), as in Postgres, not DuckDB's NULL.

DuckDB has no setting for it, so a query that divides is rewritten: each `/` and `%` calls
a session macro that raises on a zero divisor. Only SQL with `/` or `%` outside quotes and
comments is parsed (sqlglot), once per text.
"""
from __future__ import annotations

import functools

import sqlglot
from sqlglot import exp

from engine.sql.split import scan

DIVIDE, MODULO = "__tierd_div", "__tierd_mod"
MACROS = (
    f"CREATE OR REPLACE TEMP MACRO {DIVIDE}(a, b) AS "
    "CASE WHEN b = 0 THEN error('division by zero') ELSE a / b END",
    f"CREATE OR REPLACE TEMP MACRO {MODULO}(a, b) AS "
    "CASE WHEN b = 0 THEN error('division by zero') ELSE a % b END",
)


def divides(sql: str) -> bool:
    return any(kind == "code" and ("/" in sql[start:end] or "%" in sql[start:end])
               for kind, start, end in scan(sql))


def checked_division(sql: str) -> str:
    """`sql` (DuckDB dialect out) with every division and modulo checked for a zero divisor."""
    if not divides(sql):
        return sql
    return _rewrite(sql)


@functools.lru_cache(maxsize=512)
def _rewrite(sql: str) -> str:
    from engine.sql.dml import space_params

    try:
        tree = sqlglot.parse_one(space_params(sql), read="postgres")
    except sqlglot.errors.SqlglotError:
        return sql   # DuckDB reports the syntax error

    def checked(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Div):
            return exp.Anonymous(this=DIVIDE, expressions=[node.this, node.expression])
        if isinstance(node, exp.Mod):
            return exp.Anonymous(this=MODULO, expressions=[node.this, node.expression])
        return node
    return tree.transform(checked).sql(dialect="duckdb")
