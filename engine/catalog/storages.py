"""Named storages: the built-in `local`, those declared in the config, and those made in SQL.

Definitions made in SQL persist in LevelDB; config ones are applied at every start. Each
definition becomes a `Storage` (filesystem or S3) whose files live only under its own base:
bases may not overlap (invariant 5), and secrets never leave this module unredacted.
"""
from __future__ import annotations

import json
import os
import re
import string
import threading
from dataclasses import asdict, dataclass, field
from typing import Callable

from engine.errors import (
    DependentObjectsStillExist,
    DuplicateObject,
    FeatureNotSupported,
    InvalidParameterValue,
    StorageUnhealthy,
    UndefinedObject,
)
from engine.storage.hot_store import HotStore
from engine.storage.manifest import now_iso
from engine.storage.backend import FilesystemStorage, Storage

LOCAL = "local"
TYPES = ("filesystem", "s3")
DEFAULT_SHARED = "{namespace}/{tableName}"
DEFAULT_USER = "{namespace}/{tableName}/{userId}"
ALTERABLE = ("name", "description", "config", "shared_tables_template", "user_tables_template")
_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass
class StorageDef:
    storage_id: str
    storage_type: str
    base: str
    name: str = ""
    description: str = ""
    shared_tables_template: str = DEFAULT_SHARED
    user_tables_template: str = DEFAULT_USER
    config: dict = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    source: str = "sql"  # sql | config | builtin


