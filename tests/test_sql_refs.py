"""engine.sql.refs: what a query names, from DuckDB's parse tree (small exact cases)."""
import pytest

from engine.errors import FeatureNotSupported, SyntaxError_
from engine.sql.refs import analyze


def tables(sql):
    return set(analyze(sql).tables)


@pytest.mark.parametrize("sql,expected", [
    ("SELECT * FROM t", {("", "", "t")}),
    ("SELECT * FROM s.t", {("", "s", "t")}),
    ("SELECT * FROM c.s.t", {("c", "s", "t")}),
    ('SELECT * FROM "My"."T"', {("", "my", "t")}),  # DuckDB binds case-insensitively
    ("SELECT 1", set()),
    ("VALUES (1), (2)", set()),
    ("FROM t", {("", "", "t")}),
    ("TABLE t", {("", "", "t")}),
    ("SELECT * FROM a JOIN b USING (id) LEFT JOIN c ON true", {("", "", n) for n in "abc"}),
    ("SELECT * FROM a, (SELECT * FROM b) x", {("", "", "a"), ("", "", "b")}),
    ("SELECT (SELECT max(x) FROM a) FROM b WHERE y IN (SELECT y FROM c) AND EXISTS (FROM d)",
     {("", "", n) for n in "abcd"}),
    ("SELECT 1 FROM a UNION SELECT 2 FROM b EXCEPT SELECT 3 FROM c", {("", "", n) for n in "abc"}),
    ("SELECT list_transform([1], x -> (SELECT count(*) FROM a))", {("", "", "a")}),
    ("DESCRIBE t", {("", "", "t")}),
    ("SUMMARIZE SELECT * FROM t", {("", "", "t")}),
    ("EXPLAIN SELECT * FROM t", {("", "", "t")}),
    ("EXPLAIN ANALYZE SELECT * FROM t", {("", "", "t")}),
    ("SELECT * FROM a; SELECT * FROM b", {("", "", "a"), ("", "", "b")}),
    ("SELECT $1::int FROM t WHERE x = ?", {("", "", "t")}),
    ("SELECT * FROM t AS system", {("", "", "t")}),
])
def test_tables(sql, expected):
    assert tables(sql) == expected


@pytest.mark.parametrize("sql,expected", [
    # a CTE name is not a table...
    ("WITH c AS (SELECT 1) SELECT * FROM c", set()),
    ("WITH C AS (SELECT 1) SELECT * FROM c", set()),
    # ...unless qualified
    ("WITH c AS (SELECT 1) SELECT * FROM main.c", {("", "main", "c")}),
    # a CTE sees only the CTEs before it: b inside a is the table b
    ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b", {("", "", "b")}),
    ("WITH b AS (SELECT 1), a AS (SELECT * FROM b) SELECT * FROM a", set()),
    # recursive CTEs see themselves
    ("WITH RECURSIVE r AS (SELECT 1 n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r", set()),
    # a CTE is scoped to its query: the outer b is a table
    ("SELECT (WITH b AS (SELECT 1 x) SELECT x FROM b), * FROM b", {("", "", "b")}),
    # an outer CTE is visible in a nested query
    ("WITH b AS (SELECT 1) SELECT * FROM (SELECT * FROM b)", set()),
    ("WITH b AS (SELECT 1) SELECT * FROM (WITH c AS (SELECT 2) SELECT * FROM b, c, d)", {("", "", "d")}),
])
def test_cte_scoping(sql, expected):
    assert tables(sql) == expected


def test_functions():
    r = analyze("SELECT getenv('HOME'), count(*) OVER (), sum(x), x + 1 "
                "FROM read_csv('f.csv') r, range(3), main.glob('*') WHERE x IN (SELECT lower(y) FROM t)")
    assert set(r.table_functions) == {("", "", "read_csv"), ("", "", "range"), ("", "main", "glob")}
    assert {("", "", "getenv"), ("", "", "count"), ("", "", "sum"), ("", "", "lower")} <= set(r.scalar_functions)
    assert ("", "", "read_csv") not in r.scalar_functions
    assert set(r.tables) == {("", "", "t")}


def test_function_arguments_are_walked():
    r = analyze("SELECT * FROM range((SELECT count(*) FROM t))")
    assert set(r.tables) == {("", "", "t")}
    r = analyze("SELECT * FROM unnest((SELECT list(x) FROM read_parquet('p')))")
    assert ("", "", "read_parquet") in r.table_functions
    assert ("", "", "list") in r.scalar_functions


def test_file_refs_are_told_from_names():
    r = analyze("SELECT * FROM 'f.parquet', \"g.csv\"")
    assert set(r.file_refs) == {"f.parquet"}
    assert set(r.tables) == {("", "", "g.csv")}
    assert set(analyze("DESCRIBE 'x.csv'").file_refs) == {"x.csv"}
    assert set(analyze("SELECT * FROM 'é/ü.csv' JOIN t ON true").file_refs) == {"é/ü.csv"}


def test_settings_read():
    assert set(analyze("SELECT current_setting('TimeZone'), current_setting(x) FROM t").settings_read) == {"timezone", ""}
    assert analyze("SELECT 1").settings_read == frozenset()


def test_pragmas_that_are_queries_show_what_they_run():
    assert set(analyze("PRAGMA version").table_functions) == {("", "", "pragma_version")}
    assert set(analyze("PRAGMA database_list").tables) == {("", "", "pragma_database_list")}


def test_show_refs():
    assert set(analyze("SHOW TABLES").show_refs) == {"tables"}
    assert set(analyze("SHOW databases").show_refs) == {"databases"}
    assert analyze("SELECT 1").show_refs == frozenset()


@pytest.mark.parametrize("sql", [
    "COPY t TO 'x.csv'", "INSERT INTO t VALUES (1)", "ATTACH 'x.db'", "LOAD httpfs", "SET threads = 1",
    "PRAGMA enable_profiling", "CALL pragma_version()", "EXPORT DATABASE 'd'", "CREATE TABLE t (a int)",
    "EXPLAIN DELETE FROM t", "SELECT 1; DELETE FROM t", "PIVOT t ON a USING sum(b)",
])
def test_non_queries_refused(sql):
    with pytest.raises(FeatureNotSupported):
        analyze(sql)


@pytest.mark.parametrize("sql", ["SELEC 1", "SELECT * FROM", "WITH x AS (DELETE FROM t RETURNING *) SELECT 1"])
def test_unparsable_is_a_syntax_error(sql):
    with pytest.raises(SyntaxError_):
        analyze(sql)
