"""The sqlglot dialects tierd reads and writes SQL in, loaded before any session runs.

sqlglot registers a dialect class in its registry first and builds it afterwards (tries,
tokenizer, parser, generator settings). A thread that asks for "postgres" while another is
still importing it finds the half-built class and uses it: `$1` then does not read as a
parameter, and a write statement is planned with no parameters (seen as DuckDB's "Values were
not provided for the following prepared statement parameters" when 8 sessions ran their first
INSERT at once, tests/test_group_commit.py). Loading them once, single-threaded, at engine
start closes that window.

One adaptation of the DuckDB generator: PostgreSQL's `encode(bytea, format)` and
`decode(text, format)` keep their format argument. sqlglot reads them as character-set
conversions and writes DuckDB's one-argument forms, dropping 'hex' or 'base64'; tierd's
pg_catalog has the two-argument forms (engine/sql/functions.py).
"""
from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB

DIALECTS = ("postgres", "duckdb")


def load_dialects() -> None:
    for name in DIALECTS:
        sqlglot.parse_one("SELECT $1 AS a FROM t WHERE b = 'c'", read=name).sql(dialect=name)


def _with_format(name: str):
    def generate(self, e: exp.Expression) -> str:
        return self.func(name, e.this, e.args.get("charset"))
    return generate


DuckDB.Generator.TRANSFORMS = {**DuckDB.Generator.TRANSFORMS,
                               exp.Decode: _with_format("decode"), exp.Encode: _with_format("encode")}
