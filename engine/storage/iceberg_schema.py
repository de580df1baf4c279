"""What a tierd table's Iceberg schema is, and how it follows ALTER TABLE: one id space.

A column's Iceberg field id IS its `Column.id` (given at CREATE TABLE / ADD COLUMN, kept by
RENAME COLUMN, never reused), and every segment stores it as its Parquet field id; the system
columns an Iceberg reader sees (`_seq`, the USER owner column, the keyless row id) have
reserved ids (`SYSTEM_FIELD_IDS`). So the schema evolves by column id: a rename changes a
name, a drop removes an id (old files keep the column, readers skip it), an add brings a new
id (old files lack it: readers give NULL), a widening changes a type. Segments written before
field ids existed are mapped by name through the table's name mapping, which lists every name
a column id has had.

pyiceberg's `update_schema()` allocates new ids itself (last column id + 1), which would break
the one-id-space rule, so the new schema (exact ids) is committed with the same update classes
it commits (`AddSchemaUpdate`, `SetCurrentSchemaUpdate`), guarded by `AssertCurrentSchemaId`.

Two changes would make an external reader see other values than tierd's SELECT for rows in
files written before them: ADD COLUMN with a DEFAULT (tierd gives old rows that value, Iceberg
v2 gives NULL) and a widening Iceberg does not allow (int -> long, float -> double, decimal
precision are allowed; INTEGER -> DOUBLE or DECIMAL, a decimal scale, DATE -> TIMESTAMP are
not). After such a change the publish waits until no live file predates it: `held_back`
names those columns, and the publisher starts the compaction that rewrites those files (new
files could not be published meanwhile either: a widened column would not read under the old
type).
"""
from __future__ import annotations

import pyarrow as pa

from engine.catalog.tables import PUBLISHED_SYSTEM_COLUMNS, SYSTEM_FIELD_IDS, TableDef
from engine.storage.segments import storable, with_field_ids

NAME_MAPPING = "schema.name-mapping.default"


def published_columns(t: TableDef) -> list[str]:
    """The segment columns an Iceberg reader sees, in schema order."""
    system = [c for c in PUBLISHED_SYSTEM_COLUMNS if (c != "_user_id" or t.is_user) and (c != "_rowid" or t.rowid)]
    return t.column_names + system


def target_schema(t: TableDef, stored: pa.Schema):
    """The Iceberg schema of `t` now: `stored` is the Arrow schema of its hot table (what a
    flush writes), restricted to the published columns and given their field ids."""
    from pyiceberg.io.pyarrow import pyarrow_to_schema

    names = published_columns(t)
    arrow = storable(pa.Table.from_batches([], schema=pa.schema([stored.field(n) for n in names]))).schema
    arrow = with_field_ids(pa.schema([f.with_nullable(True) for f in arrow]), t.field_ids())
    return pyarrow_to_schema(arrow, downcast_ns_timestamp_to_us=True)


def allowed_promotion(old, new) -> bool:
    """Whether Iceberg (v2) reads a file column of type `old` as `new`."""
    from pyiceberg.types import DecimalType, DoubleType, FloatType, IntegerType, LongType

    if old == new:
        return True
    if isinstance(old, IntegerType) and isinstance(new, LongType):
        return True
    if isinstance(old, FloatType) and isinstance(new, DoubleType):
        return True
    return isinstance(old, DecimalType) and isinstance(new, DecimalType) and old.scale == new.scale \
        and new.precision >= old.precision


def held_back(t: TableDef, current, target, old_versions: set[int]) -> set[int]:
    """Field ids whose change must wait for old files to be rewritten (see the module doc);
    `current`: the Iceberg table's schema; `old_versions`: the schema versions of the live
    segments written before the current one."""
    if not old_versions:
        return set()
    held = set()
    for f in target.fields:
        c = next((c for c in t.columns if c.id == f.field_id), None)
        if c is None:
            continue
        before = _field(current, f.field_id)
        if before is None:
            # new in Iceberg: with a DEFAULT, files of versions that lack the column read wrong
            if c.missing is not None and any(c.id not in t.stored_names(v) for v in old_versions):
                held.add(f.field_id)
        elif not allowed_promotion(before.field_type, f.field_type):
            held.add(f.field_id)
    return held


def evolved(current, target):
    """The schema to commit for `target`, with the next schema id; None when it equals `current`."""
    from pyiceberg.schema import Schema

    if [(f.field_id, f.name, f.field_type) for f in target.fields] == \
            [(f.field_id, f.name, f.field_type) for f in current.fields]:
        return None
    return Schema(*target.fields, schema_id=current.schema_id + 1)


def _field(schema, field_id: int):
    try:
        return schema.find_field(field_id)
    except ValueError:
        return None


def name_mapping_json(t: TableDef, schema) -> str:
    """The name mapping of `schema` for files without field ids (written before them): each
    column under every name it has had, and the unpublished system columns under ids outside
    the schema (readers that need every file column mapped skip them)."""
    from pyiceberg.table.name_mapping import MappedField, NameMapping, create_mapping_from_schema

    history: dict[int, list[str]] = {}
    for h in t.schema_history:
        for name, cid in h["names"].items():
            history.setdefault(int(cid), []).append(name)
    root = create_mapping_from_schema(schema).root
    taken = {n for m in root for n in m.names}
    mapped = []
    for m in root:
        older = []
        for n in history.get(m.field_id, []):  # a name now (or already) another column's is left out
            if n not in taken:
                taken.add(n)
                older.append(n)
        mapped.append(MappedField(field_id=m.field_id, names=m.names + older, fields=m.fields))
    ids = {m.field_id for m in mapped}
    mapped += [MappedField(field_id=fid, names=[name]) for name, fid in SYSTEM_FIELD_IDS.items()
               if fid not in ids and name not in taken]
    return NameMapping(root=mapped).model_dump_json()


def sync_schema(table, t: TableDef, target):
    """Make the Iceberg table's current schema `target` (exact ids) and its name mapping
    `t`'s, in one commit guarded by the schema id it read; the table as it is then."""
    from pyiceberg.table.update import AddSchemaUpdate, AssertCurrentSchemaId, SetCurrentSchemaUpdate, \
        SetPropertiesUpdate

    current = table.schema()
    new = evolved(current, target)
    mapping = name_mapping_json(t, target)
    updates = []
    if new is not None:
        updates += [AddSchemaUpdate(schema=new), SetCurrentSchemaUpdate(schema_id=-1)]
    if table.metadata.properties.get(NAME_MAPPING) != mapping:
        updates.append(SetPropertiesUpdate(updates={NAME_MAPPING: mapping}))
    if not updates:
        return table
    table.catalog.commit_table(table, (AssertCurrentSchemaId(current_schema_id=current.schema_id),), tuple(updates))
    return table.refresh()
