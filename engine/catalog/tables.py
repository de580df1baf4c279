"""Namespaces and table definitions, persisted in the hot store's LevelDB.

Column types, defaults and NOT NULL come from DuckDB's own parse of the column list, so
whatever DuckDB accepts as a type is a valid tierd column type.
"""
from __future__ import annotations

import re
import threading
import uuid
from dataclasses import asdict, dataclass, field

from engine.errors import (
    DuplicateSchema,
    DuplicateTable,
    InvalidParameterValue,
    InvalidSchemaName,
    SyntaxError_,
    UndefinedTable,
)
from engine.storage.hot_store import HotStore
from engine.storage.manifest import now_iso
from engine.catalog.flush_policy import parse_flush_policy

DEFAULT_NAMESPACE = "public"  # where unqualified names resolve
RESERVED_NAMESPACES = {"system", "main", "pg_catalog", "information_schema", "temp"}
SYSTEM_COLUMNS = ("_seq", "_deleted", "_user_id", "_written_at", "_rowid")
OWNER = "_user_id"  # a USER table's owner column: part of its internal key, stored in Parquet
# A table created without a primary key: each row's hidden identity, the _seq of its first
# version (unique for ever: _seq values are never reused), stored in Parquet like OWNER.
ROWID = "_rowid"
WRITTEN_AT = "_written_at"  # a STREAM table's write time (hot only), what TTL_SECONDS counts from
TABLE_TYPES = ("SHARED", "USER", "STREAM")
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
_SAFE_SCOPE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def scope_name(user: str) -> str:
    """A role name as one path segment: plain names as they are, anything else (a '/', '..',
    spaces) percent-encoded, so a role can never steer its directory out of the table's."""
    if _SAFE_SCOPE.match(user) and user not in (".", ".."):
        return user
    return "".join(c if c.isalnum() or c == "_" else "%" + "%".join(f"{b:02X}" for b in c.encode())
                   for c in user)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Column:
    name: str
    type: str  # DuckDB type name
    nullable: bool = True
    default: str | None = None  # DuckDB expression text
    identity: str | None = None  # GENERATED "ALWAYS" | "BY DEFAULT" AS IDENTITY
    # Stable column id: what segments and hot batches written under older schemas are read by
    # (a RENAME COLUMN keeps it). 0 only in catalogs written before ids (assigned at load).
    id: int = 0
    # The value of rows written before this column existed (ADD COLUMN ... DEFAULT, evaluated
    # once, as Postgres's attmissingval): a DuckDB literal expression, None for NULL.
    missing: str | None = None
    comment: str | None = None  # COMMENT ON COLUMN
    # The Postgres type as declared, where the DuckDB type forgets it (jsonb, timetz,
    # varchar(n), char(n)): what the catalog shows (engine/sql/declared_types.py).
    declared: str | None = None


