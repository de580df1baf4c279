"""Compaction: rewrite a table scope's segments as few large base segments (each user of a
USER table is its own scope, compacted in its own directory with its own manifest commit).

Superseded versions and deleted rows are dropped, keys stay sorted, the manifest swaps in one
commit, and the replaced files are deleted only after every query that might read them has
finished (engine/storage/reaper.py). The logical content never changes, so queries give the same
answer before, during and after.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from engine.read import views
from engine.storage.manifest import Manifest, Segment, now_iso

if TYPE_CHECKING:
    from engine.catalog.tables import TableDef
    from engine.engine import Engine
    from engine.tiering.jobs import Job


def needs_compaction(manifest: Manifest, max_segments: int) -> bool:
    return len(manifest.segments) > max_segments


def compact_table(engine: "Engine", t: "TableDef", job: "Job | None") -> tuple[str, str, int]:
    """Compact every scope that has something to compact (a USER table: each user's own)."""
    if t.is_stream:
        from engine.errors import FeatureNotSupported

        raise FeatureNotSupported("STORAGE COMPACT TABLE is not supported for STREAM tables")
    todo = [(user, m) for user, m in sorted(engine.manifests[t.tid].items(), key=lambda kv: kv[0] or "")
            if len(m.segments) >= 2 or any(s.kind == "delta" for s in m.segments)]
    if not todo:
        return "skipped", f"Storage compaction skipped: nothing to compact for table '{t.qualified}'", 0
    before = after = rows = 0
    for _, manifest in todo:
        old, new, live = _compact_scope(engine, t, manifest, job)
        before, after, rows = before + old, after + new, rows + live
    scopes = f" in {len(todo)} user scope(s)" if t.is_user else ""
    return "completed", (
        f"Compacted {before} segment(s) of table '{t.qualified}' into {after}{scopes} ({rows} live rows)"
    ), rows


def _compact_scope(engine: "Engine", t: "TableDef", manifest: Manifest, job: "Job | None") -> tuple[int, int, int]:
    fp = engine.failpoints
    storage = engine.storage_for(t)
    scope = t.scope(storage, manifest.user_id)
    target = engine.config.compaction_target_rows
    pk = ", ".join(views.q(c) for c in t.key_columns)
    source = views.all_cold_versions_sql(t, {manifest.user_id: manifest}, storage)
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
    return len(old), len(segments), sum(s.row_count for s in segments)


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
