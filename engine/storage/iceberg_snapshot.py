"""Where an Iceberg snapshot is made from tierd's segments: data files added and removed by path
(the segments themselves, never copied) and v2 position-delete files that hide superseded
versions and tombstones.

pyiceberg 0.12 reads position deletes but has no public API to write them, so the snapshot is
assembled here from its lower-level public pieces: `write_manifest` (a DELETES-content variant
of its v2 writer), `write_manifest_list`, `Snapshot`, and `Catalog.commit_table` with an
`AssertRefSnapshotId` requirement. That requirement is Iceberg's optimistic concurrency: when
another writer (another tierd daemon) committed first, the commit fails, the table is reloaded
and the snapshot rebuilt on the new head, keeping the other writer's files untouched.
Unchanged manifests are carried over as they are; only a manifest that lists a removed file
is rewritten.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.io.pyarrow import (MetricModeTypes, MetricsMode, StatisticsCollector, compute_statistics_plan,
                                  data_file_statistics_from_parquet_metadata, parquet_path_to_id_mapping)
from pyiceberg.manifest import (DataFile, DataFileContent, FileFormat, ManifestContent, ManifestEntry,
                                ManifestEntryStatus, ManifestFile, ManifestWriterV2, write_manifest,
                                write_manifest_list)
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation, Snapshot, SnapshotSummaryCollector, Summary, \
    update_snapshot_summaries
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
from pyiceberg.table.update import AddSnapshotUpdate, AssertRefSnapshotId, SetPropertiesUpdate, \
    SetSnapshotRefUpdate
from pyiceberg.typedef import Record
from pyiceberg.types import BooleanType

log = logging.getLogger("tierd.iceberg")

# The Iceberg spec's reserved field ids of a position-delete file's columns.
DELETE_FILE_PATH_ID = 2147483546
DELETE_POS_ID = 2147483545
POSITION_DELETE_SCHEMA = pa.schema([
    pa.field("file_path", pa.string(), nullable=False, metadata={b"PARQUET:field_id": str(DELETE_FILE_PATH_ID).encode()}),
    pa.field("pos", pa.int64(), nullable=False, metadata={b"PARQUET:field_id": str(DELETE_POS_ID).encode()}),
])
UNMAPPED = -1  # the field id given to segment columns the Iceberg schema leaves out (_deleted)
MAX_COMMIT_ATTEMPTS = 20
MERGE_MANIFESTS_OVER = 32  # more live manifests than this: they are merged into one per content


class DeleteManifestWriter(ManifestWriterV2):
    """pyiceberg's v2 manifest writer, for a manifest of delete files."""

    def content(self) -> ManifestContent:
        return ManifestContent.DELETES

    @property
    def _meta(self) -> dict[str, str]:
        return {**super()._meta, "content": "deletes"}


@dataclass
class ScopeChange:
    """What one tierd scope changes in the table: files under `prefix` (its directory) that are
    not in `live` leave; `added` data files arrive; `deletes` (file path -> sorted row
    positions) become one position-delete file at `delete_path`; `replace_deletes` drops the
    scope's earlier delete files (`delete_prefix`) first (after a compaction)."""
    prefix: str
    delete_prefix: str
    live: set[str]
    added: list[str]
    deletes: pa.Table | None = None  # columns file_path, pos, sorted
    delete_path: str | None = None
    replace_deletes: bool = False


@dataclass
class PublishResult:
    snapshot_id: int | None
    added_files: int = 0
    removed_files: int = 0
    delete_rows: int = 0
    attempts: int = 1
    properties: dict = field(default_factory=dict)


def data_file(table: Table, path: str) -> DataFile:
    """A tierd segment as an Iceberg data file: statistics from its Parquet footer, columns mapped
    by name (segments carry no field ids), one read of the footer and nothing copied."""
    meta = table.metadata
    input_file = table.io.new_input(path)
    with input_file.open() as stream:
        parquet_metadata = pq.read_metadata(stream)
    schema = meta.schema()
    plan = compute_statistics_plan(schema, meta.properties)
    plan[UNMAPPED] = StatisticsCollector(field_id=UNMAPPED, iceberg_type=BooleanType(),
                                         mode=MetricsMode(MetricModeTypes.NONE), column_name="")
    mapping = parquet_path_to_id_mapping(schema)
    for i in range(parquet_metadata.num_columns):
        mapping.setdefault(parquet_metadata.schema.column(i).path, UNMAPPED)
    stats = data_file_statistics_from_parquet_metadata(
        parquet_metadata=parquet_metadata, stats_columns=plan, parquet_column_mapping=mapping)
    stats.column_sizes.pop(UNMAPPED, None)
    return DataFile.from_args(
        content=DataFileContent.DATA, file_path=path, file_format=FileFormat.PARQUET,
        partition=Record(), file_size_in_bytes=len(input_file), sort_order_id=None,
        spec_id=meta.default_spec_id, equality_ids=None, key_metadata=None, **stats.to_serialized_dict(),
    )


