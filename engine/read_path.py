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

Dedup stays cheap: base segments hold each key's first version with keys unique across
them, so they are scanned as they are; only delta segments (updates and deletes of keys
already flushed) need a newest-version pass, and hot rows hide older cold versions through
an anti join against the (small) hot table.
"""
from __future__ import annotations

import duckdb

from engine import sandbox
from engine.catalog import TableDef
from engine.manifest import Manifest
from engine.storage import Storage

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


def open_database() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config={
        "threads": 2,
        "integer_division": True,  # Postgres: 7 / 2 = 3
        "autoinstall_known_extensions": False,  # no downloads: extensions come from wheels
        "autoload_known_extensions": False,
        "enable_object_cache": True,  # Parquet footers are read once, not per query
        # The sandbox (engine/sandbox.py): no secrets on disk, no community extensions, no
        # Python variables read as tables.
        "allow_persistent_secrets": False,
        "allow_community_extensions": False,
        "python_enable_replacements": False,
    })
    con.execute(f"ATTACH ':memory:' AS {INTERNAL}")
    for schema in ("__hot", "__cold", "__sys", "__probe"):
        con.execute(f"CREATE SCHEMA {INTERNAL}.{schema}")
    con.execute("CREATE SCHEMA memory.system")
    sandbox.lock_down(con)
    return con


def create_namespace(con: duckdb.DuckDBPyConnection, ns: str) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS memory.{q(ns)}")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {FULL}.{q(ns)}")


def drop_namespace(con: duckdb.DuckDBPyConnection, ns: str) -> None:
    con.execute(f"DROP SCHEMA IF EXISTS memory.{q(ns)} CASCADE")
    con.execute(f"DROP SCHEMA IF EXISTS {FULL}.{q(ns)} CASCADE")


def _typed_columns(t: TableDef) -> str:
    return ", ".join(f"{q(c.name)} {c.type}" for c in t.columns)


def create_table_objects(con: duckdb.DuckDBPyConnection, t: TableDef, manifest: Manifest, storage: Storage,
                         shadowing: bool = False) -> None:
    create_hot_table(con, t)
    create_views(con, t, cold_view_sql(t, manifest, storage), shadowing)


def create_hot_table(con: duckdb.DuckDBPyConnection, t: TableDef) -> None:
    con.execute(
        f"CREATE TABLE {hot_table(t)} ({_typed_columns(t)}, _seq BIGINT NOT NULL, _deleted BOOLEAN NOT NULL)"
    )


def create_views(con: duckdb.DuckDBPyConnection, t: TableDef, cold_sql: str, shadowing: bool) -> None:
    con.execute(cold_sql)
    con.execute(full_view_sql(t, shadowing))
    cols = ", ".join(q(c) for c in t.column_names)
    con.execute(f"CREATE OR REPLACE VIEW {visible_view(t)} AS SELECT {cols} FROM {full_view(t)}")


def unavailable_cold_view_sql(t: TableDef, reason: str) -> str:
    """A cold view that fails every query with `reason` (no partial answer from hot alone)
    until the storage is back. Every column is the error too, so a filter pushed into this
    view cannot skip it; typed like the table so the other views can be built on it."""
    err = f"error({sql_str(reason)})"
    cols = ", ".join(f"CAST({err} AS {c.type}) AS {q(c.name)}" for c in t.columns)
    return (f"CREATE OR REPLACE VIEW {cold_view(t)} AS SELECT {cols}, CAST({err} AS BIGINT) AS _seq, "
            f"CAST({err} AS BOOLEAN) AS _deleted FROM range(1) WHERE {err} IS NOT NULL")


def full_view_sql(t: TableDef, shadowing: bool) -> str:
    """Hot's newest live versions plus live cold rows.

    `shadowing` says hot may hold newer versions of keys that are also in cold (updates and
    deletes of flushed rows); only then is the anti join against hot needed, which would
    otherwise cost a hash probe per cold row.
    """
    cols = ", ".join(q(c) for c in t.column_names)
    pk = ", ".join(q(c) for c in t.primary_key)
    cold = f"SELECT {cols}, _seq, _deleted FROM {cold_view(t)}"
    if shadowing:
        cold += f" c ANTI JOIN {hot_table(t)} h USING ({pk})"
    return (
        f"CREATE OR REPLACE VIEW {full_view(t)} AS "
        f"SELECT {cols}, _seq, _deleted FROM {hot_table(t)} "
        f"QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1 AND NOT _deleted "
        f"UNION ALL {cold}"
    )


def drop_table_objects(con: duckdb.DuckDBPyConnection, t: TableDef) -> None:
    con.execute(f"DROP VIEW IF EXISTS {visible_view(t)}")
    con.execute(f"DROP VIEW IF EXISTS {full_view(t)}")
    con.execute(f"DROP VIEW IF EXISTS {cold_view(t)}")
    con.execute(f"DROP TABLE IF EXISTS {hot_table(t)}")


def _parquet_select(t: TableDef, files: list[str]) -> str:
    casts = ", ".join(f"CAST({q(c.name)} AS {c.type}) AS {q(c.name)}" for c in t.columns)
    lst = "[" + ", ".join(sql_str(f) for f in files) + "]"
    return f"SELECT {casts}, _seq, _deleted FROM read_parquet({lst})"


def cold_view_sql(t: TableDef, manifest: Manifest, storage: Storage) -> str:
    """The live cold rows: newest version per key, deleted keys left out."""
    scope = t.scope(storage)
    base = [storage.reader_path(f"{scope}/{s.path}") for s in manifest.segments if s.kind == "base"]
    delta = [storage.reader_path(f"{scope}/{s.path}") for s in manifest.segments if s.kind == "delta"]
    cols = ", ".join(q(c) for c in t.column_names)
    pk = ", ".join(q(c) for c in t.primary_key)
    head = f"CREATE OR REPLACE VIEW {cold_view(t)} AS "
    if not base and not delta:
        return head + f"SELECT {cols}, _seq, _deleted FROM {hot_table(t)} WHERE false"
    if not delta:
        return head + _parquet_select(t, base)  # base segments never hold tombstones
    newest_delta = (
        f"SELECT * FROM ({_parquet_select(t, delta)}) "
        f"QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1"
    )
    parts = [f"SELECT {cols}, _seq, _deleted FROM ({newest_delta}) WHERE NOT _deleted"]
    if base:
        parts.insert(
            0,
            f"SELECT {cols}, _seq, _deleted FROM ({_parquet_select(t, base)}) b "
            f"ANTI JOIN ({_parquet_select(t, delta)}) d USING ({pk})",
        )
    return head + " UNION ALL ".join(parts)


def all_cold_versions_sql(t: TableDef, manifest: Manifest, storage: Storage) -> str | None:
    """Every cold version of every key, or None when the table has no cold data."""
    scope = t.scope(storage)
    files = [storage.reader_path(f"{scope}/{s.path}") for s in manifest.segments]
    return _parquet_select(t, files) if files else None
