"""Primary-key point lookups, `SELECT cols FROM t WHERE pk = $1`, without a DuckDB query over
the hot ∪ cold view (which scans the hot table's window and decodes a Parquet row group per
lookup).

The newest version wins exactly as in the view: a key with a hot version (the engine's key
index gives its newest `_seq` and whether it is a tombstone) is answered from the LevelDB
batch holding that `_seq` (decoded once, kept in a bounded LRU cache); a tombstone means no
row; a version newer than what readers may see yet (`Engine.visible_seq`) falls back. Any
other key is looked up in the cold tier: each segment file's key column is kept in memory
(zero-copy int64/int32 view, binary search), and the row comes from its row group, decoded
once and kept in a bounded LRU cache.

Deliberately conservative; anything else returns None and the normal query runs: SHARED
tables only (USER tables filter by owner), one integer key column, filesystem storage, no TTL,
a plain column list, a session outside a writing transaction. Base and delta segments are
both read: a key's newest version in a delta segment wins, as in the cold view. A flush or compaction that changes the cold tier
while a lookup runs makes it fall back too (`Engine.cold_epoch`, odd while one is applying).
"""
from __future__ import annotations

import bisect
import functools
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine import metrics
from engine.catalog.tables import Catalog, TableDef
from engine.tiers.cold import ColdTier
from engine.tiers.hot import HotTier
from engine.storage import hot_store
from engine.results import Rows, schema_with_sql_types
from engine.sql.param_types import integer_text

# (table, key) -> (whether this transaction wrote the key, its version or None if deleted)
OwnVersion = Callable[[TableDef, object], tuple[bool, "pa.Table | None"]]

CACHE_BYTES = 128 << 20  # decoded row groups kept for lookups
HOT_CACHE_BYTES = 64 << 20  # decoded hot batches kept for lookups
# Batches group commit just made durable, kept as committed (not decoded yet) so that the next
# UPDATE of a key just written (pgbench's tellers and branches, a counter) reads its version
# without a LevelDB read and an IPC decode: small ones only, the newest few hundred.
RECENT_BATCHES = 512
RECENT_MAX_ROWS = 64
KEY_CACHE_BYTES = 128 << 20  # segment key columns kept for lookups

_IDENT = r'(?:"[^"]+"|[A-Za-z_]\w*)'
_POINT = re.compile(
    rf"^\s*SELECT\s+(?P<cols>\*|{_IDENT}(?:\s*,\s*{_IDENT})*)\s+FROM\s+(?:(?P<ns>{_IDENT})\s*\.\s*)?"
    rf"(?P<table>{_IDENT})\s+WHERE\s+(?P<col>{_IDENT})\s*=\s*(?P<val>\$1|-?\d+)\s*;?\s*$", re.I | re.S)


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith('"') else name.lower()


@dataclass(frozen=True)
class PointQuery:
    namespace: str | None
    table: str
    columns: tuple[str, ...] | None  # None: *
    key_column: str
    literal: int | None  # None: the key is parameter $1


@functools.lru_cache(maxsize=512)
def match(sql: str) -> PointQuery | None:
    """The point-lookup shape of `sql`, or None (cached by text, like prepared statements)."""
    m = _POINT.match(sql)
    if not m:
        return None
    cols = None if m.group("cols") == "*" else tuple(_unquote(c.strip()) for c in m.group("cols").split(","))
    val = m.group("val")
    return PointQuery(_unquote(m.group("ns")) if m.group("ns") else None, _unquote(m.group("table")), cols,
                      _unquote(m.group("col")), None if val == "$1" else int(val))


