"""The engine sandbox: client SQL reads tierd's tables and nothing else of the machine.

DuckDB can read and write files, list directories, fetch URLs, load extensions, attach
databases and run SQL built from strings. No client may do any of that (SPEC §6, invariant 6),
while the daemon itself keeps reading its own Parquet, local and on S3. Enforced in two layers:

1. Statements (`check_command`, before dispatch): ATTACH, DETACH, INSTALL, LOAD, PRAGMA,
   EXPORT/IMPORT DATABASE, CALL, CREATE/DROP SECRET and SET/RESET of DuckDB's own settings
   are refused with SQLSTATE 42501 (COPY to or from a file or program: by the COPY parser,
   engine/sql/copy.py). Nothing of these ever reaches DuckDB; only queries do.
2. Queries (`check_query`, on the statement DuckDB will run): `engine.sql.refs` reads DuckDB's
   own parse tree, and the query may name only
   - table functions from a short allow list (range, generate_series, unnest, ...) or the
     pg_catalog/information_schema helpers tierd defines: read_csv, read_parquet, glob, query,
     duckdb_settings() and the rest are refused;
   - tables by plain names: no string literal or path as a table (`FROM 'f.parquet'`, a
     replacement scan that reads the file), nothing of tierd's internals (names starting
     with "__"), none of DuckDB's catalog views that show the engine's internals
     (duckdb_databases, duckdb_views, ...); pg_catalog and information_schema stay readable;
   - scalar functions outside a deny list (getenv, write_log, ...), and current_setting()
     only of harmless settings named by a literal.
3. DuckDB itself (`lock_down`, at start-up, once the daemon's own setup is done): no
   extension auto-install or auto-load, no persistent secrets (none on disk to read), no
   community extensions, no Python replacement scans, the HTTP and Hugging Face file systems
   disabled (only the s3:// one the daemon reads through stays), and the configuration
   locked, so no statement that slipped through could switch any of this back (only the
   harmless TimeZone and Calendar stay settable).

What DuckDB does NOT enforce, and why: `enable_external_access=false` would confine file
access to `allowed_directories`, but DuckDB 1.5.5 refuses to change that list once external
access is off, and resolves symlinks before the check, so storages created at run time
(CREATE STORAGE ... TYPE 'filesystem' PATH anywhere) could never be read. Local file access
is therefore refused by layer 2 alone.
"""
from __future__ import annotations

import functools
import re

import duckdb

from engine.errors import InsufficientPrivilege
from engine.sql import functions
from engine.sql.refs import SqlRefs, analyze
from engine.sql.split import code_tokens, leading_words

DETAIL = "tierd runs client SQL in a sandbox: no file, directory, extension, database or engine-setting access."

# Table functions that compute rows from their arguments and touch nothing else.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
    "pg_timezone_names", "icu_calendar_names", "duckdb_keywords", "duckdb_types", "duckdb_functions",
    "pg_listening_channels",  # tierd's table macro (engine/catalog/pg_session.py)
    "pg_partition_ancestors",  # tierd's table macro (engine/catalog/pg_catalog.py)
}) | functions.TABLE_FUNCTIONS  # PostgreSQL's set-returning functions tierd defines
# Schemas whose functions and views are the Postgres catalog tierd presents (DuckDB's built-in
# table functions do not resolve there, so a name in them cannot reach read_csv & co).
CATALOG_SCHEMAS = frozenset({"pg_catalog", "information_schema"})
DENIED_SCALAR_FUNCTIONS = frozenset({
    "getenv", "write_log", "json_execute_serialized_sql", "enable_logging", "disable_logging",
    "truncate_duckdb_logs", "query", "query_table",
})
# current_setting() of these is harmless; other DuckDB settings may reveal paths or secrets.
READABLE_SETTINGS = frozenset({
    "timezone", "calendar", "search_path", "schema", "default_collation", "default_order",
    "default_null_order", "integer_division", "threads", "max_expression_depth",
})
# Settings a client may SET: tierd keeps them per session (and TimeZone is the only one that
# shares its name with a DuckDB setting it may change).
SETTABLE_DUCKDB_NAMES = frozenset({"timezone", "search_path"})
# DuckDB's own catalog views (system.main) that list databases, files, SQL of views, logs...
_INTERNAL_VIEW = re.compile(r"^(duckdb_|pragma_|sqlite_)")
_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_$]*$")  # anything else would be a replacement scan
_ALWAYS_REFUSED = {"ATTACH", "DETACH", "INSTALL", "LOAD", "PRAGMA", "EXPORT", "IMPORT", "CALL"}
_SECRET_MODIFIERS = {"OR", "REPLACE", "PERSISTENT", "TEMPORARY", "TEMP", "IF", "NOT", "EXISTS"}


