"""tierd's system tables (`system.tables`, `system.manifest`, `system.namespaces`,
`system.storages`, `system.users`, `system.iceberg_snapshots`; `system.jobs` is the job
runner's): DuckDB tables rebuilt from the catalogs before a query reads them, behind views that
keep other users' scopes out. The Iceberg snapshots come from the Iceberg catalog, so they are
read only for a query that names `iceberg_snapshots`.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import duckdb

from engine.catalog.roles import RoleCatalog
from engine.catalog.storages import StorageCatalog
from engine.catalog.tables import Catalog
from engine.errors import IoError
from engine.tiering.publish import Publisher
from engine.tiers.cold import ColdTier
from engine.tiers.hot import HotTier
from engine.tiers import views
from engine.storage.manifest import Manifest


class SystemTables:
    def __init__(self, db: duckdb.DuckDBPyConnection, catalog: Catalog, roles: RoleCatalog,
                 storages: StorageCatalog, hot: HotTier, cold: ColdTier, settings, publisher: Publisher):
        self._db = db
        self._catalog = catalog
        self._roles = roles
        self._storages = storages
        self._hot = hot
        self._cold = cold
        self._settings = settings  # the engine config: default_flush_policy is live
        self._publisher = publisher
        self._lock = threading.Lock()
        cur = db.cursor()
        try:
            self._create(cur)
        finally:
            cur.close()

    def _create(self, admin: duckdb.DuckDBPyConnection) -> None:
        # One row per table scope; the views keep the rows of other users' scopes out, so a
        # regular user sees neither their counts nor their manifests (column stats hold values).
        admin.execute(
            "CREATE TABLE __tierd.__sys.tables (namespace VARCHAR, table_name VARCHAR, table_type VARCHAR, "
            "storage_id VARCHAR, flush_policy VARCHAR, ttl_seconds BIGINT, hot_rows BIGINT, cold_rows BIGINT, "
            "segments BIGINT, created_at TIMESTAMPTZ, scope VARCHAR, iceberg_table VARCHAR, "
            "iceberg_snapshot_id BIGINT, iceberg_lag BIGINT, iceberg_published_at TIMESTAMPTZ)"
        )
        admin.execute(
            "CREATE TABLE __tierd.__sys.iceberg_snapshots (namespace VARCHAR, table_name VARCHAR, "
            "iceberg_table VARCHAR, snapshot_id BIGINT, parent_snapshot_id BIGINT, sequence_number BIGINT, "
            "committed_at TIMESTAMPTZ, operation VARCHAR, node_id VARCHAR, manifest_versions VARCHAR, "
            "added_data_files BIGINT, deleted_data_files BIGINT, added_position_deletes BIGINT, "
            "total_data_files BIGINT, total_records BIGINT, is_current BOOLEAN)"
        )
        admin.execute(
            "CREATE TABLE __tierd.__sys.manifest (namespace VARCHAR, table_name VARCHAR, scope VARCHAR, "
            "version BIGINT, segments BIGINT, row_count BIGINT, size_bytes BIGINT, manifest_json VARCHAR, "
            "updated_at TIMESTAMPTZ)"
        )
        admin.execute("CREATE TABLE __tierd.__sys.namespaces (namespace VARCHAR, created_at TIMESTAMPTZ)")
        admin.execute("CREATE TABLE __tierd.__sys.users (user_name VARCHAR, is_superuser BOOLEAN, "
                           "can_login BOOLEAN, created_at TIMESTAMPTZ)")
        admin.execute(
            "CREATE TABLE __tierd.__sys.storages (storage_id VARCHAR, storage_name VARCHAR, description VARCHAR, "
            "storage_type VARCHAR, base_directory VARCHAR, config VARCHAR, shared_tables_template VARCHAR, "
            "user_tables_template VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ)"
        )
        visible = f"(scope IS NULL OR scope = 'shared' OR scope = getvariable('{views.USER_VARIABLE}') " \
                  f"OR getvariable('{views.ALL_USERS_VARIABLE}'))"
        admin.execute(
            "CREATE VIEW memory.system.tables AS SELECT namespace, table_name, table_type, storage_id, flush_policy, "
            "ttl_seconds, CAST(sum(CASE WHEN " + visible + " THEN hot_rows ELSE 0 END) AS BIGINT) AS hot_rows, "
            "CAST(sum(CASE WHEN " + visible + " THEN cold_rows ELSE 0 END) AS BIGINT) AS cold_rows, "
            "CAST(sum(CASE WHEN " + visible + " THEN segments ELSE 0 END) AS BIGINT) AS segments, created_at, "
            "iceberg_table, iceberg_snapshot_id, iceberg_lag, iceberg_published_at "
            "FROM __tierd.__sys.tables GROUP BY ALL")
        admin.execute(f"CREATE VIEW memory.system.manifest AS SELECT * FROM __tierd.__sys.manifest WHERE {visible}")
        for name in ("namespaces", "storages", "users", "iceberg_snapshots"):
            admin.execute(f"CREATE VIEW memory.system.{name} AS SELECT * FROM __tierd.__sys.{name}")

    def refresh(self, sql: str = "") -> None:
        """Rebuild the small catalog-derived system tables before a query reads them."""
        if "iceberg_snapshots" in sql.lower():
            self._refresh_snapshots()
        with self._lock:
            cur = self._db.cursor()
            try:
                tables, manifests = [], []
                for t in self._catalog.tables.values():
                    scopes = dict(self._cold.manifests.get(t.tid) or {})
                    hot: dict = {}
                    expired = self._hot.expired_seq(t)  # expired STREAM rows are hidden already
                    for k, st in list(self._hot.index.get(t.tid, {}).items()):
                        if not st.deleted and st.seq > expired:
                            hot[k[0] if t.is_user else None] = hot.get(k[0] if t.is_user else None, 0) + 1
                    policy = None if t.is_stream else (t.flush_policy or self._settings.default_flush_policy)
                    head = (t.namespace, t.name, t.table_type, None if t.is_stream else t.storage_id, policy,
                            t.ttl_seconds)
                    pub = self._publisher
                    if pub.enabled_for(t):
                        st = pub.state(t)
                        tail = (pub.identifier(t), st.snapshot_id, pub.lag(t), st.published_at)
                    else:
                        tail = (None, None, None, None)
                    tables.append(head + (0, 0, 0, t.created_at, None) + tail)  # listed even with no rows
                    for user in sorted(set(scopes) | set(hot), key=lambda u: u or ""):
                        m = scopes.get(user) or Manifest(table_id=t.qualified)
                        scope = "shared" if user is None else user
                        tables.append(head + (hot.get(user, 0), m.row_count, len(m.segments), t.created_at, scope)
                                      + tail)
                        if m.version:
                            manifests.append((t.namespace, t.name, scope, m.version, len(m.segments), m.row_count,
                                              m.size_bytes, m.to_json().decode(), m.updated_at))
                storages = [(d.storage_id, d.name, d.description, d.storage_type, d.base,
                             json.dumps(s.redacted_config()), d.shared_tables_template, d.user_tables_template,
                             d.created_at, d.updated_at)
                            for d, s in self._storages.all()]
                users = [(r.name, r.superuser, r.login, r.created_at) for r in self._roles.all()]
                cur.execute("BEGIN")
                for name, rows, width in (("tables", tables, 15), ("manifest", manifests, 9),
                                          ("namespaces", sorted(self._catalog.namespaces.items()), 2),
                                          ("storages", storages, 10), ("users", users, 4)):
                    cur.execute(f"DELETE FROM __tierd.__sys.{name}")
                    if rows:
                        marks = ", ".join("?" * width)
                        cur.executemany(f"INSERT INTO __tierd.__sys.{name} VALUES ({marks})", rows)
                cur.execute("COMMIT")
            finally:
                cur.close()

    def _refresh_snapshots(self) -> None:
        """system.iceberg_snapshots: every snapshot of each published table, from its catalog."""
        rows = []
        pub = self._publisher
        for t in sorted(self._catalog.tables.values(), key=lambda t: t.qualified):
            if not pub.enabled_for(t) or not pub.state(t).versions:
                continue
            ident = pub.identifier(t)
            try:
                table = pub.catalogs.load(self._cold.storage_for(t), ident)
            except Exception as exc:
                raise IoError(f"cannot read Iceberg table {ident} from the Iceberg catalog: {exc}") from None
            if table is None:
                continue
            current = table.metadata.current_snapshot_id
            for snap in table.metadata.snapshots:
                summ = snap.summary.additional_properties if snap.summary else {}
                num = lambda k: int(summ[k]) if summ.get(k, "").isdigit() else None
                rows.append((t.namespace, t.name, ident, snap.snapshot_id, snap.parent_snapshot_id,
                             snap.sequence_number,
                             datetime.fromtimestamp(snap.timestamp_ms / 1000, timezone.utc),
                             snap.summary.operation.value if snap.summary else None,
                             summ.get("tierd.node-id"), summ.get("tierd.manifest-versions"),
                             num("added-data-files"), num("deleted-data-files"), num("added-position-deletes"),
                             num("total-data-files"), num("total-records"), snap.snapshot_id == current))
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN")
                cur.execute("DELETE FROM __tierd.__sys.iceberg_snapshots")
                if rows:
                    cur.executemany(f"INSERT INTO __tierd.__sys.iceberg_snapshots VALUES ({', '.join('?' * 16)})",
                                    rows)
                cur.execute("COMMIT")
            finally:
                cur.close()
