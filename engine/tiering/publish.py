"""Iceberg publishing: after a scope's manifest commit, a job (`IP-…`) makes the table's Iceberg
snapshot show exactly what tierd's SELECT shows of the cold tier.

How tierd's segments become an Iceberg table (see README "Scaling out"):
- Data files are the segments themselves, added by path: nothing is copied. Files of a scope
  that its manifest no longer lists (replaced by a compaction) leave the snapshot.
- Delta segments hold newer versions and tombstones of keys already in cold. Everything they
  make invisible is hidden with a v2 position-delete file: the older versions of their keys in
  any file of the scope, and the tombstone rows themselves. DuckDB finds those positions with
  one query over the key columns of the scope's files, restricted to the keys of the new delta
  segments, so a flush of new keys (base segments only) costs no query at all. After a
  compaction (files removed) the scope's delete files are replaced by a full recomputation,
  which finds nothing to delete in freshly compacted segments.
- The publish is a diff of the scope's current manifest against the files the Iceberg table
  holds under the scope's directory, so it is idempotent: a kill -9 between the manifest
  commit and the Iceberg commit, or between the Iceberg commit and the record of it, publishes
  each file once on the next attempt; commits missed during a catalog outage are caught up by
  one snapshot per table reflecting the newest manifest of each scope.
- Each daemon only ever adds, removes or deletes rows of files under its own scopes' directories
  (its node id is in the path of every delete file it writes and in each snapshot's summary),
  so several daemons owning disjoint keys can publish into one table.
"""
from __future__ import annotations

import json
import logging
import secrets
import uuid
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from engine.catalog.tables import HIDDEN_FIELD_IDS, TableDef, scope_name
from engine.errors import EngineError
from engine.failpoints import Failpoints
from engine.storage.backend import Storage
from engine.storage.hot_store import HotStore
from engine.storage.iceberg_catalog import IcebergCatalogs, file_io_properties
from engine.storage.manifest import Manifest, now_iso
from engine.storage.reaper import FileReaper
from engine.tiers import views
from engine.tiers.cold import ColdTier

log = logging.getLogger("tierd.iceberg")

ICEBERG_DIR = "__iceberg"  # beside the scope directories of the table
Outcome = tuple[str, str, int]
STREAM_PUBLISH_REFUSED = "STORAGE PUBLISH TABLE is not supported for STREAM tables"


@dataclass
class PublishState:
    """What this daemon last published of a table (LevelDB `c/iceberg/<tid>`)."""
    uid: str
    identifier: str
    versions: dict  # scope key -> manifest version published
    snapshot_id: int | None = None
    published_at: str | None = None


def scope_key(user: str | None) -> str:
    return "shared" if user is None else f"user:{user}"


