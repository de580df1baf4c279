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
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import duckdb
import pyarrow as pa

from engine.catalog.tables import TableDef, scope_name
from engine.errors import EngineError
from engine.failpoints import Failpoints
from engine.storage.backend import Storage
from engine.storage.hot_store import HotStore
from engine.storage.iceberg_catalog import IcebergCatalogs
from engine.storage.iceberg_schema import held_back, sync_schema, target_schema
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
    schema_version: int | None = None  # the table's schema version the Iceberg schema reflects


class PhaseClock:
    """Where a publish spent its time, for its job message (`table 12 ms, commit 40 ms`)."""

    def __init__(self):
        self._last = time.perf_counter()
        self.laps: list[tuple[str, float]] = []

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps.append((phase, now - self._last))
        self._last = now

    def __str__(self) -> str:
        return ", ".join(f"{phase} {secs * 1000:.0f} ms" for phase, secs in self.laps)


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
        # Starts a compaction of a table (set by the tiering service): what rewrites files an
        # ALTER TABLE left unreadable for Iceberg readers.
        self.request_compaction: Callable[[TableDef], None] = lambda t: None
        self._warmed = False

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

    def warm_up(self, t: TableDef) -> None:
        """Import pyiceberg (seconds of CPU) in the background while the first flush of a
        published table runs, so its publish does not wait for it; a daemon that publishes
        nothing never loads it."""
        if self._warmed or not self.enabled_for(t):
            return
        self._warmed = True

        def load() -> None:
            try:
                import pyiceberg.catalog.sql  # noqa: F401 - the import is the point

                import engine.storage.iceberg_snapshot  # noqa: F401
            except Exception as exc:  # the first publish reports it
                log.warning("could not load pyiceberg: %s", exc)

        threading.Thread(target=load, name="iceberg-warm-up", daemon=True).start()

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
        """Manifest commits (flushes, compactions, TRUNCATE) not yet in the Iceberg table, and one
        for a schema change (ALTER TABLE) not yet in it."""
        if not self.enabled_for(t):
            return 0
        st = self.state(t)
        return sum(max(0, m.version - st.versions.get(scope_key(u), 0))
                   for u, m in (self._cold.manifests.get(t.tid) or {}).items()) + self._schema_stale(t, st)

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
        if not pending and not self._schema_stale(t, st):
            return "skipped", f"Iceberg publish skipped: table '{t.qualified}' has no unpublished commits", 0
        storage = self._cold.storage_for(t)
        clock = PhaseClock()
        if st.versions and st.identifier != identifier:  # ALTER TABLE ... RENAME TO: the Iceberg table follows
            self.catalogs.rename(storage, st.identifier, identifier)
        table = self.catalogs.load(storage, identifier)
        target = target_schema(t, self._stored_schema(t))
        if table is None:
            if not any(m.segments for m in scopes.values()):  # nothing flushed yet: nothing to show or create
                st.versions.update({scope_key(u): m.version for u, m in pending.items()})
                # its schema and name count as published too, or `_schema_stale` would call the
                # table stale again at once and each publish would submit the next, forever
                st.schema_version, st.identifier = t.schema_version, identifier
                self._save_state(t, st)
                return "completed", f"Iceberg publish of table '{t.qualified}': no cold data yet", 0
            table = self.catalogs.ensure(storage, identifier, self.location(t, storage), target)
        old_versions = {seg.schema_version for m in scopes.values() for seg in m.segments
                        if seg.schema_version < t.schema_version}
        held = held_back(t, table.schema(), target, old_versions)
        if held:
            names = ", ".join(f.name for f in target.fields if f.field_id in held)
            self.request_compaction(t)
            raise EngineError(f"Iceberg publish of table '{t.qualified}' waits for the compaction that rewrites "
                              f"the files written before ALTER TABLE changed {names} (readers would see other "
                              "values in them)")
        table = sync_schema(table, t, target)
        clock.lap("table")
        check()
        present = {f.file_path for f in live_files(table) if f.content == DataFileContent.DATA}
        with self._reaper.reading():  # what a compaction replaces meanwhile stays until this is done
            changes = [self._scope_change(t, storage, table.location(), u, m, present) for u, m in sorted(
                pending.items(), key=lambda kv: kv[0] or "")]
            clock.lap("positions")
            versions = {**st.versions, **{scope_key(u): m.version for u, m in pending.items()}}
            check()
            self._fp.hit("publish.before_commit")
            summary = {"tierd.node-id": self.node_id, "tierd.table": t.qualified,
                       "tierd.manifest-versions": json.dumps({scope_key(u): m.version for u, m in pending.items()},
                                                             sort_keys=True)}
            props = {f"tierd.published.{self.node_id}": json.dumps(versions, sort_keys=True)}
            result = commit_changes(table, changes, props, summary)
            clock.lap("commit")
        self._fp.hit("publish.after_commit")
        st.versions, st.identifier, st.schema_version = versions, identifier, t.schema_version
        st.snapshot_id, st.published_at = result.snapshot_id, now_iso()
        self._save_state(t, st)
        return "completed", (
            f"Published table '{t.qualified}' to Iceberg table '{identifier}' as snapshot {result.snapshot_id}: "
            f"{result.added_files} file(s) added, {result.removed_files} removed, "
            f"{result.delete_rows} row position(s) deleted ({clock})"), result.added_files

    @staticmethod
    def _schema_stale(t: TableDef, st: PublishState) -> bool:
        """A published table whose schema or name has changed since (ALTER TABLE)."""
        return bool(st.versions) and (st.schema_version != t.schema_version or st.identifier != Publisher.identifier(t))

    def _stored_schema(self, t: TableDef) -> pa.Schema:
        """The Arrow types a flush writes now: those of the table's hot table."""
        cur = self._db.cursor()
        try:
            return cur.execute(f"SELECT * FROM {views.hot_table(t)} LIMIT 0").to_arrow_table().schema
        finally:
            cur.close()

    def _path(self, storage: Storage, t: TableDef, user: str | None, seg_path: str) -> str:
        return storage.reader_path(f"{t.scope(storage, user)}/{seg_path}")

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
            files = sorted(live)
            bounds = None if removed else _key_range(t, [live[p] for p in deltas])
            if bounds is not None:  # only files whose keys overlap the new versions' can hold older ones
                files = [p for p in files if p in deltas or _overlaps(t, live[p], bounds)]
            deletes = self._dead_positions(t, files, None if removed else deltas, bounds)
        return ScopeChange(prefix=prefix, delete_prefix=delete_prefix, live=set(live), added=added,
                           deletes=deletes, replace_deletes=removed,
                           delete_path=f"{delete_prefix}v{m.version}-{uuid.uuid4().hex[:12]}.parquet")

    def _dead_positions(self, t: TableDef, files: list[str], deltas: list[str] | None,
                        bounds: tuple | None = None) -> pa.Table:
        """Row positions tierd's SELECT does not show: tombstones, and every version of a key older
        than its newest. `deltas`: only keys in those files can have changed (None: all);
        `bounds`: their single key column's range, which lets DuckDB skip row groups."""
        pk = ", ".join(views.q(c) for c in t.key_columns)
        listing = "[" + ", ".join(views.sql_str(f) for f in files) + "]"
        where = ""
        if bounds is not None:
            where = f" WHERE {views.q(t.row_key[0])} BETWEEN {_literal(bounds[0])} AND {_literal(bounds[1])}"
        rel = (f"(SELECT {pk}, _seq, _deleted, filename, file_row_number FROM read_parquet({listing}, "
               f"filename = true, file_row_number = true, union_by_name = true){where})")
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


