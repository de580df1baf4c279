"""The Engine: start-up (open LevelDB and DuckDB, recover every table, start background work),
sessions, live settings and shutdown. What each part does lives in its own module:

    core.py        what a session reaches: the parts below, CREATE / DROP TABLE
    tiers/         the hot tier's shared state, the cold tier's manifests, the DuckDB views
    tiering/       flush (the commit protocol), compaction, jobs, policies, STREAM TTL, recovery
    session/       one client session: dispatch of statements, transactions, the write path
"""
from __future__ import annotations

import datetime
import logging
import os
import threading

from engine.catalog import pg_catalog, sequence_functions
from engine.catalog.sequences import Sequences
from engine.sql import functions as sql_functions
from engine.sql.dialects import load_dialects
from engine.catalog.flush_policy import parse_flush_policy
from engine.catalog.roles import RoleCatalog
from engine.catalog.storages import StorageCatalog
from engine.catalog.tables import DEFAULT_NAMESPACE, Catalog
from engine.tiers.cold import ColdTier
from engine.core import EngineConfig, EngineCore
from engine.errors import InvalidCatalogName
from engine.failpoints import Failpoints
from engine.storage.iceberg_catalog import IcebergCatalogs
from engine.tiers.hot import HotTier
from engine.tiers import views
from engine.tiers.point_lookup import PointLookups
from engine.activity import SessionRegistry
from engine.advisory_locks import AdvisoryLocks
from engine.notifications import NotificationHub
from engine.session import functions
from engine.session import settings
from engine.session.settings import pg_settings_rows
from engine.session.session import EngineSession
from engine.storage.backend import Storage
from engine.storage.hot_store import HotStore
from engine.storage.reaper import FileReaper
from engine.system_tables import SystemTables
from engine.tiering import recovery
from engine.tiering.publish import Publisher
from engine.tiering.service import TieringService

log = logging.getLogger("tierd.engine")

DATABASE = "tierd"

__all__ = ["DATABASE", "Engine", "EngineConfig"]