def validate_template(text: str, kind: str) -> str:
    """Shared templates need {namespace} and {tableName}; user templates need {userId} too."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise InvalidParameterValue(f"invalid {kind} template {text!r}: {exc}") from None
    unknown = fields - {"namespace", "tableName", "userId"}
    if unknown:
        raise InvalidParameterValue(
            f"invalid {kind} template {text!r}: unknown placeholder {{{sorted(unknown)[0]}}} "
            "(allowed: {namespace}, {tableName}, {userId})")
    need = {"namespace", "tableName"} | ({"userId"} if kind == "USER_TABLES_TEMPLATE" else set())
    missing = need - fields
    if missing:
        raise InvalidParameterValue(
            f"invalid {kind} template {text!r}: it must contain " + ", ".join(f"{{{m}}}" for m in sorted(need)))
    if kind == "SHARED_TABLES_TEMPLATE" and "userId" in fields:
        raise InvalidParameterValue(f"invalid {kind} template {text!r}: {{userId}} belongs in USER_TABLES_TEMPLATE")
    if text.startswith("/") or any(part in ("..", ".") for part in text.split("/")):
        raise InvalidParameterValue(f"invalid {kind} template {text!r}: it must be a relative path without '..'")
    return text


def make_storage(d: StorageDef) -> Storage:
    common = dict(name=d.name, description=d.description, shared_tables_template=d.shared_tables_template,
                  user_tables_template=d.user_tables_template, config=dict(d.config))
    if d.storage_type == "filesystem":
        return FilesystemStorage(d.storage_id, d.base, storage_type="filesystem", **common)
    from engine.storage.s3 import S3Storage

    return S3Storage(d.storage_id, d.base, storage_type="s3", **common)


def _overlaps(a: str, b: str) -> bool:
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


class StorageCatalog:
    def __init__(self, store: HotStore, data_dir: str, declared: dict[str, dict],
                 on_register: Callable[[Storage], None], on_unregister: Callable[[Storage], None]):
        self.store = store
        self.data_dir = data_dir
        self.on_register = on_register
        self.on_unregister = on_unregister
        self.lock = threading.RLock()
        self.defs: dict[str, StorageDef] = {}
        self.storages: dict[str, Storage] = {}
        local = StorageDef(LOCAL, "filesystem", os.path.join(data_dir, "storage"), name="local",
                           description="the data directory's own storage", source="builtin")
        self._register(local)
        for _, raw in store.scan_json("c/storage/"):
            self._register(StorageDef(**raw))
        self.apply_declared(declared, tables_using=lambda sid: 0)

    def apply_declared(self, declared: dict[str, dict],
                       tables_using: Callable[[str], int]) -> tuple[list[str], list[str]]:
        """Apply the config's [storage.<id>] sections, at start and on reload: new ones are
        added, changed ones replaced while their type and base stay (or no table uses them).
        Returns (what changed, what needs a restart)."""
        changed, restart = [], []
        with self.lock:
            for sid, raw in declared.items():
                new = self.from_options(sid, raw, source="config")
                old = self.defs.get(sid)
                if old is not None and old.source == "builtin":
                    raise InvalidParameterValue(f"storage.{sid}: the local storage cannot be redefined")
                if old is not None:
                    fields = ("storage_type", "base", "name", "description", "config",
                              "shared_tables_template", "user_tables_template")
                    if old.source == "config" and all(getattr(old, f) == getattr(new, f) for f in fields):
                        continue
                    if (old.storage_type, old.base) != (new.storage_type, new.base) and tables_using(sid):
                        restart.append(f"storage.{sid} (type or base of a storage in use)")
                        continue
                    new.created_at = old.created_at
                self._validate_new(new, replacing=sid)
                self.store.put_json(f"c/storage/{sid}", asdict(new))
                self._register(new)
                changed.append(f"storage.{sid} ({'added' if old is None else 'changed'})")
            for sid, d in list(self.defs.items()):
                if d.source == "config" and sid not in declared:
                    restart.append(f"storage.{sid} (removed from the config; the running daemon keeps it)")
        return changed, restart

    # ------------------------------------------------------------------ lookup
    def get(self, storage_id: str) -> Storage:
        s = self.storages.get(storage_id)
        if s is None:
            raise UndefinedObject(f"Storage '{storage_id}' does not exist")
        return s

    def all(self) -> list[tuple[StorageDef, Storage]]:
        return [(self.defs[k], self.storages[k]) for k in sorted(self.defs)]

    # ------------------------------------------------------------------ definitions
    @staticmethod
    def from_options(storage_id: str, opts: dict, source: str = "sql") -> StorageDef:
        """A definition from CREATE STORAGE options or a [storage.<id>] config section."""
        if not _ID.match(storage_id):
            raise InvalidParameterValue(f"invalid storage id {storage_id!r}")
        o = {k.lower(): v for k, v in opts.items()}
        known = {"type", "path", "base_directory", "name", "description", "config",
                 "shared_tables_template", "user_tables_template"}
        for k in o:
            if k not in known:
                raise InvalidParameterValue(f"unknown storage option {k.upper()!r}")
        stype = str(o.get("type", "")).lower()
        if stype not in TYPES:
            raise InvalidParameterValue(f"storage '{storage_id}': TYPE must be 'filesystem' or 's3'")
        config = o.get("config") or {}
        if isinstance(config, str):
            try:
                config = json.loads(config)
            except json.JSONDecodeError as exc:
                raise InvalidParameterValue(f"storage '{storage_id}': CONFIG is not valid JSON ({exc.msg})") from None
        if not isinstance(config, dict):
            raise InvalidParameterValue(f"storage '{storage_id}': CONFIG must be a JSON object")
        if stype == "filesystem":
            path = o.get("path") or o.get("base_directory")
            if not path or not os.path.isabs(str(path)):
                raise InvalidParameterValue(f"storage '{storage_id}': a filesystem storage needs an absolute PATH")
            base = os.path.normpath(str(path))
        else:
            base = str(o.get("base_directory") or o.get("path") or "")
            if not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$", base):
                raise InvalidParameterValue(
                    f"storage '{storage_id}': an s3 storage needs BASE_DIRECTORY 's3://bucket[/prefix]'")
            base = base.rstrip("/")
            if not config.get("endpoint") and not config.get("region"):
                raise InvalidParameterValue(f"storage '{storage_id}': CONFIG needs an endpoint or a region")
        return StorageDef(
            storage_id=storage_id, storage_type=stype, base=base,
            name=str(o.get("name") or storage_id), description=str(o.get("description") or ""),
            shared_tables_template=validate_template(str(o.get("shared_tables_template") or DEFAULT_SHARED),
                                                     "SHARED_TABLES_TEMPLATE"),
            user_tables_template=validate_template(str(o.get("user_tables_template") or DEFAULT_USER),
                                                   "USER_TABLES_TEMPLATE"),
            config=config, source=source,
        )

    def _validate_new(self, d: StorageDef, replacing: str | None = None) -> None:
        data_dir = os.path.realpath(self.data_dir)
        for other in self.defs.values():
            if other.storage_id in (d.storage_id, replacing) or other.storage_type != d.storage_type:
                continue
            a = os.path.realpath(d.base) if d.storage_type == "filesystem" else d.base
            b = os.path.realpath(other.base) if other.storage_type == "filesystem" else other.base
            if _overlaps(a, b):
                raise InvalidParameterValue(
                    f"storage '{d.storage_id}': its base {d.base} overlaps storage '{other.storage_id}' "
                    f"({other.base}); two storages never share files")
        if d.storage_type == "filesystem" and _overlaps(os.path.realpath(d.base), data_dir):
            raise InvalidParameterValue(
                f"storage '{d.storage_id}': PATH must be outside the data directory {self.data_dir}")

    def _register(self, d: StorageDef) -> Storage:
        old = self.storages.get(d.storage_id)
        storage = make_storage(d)
        self.defs[d.storage_id] = d
        self.storages[d.storage_id] = storage
        self.on_register(storage)
        if old is not None:
            old.close()
        return storage

    # ------------------------------------------------------------------ SQL
    def create(self, d: StorageDef, if_not_exists: bool = False) -> bool:
        with self.lock:
            if d.storage_id in self.defs:
                if if_not_exists:
                    return False
                raise DuplicateObject(f"Storage '{d.storage_id}' already exists")
            self._validate_new(d)
            storage = make_storage(d)
            check = storage.check()
            if check.status != "healthy":
                storage.close()
                raise StorageUnhealthy(
                    f"Storage '{d.storage_id}' failed its health check ({check.status}): {check.error or 'probe failed'}")
            self.store.put_json(f"c/storage/{d.storage_id}", asdict(d))
            self._register(d)
            return True

    @staticmethod
    def _sql_owned(d: StorageDef, verb: str, config_hint: str) -> None:
        """Only storages made in SQL change in SQL: `local` is fixed, config ones live in the file."""
        if d.source == "builtin":
            raise FeatureNotSupported(f"the local storage cannot be {verb}")
        if d.source == "config":
            raise FeatureNotSupported(
                f"storage '{d.storage_id}' is declared in the config file; {config_hint}")

    def alter(self, storage_id: str, changes: dict[str, str]) -> None:
        with self.lock:
            d = self.defs.get(storage_id)
            if d is None:
                raise UndefinedObject(f"Storage '{storage_id}' does not exist")
            self._sql_owned(d, "altered", "change it there and reload")
            new = StorageDef(**asdict(d))
            for key, value in changes.items():
                key = key.lower()
                if key not in ALTERABLE:
                    raise InvalidParameterValue(
                        f"cannot ALTER STORAGE ... SET {key.upper()}: settable are "
                        + ", ".join(a.upper() for a in ALTERABLE))
                if key == "config":
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError as exc:
                        raise InvalidParameterValue(f"CONFIG is not valid JSON ({exc.msg})") from None
                    if not isinstance(value, dict):
                        raise InvalidParameterValue("CONFIG must be a JSON object")
                elif key.endswith("_template"):
                    value = validate_template(value, key.upper())
                setattr(new, key, value)
            new.updated_at = now_iso()
            if "config" in {k.lower() for k in changes}:
                storage = make_storage(new)
                check = storage.check()
                storage.close()
                if check.status != "healthy":
                    raise StorageUnhealthy(
                        f"Storage '{storage_id}' with the new CONFIG failed its health check "
                        f"({check.status}): {check.error or 'probe failed'}")
            self.store.put_json(f"c/storage/{storage_id}", asdict(new))
            self._register(new)

    def drop(self, storage_id: str, tables_using: int, if_exists: bool = False) -> bool:
        with self.lock:
            d = self.defs.get(storage_id)
            if d is None:
                if if_exists:
                    return False
                raise UndefinedObject(f"Storage '{storage_id}' does not exist")
            self._sql_owned(d, "dropped", "remove it there")
            if tables_using:
                raise DependentObjectsStillExist(
                    f"Cannot drop storage '{storage_id}': {tables_using} table(s) still using it")
            self.store.delete(f"c/storage/{storage_id}")
            self.defs.pop(storage_id)
            storage = self.storages.pop(storage_id)
            self.on_unregister(storage)
            storage.close()
            return True

    def close(self) -> None:
        for s in self.storages.values():
            s.close()
