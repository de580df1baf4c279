"""The cold tier's state: each table scope's committed manifest, and what the views show of it.

A SHARED table has one scope (user None); a USER table one per user that has flushed. LevelDB
remembers which scopes have committed which manifest version (`c/cold/<tid>`), so a manifest
that vanishes (an unmounted disk) is an error at start-up, not an empty table. Changes to a
table's cold view happen under the write lock and inside `changing()`, which makes
`epoch` odd meanwhile: a lock-free point lookup that saw the same even epoch before and
after read a consistent cold tier (a seqlock).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Callable, Iterator

import duckdb
import pyarrow as pa

from engine.catalog.storages import StorageCatalog
from engine.catalog.tables import OWNER, TableDef
from engine.errors import IoError
from engine.tiers.hot import key_list
from engine.tiers import views
from engine.storage.backend import TMP_MARK, Storage
from engine.storage.hot_store import HotStore
from engine.storage.manifest import MANIFEST, Manifest, commit, load
from engine.storage.segments import is_segment_file, may_overlap

log = logging.getLogger("tierd.cold")

Scopes = dict  # user id (None: the SHARED scope) -> Manifest


class ColdTier:
    def __init__(self, store: HotStore, storages: StorageCatalog, admin: duckdb.DuckDBPyConnection):
        self._store = store
        self._storages = storages
        self._admin = admin
        self.manifests: dict[int, Scopes] = {}  # table id -> its scopes' manifests
        # Tables whose hot rows may supersede other versions (in hot or cold): their views
        # take the newest-version window and the anti join (views.full_view_sql).
        self.shadowing: set[int] = set()
        self._supersedes: dict[int, int] = {}  # table id -> superseding writes so far (flush compares)
        self._shadow_lock = threading.Lock()
        self.unavailable: dict[int, str] = {}  # tables whose cold tier could not be read at start
        self.epoch = 0
        self._editors: dict[int, threading.Lock] = {}  # table id -> who may change its manifests
        self._editors_lock = threading.Lock()

    def storage_for(self, t: TableDef) -> Storage:
        return self._storages.get(t.storage_id)

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Around a change of some table's cold view, under the write lock."""
        self.epoch += 1
        try:
            yield
        finally:
            self.epoch += 1

    @contextlib.contextmanager
    def editing(self, t: TableDef, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Around the read-write-commit of a table's manifests that does not hold the write
        lock throughout (a flush, a compaction, a streamed COPY's commit), so none of them
        commits a manifest built on one the other is replacing. Taken before the write lock,
        never while holding it; `waiting` runs every second while another holds it (a cancel)."""
        with self._editors_lock:
            lock = self._editors.setdefault(t.tid, threading.Lock())
        while not lock.acquire(timeout=1.0):
            waiting()
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------------ manifests
    def scope_manifest(self, t: TableDef, user: str | None) -> Manifest:
        """The scope's current manifest, or an empty one before its first flush."""
        m = self.manifests.get(t.tid, {}).get(user)
        return m if m is not None else Manifest(table_id=t.qualified, table_uid=t.uid, user_id=user)

    def has_cold(self, t: TableDef) -> bool:
        return any(m.segments for m in self.manifests.get(t.tid, {}).values())

    def known_scopes(self, t: TableDef) -> dict:
        """Committed manifest versions per scope, from LevelDB: {user: version} (a USER scope
        registered before its first commit has version 0)."""
        known = self._store.get_json(f"c/cold/{t.tid:08d}") or {}
        if t.is_user:
            return dict(known.get("scopes", {}))
        return {None: known["version"]} if "version" in known else {}

    def _remember_scope(self, t: TableDef, user: str | None, version: int) -> None:
        if t.is_user:
            known = self.known_scopes(t)
            known[user] = version
            self._store.put_json(f"c/cold/{t.tid:08d}", {"scopes": known})
        else:
            self._store.put_json(f"c/cold/{t.tid:08d}", {"version": version})

    def register_scope(self, t: TableDef, user: str | None) -> None:
        """Before a USER scope's first file: recovery then looks in its directory for orphans."""
        if t.is_user and user not in self.known_scopes(t):
            self._remember_scope(t, user, 0)

    def commit(self, t: TableDef, storage: Storage, manifest: Manifest) -> None:
        """The commit point of a flush or compaction of one scope."""
        self.register_scope(t, manifest.user_id)
        commit(storage, t.scope(storage, manifest.user_id), manifest)
        self._remember_scope(t, manifest.user_id, manifest.version)

    def load(self, t: TableDef, storage: Storage) -> Scopes:
        """Read each scope's manifest and remove files no manifest lists (orphans of a crash).
        A USER table's scopes are the users LevelDB registered before their first segment."""
        known = self.known_scopes(t)
        users = sorted(known) if t.is_user else [None]
        scopes: Scopes = {}
        for user in users:
            scope = t.scope(storage, user)
            manifest = load(storage, scope, t.qualified, t.uid, user)
            if known.get(user) and manifest.version == 0:
                raise IoError(f"{MANIFEST} of {scope} is missing from storage '{t.storage_id}' "
                              f"(version {known[user]} was committed)")
            live = {s.path for s in manifest.segments} | ({MANIFEST} if manifest.version else set())
            for name in storage.list(scope):
                if TMP_MARK in name or ((is_segment_file(name) or name == MANIFEST) and name not in live):
                    log.info("recovery: removing orphan file %s/%s", scope, name)
                    storage.delete(f"{scope}/{name}")
            if manifest.version or not t.is_user:
                scopes[user] = manifest
        self.manifests[t.tid] = scopes
        return scopes

    def scopes(self, t: TableDef) -> Scopes:
        """A copy of the table's scopes (user -> manifest), to change and `set_scopes`."""
        return dict(self.manifests.get(t.tid) or {})

    def set_scopes(self, t: TableDef, scopes: Scopes, shadowing: bool | None = None) -> None:
        """The table's scopes as committed; `shadowing`: whether its view now hides cold rows
        that hot supersedes (None: unchanged)."""
        self.manifests[t.tid] = scopes
        if shadowing is True:
            self.shadowing.add(t.tid)
        elif shadowing is False:
            self.shadowing.discard(t.tid)

    def shadow(self, tids) -> None:
        """Views of these tables hide superseded cold rows now (an explicit transaction's COMMIT)."""
        self.shadowing |= set(tids)

    def available_again(self, tid: int) -> None:
        self.unavailable.pop(tid, None)

    def set_unavailable(self, t: TableDef, reason: str) -> None:
        self.unavailable[t.tid] = reason
        self.manifests[t.tid] = {} if t.is_user else {None: Manifest(table_id=t.qualified)}
        self.shadowing.add(t.tid)

    def forget(self, t: TableDef) -> None:
        """A table created and rolled back in one transaction: it never had files."""
        self.manifests.pop(t.tid, None)
        self.unavailable.pop(t.tid, None)
        self.shadowing.discard(t.tid)

    def delete_files(self, t: TableDef) -> None:
        """DROP TABLE: every scope directory of the table, and what LevelDB knew of them."""
        storage = self.storage_for(t)
        if t.is_user:
            for user in self.known_scopes(t) | self.manifests.get(t.tid, {}):
                storage.delete_tree(t.scope(storage, user))
            parent, _, last = (t.scope_dir or "").rpartition("/")
            if last == "{userId}" and "{" not in parent:  # e.g. app/notes: this table's alone
                storage.delete_tree(parent)
        elif not t.is_stream:
            storage.delete_tree(t.scope(storage))
        self._store.delete(f"c/cold/{t.tid:08d}")
        self.manifests.pop(t.tid, None)
        self.unavailable.pop(t.tid, None)
        self.shadowing.discard(t.tid)

    # ------------------------------------------------------------------ views
    def supersedes(self, t: TableDef) -> int:
        """How many writes so far may have superseded a version of the table (a flush that
        sees this unchanged since its snapshot knows the hot rows left behind are all new)."""
        return self._supersedes.get(t.tid, 0)

    def superseding(self, t: TableDef) -> None:
        """Under the write lock: a write is about to supersede versions of the table."""
        self._supersedes[t.tid] = self._supersedes.get(t.tid, 0) + 1

    def ensure_shadowing(self, t: TableDef) -> None:
        """Before hot may hold a version that supersedes another (a second version of a hot
        key, a tombstone, a newer version of a cold key), make the view hide the older ones."""
        if t.tid in self.shadowing:
            return
        with self._shadow_lock:  # writers holding the write lock shared may come here together
            if t.tid not in self.shadowing:
                self._admin.execute(views.full_view_sql(t, shadowing=True))
                self.shadowing.add(t.tid)

    def swap(self, t: TableDef, manifest: Manifest) -> None:
        """Under the write lock: one scope's new manifest into the table's cold view."""
        with self.changing():
            scopes = self.scopes(t)
            scopes[manifest.user_id] = manifest
            self._admin.execute(views.cold_view_sql(t, scopes, self.storage_for(t)))
            self.set_scopes(t, scopes)

    # ------------------------------------------------------------------ keys
    def live_keys(self, cur: duckdb.DuckDBPyConnection, t: TableDef, keys: list) -> set:
        """Which of `keys` are live in the cold tier (one query, pruned by segment key ranges)."""
        if not self._may_hold(t, keys):
            return set()
        return keys_in(cur, t, keys, views.cold_view(t))

    def live_rows(self, cur: duckdb.DuckDBPyConnection, t: TableDef, keys: list) -> pa.Table | None:
        """The live cold row of each of `keys` that has one (the table's columns and a USER
        table's owner; one query, pruned by segment key ranges); None when none can."""
        if not self._may_hold(t, keys):
            return None
        return rows_in(cur, t, keys, views.cold_view(t), t.column_names + ([OWNER] if t.is_user else []))

    def _may_hold(self, t: TableDef, keys: list) -> bool:
        if t.tid in self.unavailable:  # cannot tell whether a key exists there: refuse
            raise IoError(self.unavailable[t.tid])
        segments = [s for m in self.manifests[t.tid].values() for s in m.segments]
        if not segments or not keys:
            return False
        return may_overlap(t.row_key, segments, _bounds([k[1] for k in keys] if t.is_user else keys))


def keys_in(cur: duckdb.DuckDBPyConnection, t: TableDef, keys: list, relation: str) -> set:
    """Which of `keys` `relation` holds."""
    return set(key_list(t, rows_in(cur, t, keys, relation, t.key_columns, distinct=True)))


def rows_in(cur: duckdb.DuckDBPyConnection, t: TableDef, keys: list, relation: str, columns: list[str],
            distinct: bool = False) -> pa.Table:
    """`columns` of the rows of `relation` whose key is one of `keys` (a semi join)."""
    pk = t.key_columns
    if len(pk) == 1:
        probe = pa.table({pk[0]: keys})
    else:
        probe = pa.table({c: [k[i] for k in keys] for i, c in enumerate(pk)})
    cur.register("__probe_keys", probe)
    try:
        cols = ", ".join(f"c.{views.q(c)}" for c in columns)
        using = ", ".join(views.q(c) for c in pk)
        return cur.execute(
            f"SELECT {'DISTINCT ' if distinct else ''}{cols} FROM {relation} c SEMI JOIN __probe_keys USING ({using})"
        ).to_arrow_table()
    finally:
        cur.unregister("__probe_keys")


def _bounds(keys: list) -> tuple | None:
    try:
        return (min(keys), max(keys)) if keys else None
    except TypeError:
        return None