class Engine(EngineCore):
    def __init__(self, config: EngineConfig):
        load_dialects()  # before any session thread can race sqlglot's lazy dialect loading
        self.config = config
        self.data_dir = os.path.abspath(config.data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        parse_flush_policy(config.default_flush_policy)
        settings.set_server_defaults(config.server_settings)
        self._init_shapes()
        self.failpoints = Failpoints(config.failpoints)
        store = HotStore(os.path.join(self.data_dir, "hot"))
        self.ddl_lock = threading.RLock()
        self.catalog = Catalog(store)
        self.roles = RoleCatalog(store, config.superuser, config.superuser_password)
        self.db = views.open_database()
        self.admin = self.db.cursor()
        self.storages = StorageCatalog(store, self.data_dir, config.storages, self._register_storage,
                                       self._unregister_storage)
        self.hot = HotTier(store, self.db, self.catalog, lambda: config.lock_timeout_s, self.failpoints.hit)
        self.cold = ColdTier(store, self.storages, self.admin)
        self.point_lookups = PointLookups(self.catalog, self.hot, self.cold, self.visible_schema)
        if DEFAULT_NAMESPACE not in self.catalog.namespaces:
            self.catalog.create_namespace(DEFAULT_NAMESPACE)
        for ns in self.catalog.namespaces:
            views.create_namespace(self.admin, ns)
        for t in list(self.catalog.tables.values()):
            recovery.recover_table(self.admin, self.hot, self.cold, t)
        self.has_user_tables = any(t.is_user for t in self.catalog.tables.values())
        self.reaper = FileReaper()
        self.iceberg = IcebergCatalogs(config.iceberg, self.data_dir)
        publisher = Publisher(self.iceberg, self.cold, self.db, store, self.failpoints, self.reaper)
        self.system_tables = SystemTables(self.db, self.catalog, self.roles, self.storages, self.hot, self.cold,
                                          config, publisher)
        self.hot.mark_visible(self.hot.seq)  # everything recovered is visible
        self._create_identity_macros()
        self.sequences = Sequences(store)
        sequence_functions.install(self.admin, self.sequences, self.catalog, ("memory", views.FULL))
        pg_catalog.install(self.admin, pg_settings_rows(), datetime.datetime.now(datetime.timezone.utc))
        self.sessions = SessionRegistry(DATABASE, pg_catalog.DATABASE_OID,
                                        lambda name: pg_catalog.role_oid(name, name == self.roles.bootstrap))
        self.notifications = NotificationHub()
        self.advisory_locks = AdvisoryLocks()
        functions.install(self.admin, self)
        sql_functions.install(self.db, pg_catalog.PG)
        self.pg_catalog = pg_catalog.PgCatalog(config.type_oid)
        self.running_copies: dict[int, object] = {}  # session -> its COPY FROM (pg_stat_progress_copy)
        self.tiering = TieringService(self.catalog, self.hot, self.cold, self.db, self.failpoints, self.reaper,
                                      config.jobs, config, publisher)
        self.tiering.start(self.retry_unavailable)
        self.closed = False

    @property
    def store(self) -> HotStore:
        return self.hot.store

    @property
    def jobs(self):
        """The job runner (system.jobs, RETRY / KILL JOB)."""
        return self.tiering.jobs

    def connect(self, user: str, database: str) -> EngineSession:
        if database != DATABASE:
            raise InvalidCatalogName(f'database "{database}" does not exist')
        self.roles.require(user)
        return EngineSession(self, user)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.tiering.shutdown()
        self.storages.close()
        self.hot.store.close()
        self.db.close()

    def retry_unavailable(self) -> None:
        recovery.retry_unavailable(self.admin, self.catalog, self.hot, self.cold)

    def _create_identity_macros(self) -> None:
        """current_user, session_user, user and current_role (DuckDB parses all four as calls)
        name the session's role: macros in the `main` schema of each catalog a session USEs,
        which come before DuckDB's built-ins, read a variable each session sets on its own
        connection. Created once, so connecting never changes DuckDB's catalog."""
        for catalog in ("memory", views.FULL):
            for fn in ("current_user", "session_user", "current_role", "user"):
                self.admin.execute(f"CREATE MACRO {catalog}.main.{views.q(fn)}() "
                                   f"AS getvariable({views.sql_str(views.USER_VARIABLE)})")

    def _register_storage(self, storage: Storage) -> None:
        # S3: httpfs (already loaded by sandbox.lock_down, with its limits) and a secret scoped
        # to the storage's base.
        for stmt in storage.duckdb_setup():
            self.admin.execute(stmt)  # never logged: the secret statement holds the key

    def _unregister_storage(self, storage: Storage) -> None:
        for stmt in getattr(storage, "duckdb_teardown", lambda: [])():
            self.admin.execute(stmt)

    # ------------------------------------------------------------------ live settings (SIGHUP)
    LIVE_SETTINGS = ("default_flush_policy", "lock_timeout_s", "compaction_max_segments", "compaction_target_rows")
    LIVE_JOB_SETTINGS = ("max_retries", "backoff_base_s", "backoff_max_s", "retention_s")

    def apply_settings(self, settings: dict, job_settings: dict) -> None:
        """Change settings read at each use (names from LIVE_SETTINGS and LIVE_JOB_SETTINGS)."""
        if "default_flush_policy" in settings:
            parse_flush_policy(settings["default_flush_policy"])
        for name, value in settings.items():
            assert name in self.LIVE_SETTINGS, name
            setattr(self.config, name, value)
        for name, value in job_settings.items():
            assert name in self.LIVE_JOB_SETTINGS, name
            setattr(self.jobs.config, name, value)
        if "default_flush_policy" in settings:
            # Tables already past a new, lower rows threshold flush now, not at their next write.
            self.tiering.policies.on_commit([tid for tid, index in list(self.hot.index.items()) if index])

    def reload_storages(self, declared: dict[str, dict]) -> tuple[list[str], list[str]]:
        """SIGHUP: the config's storages again; returns (what changed, what needs a restart)."""
        with self.hot.locked():  # the DuckDB setup of an S3 storage runs on `admin`
            return self.storages.apply_declared(declared, self.tables_using)
