"""Flush: the commit protocol that moves a table's hot rows into Parquet, and its recovery half.

Each step is a failpoint:
  1. under the write lock: note W = last committed _seq, snapshot each key's newest hot version
  2. write Parquet segments (temp name, fsync, rename)           -- orphans removed at start-up
  3. commit a new manifest version listing them, flushed_seq = W  -- the commit point
  4. under the write lock: swap the DuckDB cold view and drop hot rows with _seq <= W (atomic
     for readers), then delete the LevelDB batches <= W          -- redone at start-up if lost

Keys already in cold go to a "delta" segment (newer versions and tombstones), the others to a
"base" segment. A USER table has one scope per user: steps 2-4 run per user with pending rows
(one job, one watermark W, one manifest commit per scope, each applied at once). A crash or
failure between two scopes leaves the committed ones applied (their hot rows <= W leave at
recovery, found by each scope's own flushed_seq) and the rest hot, for the retry to flush.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine.catalog.tables import OWNER, TableDef
from engine.tiers.cold import ColdTier, Scopes, keys_in
from engine.errors import EngineError, FeatureNotSupported
from engine.failpoints import Failpoints
from engine.tiers.hot import HotTier, key_list
from engine.tiers import views
from engine.storage.backend import Storage
from engine.storage.manifest import FlushEdit, Manifest, Segment
from engine.storage.segments import key_bounds, may_overlap, sorted_by_key, write_segment
from engine.tiering.jobs import Job, Untracked

STREAM_FLUSH_REFUSED = "STORAGE FLUSH TABLE is not supported for STREAM tables"
Outcome = tuple[str, str, int]  # (job status, message, rows)


PARALLEL_PART_ROWS = 300_000  # a flush this many rows per core and up writes segments in parallel


def _parts(rows: pa.Table) -> list[pa.Table]:
    """`rows` (sorted by key) cut into consecutive pieces, one per core when each gets at
    least PARALLEL_PART_ROWS rows: their key ranges stay disjoint, so each is a segment of its
    own and they are encoded at once (a 1M-row flush spent half its time in one encoder)."""
    n = max(1, min(os.cpu_count() or 1, rows.num_rows // PARALLEL_PART_ROWS))
    size = -(-rows.num_rows // n)
    return [rows.slice(i * size, size) for i in range(n)]


class Flusher:
    def __init__(self, hot: HotTier, cold: ColdTier, db: duckdb.DuckDBPyConnection, failpoints: Failpoints,
                 on_flushed: Callable[[int, int], None]):
        self._hot = hot
        self._cold = cold
        self._db = db
        self._fp = failpoints
        self._on_flushed = on_flushed  # (table id, hot rows left): the flush policy's clock

    def flush_table(self, t: TableDef, job: Job | None = None) -> Outcome:
        if t.is_stream:
            raise FeatureNotSupported(STREAM_FLUSH_REFUSED)
        cur = self._db.cursor()
        try:
            watermark, mark, snap = self._snapshot(cur, t)
            if snap.num_rows == 0:
                # An earlier flush that moved rows but could not delete their LevelDB batches
                # (step 4's last part, e.g. on a full disk) is finished now.
                stale = self._cleanup(t, watermark)
                if stale:
                    return "completed", (f"Removed {stale} flushed row batch(es) of table '{t.qualified}' "
                                         "from the hot tier"), 0
                return "skipped", f"Storage flush skipped: no pending writes for table '{t.qualified}'", 0
            self._fp.hit("flush.start")
            check = job.check_cancel if job is not None else (lambda: None)
            report = job if job is not None else Untracked()
            report.progress("writing segments", rows_done=0, rows_total=snap.num_rows, bytes_done=0)
            storage = self._cold.storage_for(t)
            if t.is_user:  # one segment (or base + delta) per user with pending rows
                owners = snap.column(OWNER)
                parts = [(u, snap.filter(pc.equal(owners, u))) for u in sorted(pc.unique(owners).to_pylist())]
            else:
                parts = [(None, snap)]
            done: list[tuple[int, int]] = []   # (rows, segments) of each committed scope
            try:
                for user, rows in parts:
                    self._flush_scope(cur, t, storage, user, rows, watermark, mark, check, report, done)
                self._fp.hit("flush.before_hot_cleanup")
                report.progress("cleaning up hot tier")
                self._cleanup(t, watermark)
                after = ""
            except Exception as exc:
                if len(done) < len(parts):
                    raise
                # Every manifest is committed: the rows are in Parquet and the flush has
                # happened. What failed after it (removing their LevelDB copies, say) is
                # finished by the next flush or the next start; say so, do not call it failed.
                reason = exc.message if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
                after = f"; their hot copies stay in LevelDB until the next flush ({reason})"
            moved = sum(n for n, _ in done)
            scopes = f" across {len(parts)} user scope(s)" if t.is_user else ""
            message = (f"Flushed {moved} row version(s) of table '{t.qualified}' into "
                       f"{sum(n for _, n in done)} segment(s){scopes}{after}")
            return "completed", message, moved
        finally:
            cur.close()

    def _cleanup(self, t: TableDef, watermark: int) -> int:
        """Delete the table's LevelDB batches at or below the watermark (all in Parquet now)."""
        store = self._hot.store
        stale = [k for k, first in store.batch_keys(t.tid) if first <= watermark]
        store.delete_keys(stale)
        return len(stale)

    def _snapshot(self, cur: duckdb.DuckDBPyConnection, t: TableDef) -> tuple[int, int, pa.Table]:
        """Step 1: the watermark W, the table's count of superseding writes so far (every
        writer is done: this holds the write lock exclusive), and each key's newest hot
        version at or below W."""
        hot = self._hot
        with hot.locked(f"a flush of table {t.qualified}"):
            hot.commits.drain()
            watermark = hot.seq
            mark = self._cold.supersedes(t)
            # Seqs of rolled-back writes are never committed; make the watermark durable
            # before a manifest records it, so a restart can never hand them out again.
            hot.store.persist_seq(watermark)
            snap = self._queued_snapshot(cur, t)
            if snap is None:
                hot.materialize()
                table = views.hot_table(t)
                # One version per key (the key index has an entry per hot key): no dedup pass.
                versions = cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                pk = ", ".join(views.q(c) for c in t.key_columns)
                newest = "" if versions == hot.pending_rows(t) else \
                    f" QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1"
                snap = cur.execute(f"SELECT * FROM {table} WHERE _seq <= {watermark}{newest}").to_arrow_table()
        return watermark, mark, snap

    def _queued_snapshot(self, cur: duckdb.DuckDBPyConnection, t: TableDef) -> pa.Table | None:
        """Under the write lock, queue drained: when every hot row of `t` is still queued for
        DuckDB (none appended yet) and each key has one version, the flush snapshot is those
        queued batches themselves; appending them to DuckDB only to read them back and
        delete them would cost as much as the Parquet write."""
        batches = self._hot.queued(t.tid)
        if not batches or sum(b.num_rows for b in batches) != self._hot.pending_rows(t):
            return None
        if cur.execute(f"SELECT count(*) FROM {views.hot_table(t)}").fetchone()[0]:
            return None
        try:
            return pa.concat_tables(batches)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None  # batches typed differently: DuckDB unifies them

    def _flush_scope(self, cur: duckdb.DuckDBPyConnection, t: TableDef, storage: Storage, user: str | None,
                     snap: pa.Table, watermark: int, mark: int, check: Callable[[], None],
                     report: Job | Untracked, done: list[tuple[int, int]]) -> None:
        """Steps 2-4 for one scope: its segments, its manifest commit, applied at once.
        `done` gets (rows, segments) once the manifest is committed: the commit point."""
        scope = t.scope(storage, user)
        manifest = self._cold.scope_manifest(t, user)
        keys: list = []
        in_cold: set = set()
        if manifest.segments and may_overlap(t.row_key, manifest.segments, key_bounds(t.row_key, snap)):
            keys = key_list(t, snap)
            rel = views.all_cold_versions_sql(t, {user: manifest}, storage)
            in_cold = keys_in(cur, t, keys, f"({rel})")
        deleted = snap.column("_deleted")
        if not in_cold:
            base, delta = snap.filter(pc.invert(deleted)), snap.slice(0, 0)
        else:
            mask_cold = pa.array([k in in_cold for k in keys], pa.bool_())
            base = snap.filter(pc.and_(pc.invert(mask_cold), pc.invert(deleted)))
            delta = snap.filter(mask_cold)
        self._cold.register_scope(t, user)  # before its first file: recovery finds orphans
        pieces: list[tuple[str, pa.Table]] = []
        for kind, rows in (("base", base), ("delta", delta)):
            if rows.num_rows == 0:
                continue
            if not sorted_by_key(t.row_key, rows):
                rows = rows.sort_by([(c, "ascending") for c in t.row_key])
            pieces += [(kind, part) for part in _parts(rows)]

        def write(i: int) -> Segment:
            kind, rows = pieces[i]
            return write_segment(storage, scope, manifest.next_segment_id + i, rows, t.stats_columns, kind,
                                 self._fp, "flush", check, schema_version=t.schema_version,
                                 field_ids=t.field_ids())

        segments: list[Segment] = []
        with contextlib.ExitStack() as stack:
            written: Iterable[Segment] = map(write, range(len(pieces)))
            if len(pieces) > 1:  # Parquet encoding and the file write release the GIL: at once
                pool = stack.enter_context(ThreadPoolExecutor(len(pieces), thread_name_prefix="flush-segment"))
                written = pool.map(write, range(len(pieces)))
            for seg in written:
                segments.append(seg)
                report.advance("writing segments", seg.row_count, seg.size_bytes)
        new_manifest = manifest.apply(FlushEdit(segments, watermark))
        check()  # the last point where KILL JOB can stop it: next is the commit
        report.progress("committing manifest")
        self._fp.hit("flush.before_manifest")
        self._cold.commit(t, storage, new_manifest)
        done.append((sum(s.row_count for s in segments), len(segments)))
        try:
            self._fp.hit("flush.after_manifest")
        finally:
            # The manifest is the commit point: from here the flush must take effect.
            self._apply(cur, t, new_manifest, watermark, mark, storage)

    def _apply(self, cur: duckdb.DuckDBPyConnection, t: TableDef, manifest: Manifest, watermark: int,
               mark: int, storage: Storage) -> None:
        """Step 4: the new cold view and the hot rows it covers gone, atomically for readers.
        The view keeps hiding superseded versions only if hot may still hold some: rows left
        by other users (a USER table's other scopes), or rows written since the snapshot by a
        write that superseded a version (`mark` changed). Rows plain INSERTs wrote meanwhile
        (a table under continuous ingest) are new keys, read without the window."""
        hot, cold, user = self._hot, self._cold, manifest.user_id
        with hot.locked(f"a flush of table {t.qualified}"), cold.changing():
            hot.commits.drain()
            # a USER scope's flush leaves other users' queued rows to append
            with hot.switching(t.tid, None if t.is_user else watermark):
                scopes = cold.scopes(t)
                scopes[user] = manifest
                owner = f" AND {OWNER} = {views.sql_str(user)}" if t.is_user else ""
                cur.execute("BEGIN")
                cur.execute(views.cold_view_sql(t, scopes, storage))
                cur.execute(f"DELETE FROM {views.hot_table(t)} WHERE _seq <= {watermark}{owner}")
                hot_left = cur.execute(f"SELECT count(*) FROM {views.hot_table(t)}").fetchone()[0]
                self._on_flushed(t.tid, hot_left)
                # Rows written while this flush ran may be newer versions of keys it just moved.
                shadowing = hot_left > 0 and (t.is_user or cold.supersedes(t) != mark)
                cur.execute(views.full_view_sql(t, shadowing))
                cur.execute("COMMIT")
            cold.set_scopes(t, scopes, shadowing)
            hot.forget_flushed(t.tid, watermark, user, hot_left)


def finish_interrupted_flush(admin: duckdb.DuckDBPyConnection, hot: HotTier, t: TableDef, scopes: Scopes) -> None:
    """Recovery half: hot rows already in Parquet (a crash after a manifest commit) leave hot
    now. A USER table's batches may mix users (a superuser's UPDATE): each row goes by its own
    scope's watermark, and a batch that is partly flushed is rewritten with the rest."""
    store = hot.store
    if not t.is_user:
        flushed = scopes[None].flushed_seq
        stale = [k for k, first in store.batch_keys(t.tid) if first <= flushed]
        if stale:
            admin.execute(f"DELETE FROM {views.hot_table(t)} WHERE _seq <= {flushed}")
            store.delete_keys(stale)
        return
    marks = {u: m.flushed_seq for u, m in scopes.items() if m.flushed_seq}
    if not marks:
        return
    top = max(marks.values())
    puts, deletes = [], []
    for key, rows in store.batches(t.tid):
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
        admin.execute(f"DELETE FROM {views.hot_table(t)} WHERE {OWNER} = $1 AND _seq <= $2", [user, mark])
    store.rewrite(puts, deletes)
