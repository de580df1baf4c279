"""When to compact: a scope with more than `max_segments` segments is compacted after the flush
that made it so; STORAGE COMPACT compacts every scope with two or more segments or a delta."""
from __future__ import annotations

from engine.storage.manifest import Manifest


def needs_compaction(manifest: Manifest, max_segments: int) -> bool:
    return len(manifest.segments) > max_segments


def worth_compacting(manifest: Manifest, schema_version: int = 1) -> bool:
    """Whether a compaction would change anything: several segments, versions to merge, or a
    segment written under an older schema of the table (rewritten to the current one)."""
    return len(manifest.segments) >= 2 or any(s.kind == "delta" or s.schema_version != schema_version
                                               for s in manifest.segments)
