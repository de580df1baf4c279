"""What a session reaches of the engine: the catalogs, the two tiers, background work, and the
table operations that touch them all at once (CREATE / DROP TABLE).

`Engine` (engine.py) builds it at start-up; sessions (engine/session/) only ever see this
surface, so they depend on the parts, never on how start-up wires them.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Callable

import duckdb
import pyarrow as pa

from engine.catalog.pg_catalog import PgCatalog
from engine.catalog.roles import RoleCatalog
from engine.catalog.storages import StorageCatalog
from engine.catalog.tables import Catalog, Column, TableDef, assign_field_ids
from engine.tiers.cold import ColdTier, Scopes
from engine.failpoints import Failpoints
from engine.tiers.hot import HotTier
from engine.tiers import views
from engine.tiers.point_lookup import PointLookups
from engine.storage.backend import Storage
from engine.storage.iceberg_catalog import IcebergCatalogs, IcebergSettings
from engine.storage.manifest import Manifest
from engine.storage.reaper import FileReaper
from engine.system_tables import SystemTables
from engine.tiering.jobs import JobsConfig
from engine.tiering.service import TieringService

NOW = object()  # marker: the default is the transaction's timestamp
NO_FAST_DEFAULT = object()  # marker: only DuckDB can evaluate this default
_NOW_DEFAULT = re.compile(r"^\s*(CAST\(\s*)?(now\(\)|current_timestamp|get_current_timestamp\(\)|transaction_timestamp\(\))", re.I)
_VOLATILE = re.compile(r"\(|current_|random|uuid|nextval", re.I)


@dataclass
class EngineConfig:
    data_dir: str
    default_flush_policy: str = "rows:100000,interval:300"
    lock_timeout_s: float = 30.0
    failpoints: dict[str, str] = field(default_factory=dict)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    compaction_max_segments: int = 16  # a scope with more segments is compacted automatically
    compaction_target_rows: int = 1_000_000  # rows per compacted segment
    storages: dict[str, dict] = field(default_factory=dict)  # [storage.<id>] config sections
    iceberg: IcebergSettings = field(default_factory=IcebergSettings)  # [iceberg]: publishing
    superuser: str = "tierd"  # the role that always exists (auth.superuser)
    superuser_password: str | None = None  # auth.password: that role's password, if configured
    # The Postgres type OID the wire reports for a result column (protocol.types' map), so
    # pg_catalog shows each column with the type a SELECT of it has. None: every column is text.
    type_oid: Callable[[pa.Field], int] | None = None


class EngineCore:
    """The parts, set by `Engine.__init__`."""

    config: EngineConfig
    data_dir: str
    failpoints: Failpoints
    catalog: Catalog
    roles: RoleCatalog
    storages: StorageCatalog
    db: duckdb.DuckDBPyConnection  # the one in-memory DuckDB database every cursor comes from
    admin: duckdb.DuckDBPyConnection  # the engine's own cursor for DDL of views and tables
    hot: HotTier
    cold: ColdTier
    tiering: TieringService
    iceberg: IcebergCatalogs
    reaper: FileReaper
    point_lookups: PointLookups
    pg_catalog: PgCatalog
    system_tables: SystemTables
    ddl_lock: threading.RLock
    has_user_tables: bool  # sessions set their USER-table filter once one exists

    def _init_shapes(self) -> None:
        self._schemas: dict[int, pa.Schema] = {}
        self._defaults: dict[tuple[int, str], object] = {}

    # ------------------------------------------------------------------ table shapes
    def visible_schema(self, t: TableDef) -> pa.Schema:
        """Arrow schema of the table's columns, as DuckDB produces them."""
        schema = self._schemas.get(t.tid)
        if schema is None:
            cols = ", ".join(views.q(c) for c in t.column_names)
            cur = self.db.cursor()
            try:
                schema = cur.execute(f"SELECT {cols} FROM {views.hot_table(t)} LIMIT 0").to_arrow_table().schema
            finally:
                cur.close()
            self._schemas[t.tid] = schema
        return schema

    def default_value(self, t: TableDef, column: Column):
        """A column default the fast INSERT path can use: a value, NOW for now(), or NO_FAST_DEFAULT."""
        key = (t.tid, column.name)
        if key not in self._defaults:
            text = column.default or ""
            if _NOW_DEFAULT.match(text):
                value = NOW
            elif _VOLATILE.search(text):
                value = NO_FAST_DEFAULT
            else:
                cur = self.db.cursor()
                try:
                    value = cur.execute(f"SELECT CAST({text} AS {column.type})").fetchone()[0]
                except duckdb.Error:
                    value = NO_FAST_DEFAULT
                finally:
                    cur.close()
            self._defaults[key] = value
        return self._defaults[key]

    def probe_columns(self, body: str) -> tuple[list[Column], list[str]]:
        """Let DuckDB parse a column list; returns the columns and the primary key."""
        cur = self.db.cursor()
        try:
            cur.execute("BEGIN")
            cur.execute(f"CREATE TABLE __tierd.__probe.t ({body})")
            cols = cur.execute(
                "SELECT column_name, data_type, is_nullable, column_default FROM duckdb_columns() "
                "WHERE database_name = '__tierd' AND schema_name = '__probe' AND table_name = 't' "
                "ORDER BY column_index"
            ).fetchall()
            pks = cur.execute(
                "SELECT constraint_column_names FROM duckdb_constraints() "
                "WHERE database_name = '__tierd' AND schema_name = '__probe' AND table_name = 't' "
                "AND constraint_type = 'PRIMARY KEY'"
            ).fetchall()
        finally:
            cur.execute("ROLLBACK")
            cur.close()
        columns = [Column(name=n, type=ty, nullable=bool(nl), default=d) for n, ty, nl, d in cols]
        return columns, (list(pks[0][0]) if pks else [])

    # ------------------------------------------------------------------ tables
    def storage_for(self, t: TableDef) -> Storage:
        return self.cold.storage_for(t)

    def tables_using(self, storage_id: str) -> int:
        return sum(1 for t in self.catalog.tables.values() if t.storage_id == storage_id)

    def create_table(self, t: TableDef) -> TableDef:
        """Under the write lock: register `t` (columns already validated), build its DuckDB objects."""
        storage = self.storages.get(t.storage_id)
        if not t.is_stream:
            t.field_ids = assign_field_ids(t)
        if t.is_user:  # {userId} stays open: each user's directory is resolved at its first flush
            t.scope_dir = storage.scope_dir(t.namespace, t.name, "{userId}")
        elif not t.is_stream:
            t.scope_dir = storage.scope_dir(t.namespace, t.name)
        t = self.catalog.add_table(t)
        self.has_user_tables = self.has_user_tables or t.is_user
        scopes: Scopes = {None: Manifest(table_id=t.qualified, table_uid=t.uid)} if t.table_type == "SHARED" else {}
        self.cold.set_scopes(t, scopes)
        self.hot.add_table(t.tid)
        views.create_table_objects(self.admin, t, scopes, storage)
        return t

    def drop_table(self, t: TableDef) -> None:
        """Under the write lock, its job stopped (`tiering.stop_table_job`): every trace of `t`."""
        with self.cold.changing():
            self.hot.settle()
            self.tiering.forget_table(t)
            views.drop_table_objects(self.admin, t)
            self._schemas.pop(t.tid, None)
            self.catalog.drop_table(t)
            self.hot.store.drop_table(t.tid)
            self.cold.delete_files(t)
            self.hot.forget_table(t.tid)
