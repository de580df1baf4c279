"""The hot tier's shared in-memory state, behind one object every session and job goes through.

The write lock (engine/tiers/write_locks.py) is held exclusive by one writer, or shared by
writers that lock the rows they write; `_seq` values are handed out under the exclusive mode
or, for shared holders, at COMMIT under `commit_lock`; committed batches
are queued by group commit, published (visible up to `visible_seq`) and appended to DuckDB's
hot tables lazily by the next reader; each table's key index holds the newest hot version of
every key (its `_seq`, or a tombstone), which uniqueness checks, point lookups and flush
policies read without a query. STREAM tables also keep their write-time marks here: a
version is expired once its write time is older than the TTL, and write times ascend with
`_seq`, so the newest expired `_seq` says which versions are gone.
"""
from __future__ import annotations

import bisect
import contextlib
import threading
import time
from typing import Callable, Iterator

import duckdb
import pyarrow as pa

from engine.catalog.tables import OWNER, Catalog, TableDef
from engine.tiers import views
from engine.tiers.write_locks import WriteLocks
from engine.storage.group_commit import Batches, CommitQueue
from engine.storage.hot_store import HotStore


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


KeyIndex = dict  # key -> KeyState


def _background() -> tuple:
    """The token of a task's acquire() / release() without one of its own: its thread's."""
    return ("background", threading.get_ident())


def versions_at(cur: duckdb.DuckDBPyConnection, t: TableDef, seqs: list[int]) -> pa.Table:
    """The hot row versions numbered `seqs` (the table's columns and a USER table's owner),
    read from DuckDB's hot table through `cur` (a transaction's cursor sees its own writes)."""
    cols = ", ".join(f"h.{views.q(c)}" for c in t.column_names + ([OWNER] if t.is_user else []))
    cur.register("__probe_seqs", pa.table({"_seq": pa.array(seqs, pa.int64())}))
    try:
        return cur.execute(f"SELECT {cols} FROM {views.hot_table(t)} h SEMI JOIN __probe_seqs USING (_seq)"
                           ).to_arrow_table()
    finally:
        cur.unregister("__probe_seqs")


