"""The Engine: wiring of catalog, hot store, cold storages, manifests, read path and jobs,
plus start-up recovery and the flush commit protocol.

Flush commit protocol (each step a failpoint):
  1. under the write lock: note W = last committed _seq, snapshot each key's newest hot version
  2. write Parquet segments (temp name, fsync, rename)           -- orphans removed at start-up
  3. commit a new manifest version listing them, flushed_seq = W  -- the commit point
  4. under the write lock: swap the DuckDB cold view and drop hot rows with _seq <= W (atomic
     for readers), then delete the LevelDB batches <= W          -- redone at start-up if lost

A USER table has one scope per user: steps 2-4 run per user with pending rows (one job, one
watermark W, one manifest commit per scope, each applied at once). A crash or failure between
two scopes leaves the committed ones applied (their hot rows <= W leave at recovery, found
by each scope's own flushed_seq) and the rest hot, for the retry to flush.
"""
from __future__ import annotations

import bisect
import io
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.catalog import pg_catalog
from engine.read import views
from engine.tiering import stream_ttl
from engine.catalog.tables import OWNER, Catalog, Column, TableDef
from engine.errors import (FeatureNotSupported, InvalidCatalogName, IoError, LockNotAvailable, ObjectInUse,
                           QueryCanceled)
from engine.failpoints import Failpoints
from engine.storage.group_commit import CommitQueue
from engine.storage.hot_store import HotStore
from engine.read.point_lookup import PointLookups
from engine.tiering import compaction
from engine.errors import EngineError
from engine.tiering.jobs import Job, JobRunner, JobsConfig
from engine.tiering.policies import TICK_SECONDS, PolicyRunner
from engine.storage.reaper import FileReaper
from engine.catalog.roles import RoleCatalog
from engine.storage.manifest import Manifest, Segment, commit, load, now_iso
from engine.catalog.flush_policy import parse_flush_policy
from engine.storage.backend import TMP_MARK, Storage
from engine.catalog.storages import StorageCatalog

log = logging.getLogger("tierd.engine")

DATABASE = "tierd"
NOW = object()  # marker: the default is the transaction's timestamp
NO_FAST_DEFAULT = object()  # marker: only DuckDB can evaluate this default
_NOW_DEFAULT = re.compile(r"^\s*(CAST\(\s*)?(now\(\)|current_timestamp|get_current_timestamp\(\)|transaction_timestamp\(\))", re.I)
_VOLATILE = re.compile(r"\(|current_|random|uuid|nextval", re.I)
DEFAULT_NAMESPACE = "public"
IDENTITY_VARIABLE = "tierd_user"  # per DuckDB connection: the session's role name


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
    superuser: str = "tierd"  # the role that always exists (auth.superuser)
    superuser_password: str | None = None  # auth.password: that role's password, if configured
    # The Postgres type OID the wire reports for a result column (protocol.types' map), so
    # pg_catalog shows each column with the type a SELECT of it has. None: every column is text.
    type_oid: Callable[[pa.Field], int] | None = None


STREAM_FLUSH_REFUSED = "STORAGE FLUSH TABLE is not supported for STREAM tables"
Scopes = dict  # user id (None: the SHARED scope) -> Manifest


class KeyState(int):
    """Newest hot version of a key: the int is its _seq; a `Tombstone` if it is deleted.

    An int subclass without a Python __init__, so a bulk write (COPY of a million rows)
    makes its states at C speed: `map(KeyState, seqs)`. Build one with `key_state()`."""

    __slots__ = ()
    deleted = False

    @property
    def seq(self) -> int:
        return int(self)


class Tombstone(KeyState):
    __slots__ = ()
    deleted = True


def key_state(seq: int, deleted: bool) -> KeyState:
    return Tombstone(seq) if deleted else KeyState(seq)


def key_list(t: TableDef, rows: pa.Table) -> list:
    """Keys of `rows` as hashable Python values (tuples for composite keys; a USER table's
    key starts with the owner)."""
    cols = [rows.column(c).to_pylist() for c in t.key_columns]
    return cols[0] if len(cols) == 1 else list(zip(*cols))