class Publisher:
    def __init__(self, catalogs: IcebergCatalogs, cold: ColdTier, db: duckdb.DuckDBPyConnection, store: HotStore,
                 failpoints: Failpoints, reaper: FileReaper):
        self.catalogs = catalogs
        self._cold = cold
        self._db = db
        self._store = store
        self._fp = failpoints
        self._reaper = reaper  # files a compaction replaced stay while a publish reads them
        self.node_id = self._node_id()

    def _node_id(self) -> str:
        configured = self.catalogs.settings.node_id
        if configured:
            return configured
        saved = self._store.get_json("c/iceberg-node")
        if saved:
            return saved["node_id"]
        node = f"node-{secrets.token_hex(4)}"
        self._store.put_json("c/iceberg-node", {"node_id": node})
        return node

    # ------------------------------------------------------------------ per table
    def enabled_for(self, t: TableDef) -> bool:
        """SHARED and USER tables, per their ICEBERG option, else `[iceberg] enabled`."""
        if t.is_stream:
            return False
        if t.iceberg is not None:
            return t.iceberg == "on"
        return self.catalogs.settings.enabled

    @staticmethod
    def identifier(t: TableDef) -> str:
        return t.iceberg_table or f"{t.namespace}.{t.name}"

    def location(self, t: TableDef, storage: Storage) -> str:
        """Beside the segments: `<scope dir>/__iceberg` (SHARED), `<table dir>/__iceberg` (USER)."""
        if t.is_user:
            parent, _, last = (t.scope_dir or "").rpartition("/")
            rel = f"{parent}/{ICEBERG_DIR}" if last == "{userId}" and parent and "{" not in parent \
                else f"{ICEBERG_DIR}/{t.namespace}/{t.name}"
        else:
            rel = f"{t.scope(storage)}/{ICEBERG_DIR}"
        return storage.reader_path(rel)

    def state(self, t: TableDef) -> PublishState:
        raw = self._store.get_json(f"c/iceberg/{t.tid:08d}")
        if not raw or raw.get("uid") != t.uid:
            return PublishState(uid=t.uid, identifier=self.identifier(t), versions={})
        return PublishState(**raw)

    def _save_state(self, t: TableDef, st: PublishState) -> None:
        self._store.put_json(f"c/iceberg/{t.tid:08d}", st.__dict__)

    def forget(self, t: TableDef) -> None:
        self._store.delete(f"c/iceberg/{t.tid:08d}")

    def lag(self, t: TableDef) -> int:
        """Manifest commits (flushes, compactions) not yet in the Iceberg table."""
        if not self.enabled_for(t):
            return 0
        versions = self.state(t).versions
        return sum(max(0, m.version - versions.get(scope_key(u), 0))
                   for u, m in (self._cold.manifests.get(t.tid) or {}).items())

    def drop(self, t: TableDef) -> None:
        """DROP TABLE: the Iceberg table goes with it (its metadata is in the table's directory)."""
        if self.state(t).versions:
            try:
                self.catalogs.drop(self._cold.storage_for(t), self.identifier(t))
            except Exception as exc:  # the catalog may be down: the table's files go anyway
                log.warning("could not drop Iceberg table %s: %s", self.identifier(t), exc)
        self.forget(t)

    # ------------------------------------------------------------------ the job
    def publish(self, t: TableDef, check=lambda: None) -> Outcome:
        from pyiceberg.manifest import DataFileContent

        from engine.storage.iceberg_snapshot import commit_changes, live_files

        if not self.enabled_for(t):
            return "skipped", f"Iceberg publish skipped: publishing is off for table '{t.qualified}'", 0
        if t.tid in self._cold.unavailable:
            raise EngineError(self._cold.unavailable[t.tid])
        scopes: dict = dict(self._cold.manifests.get(t.tid) or {})
        st = self.state(t)
        pending = {u: m for u, m in scopes.items() if m.version > st.versions.get(scope_key(u), 0)}
        identifier = self.identifier(t)
        if not pending:
            return "skipped", f"Iceberg publish skipped: table '{t.qualified}' has no unpublished commits", 0
        storage = self._cold.storage_for(t)
        first = next((m for m in scopes.values() if m.segments), None)
        table = self.catalogs.load(storage, identifier)
        if table is None:
            if first is None:  # nothing flushed yet: nothing to show, nothing to create
                st.versions.update({scope_key(u): m.version for u, m in pending.items()})
                self._save_state(t, st)
                return "completed", f"Iceberg publish of table '{t.qualified}': no cold data yet", 0
            schema = self._segment_schema(storage, self._path(storage, t, first.user_id, first.segments[0].path))
            visible = [f.remove_metadata() for f in schema if f.name not in HIDDEN_FIELD_IDS]
            if t.field_ids:
                visible.sort(key=lambda f: t.field_ids.get(f.name, len(t.field_ids)))
            table = self.catalogs.ensure(storage, identifier, self.location(t, storage), pa.schema(visible),
                                         HIDDEN_FIELD_IDS)
        self._check_ids(t, table, identifier)
        check()
        present = {f.file_path for f in live_files(table) if f.content == DataFileContent.DATA}
        with self._reaper.reading():  # what a compaction replaces meanwhile stays until this is done
            changes = [self._scope_change(t, storage, table.location(), u, m, present) for u, m in sorted(
                pending.items(), key=lambda kv: kv[0] or "")]
            versions = {**st.versions, **{scope_key(u): m.version for u, m in pending.items()}}
            check()
            self._fp.hit("publish.before_commit")
            summary = {"tierd.node-id": self.node_id, "tierd.table": t.qualified,
                       "tierd.manifest-versions": json.dumps({scope_key(u): m.version for u, m in pending.items()},
                                                             sort_keys=True)}
            props = {f"tierd.published.{self.node_id}": json.dumps(versions, sort_keys=True)}
            result = commit_changes(table, changes, props, summary)
        self._fp.hit("publish.after_commit")
        st.versions, st.identifier = versions, identifier
        st.snapshot_id, st.published_at = result.snapshot_id, now_iso()
        self._save_state(t, st)
        return "completed", (
            f"Published table '{t.qualified}' to Iceberg table '{identifier}' as snapshot {result.snapshot_id}: "
            f"{result.added_files} file(s) added, {result.removed_files} removed, "
            f"{result.delete_rows} row position(s) deleted"), result.added_files

    @staticmethod
    def _check_ids(t: TableDef, table, identifier: str) -> None:
        """Segments carry the table's column ids: the Iceberg table must use the same ones (a
        table created by another daemon with other columns would read the wrong ones)."""
        if not t.field_ids:
            return
        wrong = [f.name for f in table.schema().fields if t.field_ids.get(f.name) != f.field_id]
        if wrong:
            raise EngineError(f"Iceberg table {identifier} has other column ids than table '{t.qualified}' "
                              f"for {', '.join(wrong)}; publish it under another ICEBERG_TABLE name")

    def _path(self, storage: Storage, t: TableDef, user: str | None, seg_path: str) -> str:
        return storage.reader_path(f"{t.scope(storage, user)}/{seg_path}")

    def _segment_schema(self, storage: Storage, path: str) -> pa.Schema:
        from pyiceberg.io import load_file_io

        io = load_file_io(file_io_properties(storage), path)
        with io.new_input(path).open() as stream:
            return pq.read_schema(stream)

    def _scope_change(self, t: TableDef, storage: Storage, location: str, user: str | None, m: Manifest,
                      present: set[str]):
        from engine.storage.iceberg_snapshot import ScopeChange

        prefix = storage.reader_path(t.scope(storage, user)) + "/"
        tag = "shared" if user is None else f"user-{scope_name(user)}"
        delete_prefix = f"{location}/data/deletes/{self.node_id}/{tag}/"
        live = {self._path(storage, t, user, s.path): s for s in m.segments}
        added = [p for p in live if p not in present]
        removed = any(p.startswith(prefix) and p not in live for p in present)
        deltas = [p for p in added if live[p].kind == "delta"]
        deletes = None
        if live and (removed or deltas):
            deletes = self._dead_positions(t, sorted(live), None if removed else deltas)
        return ScopeChange(prefix=prefix, delete_prefix=delete_prefix, live=set(live), added=added,
                           deletes=deletes, replace_deletes=removed,
                           delete_path=f"{delete_prefix}v{m.version}-{uuid.uuid4().hex[:12]}.parquet")

    def _dead_positions(self, t: TableDef, files: list[str], deltas: list[str] | None) -> pa.Table:
        """Row positions tierd's SELECT does not show: tombstones, and every version of a key older
        than its newest. `deltas`: only keys in those files can have changed (None: all)."""
        pk = ", ".join(views.q(c) for c in t.key_columns)
        listing = "[" + ", ".join(views.sql_str(f) for f in files) + "]"
        rel = (f"(SELECT {pk}, _seq, _deleted, filename, file_row_number FROM read_parquet({listing}, "
               f"filename = true, file_row_number = true, union_by_name = true))")
        if deltas is not None:
            keys = "[" + ", ".join(views.sql_str(f) for f in deltas) + "]"
            rel = f"(SELECT * FROM {rel} SEMI JOIN (SELECT DISTINCT {pk} FROM read_parquet({keys})) k USING ({pk}))"
        cur = self._db.cursor()
        try:
            return cur.execute(
                f"SELECT filename AS file_path, file_row_number AS pos FROM {rel} c "
                f"QUALIFY _deleted OR _seq < max(_seq) OVER (PARTITION BY {pk}) ORDER BY 1, 2").to_arrow_table()
        finally:
            cur.close()
