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

from engine.activity import SessionRegistry
from engine.advisory_locks import AdvisoryLocks
from engine.catalog.pg_catalog import PgCatalog
from engine.catalog.roles import RoleCatalog
from engine.catalog.storages import StorageCatalog
from engine.catalog.sequences import Sequences
from engine.catalog.tables import Catalog, Column, TableDef
from engine.sql.declared_types import declared_types
from engine.sql.split import fold_case
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
from engine.tiering.recovery import recover_table
from engine.tiering.service import TieringService
from engine.notifications import NotificationHub

NOW = object()  # marker: the default is the transaction's timestamp
NO_FAST_DEFAULT = object()  # marker: only DuckDB can evaluate this default
_NEXTVAL_DEFAULT = re.compile(r"^\s*nextval\('((?:[^']|'')+)'(?:::regclass)?\)\s*$", re.I)


@dataclass(frozen=True)
class SequenceDefault:
    """A default of nextval('name') (serial and identity columns): values come from the
    sequence's in-memory block, without DuckDB."""
    name: str
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
    # A COPY FROM that has read this many rows streams into Parquet segments of
    # copy_segment_rows rows (engine/session/copy_segments.py) instead of the hot tier.
    copy_segment_threshold_rows: int = 131_072
    copy_segment_rows: int = 1_048_576
    storages: dict[str, dict] = field(default_factory=dict)  # [storage.<id>] config sections
    iceberg: IcebergSettings = field(default_factory=IcebergSettings)  # [iceberg]: publishing
    superuser: str = "tierd"  # the role that always exists (auth.superuser)
    superuser_password: str | None = None  # auth.password: that role's password, if configured
    # The Postgres type OID the wire reports for a result column (protocol.types' map), so
    # pg_catalog shows each column with the type a SELECT of it has. None: every column is text.
    type_oid: Callable[[pa.Field], int] | None = None
    # Server settings from the config, as SHOW reports them ("max_connections": "100").
    server_settings: dict[str, str] = field(default_factory=dict)