class Engine:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.data_dir = os.path.abspath(config.data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        parse_flush_policy(config.default_flush_policy)
        self.failpoints = Failpoints(config.failpoints)
        self.store = HotStore(os.path.join(self.data_dir, "hot"))
        self.write_lock = threading.Lock()
        self.ddl_lock = threading.RLock()
        self.sys_lock = threading.Lock()
        self.catalog = Catalog(self.store)
        self.roles = RoleCatalog(self.store, config.superuser, config.superuser_password)
        self.manifests: dict[int, Scopes] = {}  # table id -> its scopes' manifests
        self.hot_index: dict[int, dict] = {}
        # Committed autocommit writes not yet appended to DuckDB; readers append them first,
        # so a stream of single-row INSERTs costs no DuckDB call each.
        self.unapplied: dict[int, list[pa.Table]] = {}
        self.apply_lock = threading.Lock()
        self.commits = CommitQueue(self.store, self.publish)  # group commit of autocommit writes
        self.point_lookups = PointLookups()
        # Odd while a flush, compaction or drop is changing some table's cold tier under the
        # write lock; bumped before and after, so a lock-free point lookup can tell (seqlock).
        self.cold_epoch = 0
        self.shadowing: set[int] = set()  # tables whose hot rows may supersede cold keys
        self.has_user_tables = False  # sessions set their USER-table filter once one exists
        self.stream_clock = 0.0  # newest STREAM write time (epoch s): write times never go back
        # STREAM tables: (write time, last _seq written then), both ascending, one per write.
        self.stream_marks: dict[int, list[tuple[float, int]]] = {}
        self.unavailable: dict[int, str] = {}  # tables whose cold tier could not be read at start
        self._schemas: dict[int, pa.Schema] = {}
        self._defaults: dict[tuple[int, str], object] = {}
        self.db = views.open_database()
        self.admin = self.db.cursor()
        self.apply_cur = self.db.cursor()
        self.storages = StorageCatalog(self.store, self.data_dir, config.storages, self._register_storage,
                                       self._unregister_storage)
        self.seq = self.store.last_seq()
        self.visible_seq = 0  # every _seq up to here is visible to readers (set after recovery)
        if DEFAULT_NAMESPACE not in self.catalog.namespaces:
            self.catalog.create_namespace(DEFAULT_NAMESPACE)
        for ns in self.catalog.namespaces:
            views.create_namespace(self.admin, ns)
        for t in list(self.catalog.tables.values()):
            self._recover_table(t)
        self._create_system_tables()
        self.visible_seq = self.seq  # everything recovered is visible
        self._create_identity_macros()
        pg_catalog.install(self.admin)
        self.pg_catalog = pg_catalog.PgCatalog(config.type_oid)
        self.reaper = FileReaper()
        self.policies = PolicyRunner(self)
        self.jobs = JobRunner(self.store, self.db, config.jobs, execute=self._execute_job,
                              on_finished=self._job_finished)
        for t in self.catalog.tables.values():
            if self.hot_index[t.tid]:
                self.policies.on_commit([t.tid])  # recovered hot rows start their interval now
        self.jobs.start()
        self.jobs.every(TICK_SECONDS, self.policies.tick, "flush-policy-tick")
        self.jobs.every(5.0, self.retry_unavailable, "cold-tier-recovery")
        self.evictions = stream_ttl.EvictionScheduler(self)
        self.jobs.every(stream_ttl.TICK_SECONDS, self.evictions.tick, "stream-eviction-tick")
        self.closed = False

    # ------------------------------------------------------------------ sessions
    def connect(self, user: str, database: str):
        from engine.session.session import EngineSession

        if database != DATABASE:
            raise InvalidCatalogName(f'database "{database}" does not exist')
        self.roles.require(user)
        return EngineSession(self, user)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.jobs.shutdown()
        self.storages.close()
        self.store.close()
        self.db.close()

    # ------------------------------------------------------------------ recovery
    def _recover_table(self, t: TableDef) -> None:
        self.has_user_tables = self.has_user_tables or t.is_user
        storage = self.storage_for(t)
        views.create_hot_table(self.admin, t)
        tables = [rows for _, rows in self.store.batches(t.tid)]
        if tables:
            self.admin.register("__recovered", pa.concat_tables(tables))
            self.admin.execute(f"INSERT INTO {views.hot_table(t)} SELECT * FROM __recovered")
            self.admin.unregister("__recovered")
        if t.is_stream:  # hot only: no storage, no manifest
            self.manifests[t.tid] = {}
            marks = self.admin.execute(f"SELECT epoch(_written_at) AS w, max(_seq) FROM {views.hot_table(t)} "
                                       "GROUP BY w ORDER BY w").fetchall()
            self.stream_marks[t.tid] = [(float(w), int(s)) for w, s in marks]
            if marks:
                self.stream_clock = max(self.stream_clock, float(marks[-1][0]))
            views.create_views(self.admin, t, views.cold_view_sql(t, {}, storage), shadowing=False)
            self.hot_index[t.tid] = self._index_hot(t)
            return
        try:
            scopes = self._load_cold(t, storage)
        except Exception as exc:  # storage down: the table comes up, its cold tier later
            reason = f"cold tier of table '{t.qualified}' is unavailable: storage '{t.storage_id}' failed: " \
                     f"{getattr(exc, 'message', None) or exc}"
            log.error("recovery: %s; retrying in the background", reason)
            self.unavailable[t.tid] = reason
            self.manifests[t.tid] = {} if t.is_user else {None: Manifest(table_id=t.qualified)}
            views.create_views(self.admin, t, views.unavailable_cold_view_sql(t, reason), shadowing=True)
            self.shadowing.add(t.tid)
        else:
            for m in scopes.values():
                self.seq = max(self.seq, m.flushed_seq)  # start-up is single-threaded
            shadowing = bool(tables and self.has_cold(t))
            views.create_views(self.admin, t, views.cold_view_sql(t, scopes, storage), shadowing)
            if shadowing:
                self.shadowing.add(t.tid)
            self._finish_interrupted_flush(t, scopes)
        self.hot_index[t.tid] = self._index_hot(t)

    # A table's committed manifest versions per scope, in LevelDB: {"version": v} (SHARED) or
    # {"scopes": {user: v}} (USER; v = 0 for a scope registered before its first commit).
    def _known_scopes(self, t: TableDef) -> dict:
        known = self.store.get_json(f"c/cold/{t.tid:08d}") or {}
        if t.is_user:
            return dict(known.get("scopes", {}))
        return {None: known["version"]} if "version" in known else {}

    def _remember_scope(self, t: TableDef, user: str | None, version: int) -> None:
        if t.is_user:
            known = self._known_scopes(t)
            known[user] = version
            self.store.put_json(f"c/cold/{t.tid:08d}", {"scopes": known})
        else:
            self.store.put_json(f"c/cold/{t.tid:08d}", {"version": version})

    def _load_cold(self, t: TableDef, storage: Storage) -> Scopes:
        """Read each scope's manifest and remove files no manifest lists (orphans of a crash).
        A USER table's scopes are the users LevelDB registered before their first segment."""
        known = self._known_scopes(t)
        users = sorted(known) if t.is_user else [None]
        scopes: Scopes = {}
        for user in users:
            scope = t.scope(storage, user)
            manifest = load(storage, scope, t.qualified, t.uid, user)
            if known.get(user) and manifest.version == 0:
                raise IoError(f"manifest.json of {scope} is missing from storage '{t.storage_id}' "
                              f"(version {known[user]} was committed)")
            live = {s.path for s in manifest.segments} | ({"manifest.json"} if manifest.version else set())
            for name in storage.list(scope):
                if TMP_MARK in name or (name.startswith("batch-") and name not in live) or \
                        (name == "manifest.json" and name not in live):
                    log.info("recovery: removing orphan file %s/%s", scope, name)
                    storage.delete(f"{scope}/{name}")
            if manifest.version or not t.is_user:
                scopes[user] = manifest
        self.manifests[t.tid] = scopes
        return scopes

    def scope_manifest(self, t: TableDef, user: str | None) -> Manifest:
        """The scope's current manifest, or an empty one before its first flush."""
        m = self.manifests.get(t.tid, {}).get(user)
        return m if m is not None else Manifest(table_id=t.qualified, table_uid=t.uid, user_id=user)

    def has_cold(self, t: TableDef) -> bool:
        return any(m.segments for m in self.manifests.get(t.tid, {}).values())

    def commit_manifest(self, t: TableDef, storage: Storage, manifest: Manifest) -> None:
        """The commit point of a flush or compaction of one scope; LevelDB remembers that cold
        data exists, so a manifest that vanishes (an unmounted disk) is an error, not an empty table."""
        if t.is_user and manifest.user_id not in self._known_scopes(t):
            self._remember_scope(t, manifest.user_id, 0)  # recovery looks here for orphans
        commit(storage, t.scope(storage, manifest.user_id), manifest)
        self._remember_scope(t, manifest.user_id, manifest.version)

    def _finish_interrupted_flush(self, t: TableDef, scopes: Scopes) -> None:
        """Hot rows already in Parquet (a crash after a manifest commit) leave hot now. A USER
        table's batches may mix users (a superuser's UPDATE): each row goes by its own scope's
        watermark, and a batch that is partly flushed is rewritten with the rest."""
        if not t.is_user:
            flushed = scopes[None].flushed_seq
            stale = [k for k, first in self.store.batch_keys(t.tid) if first <= flushed]
            if stale:
                self.admin.execute(f"DELETE FROM {views.hot_table(t)} WHERE _seq <= {flushed}")
                self.store.delete_keys(stale)
            return
        marks = {u: m.flushed_seq for u, m in scopes.items() if m.flushed_seq}
        if not marks:
            return
        top = max(marks.values())
        puts, deletes = [], []
        for key, rows in self.store.batches(t.tid):
            if pc.min(rows.column("_seq")).as_py() > top:
                continue
            keep = pa.array([s > marks.get(u, 0) for u, s in zip(rows.column(OWNER).to_pylist(),
                                                                  rows.column("_seq").to_pylist())], pa.bool_())
            left = pc.sum(keep).as_py() or 0
            if left == 0:
                deletes.append(key)
            elif left < rows.num_rows:
                puts.append((key, rows.filter(keep)))
        if not puts and not deletes:
            return
        for user, mark in marks.items():
            self.admin.execute(f"DELETE FROM {views.hot_table(t)} WHERE {OWNER} = $1 AND _seq <= $2",
                               [user, mark])
        self.store.rewrite(puts, deletes)

    def retry_unavailable(self) -> None:
        """Periodically: bring back the cold tier of tables whose storage was down at start-up."""
        for tid in list(self.unavailable):
            t = self.catalog.by_tid(tid)
            if t is None:
                self.unavailable.pop(tid, None)
                continue
            storage = self.storage_for(t)
            try:
                scopes = self._load_cold(t, storage)
            except Exception:
                continue
            self.acquire_write_lock()
            self.cold_epoch += 1
            try:
                self.settle()
                self._finish_interrupted_flush(t, scopes)
                self.admin.execute(views.cold_view_sql(t, scopes, storage))
                self.hot_index[t.tid] = self._index_hot(t)
                self.unavailable.pop(tid, None)
            finally:
                self.cold_epoch += 1
                self.write_lock.release()
            log.info("cold tier of table '%s' is available again", t.qualified)

    def _index_hot(self, t: TableDef) -> dict:
        pk = ", ".join(views.q(c) for c in t.key_columns)
        rows = self.admin.execute(
            f"SELECT {pk}, _seq, _deleted FROM {views.hot_table(t)} "
            f"QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1"
        ).to_arrow_table()
        seqs = rows.column("_seq").to_pylist()
        dels = rows.column("_deleted").to_pylist()
        return {k: key_state(s, d) for k, s, d in zip(key_list(t, rows), seqs, dels)}

    # ------------------------------------------------------------------ hot rows in DuckDB
    def publish(self, batches: list[tuple[int, int, pa.Table]], last_seq: int) -> None:
        """Committed rows become visible: queued here, appended by the next reader."""
        with self.apply_lock:
            for tid, _, rows in batches:
                self.unapplied.setdefault(tid, []).append(rows)
            self.visible_seq = max(self.visible_seq, last_seq)

    def materialize(self) -> None:
        """Append every committed row to DuckDB before a read. A reader that finds the queue
        empty while another reader is still appending must wait for it, or it would miss rows."""
        if not self.unapplied and not self.apply_lock.locked():
            return
        with self.apply_lock:
            pending, self.unapplied = self.unapplied, {}
            try:
                for tid in list(pending):
                    t = self.catalog.by_tid(tid)
                    if t is not None:
                        self.apply_cur.register("__committed", pa.concat_tables(pending[tid]).combine_chunks())
                        try:
                            self.apply_cur.execute(f"INSERT INTO {views.hot_table(t)} SELECT * FROM __committed")
                        finally:
                            self.apply_cur.unregister("__committed")
                    del pending[tid]
            finally:
                self.unapplied = pending  # what failed to append waits for the next reader

    def settle(self) -> None:
        """For a write-lock holder about to read hot rows or `seq`: every queued commit
        durable and visible first, then appended to DuckDB."""
        self.commits.drain()
        self.materialize()

    def ensure_shadowing(self, t: TableDef) -> None:
        """Before hot may hold newer versions of cold keys, make the view hide those cold rows."""
        if t.tid in self.shadowing or not self.has_cold(t):
            return
        self.admin.execute(views.full_view_sql(t, shadowing=True))
        self.shadowing.add(t.tid)

    def note_stream_write(self, t: TableDef, written: float, last_seq: int) -> None:
        """A STREAM write stamped `written` (under the write lock; times never go back)."""
        self.stream_marks.setdefault(t.tid, []).append((written, last_seq))

    def expired_seq(self, t: TableDef) -> int:
        """A STREAM table's newest expired _seq: versions up to it are past the TTL (write
        times ascend with _seq), invisible and their keys free, evicted or not. 0 otherwise."""
        marks = self.stream_marks.get(t.tid)
        if not t.is_stream or not marks:
            return 0
        i = bisect.bisect_right(marks, time.time() - t.ttl_seconds, key=lambda m: m[0])
        return marks[i - 1][1] if i else 0

    def forget_stream_marks(self, t: TableDef, evicted_seq: int) -> None:
        marks = self.stream_marks.get(t.tid, [])
        self.stream_marks[t.tid] = [m for m in marks if m[1] > evicted_seq]

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

    # ------------------------------------------------------------------ catalog helpers
    def storage_for(self, t: TableDef) -> Storage:
        return self.storages.get(t.storage_id)

    def require_storage(self, storage_id: str) -> Storage:
        return self.storages.get(storage_id)

    def _register_storage(self, storage: Storage) -> None:
        # S3: httpfs (already loaded by sandbox.lock_down, with its limits) and a secret scoped
        # to the storage's base.
        for stmt in storage.duckdb_setup():
            self.admin.execute(stmt)  # never logged: the secret statement holds the key

    def _unregister_storage(self, storage: Storage) -> None:
        for stmt in getattr(storage, "duckdb_teardown", lambda: [])():
            self.admin.execute(stmt)

    def tables_using(self, storage_id: str) -> int:
        return sum(1 for t in self.catalog.tables.values() if t.storage_id == storage_id)

    def acquire_write_lock(self) -> None:
        if not self.write_lock.acquire(timeout=self.config.lock_timeout_s):
            raise LockNotAvailable(
                f"could not obtain the write lock within {self.config.lock_timeout_s:g}s "
                "(another transaction is writing)"
            )

    def create_table(self, t: TableDef) -> TableDef:
        """Register `t` (columns already validated) and build its DuckDB objects."""
        storage = self.storage_for(t)
        if t.is_user:  # {userId} stays open: each user's directory is resolved at its first flush
            t.scope_dir = storage.scope_dir(t.namespace, t.name, "{userId}")
        elif not t.is_stream:
            t.scope_dir = storage.scope_dir(t.namespace, t.name)
        t = self.catalog.add_table(t)
        self.has_user_tables = self.has_user_tables or t.is_user
        scopes: Scopes = {None: Manifest(table_id=t.qualified, table_uid=t.uid)} if t.table_type == "SHARED" else {}
        self.manifests[t.tid] = scopes
        self.hot_index[t.tid] = {}
        views.create_table_objects(self.admin, t, scopes, storage)
        return t

    def stop_table_job(self, t: TableDef) -> None:
        """Before DROP TABLE: cancel the table's flush or compaction and wait for it to stop."""
        job = self.jobs.active_job(t.qualified)
        if job is None:
            return
        try:
            self.jobs.kill(job.job_id)
        except EngineError:
            pass  # it finished meanwhile
        if not job.done.wait(self.config.lock_timeout_s):
            raise ObjectInUse(f"table '{t.qualified}' has a {job.job_type} job ({job.job_id}) that did not stop")

    def drop_table(self, t: TableDef) -> None:
        """Under the write lock."""
        self.cold_epoch += 1
        try:
            self._drop_table(t)
        finally:
            self.cold_epoch += 1

    def _drop_table(self, t: TableDef) -> None:
        self.settle()
        self.unavailable.pop(t.tid, None)
        self.policies.forget(t.tid)
        views.drop_table_objects(self.admin, t)
        self.shadowing.discard(t.tid)
        self._schemas.pop(t.tid, None)
        self.catalog.drop_table(t)
        self.store.drop_table(t.tid)
        storage = self.storage_for(t)
        if t.is_user:
            for user in self._known_scopes(t) | self.manifests.get(t.tid, {}):
                storage.delete_tree(t.scope(storage, user))
            parent, _, last = (t.scope_dir or "").rpartition("/")
            if last == "{userId}" and "{" not in parent:  # e.g. app/notes: this table's alone
                storage.delete_tree(parent)
        elif not t.is_stream:
            storage.delete_tree(t.scope(storage))
        self.store.delete(f"c/cold/{t.tid:08d}")
        self.manifests.pop(t.tid, None)
        self.hot_index.pop(t.tid, None)

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

    # ------------------------------------------------------------------ uniqueness
    def cold_live_keys(self, cur: duckdb.DuckDBPyConnection, t: TableDef, keys: list) -> set:
        """Which of `keys` are live in the cold tier (one query, pruned by segment key ranges)."""
        if t.tid in self.unavailable:  # cannot tell whether a key exists there: refuse
            raise IoError(self.unavailable[t.tid])
        segments = [s for m in self.manifests[t.tid].values() for s in m.segments]
        if not segments or not keys:
            return set()
        if not self._may_overlap(t, segments, _key_bounds(t, [k[1] for k in keys] if t.is_user else keys)):
            return set()
        return self._keys_in(cur, t, keys, views.cold_view(t))

    def _may_overlap(self, t: TableDef, segments: list[Segment], bounds: tuple | None) -> bool:
        """Whether keys within `bounds` (min, max; None: unknown) may be in some segment."""
        if len(t.primary_key) != 1 or bounds is None:
            return True
        col = t.primary_key[0]
        try:
            lo, hi = bounds
            for s in segments:
                st = s.column_stats.get(col)
                if not st or st.get("min") is None or not isinstance(st["min"], (int, float, str)):
                    return True
                if not (hi < st["min"] or lo > st["max"]):
                    return True
        except TypeError:
            return True
        return False

    def _keys_in(self, cur: duckdb.DuckDBPyConnection, t: TableDef, keys: list, relation: str) -> set:
        pk = t.key_columns
        if len(pk) == 1:
            probe = pa.table({pk[0]: keys})
        else:
            probe = pa.table({c: [k[i] for k in keys] for i, c in enumerate(pk)})
        cur.register("__probe_keys", probe)
        try:
            cols = ", ".join(f"c.{views.q(c)}" for c in pk)
            using = ", ".join(views.q(c) for c in pk)
            found = cur.execute(
                f"SELECT DISTINCT {cols} FROM {relation} c SEMI JOIN __probe_keys USING ({using})"
            ).to_arrow_table()
        finally:
            cur.unregister("__probe_keys")
        return set(key_list(t, found))

    # ------------------------------------------------------------------ flush
    def pending_rows(self, t: TableDef) -> int:
        return len(self.hot_index.get(t.tid, {}))

    def request_job(self, job_type: str, t: TableDef, wait: bool,
                    cancelled: Callable[[], bool] = lambda: False) -> Job:
        """STORAGE FLUSH / COMPACT: a new job, or a skipped record saying why not.

        With WAIT, a job already running for the table (a policy flush, say) is waited for
        and the request made again, so the caller's rows are in Parquet when it returns."""
        word = {"flush": "flush", "compact": "compaction"}[job_type]
        for attempt in (1, 2):
            if job_type == "flush" and not self.hot_index.get(t.tid):
                return self.jobs.record(job_type, t.qualified, "skipped",
                                        f"Storage flush skipped: no pending writes for table '{t.qualified}'")
            job, created = self.jobs.submit(job_type, t.qualified, {"trigger": "command"})
            if created or wait and attempt == 1:
                if wait:
                    self._wait(job, cancelled)
                if created:
                    return job
                continue
            break
        return self.jobs.record(
            job_type, t.qualified, "skipped",
            f"Storage {word} skipped: a {word} is already queued or running for table '{t.qualified}'")

    @staticmethod
    def _wait(job: Job, cancelled: Callable[[], bool]) -> None:
        while not job.done.wait(0.2):
            if cancelled():  # the client's cancel request stops the wait, not the job
                raise QueryCanceled(f"canceling statement due to user request; job {job.job_id} goes on")

    def _execute_job(self, job: Job) -> tuple[str, str, int]:
        ns, _, name = job.table_name.partition(".")
        t = self.catalog.find(ns, name)
        if t is None:
            raise EngineError(f"table '{job.table_name}' no longer exists")
        if t.tid in self.unavailable:
            raise EngineError(self.unavailable[t.tid])
        if job.job_type == "flush":
            return self.flush_table(t, job)
        if job.job_type == "stream_eviction":
            return stream_ttl.evict(self, t, job)
        return compaction.compact_table(self, t, job)

    def _job_finished(self, job: Job) -> None:
        if job.job_type != "flush" or job.status != "completed":
            return
        ns, _, name = job.table_name.partition(".")
        t = self.catalog.find(ns, name)
        if t is not None and any(compaction.needs_compaction(m, self.config.compaction_max_segments)
                                 for m in self.manifests[t.tid].values()):
            self.jobs.submit("compact", t.qualified, {"trigger": f"more than {self.config.compaction_max_segments} segments"})

    def apply_compaction(self, t: TableDef, manifest: Manifest, storage: Storage) -> None:
        """Swap one scope's manifest (compacted) into the table's cold view."""
        self.acquire_write_lock()
        self.cold_epoch += 1
        try:
            scopes = dict(self.manifests[t.tid])
            scopes[manifest.user_id] = manifest
            self.admin.execute(views.cold_view_sql(t, scopes, storage))
            self.manifests[t.tid] = scopes
        finally:
            self.cold_epoch += 1
            self.write_lock.release()

    def flush_table(self, t: TableDef, job: Job | None = None) -> tuple[str, str, int]:
        if t.is_stream:
            raise FeatureNotSupported(STREAM_FLUSH_REFUSED)
        fp = self.failpoints
        cur = self.db.cursor()
        try:
            pk = ", ".join(views.q(c) for c in t.key_columns)
            self.acquire_write_lock()
            try:
                self.commits.drain()
                watermark = self.seq
                # Seqs of rolled-back writes are never committed; make the watermark durable
                # before a manifest records it, so a restart can never hand them out again.
                self.store.persist_seq(watermark)
                snap = self._unapplied_snapshot(cur, t)
                if snap is None:
                    self.materialize()
                    hot = views.hot_table(t)
                    # One version per key (the key index has an entry per hot key): no dedup pass.
                    versions = cur.execute(f"SELECT count(*) FROM {hot}").fetchone()[0]
                    newest = "" if versions == len(self.hot_index[t.tid]) else \
                        f" QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1"
                    snap = cur.execute(f"SELECT * FROM {hot} WHERE _seq <= {watermark}{newest}").to_arrow_table()
            finally:
                self.write_lock.release()
            if snap.num_rows == 0:
                return "skipped", f"Storage flush skipped: no pending writes for table '{t.qualified}'", 0
            fp.hit("flush.start")
            check = job.check_cancel if job is not None else (lambda: None)
            storage = self.storage_for(t)
            if t.is_user:  # one segment (or base + delta) per user with pending rows
                owners = snap.column(OWNER)
                parts = [(u, snap.filter(pc.equal(owners, u))) for u in sorted(pc.unique(owners).to_pylist())]
            else:
                parts = [(None, snap)]
            moved = written = 0
            for user, rows in parts:
                n, segs = self._flush_scope(cur, t, storage, user, rows, watermark, check)
                moved += n
                written += segs
            fp.hit("flush.before_hot_cleanup")
            self.store.delete_keys([k for k, first in self.store.batch_keys(t.tid) if first <= watermark])
            scopes = f" across {len(parts)} user scope(s)" if t.is_user else ""
            return "completed", (
                f"Flushed {moved} row version(s) of table '{t.qualified}' into {written} segment(s){scopes}"
            ), moved
        finally:
            cur.close()

    def _unapplied_snapshot(self, cur, t: TableDef) -> pa.Table | None:
        """Under the write lock, queue drained: when every hot row of `t` is still queued for
        DuckDB (none appended yet) and each key has one version, the flush snapshot is those
        queued batches themselves; appending them to DuckDB only to read them back and
        delete them would cost as much as the Parquet write."""
        with self.apply_lock:
            batches = list(self.unapplied.get(t.tid, ()))
        if not batches or sum(b.num_rows for b in batches) != len(self.hot_index[t.tid]):
            return None
        if cur.execute(f"SELECT count(*) FROM {views.hot_table(t)}").fetchone()[0]:
            return None
        try:
            return pa.concat_tables(batches)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None  # batches typed differently: DuckDB unifies them

    def _drop_unapplied(self, tid: int, watermark: int) -> None:
        """Queued batches the flush moved to Parquet never need to reach DuckDB's hot table
        (a batch's seqs are all at or below a watermark, or all above it)."""
        with self.apply_lock:
            batches = self.unapplied.get(tid)
            if batches:
                keep = [b for b in batches if b.num_rows and b.column("_seq")[0].as_py() > watermark]
                if keep:
                    self.unapplied[tid] = keep
                else:
                    del self.unapplied[tid]

    def _flush_scope(self, cur, t: TableDef, storage: Storage, user: str | None, snap: pa.Table,
                     watermark: int, check: Callable[[], None]) -> tuple[int, int]:
        """Steps 2-4 for one scope: its segments, its manifest commit, applied at once."""
        fp = self.failpoints
        scope = t.scope(storage, user)
        manifest = self.scope_manifest(t, user)
        keys: list = []
        in_cold: set = set()
        if manifest.segments and self._may_overlap(t, manifest.segments, _bounds(t, snap)):
            keys = key_list(t, snap)
            rel = views.all_cold_versions_sql(t, {user: manifest}, storage)
            in_cold = self._keys_in(cur, t, keys, f"({rel})")
        mask_cold = pa.array([k in in_cold for k in keys], pa.bool_()) if in_cold else None
        deleted = snap.column("_deleted")
        if mask_cold is None:
            base, delta = snap.filter(pc.invert(deleted)), snap.slice(0, 0)
        else:
            base = snap.filter(pc.and_(pc.invert(mask_cold), pc.invert(deleted)))
            delta = snap.filter(mask_cold)
        sort_keys = [(c, "ascending") for c in t.primary_key]
        if t.is_user and manifest.user_id not in self._known_scopes(t):
            self._remember_scope(t, user, 0)  # before its first file: recovery finds orphans
        segments: list[Segment] = []
        for kind, rows in (("base", base), ("delta", delta)):
            if rows.num_rows == 0:
                continue
            check()
            if not _sorted_by_key(t, rows):
                rows = rows.sort_by(sort_keys)
            seg_id = manifest.next_segment_id + len(segments)
            path = f"batch-{seg_id}.parquet"
            data = segment_bytes(rows)
            fp.hit("flush.before_parquet")
            size = storage.write_atomic(f"{scope}/{path}", data)
            fp.hit("flush.after_parquet")
            segments.append(Segment(
                id=seg_id, path=path,
                min_seq=pc.min(rows.column("_seq")).as_py(), max_seq=pc.max(rows.column("_seq")).as_py(),
                row_count=rows.num_rows, size_bytes=size, created_at=now_iso(), kind=kind,
                column_stats=column_stats(rows, t),
            ))
        new_manifest = manifest.with_segments(segments, watermark)
        check()  # the last point where KILL JOB can stop it: next is the commit
        fp.hit("flush.before_manifest")
        self.commit_manifest(t, storage, new_manifest)
        try:
            fp.hit("flush.after_manifest")
        finally:
            # The manifest is the commit point: from here the flush must take effect.
            self._apply_flush(cur, t, new_manifest, watermark, storage)
        return sum(s.row_count for s in segments), len(segments)

    def _apply_flush(self, cur, t: TableDef, manifest: Manifest, watermark: int, storage: Storage) -> None:
        user = manifest.user_id
        self.acquire_write_lock()
        self.cold_epoch += 1
        try:
            self.commits.drain()
            if not t.is_user:  # a USER scope's flush leaves other users' queued rows to append
                self._drop_unapplied(t.tid, watermark)
            self.materialize()
            scopes = dict(self.manifests[t.tid])
            scopes[user] = manifest
            owner = f" AND {OWNER} = {views.sql_str(user)}" if t.is_user else ""
            cur.execute("BEGIN")
            cur.execute(views.cold_view_sql(t, scopes, storage))
            cur.execute(f"DELETE FROM {views.hot_table(t)} WHERE _seq <= {watermark}{owner}")
            hot_left = cur.execute(f"SELECT count(*) FROM {views.hot_table(t)}").fetchone()[0]
            self.policies.on_flushed(t.tid, hot_left)
            # Rows written while this flush ran may be newer versions of keys it just moved.
            shadowing = hot_left > 0
            cur.execute(views.full_view_sql(t, shadowing))
            cur.execute("COMMIT")
            if shadowing:
                self.shadowing.add(t.tid)
            else:
                self.shadowing.discard(t.tid)
            self.manifests[t.tid] = scopes
            index = self.hot_index[t.tid]
            if hot_left == 0:  # nothing newer than the watermark (the queue was drained)
                index.clear()
            else:
                for k in [k for k, st in index.items() if st.seq <= watermark and (user is None or k[0] == user)]:
                    del index[k]
        finally:
            self.cold_epoch += 1
            self.write_lock.release()

    def _create_identity_macros(self) -> None:
        """current_user, session_user, user and current_role (DuckDB parses all four as calls)
        name the session's role: macros in the `main` schema of each catalog a session USEs,
        which come before DuckDB's built-ins, read a variable each session sets on its own
        connection. Created once, so connecting never changes DuckDB's catalog."""
        for catalog in ("memory", views.FULL):
            for fn in ("current_user", "session_user", "current_role", "user"):
                self.admin.execute(f"CREATE MACRO {catalog}.main.{views.q(fn)}() "
                                   f"AS getvariable({views.sql_str(IDENTITY_VARIABLE)})")

    # ------------------------------------------------------------------ system tables
    def _create_system_tables(self) -> None:
        # One row per table scope; the views keep the rows of other users' scopes out, so a
        # regular user sees neither their counts nor their manifests (column stats hold values).
        self.admin.execute(
            "CREATE TABLE __tierd.__sys.tables (namespace VARCHAR, table_name VARCHAR, table_type VARCHAR, "
            "storage_id VARCHAR, flush_policy VARCHAR, ttl_seconds BIGINT, hot_rows BIGINT, cold_rows BIGINT, "
            "segments BIGINT, created_at TIMESTAMPTZ, scope VARCHAR)"
        )
        self.admin.execute(
            "CREATE TABLE __tierd.__sys.manifest (namespace VARCHAR, table_name VARCHAR, scope VARCHAR, "
            "version BIGINT, segments BIGINT, row_count BIGINT, size_bytes BIGINT, manifest_json VARCHAR, "
            "updated_at TIMESTAMPTZ)"
        )
        self.admin.execute("CREATE TABLE __tierd.__sys.namespaces (namespace VARCHAR, created_at TIMESTAMPTZ)")
        self.admin.execute("CREATE TABLE __tierd.__sys.users (user_name VARCHAR, is_superuser BOOLEAN, "
                           "can_login BOOLEAN, created_at TIMESTAMPTZ)")
        self.admin.execute(
            "CREATE TABLE __tierd.__sys.storages (storage_id VARCHAR, storage_name VARCHAR, description VARCHAR, "
            "storage_type VARCHAR, base_directory VARCHAR, config VARCHAR, shared_tables_template VARCHAR, "
            "user_tables_template VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ)"
        )
        visible = f"(scope IS NULL OR scope = 'shared' OR scope = getvariable('{views.USER_VARIABLE}') " \
                  f"OR getvariable('{views.ALL_USERS_VARIABLE}'))"
        self.admin.execute(
            "CREATE VIEW memory.system.tables AS SELECT namespace, table_name, table_type, storage_id, flush_policy, "
            "ttl_seconds, CAST(sum(CASE WHEN " + visible + " THEN hot_rows ELSE 0 END) AS BIGINT) AS hot_rows, "
            "CAST(sum(CASE WHEN " + visible + " THEN cold_rows ELSE 0 END) AS BIGINT) AS cold_rows, "
            "CAST(sum(CASE WHEN " + visible + " THEN segments ELSE 0 END) AS BIGINT) AS segments, created_at "
            "FROM __tierd.__sys.tables GROUP BY ALL")
        self.admin.execute(f"CREATE VIEW memory.system.manifest AS SELECT * FROM __tierd.__sys.manifest WHERE {visible}")
        for name in ("namespaces", "storages", "users"):
            self.admin.execute(f"CREATE VIEW memory.system.{name} AS SELECT * FROM __tierd.__sys.{name}")

    def refresh_system_tables(self) -> None:
        """Rebuild the small catalog-derived system tables before a query reads them."""
        with self.sys_lock:
            cur = self.db.cursor()
            try:
                tables, manifests = [], []
                for t in self.catalog.tables.values():
                    scopes = dict(self.manifests.get(t.tid) or {})
                    hot: dict = {}
                    expired = self.expired_seq(t)  # expired STREAM rows are hidden already
                    for k, st in list(self.hot_index.get(t.tid, {}).items()):
                        if not st.deleted and st.seq > expired:
                            hot[k[0] if t.is_user else None] = hot.get(k[0] if t.is_user else None, 0) + 1
                    policy = None if t.is_stream else (t.flush_policy or self.config.default_flush_policy)
                    head = (t.namespace, t.name, t.table_type, None if t.is_stream else t.storage_id, policy,
                            t.ttl_seconds)
                    tables.append(head + (0, 0, 0, t.created_at, None))  # listed even with no rows
                    for user in sorted(set(scopes) | set(hot), key=lambda u: u or ""):
                        m = scopes.get(user) or Manifest(table_id=t.qualified)
                        scope = "shared" if user is None else user
                        tables.append(head + (hot.get(user, 0), m.row_count, len(m.segments), t.created_at, scope))
                        if m.version:
                            manifests.append((t.namespace, t.name, scope, m.version, len(m.segments), m.row_count,
                                              m.size_bytes, m.to_json().decode(), m.updated_at))
                storages = [(d.storage_id, d.name, d.description, d.storage_type, d.base,
                             json.dumps(s.redacted_config()), d.shared_tables_template, d.user_tables_template,
                             d.created_at, d.updated_at)
                            for d, s in self.storages.all()]
                users = [(r.name, r.superuser, r.login, r.created_at) for r in self.roles.all()]
                cur.execute("BEGIN")
                for name, rows, width in (("tables", tables, 11), ("manifest", manifests, 9),
                                          ("namespaces", sorted(self.catalog.namespaces.items()), 2),
                                          ("storages", storages, 10), ("users", users, 4)):
                    cur.execute(f"DELETE FROM __tierd.__sys.{name}")
                    if rows:
                        marks = ", ".join("?" * width)
                        cur.executemany(f"INSERT INTO __tierd.__sys.{name} VALUES ({marks})", rows)
                cur.execute("COMMIT")
            finally:
                cur.close()

    # ------------------------------------------------------------------ live settings (SIGHUP)
    LIVE_SETTINGS = ("default_flush_policy", "lock_timeout_s", "compaction_max_segments", "compaction_target_rows")
    LIVE_JOB_SETTINGS = ("max_retries", "backoff_base_s", "backoff_max_s", "retention_s")

    def apply_settings(self, settings: dict, job_settings: dict) -> None:
        """Change settings read at each use (names from LIVE_SETTINGS and LIVE_JOB_SETTINGS)."""
        if "default_flush_policy" in settings:
            parse_flush_policy(settings["default_flush_policy"])
        for name, value in settings.items():
            assert name in self.LIVE_SETTINGS, name
            setattr(self.config, name, value)
        for name, value in job_settings.items():
            assert name in self.LIVE_JOB_SETTINGS, name
            setattr(self.jobs.config, name, value)
        if "default_flush_policy" in settings:
            # Tables already past a new, lower rows threshold flush now, not at their next write.
            self.policies.on_commit([tid for tid, index in list(self.hot_index.items()) if index])

    def reload_storages(self, declared: dict[str, dict]) -> tuple[list[str], list[str]]:
        """SIGHUP: the config's storages again; returns (what changed, what needs a restart)."""
        self.acquire_write_lock()  # the DuckDB setup of an S3 storage runs on `admin`
        try:
            return self.storages.apply_declared(declared, self.tables_using)
        finally:
            self.write_lock.release()


def segment_bytes(rows: pa.Table) -> bytes:
    """One Parquet segment: zstd, 32,768-row groups (the point lookup's unit of decoding),
    dictionary pages only for string-like columns. On high-cardinality numbers (keys, values,
    timestamps) the writer builds a dictionary only to give it up, which made flushes ~1.5×
    slower and files ~1.6× bigger (1M events rows: 18.9 vs 11.8 MB)."""
    dictionary = [f.name for f in rows.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                  or pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)
                  or pa.types.is_dictionary(f.type)]
    buf = io.BytesIO()
    pq.write_table(rows, buf, compression="zstd", row_group_size=32_768, use_dictionary=dictionary or False)
    return buf.getvalue()