def _refuse(what: str) -> InsufficientPrivilege:
    return InsufficientPrivilege(f"permission denied: {what}", detail=DETAIL)


# ------------------------------------------------------------------ statements
@functools.cache
def duckdb_setting_names() -> frozenset[str]:
    """Every DuckDB setting name, httpfs's (s3_*, http_*) included when it is installed."""
    from engine.storage.s3 import httpfs_extension_path

    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                              "autoload_known_extensions": False})
    try:
        ext = httpfs_extension_path()
        if ext:
            try:
                con.execute(f"LOAD '{ext}'")
            except duckdb.Error:
                pass
        return frozenset(r[0].casefold() for r in con.execute("SELECT name FROM duckdb_settings()").fetchall())
    finally:
        con.close()


def _set_name(tokens: list[str]) -> str:
    """The parameter of SET/RESET [SESSION|LOCAL|GLOBAL] name ..., case-folded."""
    rest = tokens[1:]
    if rest and rest[0] in ("SESSION", "LOCAL", "GLOBAL"):
        rest = rest[1:]
    return rest[0].lstrip('"').casefold() if rest else ""


_PASSED: set[str] = set()   # short texts check_command let through (its verdict is the text's alone)
_PASSED_KEPT = 4096


def check_command(sql: str) -> None:
    """Refuse (42501) a statement that would reach outside the sandbox, before dispatch.
    Cheap for the statements that matter most (INSERT, SELECT): two leading words, and a
    text seen before (a prepared statement's) is not read again."""
    short = len(sql) <= 2000   # a long text is not hashed to be looked up
    if short and sql in _PASSED:
        return
    _check_command(sql)
    if short:
        if len(_PASSED) >= _PASSED_KEPT:
            _PASSED.clear()
        _PASSED.add(sql)


def _check_command(sql: str) -> None:
    head = leading_words(sql, 2)
    first = head[0] if head else ""
    if first in _ALWAYS_REFUSED:
        raise _refuse(f"{first} is not allowed")
    if head in (["FORCE", "INSTALL"], ["UPDATE", "EXTENSIONS"]):
        raise _refuse("installing extensions is not allowed")
    if first in ("CREATE", "DROP"):
        words = leading_words(sql, 7)[1:]
        while words and words[0] in _SECRET_MODIFIERS:
            words = words[1:]
        if words[:1] == ["SECRET"]:
            raise _refuse(f"{first} SECRET is not allowed")
    elif first in ("SET", "RESET"):
        name = _set_name(code_tokens(sql))
        if name == "variable":
            raise _refuse(f"{first} VARIABLE is not allowed")
        if name in duckdb_setting_names() and name not in SETTABLE_DUCKDB_NAMES:
            raise InsufficientPrivilege(f'permission denied to set parameter "{name}"', detail=DETAIL)


# ------------------------------------------------------------------ queries
def _fn_name(q: tuple[str, str, str]) -> str:
    return ".".join(p for p in q if p)


def _check_table(ref: tuple[str, str, str]) -> None:
    catalog, schema, name = ref
    shown = _fn_name(ref)
    if not _PLAIN_NAME.match(name):
        raise _refuse(f'"{shown}" is not a table name: reading files is not allowed')
    if any(p.startswith("__") for p in ref):
        raise _refuse(f"tierd's internal objects are not accessible ({shown})")
    if catalog not in ("", "memory", "system") or catalog == "system" and schema not in CATALOG_SCHEMAS:
        raise _refuse(f"catalog {catalog} is not accessible ({shown})")
    if schema in ("", "main") and _INTERNAL_VIEW.match(name):
        raise _refuse(f"DuckDB's internal catalog view {name} is not accessible")