class _SegmentKeys:
    """One segment file's keys, sorted, with the row each came from and row group bounds."""

    def __init__(self, path: str):
        self.file = pq.ParquetFile(path)
        meta = self.file.metadata
        self.starts = []
        total = 0
        for i in range(meta.num_row_groups):
            self.starts.append(total)
            total += meta.row_group(i).num_rows
        self.path = path

    def load(self, column: str) -> "_SegmentKeys":
        keys = self.file.read(columns=[column]).column(0).combine_chunks()
        if keys.null_count or not (pa.types.is_int64(keys.type) or pa.types.is_int32(keys.type)):
            raise TypeError("not a non-null int32/int64 key column")
        code = "q" if pa.types.is_int64(keys.type) else "i"
        self.order = None
        if len(keys) > 1 and not pc.all(pc.greater_equal(keys[1:], keys[:-1])).as_py():
            order = pc.sort_indices(keys)
            keys = pc.take(keys, order)
            self.order = _view(order.cast(pa.int64()), "q")
        self.keys = _view(keys, code)
        self.nbytes = keys.nbytes * (2 if self.order is not None else 1)
        return self

    def find_all(self, key: int) -> list[tuple[int, int]]:
        """(row group, row within it) of every row holding `key` (a delta segment may hold
        several versions of one key)."""
        out = []
        i = bisect.bisect_left(self.keys, key)
        while i < len(self.keys) and self.keys[i] == key:
            row = self.order[i] if self.order is not None else i
            rg = bisect.bisect_right(self.starts, row) - 1
            out.append((rg, row - self.starts[rg]))
            i += 1
        return out


def _view(arr: pa.Array, code: str) -> memoryview:
    """The values of a null-free fixed-width array as a memoryview (no copy)."""
    arr = arr if isinstance(arr, pa.Array) else arr.combine_chunks()
    width = arr.type.bit_width // 8
    buf = arr.buffers()[1]
    return memoryview(buf).cast("B")[arr.offset * width:(arr.offset + len(arr)) * width].cast(code)


class _Columns(dict):
    """A decoded table's columns by name as single Arrays, each made when first read (a
    lookup reads a few; making all of a wide row's costs more than the lookup)."""

    __slots__ = ("_table",)

    def __init__(self, table: pa.Table):
        super().__init__()
        self._table = table

    def __missing__(self, name: str) -> pa.Array:
        col = self._table.column(name)  # KeyError for a name the table lacks
        arr = self[name] = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
        return arr


class _Decoded:
    """A decoded hot batch or cold row group, with its columns by name as single Arrays (a
    value is read as `arrays[name][row].as_py()`, no per-lookup Arrow table)."""

    __slots__ = ("table", "arrays", "nbytes", "_stored_as")

    def __init__(self, table: pa.Table):
        self.table = table.combine_chunks() if any(c.num_chunks > 1 for c in table.columns) else table
        self.arrays = _Columns(self.table)
        self.nbytes = self.table.get_total_buffer_size()  # Table.nbytes walks the buffers in Python
        self._stored_as: dict[int, tuple[pa.Schema, bool]] = {}

    def stored_as(self, names: list[str], schema: pa.Schema) -> bool:
        """Whether the columns `names` hold exactly `schema`'s types (asked once per result
        schema: the answer's Python values are then the ones that schema gives)."""
        hit = self._stored_as.get(id(schema))
        if hit is None or hit[0] is not schema:
            have = dict(zip(self.table.schema.names, self.table.schema.types))
            same = all(n in have and have[n] == f.type for n, f in zip(names, schema))
            hit = self._stored_as[id(schema)] = (schema, same)
        return hit[1]

    def value(self, name: str, row: int):
        return self.arrays[name][row].as_py()

    def row(self, offset: int) -> pa.Table:
        return self.table.slice(offset, 1)


def _plain(dtype: pa.DataType) -> bool:
    """Whether values of `dtype` are plain Python values that give the same Arrow back."""
    return (pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)
            or pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_decimal(dtype)
            or pa.types.is_date32(dtype) or pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype)
            or (pa.types.is_timestamp(dtype) and dtype.unit == "us"))


