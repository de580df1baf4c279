"""How to compact: rewrite a table scope's segments as few large base segments (each user of a
USER table is its own scope, compacted in its own directory with its own manifest commit).

Superseded versions and deleted rows are dropped, keys stay sorted, the manifest swaps in one
commit, and the replaced files are deleted only after every query that might read them has
finished (engine/storage/reaper.py). The logical content never changes, so queries give the
same answer before, during and after.
"""
from __future__ import annotations

from typing import Callable

import duckdb
import pyarrow as pa

from engine.catalog.tables import TableDef
from engine.tiers.cold import ColdTier
from engine.errors import FeatureNotSupported
from engine.failpoints import Failpoints
from engine.tiers.hot import HotTier
from engine.tiers import views
from engine.storage.manifest import CompactionEdit, Manifest, Segment
from engine.storage.reaper import FileReaper
from engine.storage.segments import write_segment
from engine.tiering.compaction.picker import worth_compacting
from engine.tiering.jobs import Job, Untracked

STREAM_COMPACT_REFUSED = "STORAGE COMPACT TABLE is not supported for STREAM tables"


class Compactor:
    def __init__(self, hot: HotTier, cold: ColdTier, db: duckdb.DuckDBPyConnection, failpoints: Failpoints,
                 reaper: FileReaper, target_rows: Callable[[], int]):
        self._hot = hot
        self._cold = cold
        self._db = db
        self._fp = failpoints
        self._reaper = reaper
        self._target_rows = target_rows  # rows per compacted segment (a live setting)

    def compact_table(self, t: TableDef, job: Job | None) -> tuple[str, str, int]:
        """Compact every scope that has something to compact (a USER table: each user's own)."""
        if t.is_stream:
            raise FeatureNotSupported(STREAM_COMPACT_REFUSED)
        todo = [m for _, m in sorted(self._cold.manifests[t.tid].items(), key=lambda kv: kv[0] or "")
                if worth_compacting(m, t.schema_version)]
        if not todo:
            return "skipped", f"Storage compaction skipped: nothing to compact for table '{t.qualified}'", 0
        before = after = rows = 0
        for manifest in todo:
            old, new, live = self._compact_scope(t, manifest, job)
            before, after, rows = before + old, after + new, rows + live
        scopes = f" in {len(todo)} user scope(s)" if t.is_user else ""
        return "completed", (
            f"Compacted {before} segment(s) of table '{t.qualified}' into {after}{scopes} ({rows} live rows)"
        ), rows

    def _compact_scope(self, t: TableDef, manifest: Manifest, job: Job | None) -> tuple[int, int, int]:
        storage = self._cold.storage_for(t)
        scope = t.scope(storage, manifest.user_id)
        target = self._target_rows()
        check = job.check_cancel if job is not None else (lambda: None)
        report = job if job is not None else Untracked()
        report.progress("rewriting segments", rows_done=0, rows_total=manifest.row_count, bytes_done=0,
                        bytes_total=manifest.size_bytes)
        pk = ", ".join(views.q(c) for c in t.key_columns)
        source = views.all_cold_versions_sql(t, {manifest.user_id: manifest}, storage)
        self._fp.hit("compact.start")
        cur = self._db.cursor()
        segments: list[Segment] = []

        def write(batches: list[pa.RecordBatch]) -> None:
            segments.append(write_segment(storage, scope, manifest.next_segment_id + len(segments),
                                          pa.Table.from_batches(batches), t.stats_columns, "base",
                                          self._fp, "compact", check, schema_version=t.schema_version,
                                          field_ids=t.field_ids()))
            report.advance("rewriting segments", segments[-1].row_count, segments[-1].size_bytes)
        try:
            with self._reaper.reading():
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
                        write(pending)
                        pending, count = [], 0
                if count:
                    write(pending)
        finally:
            cur.close()
        check()
        old = list(manifest.segments)
        new_manifest = manifest.apply(CompactionEdit(segments))
        report.progress("committing manifest")
        self._fp.hit("compact.before_manifest")
        self._cold.commit(t, storage, new_manifest)
        try:
            self._fp.hit("compact.after_manifest")
        finally:
            with self._hot.locked(f"a compaction of table {t.qualified}"):
                self._cold.swap(t, new_manifest)
            for seg in old:
                rel = f"{scope}/{seg.path}"
                self._reaper.retire(lambda rel=rel: storage.delete(rel), rel)
        return len(old), len(segments), sum(s.row_count for s in segments)