def _check_table_function(ref: tuple[str, str, str]) -> None:
    catalog, schema, name = ref
    if schema in CATALOG_SCHEMAS and catalog in ("", "memory", "system"):
        return
    if catalog in ("", "system") and schema in ("", "main") and name in ALLOWED_TABLE_FUNCTIONS:
        return
    raise _refuse(f"table function {_fn_name(ref)} is not allowed "
                  "(functions that read files, list directories or run SQL from strings are refused)")


def check_refs(refs: SqlRefs) -> None:
    """Refuse (42501) a query that names anything outside the sandbox."""
    if refs.file_refs:
        raise _refuse(f"reading files is not allowed (FROM '{min(refs.file_refs)}')")
    for show in sorted(refs.show_refs):
        if show != "tables":
            raise _refuse(f"SHOW {'ALL TABLES' if show == '__show_tables_expanded' else show.upper()} is not allowed")
    for ref in sorted(refs.table_functions):
        _check_table_function(ref)
    for ref in sorted(refs.tables):
        _check_table(ref)
    for ref in sorted(refs.scalar_functions):
        if ref[2] in DENIED_SCALAR_FUNCTIONS:
            raise _refuse(f"function {_fn_name(ref)} is not allowed")
    for name in sorted(refs.settings_read):
        if not name:
            raise _refuse("current_setting() of a computed name is not allowed")
        if "." not in name and name not in READABLE_SETTINGS and name in duckdb_setting_names():
            raise _refuse(f'reading the engine setting "{name}" is not allowed')


def check_query(sql: str) -> SqlRefs:
    """The references of a client query DuckDB is about to run, once they pass the sandbox."""
    refs = analyze(sql)
    check_refs(refs)
    return refs


# ------------------------------------------------------------------ writes
# Calls a big literal VALUES list could hide (it has no FROM: no table function can be in it).
_SUSPECT_CALL = re.compile(
    r"\b(" + "|".join(sorted(DENIED_SCALAR_FUNCTIONS | {"current_setting"})) + r")\b\W*\(", re.I)
_QUERY_WORDS = re.compile(r"\b(SELECT|FROM|TABLE)\b", re.I)
_DEFAULT = re.compile(r"\bDEFAULT\b", re.I)
BIG_VALUES = 4096  # characters: above this a VALUES list is screened, not parsed (it is slow)


def check_write(plan) -> None:
    """INSERT/UPDATE/DELETE run client expressions in DuckDB too (INSERT ... SELECT, VALUES,
    UPDATE ... FROM, DELETE ... USING, WHERE subqueries, RETURNING): the same rules apply."""
    from engine.sql import dml

    if isinstance(plan, dml.InsertPlan):
        source = plan.source_sql
        if plan.fast_values is None and source is not None:
            big_values = len(source) > BIG_VALUES and not _QUERY_WORDS.search(source)
            if not (big_values and not _SUSPECT_CALL.search(source)):
                # DEFAULT is only valid in an INSERT's VALUES; NULL parses alike for analysis.
                check_query(f"SELECT * FROM ({_DEFAULT.sub('NULL', source)}) AS inserted")
        if plan.conflict is not None and plan.conflict.set_exprs is not None:
            check_query(f"SELECT {plan.conflict.set_exprs}")  # DO UPDATE's SET and WHERE
    else:
        check_query(plan.check_sql if isinstance(plan, dml.MergePlan) else plan.select_sql)
    if plan.returning is not None:
        check_query(f"SELECT {plan.returning}")


# ------------------------------------------------------------------ DuckDB
def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Close DuckDB's own doors once the daemon's setup is done (see the module docstring).

    httpfs is loaded first (S3 storages may be created later, and loading is a configuration
    change the lock would refuse), with its connection-wide limits; per-storage secrets are
    still created and dropped after the lock."""
    from engine.storage.s3 import duckdb_http_settings, httpfs_extension_path

    ext = httpfs_extension_path()
    if ext is not None:
        con.execute(f"LOAD '{ext}'")
        for stmt in duckdb_http_settings():  # fail fast, not after minutes, when S3 is down
            con.execute(stmt.replace("SET ", "SET GLOBAL ", 1))
        con.execute("SET disabled_filesystems = 'HTTPFileSystem,HuggingFaceFileSystem'")
    con.execute("SET allowed_configs = ['TimeZone', 'Calendar']")
    con.execute("SET lock_configuration = true")
