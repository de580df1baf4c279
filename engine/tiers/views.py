"""The DuckDB side: one in-memory database whose views present hot + cold as one table.

Catalogs:
- `memory` (default): one schema per namespace; each table is a view of its visible
  columns. This is what client SQL names.
- `__tierd`: the same schemas and views with `_seq` and `_deleted` added (queries that
  mention those columns run with this catalog as their default), plus internal schemas:
  `__hot.t<id>` holds the hot rows (every committed version, loaded from LevelDB),
  `__cold.c<id>` is the live cold data read from the manifest's Parquet files, `__sys.*`
  backs the system tables. One database, because a DuckDB transaction writes to one only,
  and a flush swaps views and deletes hot rows in one transaction.

Table types:
- USER tables store the owner in a `_user_id` column (hot table and Parquet) that is part of
  the internal key (`TableDef.key_columns`), so every dedup, anti join and key probe works
  per user, and each user's Parquet lives in its own scope directory with its own manifest.
  Both views of a USER table filter on `_user_id = getvariable('tierd_user') OR
  getvariable('tierd_all_users')`. DuckDB variables belong to one connection (cursor): once
  a USER table exists, each session sets its own on its cursor before its next statement
  (`set_session_user`; tests/test_user_tables.py checks they stay per session), client SQL
  can never run SET VARIABLE (the sandbox), and DuckDB folds the variable into a constant
  filter that is pushed into the Parquet and hot scans. Engine cursors set no
  variable, so a view read through them shows no USER rows at all: the engine reads the
  internal `__hot`/`__cold` relations, which are unfiltered, and client SQL cannot name them.
- STREAM tables are hot only; their hot table carries `_written_at` and both views hide rows
  whose newest version is older than TTL_SECONDS, before `stream_eviction` deletes them.

Dedup stays cheap: base segments hold each key's first version with keys unique across
them, so they are scanned as they are; only delta segments (updates and deletes of keys
already flushed) need a newest-version pass, and hot rows hide older versions (hot and
cold) through a newest-version window and an anti join against the (small) hot table,
both only while the table's hot rows may supersede others (`full_view_sql`).
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

import duckdb

from engine.sql import sandbox
from engine.catalog.tables import OWNER, ROWID, WRITTEN_AT, Column, TableDef
from engine.storage.backend import Storage

INTERNAL = "__tierd"
FULL = INTERNAL


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def hot_table(t: TableDef) -> str:
    return f"{INTERNAL}.__hot.t{t.tid}"


def cold_view(t: TableDef) -> str:
    return f"{INTERNAL}.__cold.c{t.tid}"


def visible_view(t: TableDef) -> str:
    return f"memory.{q(t.namespace)}.{q(t.name)}"


def full_view(t: TableDef) -> str:
    return f"{FULL}.{q(t.namespace)}.{q(t.name)}"


class _Absent(importlib.abc.MetaPathFinder):
    """Answers "no such module" for pandas at once, instead of a search of every sys.path entry."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")
        return None


def _skip_pandas_probe() -> None:
    """DuckDB's Python binding looks for pandas while converting each parameter and each
    registered table; without pandas installed, every look is a failed import that searches
    sys.path again (about 0.2 ms a parameter: 3 s for a 1,000-row INSERT of 3,000 parameters).
    A finder that knows pandas is absent makes each look cheap, and every importer (pyarrow's
    pandas shim too) still sees an ordinary ImportError. With pandas installed, the first look
    imports it and later ones are dictionary hits anyway."""
    if importlib.util.find_spec("pandas") is None and not any(isinstance(f, _Absent) for f in sys.meta_path):
        sys.meta_path.insert(0, _Absent())


def open_database() -> duckdb.DuckDBPyConnection:
    _skip_pandas_probe()
    con = duckdb.connect(":memory:", config={
        "threads": 2,
        "integer_division": True,  # Postgres: 7 / 2 = 3
        "autoinstall_known_extensions": False,  # no downloads: extensions come from wheels
        "autoload_known_extensions": False,
        "enable_object_cache": True,  # Parquet footers are read once, not per query
        # The sandbox (engine/sql/sandbox.py): no secrets on disk, no community extensions, no
        # Python variables read as tables.
        "allow_persistent_secrets": False,
        "allow_community_extensions": False,
        "python_enable_replacements": False,
    })
    con.execute(f"ATTACH ':memory:' AS {INTERNAL}")
    for schema in ("__hot", "__cold", "__sys", "__probe"):
        con.execute(f"CREATE SCHEMA {INTERNAL}.{schema}")
    con.execute("CREATE SCHEMA memory.system")
    # Postgres's jsonb, accepted as DuckDB's JSON (columns, casts); results are reported as json.
    con.execute("CREATE TYPE memory.main.jsonb AS JSON")
    sandbox.lock_down(con)
    return con