class EngineCore:
    """The parts, set by `Engine.__init__`."""

    config: EngineConfig
    data_dir: str
    failpoints: Failpoints
    catalog: Catalog
    sequences: Sequences
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
    sessions: SessionRegistry  # the open sessions (pg_stat_activity, pg_backend_pid, signals)
    notifications: NotificationHub  # LISTEN / NOTIFY between sessions
    advisory_locks: AdvisoryLocks
    has_user_tables: bool  # sessions set their USER-table filter once one exists

    def _init_shapes(self) -> None:
        self._schemas: dict[tuple[int, int], pa.Schema] = {}  # (table id, schema version) -> schema
        self._defaults: dict[tuple[int, int, str], object] = {}

    # ------------------------------------------------------------------ table shapes
    def visible_schema(self, t: TableDef) -> pa.Schema:
        """Arrow schema of the table's columns, as DuckDB produces them."""
        schema = self._schemas.get((t.tid, t.schema_version))
        if schema is None:
            cols = ", ".join(views.q(c) for c in t.column_names)
            cur = self.db.cursor()
            try:
                schema = cur.execute(f"SELECT {cols} FROM {views.hot_table(t)} LIMIT 0").to_arrow_table().schema
            finally:
                cur.close()
            self._schemas[(t.tid, t.schema_version)] = schema
        return schema

    def _forget_shapes(self, tid: int) -> None:
        for key in [k for k in self._schemas if k[0] == tid]:
            del self._schemas[key]
        for key in [k for k in self._defaults if k[0] == tid]:
            del self._defaults[key]

    def default_value(self, t: TableDef, column: Column):
        """A column default the fast INSERT path can use: a value, NOW for now(), or NO_FAST_DEFAULT."""
        key = (t.tid, t.revision, column.name)
        if key not in self._defaults:
            text = column.default or ""
            seq = _NEXTVAL_DEFAULT.match(text)
            if seq:
                value = SequenceDefault(seq.group(1).replace("''", "'"))
            elif _NOW_DEFAULT.match(text):
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
        """Let DuckDB parse a column list (unquoted names folded to lower case, as Postgres
        does); returns the columns and the primary key."""
        cur = self.db.cursor()
        try:
            cur.execute("BEGIN")
            cur.execute(f"CREATE TABLE __tierd.__probe.t ({fold_case(body)})")
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
        declared = declared_types(body)
        columns = [Column(name=n, type=ty, nullable=bool(nl), default=d, id=i, declared=declared.get(n))
                   for i, (n, ty, nl, d) in enumerate(cols, start=1)]
        return columns, (list(pks[0][0]) if pks else [])

    # ------------------------------------------------------------------ tables
    def storage_for(self, t: TableDef) -> Storage:
        return self.cold.storage_for(t)

    def tables_using(self, storage_id: str) -> int:
        return sum(1 for t in self.catalog.tables.values() if t.storage_id == storage_id)

    def create_table(self, t: TableDef, durable: bool = True) -> TableDef:
        """Under the write lock: register `t` (columns already validated), build its DuckDB
        objects; `durable=False`: its catalog record waits for the transaction's COMMIT."""
        storage = self.storages.get(t.storage_id)
        if t.is_user:  # {userId} stays open: each user's directory is resolved at its first flush
            t.scope_dir = storage.scope_dir(t.namespace, t.name, "{userId}")
        elif not t.is_stream:
            t.scope_dir = storage.scope_dir(t.namespace, t.name)
        t = self.catalog.add_table(t, durable)
        self.has_user_tables = self.has_user_tables or t.is_user
        scopes: Scopes = {None: Manifest(table_id=t.qualified, table_uid=t.uid)} if t.table_type == "SHARED" else {}
        self.cold.set_scopes(t, scopes)
        self.hot.add_table(t.tid)
        views.create_table_objects(self.admin, t, scopes, storage)
        return t

    def alter_table(self, old: TableDef, new: TableDef, durable: bool = True) -> None:
        """Under the write lock, the table's job stopped (`tiering.stop_table_job`): `new`
        (same id) replaces `old`. Its DuckDB objects change in one DuckDB transaction; the
        catalog record's one LevelDB put is the commit point, so a crash leaves the old or the
        new schema, and old segments and hot batches are read through the new one by id."""
        con = self.admin
        with self.cold.changing():
            self.hot.settle()
            # Hot batches are told apart by _seq (TableDef.version_at_seq): no _seq at or below
            # the one this schema change records may ever be handed out again.
            self.hot.store.persist_seq(self.hot.seq)
            con.execute("BEGIN")  # one DuckDB transaction writes one database: __tierd here
            try:
                views.rebuild_hot_table(con, old, new)
                reason = self.cold.unavailable.get(new.tid)
                cold_sql = views.unavailable_cold_view_sql(new, reason) if reason is not None else \
                    views.cold_view_sql(new, self.cold.scopes(new), self.storage_for(new))
                con.execute(cold_sql)
                con.execute(views.full_view_sql(new, new.tid in self.cold.shadowing))
                self.failpoints.hit("alter.before_commit")
                self.catalog.replace_table(old, new, durable)
                self.failpoints.hit("alter.after_commit")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            if (old.namespace, old.name) != (new.namespace, new.name):
                views.drop_table_views(con, old)
            views.create_visible_view(con, new)
            self._forget_shapes(new.tid)

    def drop_table(self, t: TableDef) -> None:
        """Under the write lock, its job stopped (`tiering.stop_table_job`): every trace of `t`."""
        self.detach_table(t, durable=True)
        self.purge_table(t)

    def detach_table(self, t: TableDef, durable: bool) -> None:
        """DROP TABLE, the part a transaction can undo: the table is gone for queries and its
        name free; its rows and files stay (`durable=False`: until the transaction's COMMIT)."""
        with self.cold.changing():
            self.hot.settle()
            self.tiering.forget_table(t)
            views.drop_table_objects(self.admin, t)
            self._forget_shapes(t.tid)
            self.catalog.drop_table(t, durable)

    def purge_table(self, t: TableDef) -> None:
        """The dropped table's hot batches, cold files, key index and Iceberg table, for good."""
        self.tiering.publisher.drop(t)
        self.hot.store.drop_table(t.tid)
        self.cold.delete_files(t)
        self.hot.forget_table(t.tid)

    def undo_table(self, current: TableDef | None, before: TableDef | None) -> None:
        """A transaction's ROLLBACK of its DDL on one table: `current` (None: dropped by it)
        goes, `before` (None: created by it) comes back from LevelDB and its manifests, as at
        start-up. Under the write lock."""
        with self.cold.changing():
            if current is not None:
                views.drop_table_objects(self.admin, current)
                self.catalog.drop_table(current, durable=False)
                self._forget_shapes(current.tid)
            if before is None:
                if current is not None:
                    self.hot.forget_table(current.tid)
                    self.cold.forget(current)
                return
            self.catalog.restore_table(before)
            recover_table(self.admin, self.hot, self.cold, before)