_RANGE_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}


def _key_range(t: TableDef, segments: list) -> tuple | None:
    """(min, max) of a single-column row key (numbers or text) over `segments`, from their
    manifest statistics; None when unknown."""
    if len(t.row_key) != 1 or not segments:
        return None
    c = t.column(t.row_key[0])
    if c is not None and c.type.upper() not in _RANGE_TYPES and not c.type.upper().startswith("VARCHAR"):
        return None  # statistics of other types are kept as text, which does not order like them
    lo = hi = None
    for seg in segments:
        st = (seg.column_stats or {}).get(t.row_key[0])
        if not st or st.get("min") is None or isinstance(st["min"], bool) \
                or not isinstance(st["min"], (int, float, str)) or type(st["min"]) is not type(st["max"]):
            return None
        lo = st["min"] if lo is None else min(lo, st["min"])
        hi = st["max"] if hi is None else max(hi, st["max"])
    return lo, hi


def _overlaps(t: TableDef, seg, bounds: tuple) -> bool:
    st = (seg.column_stats or {}).get(t.row_key[0])
    if not st or st.get("min") is None or type(st["min"]) is not type(bounds[0]):
        return True  # unknown: read it
    return not (st["max"] < bounds[0] or st["min"] > bounds[1])


def _literal(value) -> str:
    return views.sql_str(value) if isinstance(value, str) else repr(value)
