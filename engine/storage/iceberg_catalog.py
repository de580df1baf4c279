"""Where tierd finds its Iceberg catalog: the pyiceberg catalog (embedded SQLite in the data
dir by default, PostgreSQL or any SQLAlchemy URI shared by several daemons, or a REST
catalog), opened lazily so a catalog that is down never stops the daemon from starting, with
the file IO of each storage (its S3 endpoint and keys), since an Iceberg table's metadata lives
in the storage of its segments.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from typing import TYPE_CHECKING

import pyarrow as pa

from engine.storage.backend import Storage
from engine.storage.s3 import S3Storage

if TYPE_CHECKING:  # pyiceberg is imported at first use: a daemon that publishes nothing never loads it
    from pyiceberg.catalog import Catalog as PyCatalog
    from pyiceberg.table import Table
    from pyiceberg.table.name_mapping import NameMapping

CATALOG_NAME = "tierd"
NAME_MAPPING = "schema.name-mapping.default"


@dataclass
class IcebergSettings:
    """`[iceberg]`: publishing on by default; `catalog_uri` "" is the embedded SQLite catalog."""
    enabled: bool = True
    catalog_uri: str = ""  # "", a SQLAlchemy URI (postgresql+psycopg://...), or http(s):// (REST)
    node_id: str = ""  # "": generated once and kept in the data dir
    catch_up_interval_s: float = 10.0  # how often tables with unpublished commits are published

    def effective_uri(self, data_dir: str) -> str:
        if self.catalog_uri:
            return self.catalog_uri
        return f"sqlite:///{os.path.join(os.path.abspath(data_dir), 'iceberg', 'catalog.db')}"

    def redacted_uri(self, data_dir: str) -> str:
        """The URI without a password (for system views and logs)."""
        uri = self.effective_uri(data_dir)
        head, sep, rest = uri.partition("://")
        creds, at, host = rest.rpartition("@")
        if at and ":" in creds:
            creds = creds.split(":", 1)[0] + ":********"
        return f"{head}{sep}{creds}{at}{host}"


def file_io_properties(storage: Storage) -> dict[str, str]:
    """pyiceberg's FileIO settings for a storage: none for local files, endpoint and keys for S3."""
    if not isinstance(storage, S3Storage):
        return {}
    props = {"s3.region": storage.region, "s3.connect-timeout": str(storage.connect_timeout),
             "s3.request-timeout": str(max(storage.request_timeout, 10.0))}
    if storage.host:
        props["s3.endpoint"] = f"{storage.scheme}://{storage.host}"
        props["s3.force-virtual-addressing"] = "false" if storage.path_style else "true"
    if storage.access_key_id and storage.secret_access_key:
        props["s3.access-key-id"] = storage.access_key_id
        props["s3.secret-access-key"] = storage.secret_access_key
        if storage.session_token:
            props["s3.session-token"] = storage.session_token
    else:
        props["s3.anonymous"] = "true"
    return props


def name_mapping(schema, hidden: dict[str, int]) -> NameMapping:
    """The table's columns by name, and the segment columns the schema leaves out (`hidden`: name
    -> id outside the schema, so readers that need every file column mapped skip them). Used for
    segments written without field ids; the seam where ALTER TABLE's schema evolution would add
    or rename mapped names by column id."""
    from pyiceberg.table.name_mapping import MappedField, NameMapping, create_mapping_from_schema

    mapped = list(create_mapping_from_schema(schema).root)
    mapped += [MappedField(field_id=fid, names=[name]) for name, fid in hidden.items()]
    return NameMapping(root=mapped)


class IcebergCatalogs:
    """One pyiceberg catalog object per storage (same catalog, that storage's file IO)."""

    def __init__(self, settings: IcebergSettings, data_dir: str):
        self.settings = settings
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._catalogs: dict[tuple, PyCatalog] = {}

    def catalog(self, storage: Storage) -> PyCatalog:
        io = file_io_properties(storage)
        key = (storage.storage_id, tuple(sorted(io.items())))
        with self._lock:
            cat = self._catalogs.get(key)
            if cat is None:
                from pyiceberg.catalog import load_catalog

                uri = self.settings.effective_uri(self.data_dir)
                props: dict[str, str] = {"uri": uri, "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO", **io}
                if uri.startswith(("http://", "https://")):
                    props["type"] = "rest"
                else:
                    props["type"] = "sql"
                    props["warehouse"] = "file://" + os.path.join(os.path.abspath(self.data_dir), "iceberg")
                    props["pool_pre_ping"] = "true"  # a catalog server restarted since: reconnect, not fail
                    if uri.startswith("sqlite:"):
                        os.makedirs(os.path.join(self.data_dir, "iceberg"), exist_ok=True)
                cat = load_catalog(CATALOG_NAME, **props)
                self._catalogs[key] = cat
            return cat

    def forget(self) -> None:
        """Drop cached catalogs (a storage replaced, a catalog connection that went bad)."""
        with self._lock:
            for cat in self._catalogs.values():
                engine = getattr(cat, "engine", None)
                if engine is not None:
                    engine.dispose()
            self._catalogs.clear()

    def load(self, storage: Storage, identifier: str) -> Table | None:
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self.catalog(storage).load_table(identifier)
        except NoSuchTableError:
            return None

    def ensure(self, storage: Storage, identifier: str, location: str, schema: pa.Schema,
               hidden: dict[str, int]) -> Table:
        """The Iceberg table, created at `location` on first use (format v2, unpartitioned) with
        `schema`'s columns numbered 1..n in order, plus a name mapping for segments without
        field ids (`hidden`: segment columns left out). Another daemon may create it at the same
        moment: then its table is used."""
        from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError

        cat = self.catalog(storage)
        try:
            return cat.load_table(identifier)
        except NoSuchTableError:
            pass
        namespace = identifier.rsplit(".", 1)[0]
        try:
            cat.create_namespace(namespace)
        except NamespaceAlreadyExistsError:
            pass
        try:
            table = cat.create_table(identifier, schema=schema, location=location,
                                     properties={"format-version": "2", "tierd.created-by": "tierd"})
        except TableAlreadyExistsError:
            return cat.load_table(identifier)
        with table.transaction() as tx:
            tx.set_properties({NAME_MAPPING: name_mapping(table.schema(), hidden).model_dump_json()})
        return cat.load_table(identifier)

    def drop(self, storage: Storage, identifier: str) -> None:
        from pyiceberg.exceptions import NoSuchTableError

        try:
            self.catalog(storage).drop_table(identifier)
        except NoSuchTableError:
            pass