def write_delete_file(table: Table, path: str, deletes: pa.Table) -> DataFile:
    """A v2 position-delete file (file_path, pos; sorted) at `path`."""
    rows = pa.Table.from_arrays([deletes.column("file_path").cast(pa.string()),
                                 deletes.column("pos").cast(pa.int64())], schema=POSITION_DELETE_SCHEMA)
    out = table.io.new_output(path)
    with out.create(overwrite=True) as stream:
        pq.write_table(rows, stream, compression="zstd")
    paths = rows.column("file_path")
    lo, hi = (paths[0].as_py(), paths[len(paths) - 1].as_py()) if len(paths) else ("", "")
    size = len(table.io.new_input(path))
    return DataFile.from_args(
        content=DataFileContent.POSITION_DELETES, file_path=path, file_format=FileFormat.PARQUET,
        partition=Record(), record_count=rows.num_rows, file_size_in_bytes=size,
        lower_bounds={DELETE_FILE_PATH_ID: lo.encode()}, upper_bounds={DELETE_FILE_PATH_ID: hi.encode()},
        spec_id=table.metadata.default_spec_id, sort_order_id=None, equality_ids=None, key_metadata=None,
    )


def live_files(table: Table) -> list[DataFile]:
    """Every data and delete file of the table's current snapshot."""
    snap = table.current_snapshot()
    if snap is None:
        return []
    return [e.data_file for m in snapshot_manifests(snap, table.io) for e in manifest_entries(m, table.io)]


# manifest path -> its live entries; "list:" + manifest-list path -> its manifests
_ENTRIES: OrderedDict[str, list] = OrderedDict()
_ENTRIES_LOCK = threading.Lock()
CACHED_MANIFESTS = 256


def snapshot_manifests(snap: Snapshot, io) -> list[ManifestFile]:
    """A snapshot's manifests (its manifest list: immutable too, read once)."""
    key = "list:" + snap.manifest_list
    with _ENTRIES_LOCK:
        cached = _ENTRIES.get(key)
    if cached is None:
        cached = snap.manifests(io)
        with _ENTRIES_LOCK:
            _ENTRIES[key] = cached
    return cached


def manifest_entries(m: ManifestFile, io) -> list[ManifestEntry]:
    """A manifest's live entries. Manifests are immutable files (a new one per commit, uniquely
    named) and decoding one costs ~50 ms of Avro schema resolution, so each is read once per
    process: a publish then reads only the manifests committed since the last one."""
    with _ENTRIES_LOCK:
        cached = _ENTRIES.get(m.manifest_path)
        if cached is not None:
            _ENTRIES.move_to_end(m.manifest_path)
            return cached
    entries = m.fetch_manifest_entry(io, discard_deleted=True)
    with _ENTRIES_LOCK:
        _ENTRIES[m.manifest_path] = entries
        while len(_ENTRIES) > CACHED_MANIFESTS:
            _ENTRIES.popitem(last=False)
    return entries


def commit_changes(table: Table, changes: list[ScopeChange], properties: dict[str, str],
                   summary: dict[str, str]) -> PublishResult:
    """One snapshot for `changes`, committed with optimistic retries; reloads `table` on conflict.

    Position-delete files are written once (before the first attempt): a retry only rebuilds
    manifests. `properties` are set in the same commit (the published manifest versions)."""
    written: dict[str, DataFile] = {}
    for ch in changes:
        if ch.deletes is not None and ch.deletes.num_rows and ch.delete_path:
            written[ch.delete_path] = write_delete_file(table, ch.delete_path, ch.deletes)
    added: dict[str, DataFile] = {}
    for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
        try:
            res = _commit_once(table, changes, written, added, properties, summary)
            res.attempts = attempt
            return res
        except CommitFailedException as exc:
            if attempt == MAX_COMMIT_ATTEMPTS:
                raise
            log.info("iceberg commit of %s conflicted (attempt %d): %s; retrying on the new head",
                     ".".join(table.name()), attempt, exc)
            time.sleep(min(1.0, 0.02 * 2 ** attempt))
            table = table.refresh()
    raise AssertionError("unreachable")


