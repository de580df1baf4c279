"""A large COPY FROM streamed into Parquet segments instead of the hot tier.

Once an autocommit COPY has read `[copy] segment_threshold_rows` rows (131,072 by default),
its typed rows go to segments of `[copy] segment_rows` rows each (1,048,576: 32 row groups) (engine/tiering/bulk_load.py), committed with one manifest version
when the input ends: memory holds one segment's rows, not the COPY's, no row is written to
LevelDB and no key index entry is made (the rows are cold at once). Readers see all of the
COPY or none of it; other writers go on meanwhile: the write lock is taken only for a moment
per segment (to hand out `_seq`s and row ids) and for the commit.

Primary keys are checked as the hot path checks them, vectorised in DuckDB and pyarrow, one
segment at a time: within the segment, against the COPY's earlier segments (when key ranges
overlap), against the hot tier and against the cold tier. A key the cold tier holds only as
deleted goes to a "delta" segment (its newest version wins over the tombstone), the others
to a "base" segment. At the commit, under the write lock, what others wrote since the COPY
began (hot rows, segments of a flush) is checked again.

A key whose newest hot version is a tombstone would hide the COPY's cold row (hot versions
always shadow cold ones), so such a COPY falls back to the hot path: its segments are read
back and written as hot rows (`FallBack`). That is rare (re-loading keys deleted since the
last flush) and costs memory in proportion to the COPY, as every COPY did before.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.catalog.tables import ROWID, TableDef
from engine.errors import EngineError, QueryCanceled, UndefinedTable
from engine.session.keys import unique_violation
from engine.session.state import SessionState
from engine.session.transactions import begin_write
from engine.session.writes import with_rowids
from engine.sql.copy_input import with_context
from engine.storage.segments import INTERVAL_STORED, key_bounds, may_overlap
from engine.tiering.bulk_load import BulkLoad
from engine.tiers import views
from engine.tiers.hot import key_list

STREAM_BYTES = 64 << 20  # a COPY of fewer but wide rows streams once its typed rows are this large
SEGMENT_BYTES = 256 << 20  # a segment has fewer rows than `[copy] segment_rows` if its typed rows reach this size


def duplicate_at(t: TableDef, key, line: int) -> EngineError:
    """23505 as Postgres words it for COPY: the key, and the input line that repeats it."""
    return with_context(unique_violation(t, key), f"COPY {t.name}, line {line}")


class FallBack(Exception):
    """The COPY must go to the hot tier after all (a key with a deleted hot version)."""


def stream_threshold(s: SessionState) -> int:
    """Rows a COPY reads before it goes on into segments (`[copy] segment_threshold_rows`)."""
    return s.engine.config.copy_segment_threshold_rows


def streamable(s: SessionState, t: TableDef) -> bool:
    """Whether a COPY into `t` may stream into segments: an autocommit COPY (it commits
    alone, at its end), not a STREAM table (hot only), its cold tier readable."""
    tx = s.tx
    return not (t.is_stream or tx.explicit or tx.segment or tx.holds_lock or t.tid in s.engine.cold.unavailable)


class SegmentCopy:
    """One COPY FROM's rows on their way into segments."""

    def __init__(self, s: SessionState, t: TableDef):
        self._s = s
        self._t = t
        eng = s.engine
        self._load = BulkLoad(eng.cold, eng.failpoints, t, s.user if t.is_user else None)
        self._since = eng.hot.visible_seq  # hot rows newer than this are checked again at commit
        # Typed rows not written yet, and the input line of the first (lines are consecutive).
        self._pending: list[pa.Table] = []
        self._first_line = 1
        self._pending_rows = self._pending_bytes = 0
        self._bounds: list[tuple | None] = []  # key range of each chunk written (one-column keys)
        self._keyed = bool(t.primary_key)
        # Parquet encoding (zstd) of one segment runs while the next one is read and typed;
        # both release the GIL. At most one write is in flight.
        self._writer: ThreadPoolExecutor | None = None
        self._writing: Future | None = None

    def _submit(self, parts: list[tuple[pa.Table, str]]) -> None:
        self._drain()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-segments")
        self._writing = self._writer.submit(lambda: [self._load.write(rows, kind) for rows, kind in parts])

    def _drain(self) -> None:
        """Wait for the segment being written (its error, if any, is raised here)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _close(self) -> None:
        try:
            self._drain()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None

    # ------------------------------------------------------------------ streaming
    def add(self, rows: pa.Table, first_line: int) -> None:
        """Typed rows of the input (a USER table's owner included), in input order."""
        if not self._pending:
            self._first_line = first_line
        self._pending.append(rows)
        self._pending_rows += rows.num_rows
        self._pending_bytes += rows.nbytes
        limit = self._s.engine.config.copy_segment_rows
        while self._pending_rows >= limit or self._pending_bytes >= SEGMENT_BYTES:
            self._write(limit)

    def _write(self, limit: int | None = None) -> None:
        """The pending rows (the first `limit` of them) into a segment, after their key checks."""
        if not self._pending_rows:
            return
        t, s = self._t, self._s
        rows = pa.concat_tables(self._pending)
        rest = None
        if limit is not None and rows.num_rows > limit:
            rows, rest = rows.slice(0, limit), rows.slice(limit)
        in_cold = None
        if self._keyed:
            probe = self._probe(rows)
            self._check_within(rows, probe)
            self._check_earlier(rows, probe)
            self._check_hot(rows, probe)
            in_cold = self._check_cold(rows, probe)
        hot = s.engine.hot
        n = rows.num_rows
        with hot.locked(f'a COPY of role "{s.user}"'):  # a moment: numbers for the rows
            rows = with_rowids(s, t, rows)
            first = hot.allocate(n)
        rows = rows.append_column("_seq", pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n), start=first - 1))
        rows = rows.append_column("_deleted", pa.repeat(pa.scalar(False, pa.bool_()), n))
        if in_cold is None:
            self._submit([(rows, "base")])
        else:
            base = rows.filter(pc.invert(in_cold))
            self._submit(([(base, "base")] if base.num_rows else []) + [(rows.filter(in_cold), "delta")])
        self._bounds.append(key_bounds(t.row_key, rows) if self._keyed else None)
        if rest is None:
            self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        else:
            self._pending, self._pending_rows, self._pending_bytes = [rest], rest.num_rows, rest.nbytes
            self._first_line += n

    def _line(self, i: int) -> int:
        """The input line of row `i` of the pending rows."""
        return self._first_line + i

    def _probe(self, rows: pa.Table) -> pa.Table:
        """The rows' keys and their positions (`__i`), for DuckDB joins."""
        cols = {c: rows.column(c) for c in self._t.key_columns}
        cols["__i"] = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), rows.num_rows), start=-1)
        return pa.table(cols)

    def _first(self, sql: str, probe: pa.Table) -> int | None:
        """The smallest `__i` the query (over `__copy_probe`) returns, or None."""
        cur = self._s.check_cur
        cur.register("__copy_probe", probe)
        try:
            got = cur.execute(f"SELECT min(__i) FROM ({sql})").fetchone()[0]
        finally:
            cur.unregister("__copy_probe")
        return got

    def _using(self) -> str:
        return ", ".join(views.q(c) for c in self._t.key_columns)

    def _duplicate(self, rows: pa.Table, i: int):
        raise duplicate_at(self._t, key_list(self._t, rows.slice(i, 1))[0], self._line(i))

    def _check_within(self, rows: pa.Table, probe: pa.Table) -> None:
        keys = self._t.key_columns
        if len(keys) == 1:
            col = probe.column(0).combine_chunks()
            try:  # keys in ascending order (a load in key order) cannot repeat: no hashing
                if len(col) < 2 or pc.all(pc.greater(col.slice(1), col.slice(0, len(col) - 1))).as_py():
                    return
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                pass
            distinct = len(pc.unique(col))
        else:
            distinct = probe.select(keys).group_by(keys).aggregate([]).num_rows
        if distinct != rows.num_rows:
            pk = self._using()
            i = self._first(f"SELECT __i FROM __copy_probe QUALIFY row_number() OVER "
                            f"(PARTITION BY {pk} ORDER BY __i) > 1", probe)
            self._duplicate(rows, i)

    def _check_earlier(self, rows: pa.Table, probe: pa.Table) -> None:
        """Keys this COPY already wrote to a segment (only where key ranges overlap)."""
        if not self._bounds:
            return
        bounds = key_bounds(self._t.row_key, rows)
        if bounds is not None and None not in self._bounds:
            lo, hi = bounds
            try:
                if all(hi < b[0] or lo > b[1] for b in self._bounds):
                    return
            except TypeError:
                pass
        self._drain()
        files = "[" + ", ".join(views.sql_str(f) for f in self._load.files()) + "]"
        i = self._first(f"SELECT __i FROM __copy_probe SEMI JOIN "
                        f"(SELECT {self._using()} FROM read_parquet({files})) USING ({self._using()})", probe)
        if i is not None:
            self._duplicate(rows, i)

    def _check_hot(self, rows: pa.Table, probe: pa.Table) -> None:
        """Keys with a hot version: a live one is a duplicate; a deleted one needs the hot path."""
        s, t = self._s, self._t
        if not s.engine.hot.index.get(t.tid):
            return
        s.engine.hot.materialize()
        pk = self._using()
        newest = (f"SELECT {pk}, _deleted FROM (SELECT * FROM {views.hot_table(t)} SEMI JOIN __copy_probe "
                  f"USING ({pk})) QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1")
        i = self._first(f"SELECT p.__i FROM __copy_probe p JOIN ({newest}) h USING ({pk}) WHERE NOT h._deleted",
                        probe)
        if i is not None:
            self._duplicate(rows, i)
        if self._first(f"SELECT p.__i FROM __copy_probe p SEMI JOIN ({newest}) h USING ({pk})", probe) is not None:
            raise FallBack()

    def _check_cold(self, rows: pa.Table, probe: pa.Table) -> pa.Array | None:
        """A live cold key is a duplicate; returns which rows' keys cold holds as deleted (they
        go to a delta segment), or None when it holds none."""
        s, t = self._s, self._t
        cold = s.engine.cold
        scopes = cold.manifests.get(t.tid, {})
        segments = [seg for m in scopes.values() for seg in m.segments]
        if not segments or not may_overlap(t.row_key, segments, key_bounds(t.row_key, rows)):
            return None
        pk = self._using()
        i = self._first(f"SELECT __i FROM __copy_probe SEMI JOIN {views.cold_view(t)} USING ({pk})", probe)
        if i is not None:
            self._duplicate(rows, i)
        every = views.all_cold_versions_sql(t, scopes, cold.storage_for(t))
        cur = s.check_cur
        cur.register("__copy_probe", probe)
        try:
            hits = cur.execute(f"SELECT __i FROM __copy_probe SEMI JOIN ({every}) USING ({pk})").to_arrow_table()
        finally:
            cur.unregister("__copy_probe")
        if not hits.num_rows:
            return None
        return pc.is_in(probe.column("__i"), value_set=hits.column(0))

    # ------------------------------------------------------------------ commit
    def finish(self) -> int:
        """The last segment, then the commit (one manifest version); returns the rows loaded.
        Raises FallBack (holding the write lock) when a concurrent write makes the hot path
        necessary after all."""
        self._write()
        self._close()
        s, t = self._s, self._t
        eng = s.engine

        def cancelled() -> None:
            if s.cancel_requested:
                raise QueryCanceled("canceling statement due to user request")

        with eng.cold.editing(t, cancelled):  # no flush or compaction of t commits meanwhile
            begin_write(s)
            eng.hot.settle()
            if eng.catalog.by_tid(t.tid) is None:
                raise UndefinedTable(f'relation "{t.qualified}" does not exist')
            if self._keyed and self._load.segments:
                self._recheck()
            eng.hot.store.persist_seq(eng.hot.seq)  # a restart never hands out the rows' _seqs again
            self._load.commit()
        try:
            eng.tiering.after_load(t)
        except EngineError:  # the COPY has committed; a compaction that cannot start now waits
            pass
        return self._load.rows

    def _recheck(self) -> None:
        """Under the write lock: keys others wrote while this COPY read its input."""
        s, t = self._s, self._t
        pk = self._using()
        files = "[" + ", ".join(views.sql_str(f) for f in self._load.files()) + "]"
        ours = f"(SELECT {pk} FROM read_parquet({files}))"
        cur = s.check_cur
        hot = views.hot_table(t)
        if cur.execute(f"SELECT count(*) FROM {hot} WHERE _seq > {self._since}").fetchone()[0]:
            newest = cur.execute(
                f"SELECT * FROM (SELECT {pk}, _deleted FROM (SELECT * FROM {hot} WHERE _seq > {self._since}) h "
                f"SEMI JOIN {ours} c USING ({pk}) QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1) "
                f"ORDER BY _deleted LIMIT 1").to_arrow_table()
            if newest.num_rows:
                if not newest.column("_deleted")[0].as_py():
                    raise unique_violation(t, key_list(t, newest)[0])
                raise FallBack()
        added = self._load.added_since_start()
        if added:
            lst = "[" + ", ".join(views.sql_str(f) for f in added) + "]"
            hit = cur.execute(f"SELECT {pk} FROM read_parquet({lst}) SEMI JOIN {ours} c USING ({pk}) LIMIT 1"
                              ).to_arrow_table()
            if hit.num_rows:
                live = cur.execute(f"SELECT {pk} FROM {views.cold_view(t)} SEMI JOIN {ours} c USING ({pk}) LIMIT 1"
                                   ).to_arrow_table()
                if live.num_rows:
                    raise unique_violation(t, key_list(t, live)[0])
                raise FallBack()

    def give_back(self) -> list[tuple[pa.Table, int]]:
        """For the hot path after a FallBack: every row so far (segments read back, then the
        pending rows) as (rows, first input line), the segment files removed."""
        self._close()
        out = []
        for path in self._load.files():
            rows = pq.read_table(path).drop_columns(["_seq", "_deleted"])
            out.append((_decoded(rows), 1))
        self._load.abort()
        if self._pending:
            out.append((pa.concat_tables(self._pending), self._first_line))
        self._pending = []
        return out

    def abort(self) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 - the statement's own error is the one to report
            pass
        self._load.abort()


def _decoded(rows: pa.Table) -> pa.Table:
    """Rows read back from a segment with INTERVAL columns as the hot tier holds them (Parquet
    stores them as a struct, engine/storage/segments.py `storable`). Only on the fallback."""
    for i, f in enumerate(rows.schema):
        if f.type == INTERVAL_STORED:
            values = [None if v is None else (v["months"], v["days"], v["nanos"])
                      for v in rows.column(i).to_pylist()]
            rows = rows.set_column(i, f.name, pa.array(values, pa.month_day_nano_interval()))
    return rows