class _Lru:
    """A byte-bounded LRU; values are (object, size)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.items: OrderedDict = OrderedDict()
        self.size = 0

    def get(self, key):
        hit = self.items.get(key)
        if hit is None:
            return None
        self.items.move_to_end(key)
        return hit[0]

    def put(self, key, value, size: int) -> None:
        if key in self.items:
            return
        self.items[key] = (value, size)
        self.size += size
        while self.size > self.capacity and len(self.items) > 1:
            _, (_, s) = self.items.popitem(last=False)
            self.size -= s


_INTEGER_RANGES = {"SMALLINT": 2**15, "INTEGER": 2**31, "BIGINT": 2**63}


def _integer_text(text: str, t: TableDef) -> int | None:
    """The key an untyped text parameter names when the key column is an integer, as Postgres
    reads it; None (the general path, with its error) for anything else or out of range."""
    bound = _INTEGER_RANGES.get(next((c.type for c in t.columns if c.name == t.primary_key[0]), ""))
    key = None if bound is None else integer_text(text)
    return key if key is not None and -bound <= key < bound else None


class PointLookups:
    """Per-engine caches of segment keys and decoded row groups (files are immutable, so a
    path names the same content forever)."""

    def __init__(self, catalog: Catalog, hot: HotTier, cold: ColdTier, visible_schema: Callable[[TableDef], pa.Schema]):
        self._catalog = catalog
        self._hot_tier = hot
        self._cold_tier = cold
        self._visible_schema = visible_schema
        self._lock = threading.Lock()
        self._keys = _Lru(KEY_CACHE_BYTES)
        self._groups = _Lru(CACHE_BYTES)
        self._batches = _Lru(HOT_CACHE_BYTES)
        self._recent: OrderedDict[bytes, pa.Table] = OrderedDict()
        hot.on_publish(self._committed)
        self._shapes: dict[tuple, tuple[pa.Schema, tuple[list[str], pa.Schema, bool]]] = {}

    def run(self, q: PointQuery, params: list, default_namespace: str,
            own: OwnVersion | None = None) -> Rows | pa.Table | None:
        """The query's answer (as Python values when its columns are plain, else Arrow), or
        None when the normal query path must run (which then gives the answer, or the error,
        the normal way). `own`: a writing transaction's own version of a key, which wins over
        every committed one."""
        try:
            return self._run(q, params, default_namespace, own)
        except (_Fallback, OSError, LookupError, pa.ArrowException, TypeError, ValueError):
            return None

    def _run(self, q: PointQuery, params: list, default_namespace: str,
             own: OwnVersion | None) -> Rows | pa.Table | None:
        hot, cold = self._hot_tier, self._cold_tier
        t = self._catalog.find(q.namespace or default_namespace, q.table)
        if t is None or t.table_type.upper() != "SHARED" or t.ttl_seconds or len(t.primary_key) != 1 \
                or t.primary_key[0] != q.key_column or t.tid in cold.unavailable:
            return None
        key = q.literal if q.literal is not None else (params[0] if len(params) == 1 else None)
        if type(key) is str:  # an untyped text parameter (pgbench -M prepared sends its keys so)
            key = _integer_text(key, t)
        if type(key) is not int:
            return None
        schema = self._visible_schema(t)
        shape = self._shape(t, schema, q.columns)
        if shape is None:
            return None
        names, out_schema, plain = shape
        epoch = cold.epoch
        if epoch % 2:
            return None
        found: tuple[_Decoded, int] | None = None
        mine, row = own(t, key) if own is not None else (False, None)
        if not mine:
            state = hot.index.get(t.tid, {}).get(key)
            if state is not None:  # the newest version is hot
                seq, deleted = state.seq, state.deleted
                if seq > hot.visible_seq:
                    return None  # committed but not visible yet: the view decides
                found = None if deleted else self._hot_locate(t, key, seq)
            else:
                found = self._cold_locate(t, key)
        if cold.epoch != epoch:
            return None
        if found is not None:
            decoded, offset = found
            if plain and decoded.stored_as(names, out_schema):
                arrays = decoded.arrays
                try:
                    return Rows(out_schema, [tuple([arrays[n][offset].as_py() for n in names])])
                except OverflowError:  # 'infinity' dates and timestamps have no Python value
                    pass
            row = decoded.row(offset)
        if row is None:
            return Rows(out_schema, [])
        row = row.select(names)
        if all(a.type == f.type for a, f in zip(row.columns, out_schema)):  # the usual case:
            return pa.Table.from_arrays(row.columns, schema=out_schema)    # no cast per column
        return row.cast(out_schema)

    def hot_row(self, t: TableDef, key, seq: int) -> pa.Table | None:
        """Durable hot version `seq` of `key` (one row, with _seq/_deleted), or None if its batch
        is not where the key index says (flushed meanwhile): the caller takes its general path."""
        try:
            return self._hot(t, key, seq)
        except (_Fallback, OSError, pa.ArrowException):
            return None

    def cold_row(self, t: TableDef, key) -> tuple[bool, pa.Table | None]:
        """(found out, the row or None) for a key with no hot version: found out is False when
        the cold tier is not one this path reads (see the module docstring)."""
        cold = self._cold_tier
        if type(key) is not int or t.tid in cold.unavailable or t.table_type.upper() != "SHARED" \
                or len(t.primary_key) != 1:
            return False, None
        epoch = cold.epoch
        if epoch % 2:
            return False, None
        try:
            row = self._cold(t, key)
        except (_Fallback, OSError, pa.ArrowException, TypeError, ValueError, KeyError, IndexError):
            return False, None
        return cold.epoch == epoch, row

    def _shape(self, t, schema: pa.Schema, columns: tuple[str, ...] | None
               ) -> tuple[list[str], pa.Schema, bool] | None:
        """The column names, the result schema (uuid/json keep their SQL type, as in _query)
        and whether its values answer as Python values (Rows), per table schema and column
        list (building them cost ~70 µs a lookup); None if a column is not the table's."""
        key = (t.tid, columns)  # the schema object is per table id and schema version (EngineCore)
        hit = self._shapes.get(key)
        if hit is not None and hit[0] is schema:
            return hit[1]
        names = list(columns) if columns is not None else list(schema.names)
        if any(n not in schema.names for n in names) or any("INTERVAL" in c.type.upper() for c in t.columns):
            return None  # an interval is stored encoded (engine/storage/segments.py): the view decodes it
        by_name = {c.name: c.type for c in t.columns}
        out = schema_with_sql_types(pa.schema([schema.field(n) for n in names]), [by_name[n] for n in names])
        plain = all(_plain(f.type) and not f.metadata for f in out)
        if len(self._shapes) > 1024:
            self._shapes.clear()
        self._shapes[key] = (schema, (names, out, plain))
        return names, out, plain

    def _hot(self, t: TableDef, key: int, seq: int) -> pa.Table:
        """The hot version `seq` of `key` (one row), from the LevelDB batch that holds it."""
        decoded, offset = self._hot_locate(t, key, seq)
        return decoded.row(offset)

    def _committed(self, batches) -> None:
        """Group commit's durable batches [(table id, first seq, rows)]: the small ones are
        what LevelDB now holds under their keys (a flush deleting them later leaves the
        lookup's checks failing, as for a decoded batch)."""
        with self._lock:
            for tid, first, rows in batches:
                if rows.num_rows <= RECENT_MAX_ROWS:
                    self._recent[hot_store.batch_key(tid, first)] = rows
            while len(self._recent) > RECENT_BATCHES:
                self._recent.popitem(last=False)

    def _hot_locate(self, t: TableDef, key: int, seq: int) -> tuple[_Decoded, int]:
        """The decoded LevelDB batch holding hot version `seq` of `key`, and its row there."""
        with self._lock:
            store = self._hot_tier.store
            first = store.batch_first_holding(t.tid, seq)
            if first is None:
                raise _Fallback  # flushed meanwhile
            batch_key = hot_store.batch_key(t.tid, first)
            batch = self._batches.get(batch_key)
            if batch is None:
                raw = self._recent.pop(batch_key, None)
                metrics.inc("tierd_fast_path_total", path="committed_batch", outcome="fallback" if raw is None else "used")
                if raw is None:
                    raw = store.read_batch(batch_key)
                if raw is None:
                    raise _Fallback
                batch = _Decoded(raw)
                self._batches.put(batch_key, batch, batch.nbytes)
        if t.version_at_seq(first) != t.schema_version:
            raise _Fallback  # written before an ALTER TABLE: the view maps its columns
        offset = seq - first
        if not 0 <= offset < batch.table.num_rows or batch.value("_seq", offset) != seq or \
                batch.value(t.primary_key[0], offset) != key:
            raise _Fallback
        return batch, offset

    def _cold(self, t: TableDef, key: int) -> pa.Table | None:
        """The key's live cold version (one row), or None."""
        found = self._cold_locate(t, key)
        return None if found is None else found[0].row(found[1])

    def _cold_locate(self, t: TableDef, key: int) -> tuple[_Decoded, int] | None:
        """Where the key's live cold version is, as the cold view decides it: the newest
        version in a delta segment if any holds the key (None if that one is a tombstone),
        else the one base segment that holds it."""
        storage = self._cold_tier.storage_for(t)
        manifest = (self._cold_tier.manifests.get(t.tid) or {}).get(None)  # a SHARED table's one scope
        if manifest is None or storage.storage_type != "filesystem":
            raise _Fallback
        if any(s.schema_version != t.schema_version for s in manifest.segments):
            raise _Fallback  # written before an ALTER TABLE: the view maps its columns
        if any("INTERVAL" in c.type.upper() for c in t.columns):
            raise _Fallback  # stored encoded in Parquet (engine/storage/segments.py)
        pk = t.primary_key[0]
        scope = t.scope(storage)
        newest: tuple[int, _Decoded, int] | None = None
        for s in manifest.segments:
            if s.kind != "delta":
                continue
            for group, offset in self._rows(storage.reader_path(f"{scope}/{s.path}"), s, pk, key):
                seq = group.value("_seq", offset)
                if newest is None or seq > newest[0]:
                    newest = (seq, group, offset)
        if newest is not None:
            _, group, offset = newest
            return None if group.value("_deleted", offset) else (group, offset)
        for s in manifest.segments:
            if s.kind == "delta":
                continue
            for found in self._rows(storage.reader_path(f"{scope}/{s.path}"), s, pk, key):
                return found
        return None

    def _rows(self, path: str, s, pk: str, key: int) -> Iterator[tuple[_Decoded, int]]:
        """The rows of one segment holding `key` (pruned by the manifest's key range): the
        decoded row group and the row within it."""
        st = s.column_stats.get(pk) or {}
        lo, hi = st.get("min"), st.get("max")
        if isinstance(lo, int) and isinstance(hi, int) and not lo <= key <= hi:
            return
        seg = self._segment(path, pk)
        for rg, offset in seg.find_all(key):
            yield self._group(seg, rg), offset

    def _segment(self, path: str, pk: str) -> _SegmentKeys:
        with self._lock:
            seg = self._keys.get((path, pk))
        if seg is None:
            seg = _SegmentKeys(path).load(pk)
            with self._lock:
                self._keys.put((path, pk), seg, seg.nbytes)
        return seg

    def _group(self, seg: _SegmentKeys, rg: int) -> _Decoded:
        with self._lock:  # one reader of a ParquetFile at a time
            group = self._groups.get((seg.path, rg))
            if group is None:
                group = _Decoded(seg.file.read_row_group(rg))
                self._groups.put((seg.path, rg), group, group.nbytes)
        return group


class _Fallback(Exception):
    """The cold tier of this table is not one the fast path can read."""

