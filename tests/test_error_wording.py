"""No error a client sees speaks DuckDB: no `Catalog Error:`-style prefix, no `!`, no hint
naming DuckDB's catalog or tierd's internals (the wording itself is in
tests/sql/errors/wording.test; this checks what a case file cannot: that nothing else is there)."""
from __future__ import annotations

import re

import psycopg
import pytest

FAILING = [
    "SELECT * FROM no_such_relation",
    "SELECT * FROM pg_sequencez",
    "SELECT no_such_column FROM (SELECT 1 AS a) t",
    "SELECT t.b FROM (SELECT 1 AS a) t",
    "SELECT cosh2(1)",
    "SELECT abs('a')",
    "SELECT now() + true",
    "SELECT 'x'::int",
    "SELECT 'x'::date",
    "SELECT 40000::smallint",
    "SELECT 2147483647::int * 2",
    "SELECT 99999::numeric(4,1)",
    "SELECT 1::no_such_type",
    "SELECT ARRAY[1] || 'a'",
    "SELECT FROM WHERE",
    "SELECT 1 FROM",
    "SELECT * FROM range(3) a, range(3) a",
]
DUCKDB_WORDS = re.compile(r"^\w+( \w+)? Error: |!$|[Dd]uck[Dd][Bb]|__tierd|Did you mean|Candidate (functions|bindings)", re.M)


@pytest.mark.parametrize("sql", FAILING)
def test_errors_name_nothing_of_duckdb(db, sql):
    with pytest.raises(psycopg.Error) as info:
        db.execute(sql)
    diag = info.value.diag
    assert diag.sqlstate and diag.sqlstate != "XX000", (sql, diag.message_primary)
    for part in (diag.message_primary, diag.message_detail, diag.message_hint):
        assert not DUCKDB_WORDS.search(part or ""), (sql, diag.sqlstate, part)
    assert db.execute("SELECT 1").fetchone() == (1,)  # the session survives
