"""PostgreSQL functions DuckDB lacks (or spells differently), installed once at start-up.

Each is the cheapest faithful form: a DuckDB macro where DuckDB's own functions can say it
(vectorised, no Python), a Python UDF (engine/sql/pg_format.py) where PostgreSQL's rules
are too irregular for SQL (format patterns, identifier quoting). Scalar macros and table
macros live in tierd's pg_catalog schema, which is on every session's search path, so
client SQL reaches them unqualified; table macros are listed in TABLE_FUNCTIONS for the
sandbox (they compute rows from their arguments and touch nothing else). Calls whose
argument lists DuckDB cannot take as they are (format's variadic arguments, the two-argument
to_timestamp) are rewritten by engine/sql/pg_compat.py onto the UDFs named here.
"""
from __future__ import annotations

import re
import time

import duckdb

from engine.sql import bytea, pg_format

FORMAT_UDF = "__pg_format"              # format(fmt, VARIADIC args) -> __pg_format(fmt, [args::text])
TO_TIMESTAMP_UDF = "__pg_to_timestamp"  # to_timestamp(text, fmt) -> __pg_to_timestamp(...)::timestamptz
JSONB_CONCAT_UDF = "__pg_jsonb_concat"  # jsonb || jsonb
JSONB_EXISTS = "__pg_jsonb_exists"      # jsonb ? text
CLOCK_UDF = "__pg_clock_us"             # clock_timestamp(): µs since the epoch, read at each call

# interval parts, PostgreSQL's way: months, days and microseconds are separate fields
_MONTHS = "(datepart('year', i) * 12 + datepart('month', i))"
_DAYS = "datepart('day', i)"
_MICROS = "(datepart('hour', i)::BIGINT * 3600000000 + datepart('minute', i) * 60000000 + datepart('microseconds', i))"
_DAY_US = "86400000000"

MACROS: dict[str, str] = {
    "quote_literal": "(v) AS __pg_quote_literal(v::VARCHAR)",
    "quote_nullable": "(v) AS coalesce(__pg_quote_literal(v::VARCHAR), 'NULL')",
    "cardinality": "(a) AS len(a)",  # one-dimensional arrays
    "date_bin": "(stride, source, origin) AS time_bucket(stride, source, origin)",
    # justify_*: C's truncating division, then the sign fix-ups of PostgreSQL's timestamp.c
    "__pg_interval": "(m, d, us) AS to_months(m::INTEGER) + to_days(d::INTEGER) + to_microseconds(us::BIGINT)",
    "__pg_day_time_fix": (
        f"(m, d, t) AS CASE WHEN d > 0 AND t < 0 THEN __pg_interval(m, d - 1, t + {_DAY_US}) "
        f"WHEN d < 0 AND t > 0 THEN __pg_interval(m, d + 1, t - {_DAY_US}) ELSE __pg_interval(m, d, t) END"),
    "__pg_month_day_fix": (
        "(m, d, t) AS CASE WHEN m > 0 AND (d < 0 OR (d = 0 AND t < 0)) THEN __pg_day_time_fix(m - 1, d + 30, t) "
        "WHEN m < 0 AND (d > 0 OR (d = 0 AND t > 0)) THEN __pg_day_time_fix(m + 1, d - 30, t) "
        "ELSE __pg_day_time_fix(m, d, t) END"),
    "__pg_justify_interval": "(m, d, t) AS __pg_month_day_fix(m + (d - d % 30) // 30, d % 30, t)",
    "__pg_justify_days": (
        "(m, d, t) AS CASE WHEN m > 0 AND d < 0 THEN __pg_interval(m - 1, d + 30, t) "
        "WHEN m < 0 AND d > 0 THEN __pg_interval(m + 1, d - 30, t) ELSE __pg_interval(m, d, t) END"),
    "justify_hours": (
        f"(i) AS __pg_day_time_fix({_MONTHS}, {_DAYS} + ({_MICROS} - {_MICROS} % {_DAY_US}) // {_DAY_US}, "
        f"{_MICROS} % {_DAY_US})"),
    "justify_days": f"(i) AS __pg_justify_days({_MONTHS} + ({_DAYS} - {_DAYS} % 30) // 30, {_DAYS} % 30, {_MICROS})",
    "justify_interval": (
        f"(i) AS __pg_justify_interval({_MONTHS}, {_DAYS} + ({_MICROS} - {_MICROS} % {_DAY_US}) // {_DAY_US}, "
        f"{_MICROS} % {_DAY_US})"),
    "regexp_split_to_table": "(s, p) AS unnest(string_split_regex(s, p))",
    # pg_compat renames to_char/to_date/to_number to these: sqlglot (division.py) would
    # otherwise transpile PostgreSQL's own calls into DuckDB's strftime & co.
    "tierd_to_char": "(v, f) AS __pg_to_char(typeof(v), v::VARCHAR, f)",
    "parse_ident": "(t) AS __pg_parse_ident(t, true), (t, strict) AS __pg_parse_ident(t, strict)",
    # PostgreSQL's two-argument forms; DuckDB's own one-argument ones (text <-> blob) stay
    "encode": "(b) AS system.main.encode(b), (b, f) AS __pg_encode(b::BLOB, f::VARCHAR)",
    "decode": "(b) AS system.main.decode(b), (t, f) AS __pg_decode(t::VARCHAR, f::VARCHAR)",
    # the wall clock now (changes within a statement), not the transaction's start
    "clock_timestamp": f"() AS timezone('UTC', make_timestamp({CLOCK_UDF}()))",
    "octet_length": ("(v) AS CASE WHEN typeof(v) IN ('BLOB', 'BIT') THEN system.main.octet_length(v::BLOB) "
                     "ELSE strlen(v::VARCHAR) END"),
}