def _bounds(t: TableDef, rows: pa.Table) -> tuple | None:
    """(min, max) of a single-column key, vectorised; None for composite keys."""
    if len(t.primary_key) != 1 or rows.num_rows == 0:
        return None
    mm = pc.min_max(rows.column(t.primary_key[0])).as_py()
    return mm["min"], mm["max"]


def _key_bounds(t: TableDef, keys: list) -> tuple | None:
    if len(t.primary_key) != 1 or not keys:
        return None
    try:
        return min(keys), max(keys)
    except TypeError:
        return None


def _sorted_by_key(t: TableDef, rows: pa.Table) -> bool:
    """Rows already in key order (inserted in order, no dedup pass) need no sort."""
    if len(t.primary_key) != 1 or rows.num_rows < 2:
        return rows.num_rows < 2
    col = rows.column(t.primary_key[0]).combine_chunks()
    try:
        return pc.all(pc.greater_equal(col.slice(1), col.slice(0, len(col) - 1))).as_py()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return False


def column_stats(rows: pa.Table, t: TableDef) -> dict:
    stats = {}
    for c in t.column_names:
        col = rows.column(c)
        entry = {"null_count": col.null_count, "min": None, "max": None}
        try:
            mm = pc.min_max(col).as_py()
            lo, hi = mm["min"], mm["max"]
            if isinstance(lo, (int, float, str, bool)) or lo is None:
                entry["min"], entry["max"] = lo, hi
            else:
                entry["min"], entry["max"] = str(lo), str(hi)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, TypeError):
            pass
        stats[c] = entry
    return stats