def create_namespace(con: duckdb.DuckDBPyConnection, ns: str) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS memory.{q(ns)}")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {FULL}.{q(ns)}")


def drop_namespace(con: duckdb.DuckDBPyConnection, ns: str) -> None:
    con.execute(f"DROP SCHEMA IF EXISTS memory.{q(ns)} CASCADE")
    con.execute(f"DROP SCHEMA IF EXISTS {FULL}.{q(ns)} CASCADE")


USER_VARIABLE = "tierd_user"  # per DuckDB connection: the session's role (current_user, USER-table rows)
ALL_USERS_VARIABLE = "tierd_all_users"
# Rows a session may see: its own, or all for a superuser; NULL (no row) on engine cursors.
OWNER_FILTER = f"({OWNER} = getvariable('{USER_VARIABLE}') OR getvariable('{ALL_USERS_VARIABLE}'))"


def set_session_user(cur: duckdb.DuckDBPyConnection, user: str, all_users: bool) -> None:
    """Who this cursor's queries of USER tables are for (DuckDB variables are per connection)."""
    cur.execute(f"SET VARIABLE {USER_VARIABLE} = {sql_str(user)}")
    cur.execute(f"SET VARIABLE {ALL_USERS_VARIABLE} = {'true' if all_users else 'false'}")


def system_columns(t: TableDef) -> list[str]:
    """System columns the views expose (selectable, hidden from SELECT *)."""
    return ([OWNER] if t.is_user else []) + ([ROWID] if t.rowid else []) + ["_seq", "_deleted"]


def stored_system_columns(t: TableDef) -> list[tuple[str, str]]:
    """System columns of the hot table, in order after the table's own columns."""
    cols = [(OWNER, "VARCHAR")] if t.is_user else []
    cols += [(ROWID, "BIGINT")] if t.rowid else []
    cols += [("_seq", "BIGINT"), ("_deleted", "BOOLEAN")]
    if t.is_stream:
        cols.append((WRITTEN_AT, "TIMESTAMPTZ"))
    return cols


def _row_columns(t: TableDef) -> str:
    """The table's columns plus the system columns the views carry."""
    return ", ".join(q(c) for c in t.column_names + system_columns(t))


def _key(t: TableDef) -> str:
    return ", ".join(q(c) for c in t.key_columns)


def _typed_columns(t: TableDef) -> str:
    return ", ".join(f"{q(c.name)} {c.type}" for c in t.columns)


def create_table_objects(con: duckdb.DuckDBPyConnection, t: TableDef, manifests: dict, storage: Storage,
                         shadowing: bool = False) -> None:
    create_hot_table(con, t)
    create_views(con, t, cold_view_sql(t, manifests, storage), shadowing)


def create_hot_table(con: duckdb.DuckDBPyConnection, t: TableDef) -> None:
    system = ", ".join(f"{name} {typ} NOT NULL" for name, typ in stored_system_columns(t))
    con.execute(f"CREATE TABLE {hot_table(t)} ({_typed_columns(t)}, {system})")


def create_views(con: duckdb.DuckDBPyConnection, t: TableDef, cold_sql: str, shadowing: bool) -> None:
    con.execute(cold_sql)
    con.execute(full_view_sql(t, shadowing))
    create_visible_view(con, t)


def create_visible_view(con: duckdb.DuckDBPyConnection, t: TableDef) -> None:
    cols = ", ".join(q(c) for c in t.column_names)
    con.execute(f"CREATE OR REPLACE VIEW {visible_view(t)} AS SELECT {cols} FROM {full_view(t)}")


def unavailable_cold_view_sql(t: TableDef, reason: str) -> str:
    """A cold view that fails every query with `reason` (no partial answer from hot alone)
    until the storage is back. Every column is the error too, so a filter pushed into this
    view cannot skip it; typed like the table so the other views can be built on it."""
    err = f"error({sql_str(reason)})"
    cols = [f"CAST({err} AS {c.type}) AS {q(c.name)}" for c in t.columns]
    cols += [f"CAST({err} AS {typ}) AS {name}" for name, typ in stored_system_columns(t) if name != WRITTEN_AT]
    return (f"CREATE OR REPLACE VIEW {cold_view(t)} AS SELECT {', '.join(cols)} "
            f"FROM range(1) WHERE {err} IS NOT NULL")