class HotTier:
    def __init__(self, store: HotStore, db: duckdb.DuckDBPyConnection, catalog: Catalog,
                 lock_timeout_s: Callable[[], float], failpoint: Callable[[str], None] = lambda name: None):
        self.store = store
        self._catalog = catalog
        self._lock_timeout_s = lock_timeout_s  # read at each wait: a SIGHUP may change it
        self.locks = WriteLocks()
        # Shared holders number their rows at COMMIT under this lock, so that _seq order stays
        # group commit's queue order; row ids of key-less tables come from it too.
        self.commit_lock = threading.Lock()
        self.seq = store.last_seq()  # the last _seq handed out
        self.visible_seq = 0  # every _seq up to here is visible to readers (set after recovery)
        self.index: dict[int, KeyIndex] = {}  # table id -> its key index
        # Committed autocommit writes not yet appended to DuckDB; readers append them first,
        # so a stream of single-row INSERTs costs no DuckDB call each.
        self._unapplied: dict[int, list[pa.Table]] = {}
        # Two locks, so that group commit's leader never waits for a reader's DuckDB append:
        # `_queue_lock` guards `_unapplied` (held for a dict operation), `_apply_lock` is held
        # while a reader appends what it took from the queue to DuckDB.
        self._queue_lock = threading.Lock()
        self._apply_lock = threading.Lock()
        self._apply_cur = db.cursor()
        self.commits = CommitQueue(store, self.publish, failpoint)  # group commit of autocommit writes
        self.stream_clock = 0.0  # newest STREAM write time (epoch s): write times never go back
        # STREAM tables: (write time, last _seq written then), both ascending, one per write.
        self._stream_marks: dict[int, list[tuple[float, int]]] = {}
        # Called with each group's batches once they are durable (point lookups keep them).
        self._published: list[Callable[[Batches], None]] = []

    # ------------------------------------------------------------------ the write lock
    def acquire(self, holder: str = "a background task", token: object | None = None,
                waiting: Callable[[bool], None] = lambda on: None) -> None:
        """Hold the write lock exclusive within the lock timeout (a transaction holding it
        shared upgrades); `holder` says who takes it, for the message another writer gets
        when it waits in vain (engine/tiers/write_locks.py)."""
        self.locks.exclusive(_background() if token is None else token, holder, self._lock_timeout_s(), waiting)

    def acquire_shared(self, holder: str, token: object, timeout_s: float | None = None) -> None:
        """Hold the write lock shared, beside other writers that lock the rows they write."""
        self.locks.shared(token, holder, self._lock_timeout_s() if timeout_s is None else timeout_s)

    def lock_row(self, token: object, tid: int, key, timeout_s: float | None = None,
                 waiting: Callable[[bool], None] = lambda on: None, cancelled: Callable[[], bool] = lambda: False
                 ) -> None:
        """Under the shared write lock: the row of `key` in table `tid`, until `release`."""
        self.locks.row(token, (tid, key), self._lock_timeout_s() if timeout_s is None else timeout_s, waiting,
                       cancelled)

    def release(self, token: object | None = None) -> None:
        self.locks.release(_background() if token is None else token)

    @contextlib.contextmanager
    def locked(self, holder: str = "a background task") -> Iterator[None]:
        token = object()
        self.acquire(holder, token)
        try:
            yield
        finally:
            self.release(token)

    # ------------------------------------------------------------------ _seq
    def allocate(self, n: int) -> int:
        """Under the exclusive write lock or `commit_lock`: `n` new _seq values; returns the first."""
        first = self.seq + 1
        self.seq += n
        return first

    def recovered_seq(self, seq: int) -> None:
        """At start-up: a manifest's watermark may be ahead of LevelDB's last _seq."""
        self.seq = max(self.seq, seq)

    def mark_visible(self, seq: int) -> None:
        self.visible_seq = max(self.visible_seq, seq)

    # ------------------------------------------------------------------ committed rows
    def publish(self, batches: Batches, last_seq: int) -> None:
        """Committed rows become visible: queued here, appended by the next reader."""
        for listener in self._published:
            listener(batches)
        with self._queue_lock:
            for tid, _, rows in batches:
                self._unapplied.setdefault(tid, []).append(rows)
            self.visible_seq = max(self.visible_seq, last_seq)

    def on_publish(self, listener: Callable[[Batches], None]) -> None:
        """`listener(batches)` for every group of durable batches, before they are visible."""
        self._published.append(listener)

    def materialize(self) -> None:
        """Append every committed row to DuckDB before a read. A reader that finds the queue
        empty while another reader is still appending (or a flush is switching views, see
        `switching`) must wait for it, or it would miss rows; one that waits takes whatever
        was published meanwhile, so N readers arriving during one append cost one more
        append, not N."""
        if not self._unapplied and not self._apply_lock.locked():
            return
        with self._apply_lock:
            self._append_queued()

    def _append_queued(self) -> None:
        """Under the apply lock: the queued batches into DuckDB's hot tables (the queue itself
        is taken under `_queue_lock`, so group commit's leader never waits for the append)."""
        with self._queue_lock:
            pending, self._unapplied = self._unapplied, {}
        try:
            for tid in list(pending):
                t = self._catalog.by_tid(tid)
                if t is not None:
                    self._apply_cur.register("__committed", pa.concat_tables(pending[tid]).combine_chunks())
                    try:
                        self._apply_cur.execute(f"INSERT INTO {views.hot_table(t)} SELECT * FROM __committed")
                    finally:
                        self._apply_cur.unregister("__committed")
                del pending[tid]
        finally:
            if pending:  # what failed to append waits for the next reader, before newer batches
                with self._queue_lock:
                    for tid, batches in pending.items():
                        self._unapplied[tid] = batches + self._unapplied.get(tid, [])

    @contextlib.contextmanager
    def switching(self, tid: int, watermark: int | None) -> Iterator[None]:
        """For a flush or TRUNCATE about to swap the table's DuckDB views (the block): queued
        batches at or below `watermark` (None: none) are dropped, the rest appended, and
        readers' `materialize` waits until the block ends. Otherwise a reader between the
        drop and the swap's COMMIT would find those rows nowhere: not queued, never appended
        to DuckDB's hot table, and not yet in the old cold view."""
        with self._apply_lock:
            if watermark is not None:
                self._drop_queued(tid, watermark)
            self._append_queued()
            yield

    def settle(self) -> None:
        """For a write-lock holder about to read hot rows or `seq`: every queued commit
        durable and visible first, then appended to DuckDB."""
        self.commits.drain()
        self.materialize()

    def queued(self, tid: int) -> list[pa.Table]:
        """The table's committed batches not yet appended to DuckDB."""
        with self._apply_lock, self._queue_lock:  # not while a reader holds batches it took
            return list(self._unapplied.get(tid, ()))

    def _drop_queued(self, tid: int, watermark: int) -> None:
        """Under the apply lock: queued batches a flush moved to Parquet never need to reach
        DuckDB's hot table (a batch's seqs are all at or below a watermark, or all above it)."""
        with self._queue_lock:
            batches = self._unapplied.get(tid)
            if batches:
                keep = [b for b in batches if b.num_rows and b.column("_seq")[0].as_py() > watermark]
                if keep:
                    self._unapplied[tid] = keep
                else:
                    del self._unapplied[tid]

    # ------------------------------------------------------------------ key index
    def add_table(self, tid: int) -> None:
        """A table just created: no keys, no batches."""
        self.index[tid] = {}
        self.store.new_table(tid)

    def pending_rows(self, t: TableDef) -> int:
        """Keys with unflushed changes: the rows a flush of `t` would write."""
        return len(self.index.get(t.tid, {}))

    def build_index(self, cur: duckdb.DuckDBPyConnection, t: TableDef) -> None:
        """The key index of `t` from its hot rows in DuckDB (start-up, cold tier back)."""
        pk = ", ".join(views.q(c) for c in t.key_columns)
        rows = cur.execute(
            f"SELECT {pk}, _seq, _deleted FROM {views.hot_table(t)} "
            f"QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1"
        ).to_arrow_table()
        seqs = rows.column("_seq").to_pylist()
        dels = rows.column("_deleted").to_pylist()
        self.index[t.tid] = {k: key_state(s, d) for k, s, d in zip(key_list(t, rows), seqs, dels)}

    def apply_changes(self, changes: dict[int, KeyIndex]) -> Callable[[], None]:
        """A transaction's key states into the index; returns an undo that restores the
        previous states of keys still holding ours (a failed group write)."""
        applied: list[tuple[dict, dict, dict]] = []  # (index, our changes, states they replaced)
        for tid, ours in changes.items():
            index = self.index.get(tid)
            if index is None:
                continue
            replaced = {k: index[k] for k in ours if k in index}
            index.update(ours)
            applied.append((index, ours, replaced))

        def undo() -> None:
            for index, ours, replaced in reversed(applied):
                for k, st in ours.items():
                    if index.get(k) is st:
                        if k in replaced:
                            index[k] = replaced[k]
                        else:
                            index.pop(k, None)
        return undo

    def forget_flushed(self, tid: int, watermark: int, user: str | None, hot_left: int) -> None:
        """After a flush of one scope: its keys at or below the watermark are cold now."""
        index = self.index[tid]
        if hot_left == 0:  # nothing newer than the watermark (the queue was drained)
            index.clear()
        else:
            for k in [k for k, st in index.items() if st.seq <= watermark and (user is None or k[0] == user)]:
                del index[k]

    def forget_table(self, tid: int) -> None:
        self.index.pop(tid, None)
        self._stream_marks.pop(tid, None)

    # ------------------------------------------------------------------ STREAM write times
    def stream_write_time(self) -> float:
        """Under the write lock: now, never behind an earlier STREAM write."""
        self.stream_clock = max(time.time(), self.stream_clock)
        return self.stream_clock

    def note_stream_write(self, t: TableDef, written: float, last_seq: int) -> None:
        self._stream_marks.setdefault(t.tid, []).append((written, last_seq))

    def recovered_stream_marks(self, t: TableDef, marks: list[tuple[float, int]]) -> None:
        self._stream_marks[t.tid] = marks
        if marks:
            self.stream_clock = max(self.stream_clock, marks[-1][0])

    def expired_seq(self, t: TableDef) -> int:
        """A STREAM table's newest expired _seq: versions up to it are past the TTL (write
        times ascend with _seq), invisible and their keys free, evicted or not. 0 otherwise."""
        marks = self._stream_marks.get(t.tid)
        if not t.is_stream or not marks:
            return 0
        i = bisect.bisect_right(marks, time.time() - t.ttl_seconds, key=lambda m: m[0])
        return marks[i - 1][1] if i else 0

    def forget_evicted(self, t: TableDef, evicted_seq: int) -> None:
        """After an eviction: its keys and write-time marks up to `evicted_seq` are gone."""
        index = self.index.get(t.tid, {})
        for k in [k for k, st in index.items() if st.seq <= evicted_seq]:
            del index[k]
        marks = self._stream_marks.get(t.tid, [])
        self._stream_marks[t.tid] = [m for m in marks if m[1] > evicted_seq]
