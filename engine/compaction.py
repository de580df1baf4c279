"""Compaction: rewrite a table scope's segments as few large base segments.

Superseded versions and deleted rows are dropped, keys stay sorted, the manifest swaps in one
commit, and the replaced files are deleted only after every query that might read them has
finished (engine/reaper.py). The logical content never changes, so queries give the same
answer before, during and after.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from engine import read_path
from engine.manifest import Manifest, Segment, now_iso

if TYPE_CHECKING:
    from engine.catalog import TableDef
    from engine.engine import Engine
    from engine.jobs import Job


def needs_compaction(manifest: Manifest, max_segments: int) -> bool:
    return len(manifest.segments) > max_segments


def compact_table(engine: "Engine", t: "TableDef", job: "Job | None") -> tuple[str, str, int]:
    fp = engine.failpoints
    manifest = engine.manifests[t.tid]
    has_delta = any(s.kind == "delta" for s in manifest.segments)
    if len(manifest.segments) < 2 and not has_delta:
        return "skipped", f"Storage compaction skipped: nothing to compact for table '{t.qualified}'", 0
    storage = engine.storage_for(t)
    scope = t.scope(storage)
    target = engine.config.compaction_target_rows
    pk = ", ".join(read_path.q(c) for c in t.primary_key)
    source = read_path.all_cold_versions_sql(t, manifest, storage)
    fp.hit("compact.start")
    cur = engine.db.cursor()
    segments: list[Segment] = []
    try:
        with engine.reaper.reading():
            reader = cur.execute(
                f"SELECT * FROM ({source}) "
                f"QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY _seq DESC) = 1 AND NOT _deleted "
                f"ORDER BY {pk}"
            ).to_arrow_reader(64 * 1024)
            pending: list[pa.RecordBatch] = []
            count = 0
            for batch in reader:
                pending.append(batch)
                count += batch.num_rows
                if count >= target:
                    segments.append(_write(engine, t, storage, scope, manifest, segments, pending, job))
                    pending, count = [], 0
            if count:
                segments.append(_write(engine, t, storage, scope, manifest, segments, pending, job))
    finally:
        cur.close()
    if job is not None:
        job.check_cancel()
    old = list(manifest.segments)
    new_manifest = manifest.replace_segments(segments)
    fp.hit("compact.before_manifest")
    engine.commit_manifest(t, storage, new_manifest)
    try:
        fp.hit("compact.after_manifest")
    finally:
        engine.apply_compaction(t, new_manifest, storage)
        for seg in old:
            rel = f"{scope}/{seg.path}"
            engine.reaper.retire(lambda rel=rel: storage.delete(rel), rel)
    rows = sum(s.row_count for s in segments)
    return "completed", (
        f"Compacted {len(old)} segment(s) of table '{t.qualified}' into {len(segments)} ({rows} live rows)"
    ), rows


def _write(engine, t, storage, scope, manifest: Manifest, done: list[Segment], batches, job) -> Segment:
    from engine.engine import column_stats, segment_bytes

    if job is not None:
        job.check_cancel()
    rows = pa.Table.from_batches(batches)
    seg_id = manifest.next_segment_id + len(done)
    path = f"batch-{seg_id}.parquet"
    data = segment_bytes(rows)
    engine.failpoints.hit("compact.before_parquet")
    size = storage.write_atomic(f"{scope}/{path}", data)
    engine.failpoints.hit("compact.after_parquet")
    return Segment(
        id=seg_id, path=path,
        min_seq=pc.min(rows.column("_seq")).as_py(), max_seq=pc.max(rows.column("_seq")).as_py(),
        row_count=rows.num_rows, size_bytes=size, created_at=now_iso(), kind="base",
        column_stats=column_stats(rows, t),
    )