def full_view_sql(t: TableDef, shadowing: bool) -> str:
    """Hot's newest live versions plus live cold rows.

    `shadowing` says hot may hold versions that supersede others: a second version of a key,
    a tombstone, or a newer version of a key that is also in cold (UPDATE, DELETE, upsert,
    MERGE; engine/session/writes.py `shadow_cold` sets it before the write). Only then are the
    newest-version window over hot and the anti join against hot needed; without it hot
    rows are all live and new (plain INSERTs and COPY since the last flush emptied hot), and
    the window alone would cost a hash partition and sort of every hot row at every query
    (100,000 hot rows: ~6 ms on top of a 15 ms GROUP BY over 1,000,000 cold rows). STREAM
    tables always take the window: a key whose newest version has expired is gone.
    """
    cols = _row_columns(t)
    pk = _key(t)
    filters = []
    if t.is_user:  # before the window: the filter's column is part of the partition key
        filters.append(OWNER_FILTER)
    elif t.is_stream:  # a key whose newest version has expired is gone (versions come in write order)
        filters.append(f"{WRITTEN_AT} > now() - INTERVAL {int(t.ttl_seconds or 0)} SECOND")
    cold = f"SELECT {cols} FROM {cold_view(t)}"
    if shadowing:
        cold += f" c ANTI JOIN {hot_table(t)} h USING ({pk})"
    if t.is_user:
        cold = f"SELECT * FROM ({cold}) WHERE {OWNER_FILTER}"
    if shadowing or t.is_stream:
        where = f" WHERE {' AND '.join(filters)}" if filters else ""
        hot = (f"SELECT {cols} FROM {hot_table(t)}{where} "
               f"QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1 AND NOT _deleted")
    else:
        hot = f"SELECT {cols} FROM {hot_table(t)} WHERE {' AND '.join(filters + ['NOT _deleted'])}"
    return f"CREATE OR REPLACE VIEW {full_view(t)} AS {hot} UNION ALL {cold}"


def converted_rows_sql(t: TableDef, stored: dict[int, str], relation: str) -> str:
    """Rows of `relation`, stored under an older schema ({column id: stored name}), as the
    table's current hot rows: renamed columns by id, added ones with their missing value,
    widened ones cast, dropped ones left out."""
    cols = [column_as_declared(c, stored.get(c.id), decode=False) for c in t.columns]
    cols += [name for name, _ in stored_system_columns(t)]
    return f"SELECT {', '.join(cols)} FROM {relation}"


def rebuild_hot_table(con: duckdb.DuckDBPyConnection, old: TableDef, new: TableDef) -> None:
    """ALTER TABLE: the hot table in the new shape, its rows converted (DuckDB DDL is
    transactional: the caller's transaction makes the swap atomic)."""
    tmp = f"{INTERNAL}.__hot.t{new.tid}_altered"
    system = ", ".join(f"{name} {typ} NOT NULL" for name, typ in stored_system_columns(new))
    con.execute(f"CREATE TABLE {tmp} ({_typed_columns(new)}, {system})")
    con.execute(f"INSERT INTO {tmp} {converted_rows_sql(new, {c.id: c.name for c in old.columns}, hot_table(old))}")
    con.execute(f"DROP TABLE {hot_table(old)}")
    con.execute(f"ALTER TABLE {tmp} RENAME TO t{new.tid}")


def drop_table_views(con: duckdb.DuckDBPyConnection, t: TableDef) -> None:
    """RENAME TO: the views under the old name go (hot and cold relations are named by id)."""
    con.execute(f"DROP VIEW IF EXISTS {visible_view(t)}")
    con.execute(f"DROP VIEW IF EXISTS {full_view(t)}")


def live_rows_sql(t: TableDef) -> str:
    """Every live row of every scope (no USER-table filter): what ALTER TABLE checks."""
    cols, pk = _row_columns(t), _key(t)
    return (f"SELECT {cols} FROM {hot_table(t)} "
            f"QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1 AND NOT _deleted "
            f"UNION ALL SELECT {cols} FROM {cold_view(t)} c ANTI JOIN {hot_table(t)} h USING ({pk})")