# jsonb (and json) functions over DuckDB's JSON type: the set-returning ones are scalar macros
# too, so that in a SELECT list they expand to rows as in PostgreSQL.
_JSON_TYPE = ("CASE json_type(j) WHEN 'OBJECT' THEN 'object' WHEN 'ARRAY' THEN 'array' WHEN 'VARCHAR' "
              "THEN 'string' WHEN 'BOOLEAN' THEN 'boolean' WHEN 'NULL' THEN 'null' ELSE 'number' END")
_JSON_MACROS: dict[str, str] = {
    "__pg_jsonb_exists": (
        "(j, k) AS CASE json_type(j) WHEN 'OBJECT' THEN list_contains(json_keys(j), k) "
        "WHEN 'ARRAY' THEN list_contains(list_transform(json_extract(j, '$[*]'), "
        "x -> CASE WHEN json_type(x) = 'VARCHAR' THEN x->>'$' END), k) "
        "WHEN 'VARCHAR' THEN j->>'$' = k ELSE false END"),
    "jsonb_set": ("(t, p, n) AS __pg_jsonb_set(t::VARCHAR, p::VARCHAR, n::VARCHAR, true)::JSON, "
                  "(t, p, n, c) AS __pg_jsonb_set(t::VARCHAR, p::VARCHAR, n::VARCHAR, c)::JSON"),
    "jsonb_pretty": "(j) AS __pg_jsonb_pretty(j::VARCHAR)",
}
for _kind in ("json", "jsonb"):
    _JSON_MACROS[f"{_kind}_typeof"] = f"(j) AS {_JSON_TYPE}"
    _JSON_MACROS[f"{_kind}_array_elements"] = "(j) AS unnest(json_extract(j::JSON, '$[*]'))"
    _JSON_MACROS[f"{_kind}_array_elements_text"] = "(j) AS unnest(json_extract_string(j::JSON, '$[*]'))"
    _JSON_MACROS[f"{_kind}_object_keys"] = "(j) AS unnest(json_keys(j::JSON))"
_JSON_MACROS["jsonb_array_length"] = "(j) AS json_array_length(j::JSON)::INTEGER"
MACROS.update(_JSON_MACROS)

TABLE_MACROS: dict[str, str] = {
    # `FROM string_to_array(...) s` becomes a subquery in pg_compat; without an alias it is this
    "string_to_array": "(s, d) AS SELECT string_split(s, d) AS string_to_array",
    "regexp_split_to_table": "(s, p) AS SELECT unnest(string_split_regex(s, p)) AS regexp_split_to_table",
    "pg_get_keywords": (
        "() AS SELECT keyword_name AS word, "
        "CASE keyword_category WHEN 'unreserved' THEN 'U' WHEN 'reserved' THEN 'R' "
        "WHEN 'type_function' THEN 'T' ELSE 'C' END AS catcode, "
        "CASE keyword_category WHEN 'unreserved' THEN 'unreserved' WHEN 'reserved' THEN 'reserved' "
        "WHEN 'type_function' THEN 'reserved (can be function or type name)' "
        "ELSE 'unreserved (cannot be function or type name)' END AS catdesc "
        "FROM duckdb_keywords() ORDER BY keyword_name"),
}
for _kind in ("json", "jsonb"):
    TABLE_MACROS[f"{_kind}_array_elements"] = "(j) AS SELECT unnest(json_extract(j::JSON, '$[*]')) AS value"
    TABLE_MACROS[f"{_kind}_array_elements_text"] = "(j) AS SELECT unnest(json_extract_string(j::JSON, '$[*]')) AS value"
    TABLE_MACROS[f"{_kind}_object_keys"] = f"(j) AS SELECT unnest(json_keys(j::JSON)) AS {_kind}_object_keys"
    # DuckDB's own json_each (more columns) under its catalog name, as json_each is shadowed
    TABLE_MACROS[f"{_kind}_each"] = "(j) AS SELECT key, value FROM system.main.json_each(j::JSON)"
    TABLE_MACROS[f"{_kind}_each_text"] = (
        "(j) AS SELECT key, CASE WHEN type = 'NULL' THEN NULL WHEN type = 'VARCHAR' THEN value->>'$' "
        "ELSE value::VARCHAR END AS value FROM system.main.json_each(j::JSON)")
