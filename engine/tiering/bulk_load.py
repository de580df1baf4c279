"""A bulk load: one large COPY's rows written straight into Parquet segments of a table scope
and committed with one manifest version, all or nothing.

The segments are written while the COPY reads its input (named `batch-load-<token>-<n>`, so
they never collide with a flush's or a compaction's files, whose ids are only taken at
commit); nothing lists them until the commit, so readers never see part of a COPY. The
commit runs inside `ColdTier.editing` (no flush or compaction of the table is between its
manifest read and its commit) and under the write lock: a `LoadEdit` adds the segments
without moving the flush watermark (the rows never were hot), then the cold view is swapped.

Failpoints: `copy.before_parquet` / `copy.after_parquet` around each file, then
`copy.before_manifest` / `copy.after_manifest` around the commit point. A failure before
the commit deletes the files written; a crash leaves them as orphans, which the start-up
sweep removes (`ColdTier.load`: segment files no manifest lists).
"""
from __future__ import annotations

import dataclasses
import logging
import uuid

import pyarrow as pa

from engine.catalog.tables import TableDef
from engine.failpoints import Failpoints
from engine.storage.manifest import LoadEdit, Manifest, Segment
from engine.storage.segments import load_segment_path, write_segment
from engine.tiers.cold import ColdTier

log = logging.getLogger("tierd.bulk_load")


class BulkLoad:
    def __init__(self, cold: ColdTier, failpoints: Failpoints, t: TableDef, user: str | None):
        self._cold = cold
        self._fp = failpoints
        self.t = t
        self.user = user
        self.storage = cold.storage_for(t)
        self.scope = t.scope(self.storage, user)
        self._token = uuid.uuid4().hex[:12]
        self.segments: list[Segment] = []
        self.committed = False
        # The scope's segments when the load began: what its key checks have seen.
        self._seen = {s.path for s in cold.scope_manifest(t, user).segments}

    @property
    def rows(self) -> int:
        return sum(s.row_count for s in self.segments)

    def write(self, rows: pa.Table, kind: str) -> Segment:
        """One more segment (`kind`: "base" for keys cold never held, "delta" otherwise)."""
        if not self.segments:
            self._cold.register_scope(self.t, self.user)  # before its first file: recovery looks there
        n = len(self.segments)
        seg = write_segment(self.storage, self.scope, n, rows, self.t.stats_columns, kind, self._fp, "copy",
                            schema_version=self.t.schema_version, field_ids=self.t.field_ids(),
                            path=load_segment_path(self._token, n))
        self.segments.append(seg)
        return seg

    def files(self) -> list[str]:
        """Reader paths of the segments written so far (for DuckDB's read_parquet)."""
        return [self.storage.reader_path(f"{self.scope}/{s.path}") for s in self.segments]

    def added_since_start(self) -> list[str]:
        """Reader paths of the scope's committed segments the load's key checks did not see
        (a flush or compaction that committed meanwhile; their keys are checked again)."""
        current = self._cold.scope_manifest(self.t, self.user).segments
        return [self.storage.reader_path(f"{self.scope}/{s.path}") for s in current if s.path not in self._seen]

    def commit(self) -> Manifest:
        """The commit point, under the write lock inside `ColdTier.editing(t)`: one manifest
        version listing every segment of the load, then the table's cold view swapped."""
        manifest = self._cold.scope_manifest(self.t, self.user)
        added = [dataclasses.replace(s, id=manifest.next_segment_id + i) for i, s in enumerate(self.segments)]
        new = manifest.apply(LoadEdit(added))
        self._fp.hit("copy.before_manifest")
        self._cold.commit(self.t, self.storage, new)
        self.committed = True
        try:
            self._fp.hit("copy.after_manifest")
        finally:  # the manifest is the commit point: from here the load takes effect
            self._cold.swap(self.t, new)
        return new

    def abort(self) -> None:
        """After a failure before the commit: the load's files go (best effort: a file left
        behind is an orphan the next start-up removes)."""
        if self.committed:
            return
        for seg in self.segments:
            try:
                self.storage.delete(f"{self.scope}/{seg.path}")
            except Exception as exc:  # noqa: BLE001 - the start-up sweep removes it
                log.warning("could not remove %s/%s of a failed COPY: %s", self.scope, seg.path, exc)
        self.segments = []