def drop_table_objects(con: duckdb.DuckDBPyConnection, t: TableDef) -> None:
    con.execute(f"DROP VIEW IF EXISTS {visible_view(t)}")
    con.execute(f"DROP VIEW IF EXISTS {full_view(t)}")
    con.execute(f"DROP VIEW IF EXISTS {cold_view(t)}")
    con.execute(f"DROP TABLE IF EXISTS {hot_table(t)}")


def stored_value(expr: str, typ: str) -> str:
    """A stored column read back as `typ`: an INTERVAL is stored in Parquet as a struct of
    (months, days, nanos), which Parquet has no type for (engine/storage/segments.py)."""
    base = typ.strip().upper()
    if base == "INTERVAL":
        return (f"(to_months({expr}.months) + to_days({expr}.days) "
                f"+ to_microseconds({expr}.nanos // 1000))")
    if base in ("INTERVAL[]", "INTERVAL []"):
        return (f"list_transform({expr}, __v -> to_months(__v.months) + to_days(__v.days) "
                f"+ to_microseconds(__v.nanos // 1000))")
    return expr


def column_as_declared(c: Column, stored: str | None, decode: bool = True) -> str:
    """Column `c` of data written under an older schema, where it is stored as `stored`
    (None: that data predates the column, so every row has its missing value)."""
    if stored is None:
        return f"CAST({c.missing or 'NULL'} AS {c.type}) AS {q(c.name)}"
    value = stored_value(q(stored), c.type) if decode else q(stored)
    return f"CAST({value} AS {c.type}) AS {q(c.name)}"


def _parquet_select(t: TableDef, files: list[tuple[str, int]]) -> str:
    """Segments read as the table's current schema; each schema version they were written
    with is one read_parquet, its columns found by their stable ids (renames, added and
    dropped columns), cast to the current types (widened ones)."""
    by_version: dict[int, list[str]] = {}
    for path, version in files:
        by_version.setdefault(version, []).append(path)
    parts = []
    for version, paths in sorted(by_version.items()):
        stored = t.stored_names(version)
        casts = ", ".join(column_as_declared(c, stored.get(c.id)) for c in t.columns)
        lst = "[" + ", ".join(sql_str(f) for f in paths) + "]"
        parts.append(f"SELECT {casts}, {', '.join(system_columns(t))} FROM read_parquet({lst})")
    return parts[0] if len(parts) == 1 else " UNION ALL ".join(f"({p})" for p in parts)


def segment_paths(t: TableDef, manifests: dict, storage: Storage, kind: str | None = None) -> list[tuple[str, int]]:
    """(reader path, schema version) of the live segments of every scope (`manifests`: user
    id or None -> Manifest)."""
    return [(storage.reader_path(f"{t.scope(storage, user)}/{s.path}"), s.schema_version)
            for user, m in sorted(manifests.items(), key=lambda kv: kv[0] or "")
            for s in m.segments if kind is None or s.kind == kind]


def cold_view_sql(t: TableDef, manifests: dict, storage: Storage) -> str:
    """The live cold rows of all scopes: newest version per key, deleted keys left out."""
    base = segment_paths(t, manifests, storage, "base")
    delta = segment_paths(t, manifests, storage, "delta")
    cols = _row_columns(t)
    pk = _key(t)
    head = f"CREATE OR REPLACE VIEW {cold_view(t)} AS "
    if not base and not delta:
        return head + f"SELECT {cols} FROM {hot_table(t)} WHERE false"
    if not delta:
        return head + _parquet_select(t, base)  # base segments never hold tombstones
    newest_delta = (
        f"SELECT * FROM ({_parquet_select(t, delta)}) "
        f"QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1"
    )
    parts = [f"SELECT {cols} FROM ({newest_delta}) WHERE NOT _deleted"]
    if base:
        parts.insert(
            0,
            f"SELECT {cols} FROM ({_parquet_select(t, base)}) b "
            f"ANTI JOIN ({_parquet_select(t, delta)}) d USING ({pk})",
        )
    return head + " UNION ALL ".join(parts)


def all_cold_versions_sql(t: TableDef, manifests: dict, storage: Storage) -> str | None:
    """Every cold version of every key in `manifests`' scopes, or None when they hold no data."""
    files = segment_paths(t, manifests, storage)
    return _parquet_select(t, files) if files else None