# What the sandbox lets client SQL call in FROM (engine/sql/sandbox.py).
TABLE_FUNCTIONS = frozenset(TABLE_MACROS)

_UDFS = (
    # name, function, parameter types, return type, NULLs passed in (else NULL in -> NULL out)
    (FORMAT_UDF, pg_format.pg_format, ["VARCHAR", "VARCHAR[]"], "VARCHAR", True),
    ("quote_ident", pg_format.quote_ident, ["VARCHAR"], "VARCHAR", False),
    ("__pg_quote_literal", pg_format.quote_literal, ["VARCHAR"], "VARCHAR", False),
    ("__pg_parse_ident", pg_format.parse_ident, ["VARCHAR", "BOOLEAN"], "VARCHAR[]", False),
    ("initcap", pg_format.initcap, ["VARCHAR"], "VARCHAR", False),
    ("__pg_to_char", pg_format.to_char, ["VARCHAR", "VARCHAR", "VARCHAR"], "VARCHAR", False),
    ("tierd_to_number", pg_format.to_number, ["VARCHAR", "VARCHAR"], "DOUBLE", False),
    (TO_TIMESTAMP_UDF, pg_format.to_timestamp, ["VARCHAR", "VARCHAR"], "TIMESTAMP", False),
    ("__pg_jsonb_set", pg_format.jsonb_set, ["VARCHAR", "VARCHAR", "VARCHAR", "BOOLEAN"], "VARCHAR", False),
    (JSONB_CONCAT_UDF, pg_format.jsonb_concat, ["VARCHAR", "VARCHAR"], "VARCHAR", False),
    ("__pg_jsonb_pretty", pg_format.jsonb_pretty, ["VARCHAR"], "VARCHAR", False),
    ("tierd_to_date", pg_format.to_date, ["VARCHAR", "VARCHAR"], "DATE", False),
)
# Not folded into constants: an encoding error belongs to the execution that meets it, and
# the clock is read at each call.
_UNFOLDED_UDFS = (
    ("__pg_encode", bytea.encode, ["BLOB", "VARCHAR"], "VARCHAR"),
    ("__pg_decode", bytea.decode, ["VARCHAR", "VARCHAR"], "BLOB"),
    (CLOCK_UDF, lambda: time.time_ns() // 1000, [], "BIGINT"),  # read at each call
)


def install(db: duckdb.DuckDBPyConnection, schema: str) -> None:
    """Register the UDFs on the database connection (every session's cursor sees them) and
    create the macros in `schema` (tierd's pg_catalog)."""
    cur = db.cursor()
    pg_format.NON_UNRESERVED_KEYWORDS.update(
        row[0] for row in cur.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category <> 'unreserved'").fetchall())
    for name, fn, params, returns, nulls_in in _UDFS:
        db.create_function(name, fn, params, returns, null_handling="special" if nulls_in else "default",
                           side_effects=False)
    for name, fn, params, returns in _UNFOLDED_UDFS:  # they answer NULL themselves (encode($1, ''))
        db.create_function(name, fn, params, returns, null_handling="special", side_effects=True)
    calls = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, MACROS)) + r")\(")
    for name, body in MACROS.items():  # a macro calling a macro names its schema
        qualified = calls.sub(lambda m: f"{schema}.{m.group(1)}(", body)
        cur.execute(f"CREATE MACRO {schema}.{name}{qualified}")
    for name, body in TABLE_MACROS.items():
        cur.execute(f"CREATE MACRO {schema}.{name}{body.replace(' AS SELECT', ' AS TABLE SELECT', 1)}")
    cur.close()