@dataclass
class TableDef:
    tid: int
    namespace: str
    name: str
    columns: list[Column]
    primary_key: list[str]
    table_type: str = "SHARED"
    storage_id: str = "local"
    flush_policy: str | None = None  # None: the server default applies
    ttl_seconds: int | None = None
    created_at: str = field(default_factory=now_iso)
    # The scope directory, resolved from the storage's template when the table was created,
    # so a later ALTER STORAGE ... TEMPLATE never moves existing data.
    scope_dir: str | None = None
    # Identifies this incarnation of the table in its manifests, so a manifest left behind by
    # a dropped table of the same name is never mistaken for this one's.
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The role that created the table (None in catalogs written before owners were recorded:
    # the configured superuser owns those), and the privileges granted to other roles.
    owner: str | None = None
    grants: dict[str, list[str]] = field(default_factory=dict)  # role -> ["SELECT", ...]
    # Iceberg publishing: "on" / "off" (None: `[iceberg] enabled`), and the Iceberg identifier
    # (None: "<namespace>.<table>").
    iceberg: str | None = None
    iceberg_table: str | None = None
    # Ids of system columns other than SYSTEM_FIELD_IDS': only tables published before column
    # ids and field ids were one id space (their Iceberg tables numbered them after the columns).
    legacy_field_ids: dict[str, int] = field(default_factory=dict)
    # Rows carry a hidden ROWID column: created without a primary key. It stays (stored, no
    # longer the key) after ALTER TABLE ... ADD PRIMARY KEY, so no segment is rewritten.
    rowid: bool = False
    comment: str | None = None  # COMMENT ON TABLE
    # CREATE INDEX: catalog records only ({"name", "columns", "unique", "ordinal"}), shown in
    # pg_index/pg_indexes; DuckDB scans, so they change no plan.
    indexes: list[dict] = field(default_factory=list)
    # FOREIGN KEY constraints this table holds (engine/session/foreign_keys.py): {"name",
    # "columns" and "ref_columns" (column ids, so a RENAME COLUMN keeps them), "ref_tid",
    # "on_delete", "on_update" (pg_constraint's codes a r c n d), "match" (s | f), "deferrable",
    # "ordinal"}. The referenced columns are always the parent's primary key.
    foreign_keys: list[dict] = field(default_factory=list)
    # ALTER TABLE bumps the schema version. Segments record the version they were written
    # with; hot batches are told apart by _seq: every batch at or below an old version's
    # `until_seq` was written under it. Each old version keeps {stored name: column id}.
    schema_version: int = 1
    revision: int = 0  # bumped by every ALTER TABLE: what per-session caches of the shape key on
    schema_history: list[dict] = field(default_factory=list)  # [{"version", "until_seq", "names"}]

    def scope(self, storage, user: str | None = None) -> str:
        """Directory of one scope: the table's own (SHARED) or one user's (USER tables; the
        template with {userId} still open was resolved at CREATE TABLE)."""
        if self.table_type == "USER":
            template = self.scope_dir or storage.scope_dir(self.namespace, self.name, "{userId}")
            return template.replace("{userId}", scope_name(user or ""))
        return self.scope_dir or storage.scope_dir(self.namespace, self.name)

    @property
    def is_user(self) -> bool:
        return self.table_type == "USER"

    @property
    def is_stream(self) -> bool:
        return self.table_type == "STREAM"

    @property
    def key_columns(self) -> list[str]:
        """The internal identity of a row: a USER table's primary key is unique per user."""
        return [OWNER] + self.row_key if self.is_user else self.row_key

    @property
    def row_key(self) -> list[str]:
        """The columns that identify a row within its scope: the primary key, else the row id."""
        return self.primary_key or [ROWID]

    @property
    def stats_columns(self) -> list[str]:
        """Columns whose min/max a segment records (the row id too: flushes probe by it)."""
        return self.column_names + ([ROWID] if self.rowid else [])

    @property
    def qualified(self) -> str:
        return f"{self.namespace}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def names_of(self, ids: list[int]) -> list[str]:
        """The current names of columns given by id."""
        by_id = {c.id: c.name for c in self.columns}
        return [by_id[i] for i in ids]

    def column_ids(self) -> dict[str, int]:
        """{column name: stable column id} of the current schema (what Iceberg field ids and
        segment schema versions are mapped through)."""
        return {c.name: c.id for c in self.columns}

    def stored_names(self, version: int) -> dict[int, str]:
        """{column id: the name data written under schema `version` stores it by}."""
        if version >= self.schema_version:
            return {c.id: c.name for c in self.columns}
        for h in self.schema_history:
            if h["version"] >= version:
                return {int(i): n for n, i in h["names"].items()}
        return {c.id: c.name for c in self.columns}

    def version_at_seq(self, seq: int) -> int:
        """The schema version a hot batch whose first `_seq` is `seq` was written under."""
        for h in self.schema_history:
            if seq <= h["until_seq"]:
                return h["version"]
        return self.schema_version

    @property
    def next_column_id(self) -> int:
        ids = [c.id for c in self.columns] + [int(i) for h in self.schema_history for i in h["names"].values()]
        return max(ids + list(self.legacy_field_ids.values()), default=0) + 1

    def field_ids(self) -> dict[str, int]:
        """{segment column name: Iceberg field id} of the current schema: each column's id, and
        the system columns' reserved ids (one id space, so ALTER TABLE evolves the Iceberg
        schema by column id)."""
        return {**SYSTEM_FIELD_IDS, **self.legacy_field_ids, **self.column_ids()}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> "TableDef":
        raw = dict(raw)
        raw["columns"] = [Column(**c) for c in raw["columns"]]
        # Tables published before column ids existed numbered the columns 1..n (what the ids
        # below are), then the owner column and _seq: those two keep their published ids.
        published = raw.pop("field_ids", None) or {}
        t = cls(**raw)
        for i, c in enumerate(t.columns, start=1):  # catalogs from before column ids
            if not c.id:
                c.id = i
        if published:
            t.legacy_field_ids = {k: v for k, v in published.items() if k in ("_seq", OWNER)}
        return t


# Iceberg field ids of the system columns a segment holds: a column's field id is its
# `Column.id` (1, 2, ... never reused), so these sit far above any column id a table reaches and
# below Iceberg's reserved range (2147483447 and up). Written into every segment's Parquet schema.
SYSTEM_FIELD_IDS = {"_deleted": 2_000_000_000, WRITTEN_AT: 2_000_000_001, "_seq": 2_000_000_002,
                    OWNER: 2_000_000_003, ROWID: 2_000_000_004}
# The system columns an Iceberg reader sees (the tombstone flag and STREAM write time it never does).
PUBLISHED_SYSTEM_COLUMNS = ("_seq", OWNER, ROWID)


def check_identifier(name: str, what: str) -> str:
    if name.startswith("__"):
        raise SyntaxError_(f"invalid {what} name {name!r}: names starting with '__' are reserved")
    if not _IDENT.match(name):
        raise SyntaxError_(f"invalid {what} name {name!r}")
    return name


# Postgres's heap storage parameters (CREATE TABLE ... WITH (fillfactor=100), what pg_dump and
# pgbench write): accepted, and without effect on tierd's LSM-like storage.
_PG_STORAGE_PARAMETERS = re.compile(
    r"^(FILLFACTOR|TOAST_TUPLE_TARGET|PARALLEL_WORKERS|USER_CATALOG_TABLE|VACUUM_INDEX_CLEANUP|VACUUM_TRUNCATE|"
    r"LOG_AUTOVACUUM_MIN_DURATION|AUTOVACUUM_\w+|TOAST\.\w+)$", re.I)


def is_storage_parameter(key: str) -> bool:
    return bool(_PG_STORAGE_PARAMETERS.match(key))


@dataclass
class TableOptions:
    table_type: str = "SHARED"
    storage_id: str = "local"
    flush_policy: str | None = None
    ttl_seconds: int | None = None
    iceberg: str | None = None
    iceberg_table: str | None = None


_ICEBERG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def parse_table_options(items: dict[str, str], keyword_type: str | None) -> TableOptions:
    """Validate the WITH (...) options of CREATE TABLE."""
    opts = TableOptions()
    known = {"TYPE", "STORAGE_ID", "FLUSH_POLICY", "TTL_SECONDS", "ICEBERG", "ICEBERG_TABLE"}
    items = {k: v for k, v in items.items() if not is_storage_parameter(k)}
    for key in items:
        if key not in known:
            raise InvalidParameterValue(f"unknown table option {key!r} (expected one of {', '.join(sorted(known))})")
    ttype = (items.get("TYPE") or keyword_type or "SHARED").upper()  # no type given: SHARED
    if keyword_type and items.get("TYPE") and items["TYPE"].upper() != keyword_type:
        raise InvalidParameterValue(f"table type {keyword_type} conflicts with TYPE = '{items['TYPE']}'")
    if ttype not in TABLE_TYPES:
        raise InvalidParameterValue(f"invalid TYPE {ttype!r}: expected USER, SHARED or STREAM")
    opts.table_type = ttype
    if ttype == "STREAM":
        for key in ("STORAGE_ID", "FLUSH_POLICY", "ICEBERG", "ICEBERG_TABLE"):
            if key in items:
                raise InvalidParameterValue(f"{key} does not apply to STREAM tables: their rows stay hot "
                                            "and expire after TTL_SECONDS")
        if "TTL_SECONDS" not in items:
            raise InvalidParameterValue("STREAM tables need TTL_SECONDS, e.g. WITH (TTL_SECONDS = 3600)")
        try:
            ttl = int(items["TTL_SECONDS"])
        except ValueError:
            raise InvalidParameterValue(f"TTL_SECONDS must be an integer, not {items['TTL_SECONDS']!r}") from None
        if not 1 <= ttl <= MAX_TTL_SECONDS:
            raise InvalidParameterValue(f"TTL_SECONDS must be between 1 and {MAX_TTL_SECONDS}")
        opts.ttl_seconds = ttl
        return opts
    if "STORAGE_ID" in items:
        opts.storage_id = items["STORAGE_ID"]
    if "FLUSH_POLICY" in items:
        opts.flush_policy = str(parse_flush_policy(items["FLUSH_POLICY"]))
    if "TTL_SECONDS" in items:
        raise InvalidParameterValue("TTL_SECONDS is only valid for STREAM tables")
    if "ICEBERG" in items:
        value = items["ICEBERG"].lower()
        if value not in ("on", "off"):
            raise InvalidParameterValue(f"invalid ICEBERG {items['ICEBERG']!r}: expected 'on' or 'off'")
        opts.iceberg = value
    if "ICEBERG_TABLE" in items:
        if not _ICEBERG_NAME.match(items["ICEBERG_TABLE"]):
            raise InvalidParameterValue(f"invalid ICEBERG_TABLE {items['ICEBERG_TABLE']!r}: expected 'namespace.table'")
        opts.iceberg_table = items["ICEBERG_TABLE"]
    return opts


class Catalog:
    """Namespaces and tables; every change is written through to LevelDB at once."""

    def __init__(self, store: HotStore):
        self.store = store
        self.lock = threading.RLock()
        self.namespaces: dict[str, str] = {}  # name -> created_at
        self.tables: dict[tuple[str, str], TableDef] = {}
        self.generation = 0  # bumped by every change: what the pg_catalog rebuild and cached analyses key on
        self._fk_tids: tuple[int, frozenset[int]] = (-1, frozenset())
        for key, raw in store.scan_json("c/ns/"):
            self.namespaces[key[len("c/ns/"):]] = raw["created_at"]
        for _, raw in store.scan_json("c/t/"):
            t = TableDef.from_json(raw)
            self.tables[(t.namespace, t.name)] = t
        self._next_tid = max([t.tid for t in self.tables.values()], default=0) + 1
        nxt = list(store.scan_json("c/next_tid"))
        if nxt:
            self._next_tid = max(self._next_tid, nxt[0][1]["value"])

    # namespaces
    def create_namespace(self, name: str, if_not_exists: bool = False) -> bool:
        check_identifier(name, "namespace")
        with self.lock:
            if name in self.namespaces or name.lower() in RESERVED_NAMESPACES:
                if if_not_exists and name in self.namespaces:
                    return False
                raise DuplicateSchema(f'namespace "{name}" already exists')
            ts = now_iso()
            self.store.put_json(f"c/ns/{name}", {"created_at": ts})
            self.namespaces[name] = ts
            self.generation += 1
            return True

    def drop_namespace(self, name: str) -> None:
        with self.lock:
            self.store.delete(f"c/ns/{name}")
            del self.namespaces[name]
            self.generation += 1

    def require_namespace(self, name: str) -> None:
        if name not in self.namespaces:
            raise InvalidSchemaName(f'namespace "{name}" does not exist')

    def tables_in(self, namespace: str) -> list[TableDef]:
        return [t for (ns, _), t in self.tables.items() if ns == namespace]

    # tables
    def allocate_tid(self) -> int:
        """A new relation id (tables and sequences share them: OIDs derive from them; never reused)."""
        with self.lock:
            tid = self._next_tid
            self._next_tid += 1
            self.store.put_json("c/next_tid", {"value": self._next_tid})
            return tid

    @staticmethod
    def record_key(tid: int) -> str:
        """The LevelDB key of a table's definition (a transaction's DDL writes it at COMMIT)."""
        return f"c/t/{tid:08d}"

    def add_table(self, t: TableDef, durable: bool = True) -> TableDef:
        """Register `t` under a new id; `durable=False`: its record is written by the COMMIT of
        the transaction that creates it (engine/session/transaction_ddl.py)."""
        with self.lock:
            if (t.namespace, t.name) in self.tables:
                raise DuplicateTable(f'relation "{t.qualified}" already exists')
            t.tid = self.allocate_tid()
            for fk in t.foreign_keys:  # a self-reference, declared before the table had its id
                if fk["ref_tid"] == 0:
                    fk["ref_tid"] = t.tid
            if durable:
                self.store.put_json(self.record_key(t.tid), t.to_json())
            self.tables[(t.namespace, t.name)] = t
            self.generation += 1
            return t

    def save_table(self, t: TableDef) -> None:
        """Persist a changed definition (owner, grants) of an existing table."""
        with self.lock:
            self.store.put_json(self.record_key(t.tid), t.to_json())
            self.generation += 1

    def replace_table(self, old: TableDef, new: TableDef, durable: bool = True) -> None:
        """ALTER TABLE: `new` (same tid, maybe a new name) takes `old`'s place, durably in one
        put (`durable=False`: at the COMMIT of the transaction; a ROLLBACK puts `old` back)."""
        with self.lock:
            if (new.namespace, new.name) != (old.namespace, old.name) and (new.namespace, new.name) in self.tables:
                raise DuplicateTable(f'relation "{new.name}" already exists')
            if durable:
                self.store.put_json(self.record_key(new.tid), new.to_json())
            self.tables.pop((old.namespace, old.name), None)
            self.tables[(new.namespace, new.name)] = new
            self.generation += 1

    def drop_table(self, t: TableDef, durable: bool = True) -> None:
        with self.lock:
            if durable:
                self.store.delete(self.record_key(t.tid))
            self.tables.pop((t.namespace, t.name), None)
            self.generation += 1

    def restore_table(self, t: TableDef) -> None:
        """A transaction's ROLLBACK: `t` as it was before the transaction changed or dropped it
        (its record in LevelDB never changed)."""
        with self.lock:
            for key in [k for k, other in self.tables.items() if other.tid == t.tid]:
                del self.tables[key]
            self.tables[(t.namespace, t.name)] = t
            self.generation += 1

    def get(self, namespace: str, name: str) -> TableDef:
        t = self.tables.get((namespace, name))
        if t is None:
            raise UndefinedTable(f'relation "{namespace}.{name}" does not exist')
        return t

    def referencing(self, tid: int) -> list[tuple[TableDef, dict]]:
        """(child table, foreign key) of every foreign key that references table `tid`."""
        return [(t, fk) for t in list(self.tables.values()) for fk in t.foreign_keys if fk["ref_tid"] == tid]

    def foreign_key_tids(self) -> frozenset[int]:
        """Tables on either side of a foreign key (what the write path asks first: a table
        outside it pays nothing), kept until the catalog changes."""
        cached = self._fk_tids
        if cached[0] != self.generation:
            tids = {t.tid for t in list(self.tables.values()) if t.foreign_keys}
            tids |= {fk["ref_tid"] for t in list(self.tables.values()) for fk in t.foreign_keys}
            cached = self._fk_tids = (self.generation, frozenset(tids))
        return cached[1]

    def by_tid(self, tid: int) -> TableDef | None:
        return next((t for t in self.tables.values() if t.tid == tid), None)

    def find(self, namespace: str, name: str) -> TableDef | None:
        return self.tables.get((namespace, name))


__all__ = ["Catalog", "TableDef", "Column", "parse_table_options"]