def _commit_once(table: Table, changes: list[ScopeChange], deletes: dict[str, DataFile],
                 added_cache: dict[str, DataFile], properties: dict[str, str], summary: dict[str, str]) -> PublishResult:
    meta = table.metadata
    io = table.io
    parent = table.current_snapshot()
    snapshot_id = meta.new_snapshot_id()
    seq = meta.next_sequence_number()
    commit_uuid = uuid.uuid4()
    spec, schema = meta.spec(), meta.schema()
    names = iter(range(10_000))
    written_manifests: list[str] = []

    def new_writer(kind):
        path = table.location_provider().new_metadata_location(f"{commit_uuid}-m{next(names)}.avro")
        written_manifests.append(path)
        if kind == "deletes":
            return DeleteManifestWriter(spec, schema, io.new_output(path), snapshot_id, "deflate")
        return write_manifest(meta.format_version, spec, schema, io.new_output(path), snapshot_id, "deflate")

    def leaving(f: DataFile) -> bool:
        for ch in changes:
            if f.content == DataFileContent.DATA and f.file_path.startswith(ch.prefix) and f.file_path not in ch.live:
                return True
            if f.content != DataFileContent.DATA and ch.replace_deletes and f.file_path.startswith(ch.delete_prefix):
                return True
        return False

    present: set[str] = set()
    kept: list[ManifestFile] = []
    carried: dict[str, list[ManifestEntry]] = {"data": [], "deletes": []}
    removed: list[ManifestEntry] = []
    manifests = snapshot_manifests(parent, io) if parent is not None else []
    for m in manifests:
        entries = manifest_entries(m, io)
        present.update(e.data_file.file_path for e in entries)
        gone = [e for e in entries if leaving(e.data_file)]
        kind = "deletes" if m.content == ManifestContent.DELETES else "data"
        if not gone and len(manifests) <= MERGE_MANIFESTS_OVER:
            kept.append(m)
            continue
        for e in entries:
            (removed if leaving(e.data_file) else carried[kind]).append(e)

    ssc = SnapshotSummaryCollector()
    new_data = []
    for ch in changes:
        for path in ch.added:
            if path in present:
                continue  # published by an earlier attempt that did land: never twice
            if path not in added_cache:
                added_cache[path] = data_file(table, path)
            new_data.append(added_cache[path])
    new_deletes = [d for p, d in deletes.items() if p not in present]
    if not new_data and not new_deletes and not removed:
        if properties and any(meta.properties.get(k) != v for k, v in properties.items()):
            table.catalog.commit_table(table, (AssertRefSnapshotId(snapshot_id=parent.snapshot_id if parent else None,
                                                                   ref=MAIN_BRANCH),),
                                       (SetPropertiesUpdate(updates=properties),))
        return PublishResult(snapshot_id=parent.snapshot_id if parent else None, properties=properties)

    out: list[ManifestFile] = []
    for kind, files in (("data", new_data), ("deletes", new_deletes)):
        if not files and not carried[kind] and not any(_kind(e) == kind for e in removed):
            continue
        with new_writer(kind) as w:
            for f in files:
                w.add(ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id,
                                              sequence_number=None, file_sequence_number=None, data_file=f))
                ssc.add_file(f, schema, spec)
            for e in carried[kind]:
                w.existing(e)
            for e in removed:
                if _kind(e) == kind:
                    w.delete(e)
                    ssc.remove_file(e.data_file, schema, spec)
        out.append(w.to_manifest_file())
    out.extend(kept)

    operation = Operation.OVERWRITE if removed or new_deletes else Operation.APPEND
    previous = parent.summary if parent is not None else None
    snap_summary = update_snapshot_summaries(Summary(operation=operation, **ssc.build(), **summary),
                                             previous_summary=previous)
    list_path = table.location_provider().new_metadata_location(f"snap-{snapshot_id}-0-{commit_uuid}.avro")
    with write_manifest_list(format_version=meta.format_version, output_file=io.new_output(list_path),
                             snapshot_id=snapshot_id, parent_snapshot_id=parent.snapshot_id if parent else None,
                             sequence_number=seq, avro_compression="deflate") as lw:
        lw.add_manifests(out)
    snapshot = Snapshot(snapshot_id=snapshot_id, parent_snapshot_id=parent.snapshot_id if parent else None,
                        manifest_list=list_path, sequence_number=seq, summary=snap_summary,
                        schema_id=meta.current_schema_id)
    updates = [AddSnapshotUpdate(snapshot=snapshot),
               SetSnapshotRefUpdate(snapshot_id=snapshot_id, parent_snapshot_id=parent.snapshot_id if parent else None,
                                    ref_name=MAIN_BRANCH, type=SnapshotRefType.BRANCH)]
    if properties:
        updates.append(SetPropertiesUpdate(updates=properties))
    try:
        table.catalog.commit_table(
            table, (AssertRefSnapshotId(snapshot_id=parent.snapshot_id if parent else None, ref=MAIN_BRANCH),),
            tuple(updates))
    except CommitFailedException:
        for path in written_manifests + [list_path]:
            try:
                io.delete(path)
            except Exception:  # a leftover manifest is harmless: no snapshot lists it
                pass
        raise
    return PublishResult(snapshot_id=snapshot_id, added_files=len(new_data),
                         removed_files=sum(1 for e in removed if e.data_file.content == DataFileContent.DATA),
                         delete_rows=sum(d.record_count for d in new_deletes), properties=properties)


def _kind(e: ManifestEntry) -> str:
    return "data" if e.data_file.content == DataFileContent.DATA else "deletes"
