"""A table scope's manifest: the list of live Parquet segments, committed atomically.

The manifest is the commit point of a flush: segments exist for readers only once a
manifest version lists them. `flushed_seq` is the flush watermark of this scope: every hot
row of the scope with `_seq <= flushed_seq` is in its Parquet, so recovery knows which hot
rows were already moved. A USER table has one manifest per user (`user_id`), each with its
own watermark, so a crash between two users' manifest commits loses and duplicates nothing:
the committed user's rows leave hot at recovery, the other's stay hot for the retry.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from engine.storage.backend import Storage

MANIFEST = "manifest.json"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class Segment:
    id: int
    path: str  # relative to the manifest's directory
    min_seq: int
    max_seq: int
    row_count: int
    size_bytes: int
    created_at: str
    schema_version: int = 1
    status: str = "active"
    # "base": each key's first version, keys unique across base segments.
    # "delta": later versions and tombstones of keys already in cold.
    kind: str = "base"
    column_stats: dict = field(default_factory=dict)


@dataclass
class Manifest:
    table_id: str
    table_uid: str | None = None
    user_id: str | None = None
    version: int = 0
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    flushed_seq: int = 0
    next_segment_id: int = 0
    segments: list[Segment] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, default=str).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Manifest":
        raw = json.loads(data)
        raw["segments"] = [Segment(**s) for s in raw.get("segments", [])]
        return cls(**raw)

    @property
    def row_count(self) -> int:
        return sum(s.row_count for s in self.segments)

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self.segments)

    def apply(self, edit: "ManifestEdit") -> "Manifest":
        """The next version of this manifest after `edit`: the one place a manifest changes."""
        ts = now_iso()
        if isinstance(edit, FlushEdit):
            segments, flushed = self.segments + edit.added, max(self.flushed_seq, edit.flushed_seq)
        elif isinstance(edit, TruncateEdit):
            segments, flushed = [], max(self.flushed_seq, edit.flushed_seq)
        elif isinstance(edit, LoadEdit):
            segments, flushed = self.segments + edit.added, self.flushed_seq
        else:  # CompactionEdit
            segments, flushed = list(edit.added), self.flushed_seq
        return Manifest(
            table_id=self.table_id,
            table_uid=self.table_uid,
            user_id=self.user_id,
            version=self.version + 1,
            created_at=self.created_at if self.version else ts,
            updated_at=ts,
            flushed_seq=flushed,
            next_segment_id=max([self.next_segment_id] + [s.id + 1 for s in edit.added]),
            segments=segments,
        )


@dataclass(frozen=True)
class FlushEdit:
    """A flush of one scope: `added` segments hold every hot row with `_seq <= flushed_seq`."""
    added: list[Segment]
    flushed_seq: int


@dataclass(frozen=True)
class CompactionEdit:
    """A compaction of one scope: `added` segments replace every current one (same rows)."""
    added: list[Segment]


@dataclass(frozen=True)
class TruncateEdit:
    """TRUNCATE of one scope: no segment is left, and every hot row with `_seq <= flushed_seq`
    is gone too (recovery drops hot rows a manifest's watermark covers, as after a flush)."""
    flushed_seq: int
    added: tuple = ()


@dataclass(frozen=True)
class LoadEdit:
    """A large COPY streamed into `added` segments: rows that never were hot, so the flush
    watermark stays where it is. Their `_seq`s were handed out under the write lock and
    made durable before this commit (a restart never hands them out again)."""
    added: list[Segment]


ManifestEdit = FlushEdit | CompactionEdit | TruncateEdit | LoadEdit


def load(storage: Storage, scope_dir: str, table_id: str, table_uid: str | None = None,
         user_id: str | None = None) -> Manifest:
    """The scope's manifest; an empty one before the first flush, or when the file belongs to
    an earlier table of the same name (dropped while a flush was writing)."""
    data = storage.read(f"{scope_dir}/{MANIFEST}")
    fresh = Manifest(table_id=table_id, table_uid=table_uid, user_id=user_id)
    if data is None:
        return fresh
    m = Manifest.from_json(data)
    if table_uid and m.table_uid and m.table_uid != table_uid:
        return fresh
    return m


def commit(storage: Storage, scope_dir: str, manifest: Manifest) -> None:
    storage.write_atomic(f"{scope_dir}/{MANIFEST}", manifest.to_json())
