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

from engine.storage.backend import Storage
from engine.storage.s3 import S3Storage

if TYPE_CHECKING:  # pyiceberg is imported at first use: a daemon that publishes nothing never loads it
    from pyiceberg.catalog import Catalog as PyCatalog
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

CATALOG_NAME = "tierd"


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

    def ensure(self, storage: Storage, identifier: str, location: str, schema: Schema) -> Table:
        """The Iceberg table, created at `location` on first use (format v2, unpartitioned).
        pyiceberg numbers a new table's columns afresh: the caller then commits `schema` with
        its own ids (iceberg_schema). Another daemon may create it at the same moment: then its
        table is used."""
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
            return cat.create_table(identifier, schema=schema, location=location,
                                    properties={"format-version": "2", "tierd.created-by": "tierd"})
        except TableAlreadyExistsError:
            return cat.load_table(identifier)

    def rename(self, storage: Storage, old: str, new: str) -> None:
        """ALTER TABLE ... RENAME TO: the Iceberg table takes the new identifier (done once:
        a retry finds the old one gone)."""
        from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError

        cat = self.catalog(storage)
        try:
            cat.create_namespace(new.rsplit(".", 1)[0])
        except NamespaceAlreadyExistsError:
            pass
        try:
            cat.rename_table(old, new)
        except NoSuchTableError:
            pass

    def drop(self, storage: Storage, identifier: str) -> None:
        from pyiceberg.exceptions import NoSuchTableError

        try:
            self.catalog(storage).drop_table(identifier)
        except NoSuchTableError:
            pass
