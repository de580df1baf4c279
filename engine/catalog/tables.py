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
SYSTEM_COLUMNS = ("_seq", "_deleted", "_user_id", "_written_at")
OWNER = "_user_id"  # a USER table's owner column: part of its internal key, stored in Parquet
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
    # Column ids (Iceberg field ids, written into every segment's Parquet schema), given at
    # CREATE TABLE and never reused: the seam where ALTER TABLE evolves the Iceberg schema by
    # column id. None for tables created before ids existed (readers map them by name).
    field_ids: dict[str, int] | None = None

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
        return [OWNER] + self.primary_key if self.is_user else self.primary_key

    @property
    def qualified(self) -> str:
        return f"{self.namespace}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> "TableDef":
        raw = dict(raw)
        raw["columns"] = [Column(**c) for c in raw["columns"]]
        return cls(**raw)


# Ids of segment columns no reader sees (tombstone flag, STREAM write time): far above any
# column id a table will reach, below Iceberg's reserved range.
HIDDEN_FIELD_IDS = {"_deleted": 2_000_000_000, WRITTEN_AT: 2_000_000_001}


def assign_field_ids(t: TableDef) -> dict[str, int]:
    """Ids 1..n for the columns, then `_user_id` (USER) and `_seq`, in the segments' column
    order, so a new Iceberg table (which numbers its columns in order) gets the same ids."""
    names = t.column_names + ([OWNER] if t.is_user else []) + ["_seq"]
    ids = {name: i + 1 for i, name in enumerate(names)}
    ids.update(HIDDEN_FIELD_IDS)
    return ids


def check_identifier(name: str, what: str) -> str:
    if name.startswith("__"):
        raise SyntaxError_(f"invalid {what} name {name!r}: names starting with '__' are reserved")
    if not _IDENT.match(name):
        raise SyntaxError_(f"invalid {what} name {name!r}")
    return name


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
            return True

    def drop_namespace(self, name: str) -> None:
        with self.lock:
            self.store.delete(f"c/ns/{name}")
            del self.namespaces[name]

    def require_namespace(self, name: str) -> None:
        if name not in self.namespaces:
            raise InvalidSchemaName(f'namespace "{name}" does not exist')

    def tables_in(self, namespace: str) -> list[TableDef]:
        return [t for (ns, _), t in self.tables.items() if ns == namespace]

    # tables
    def add_table(self, t: TableDef) -> TableDef:
        with self.lock:
            if (t.namespace, t.name) in self.tables:
                raise DuplicateTable(f'relation "{t.qualified}" already exists')
            t.tid = self._next_tid
            self._next_tid += 1
            self.store.put_json("c/next_tid", {"value": self._next_tid})
            self.store.put_json(f"c/t/{t.tid:08d}", t.to_json())
            self.tables[(t.namespace, t.name)] = t
            return t

    def save_table(self, t: TableDef) -> None:
        """Persist a changed definition (owner, grants) of an existing table."""
        with self.lock:
            self.store.put_json(f"c/t/{t.tid:08d}", t.to_json())

    def drop_table(self, t: TableDef) -> None:
        with self.lock:
            self.store.delete(f"c/t/{t.tid:08d}")
            self.tables.pop((t.namespace, t.name), None)

    def get(self, namespace: str, name: str) -> TableDef:
        t = self.tables.get((namespace, name))
        if t is None:
            raise UndefinedTable(f'relation "{namespace}.{name}" does not exist')
        return t

    def by_tid(self, tid: int) -> TableDef | None:
        return next((t for t in self.tables.values() if t.tid == tid), None)

    def find(self, namespace: str, name: str) -> TableDef | None:
        return self.tables.get((namespace, name))


__all__ = ["Catalog", "TableDef", "Column", "parse_table_options"]
