"""What one client session holds: its role, its DuckDB cursors, its settings and its
transaction; plus the small checks every statement handler shares.

Isolation, honestly: a transaction that writes holds the engine's single write lock from
its first write until COMMIT/ROLLBACK, so writing transactions are serialized and see a
snapshot that includes their own writes; reads before a transaction's first write see the
latest committed data as of each statement. Writes become durable (one fsync'd LevelDB
batch) and visible to others atomically at COMMIT.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
from typing import Iterator

import duckdb
import pyarrow as pa

from engine.catalog import pg_catalog, privileges, sequence_functions
from engine.catalog.tables import DEFAULT_NAMESPACE, TableDef
from engine.core import EngineCore
from engine.errors import UndefinedTable
from engine.tiers import views
from engine.session.settings import SETTINGS_DEFAULTS
from engine.sql import division, dml
from engine.sql.statements import split_qualified

# Client SQL resolves names in the table's namespace first, then in tierd's pg_catalog.
_SESSION_IDS = itertools.count(1)
SEARCH_PATH = f"SET search_path = 'memory.{DEFAULT_NAMESPACE},memory.main,{pg_catalog.PG}'"


class Transaction:
    """The session's transaction: explicit (BEGIN) or implicit (one statement, or the
    extended-protocol messages up to Sync), and the writes it has made but not committed."""

    def __init__(self):
        self.explicit = False  # inside BEGIN ... COMMIT
        self.segment = False  # inside an extended-protocol implicit transaction (until Sync)
        self.savepoints: list[tuple[str, int]] = []  # (name, writes before it)
        self.failed = False
        self.holds_lock = False
        self.in_duck_txn = False  # explicit transaction whose writes sit in a DuckDB transaction
        self.pending_shadow: set[int] = set()  # tables whose views shadow cold rows at COMMIT
        self.pending: list[tuple[int, int, pa.Table]] = []  # (table id, first _seq, rows)
        self.pending_index: dict[int, dict] = {}  # table id -> key -> KeyState, not yet committed

    def clear_writes(self) -> None:
        self.pending, self.pending_index = [], {}
        self.pending_shadow = set()
        self.in_duck_txn = False
        self.holds_lock = False


class SessionState:
    def __init__(self, engine: EngineCore, user: str):
        self.engine = engine
        self.user = user
        self.cur = engine.db.cursor()
        self.cur.execute(f"USE memory.{views.q(DEFAULT_NAMESPACE)}")
        self._sees_all_users: bool | None = None  # what this cursor's USER-table filter says
        self.cur.execute(SEARCH_PATH)
        self.check_cur = engine.db.cursor()  # always sees the latest committed state
        for macro in division.MACROS:
            self.cur.execute(macro)
        self.settings = dict(SETTINGS_DEFAULTS)
        self.tx = Transaction()
        self.stages: set[int] = set()  # tables with a typing stage table in this session
        self.running = threading.Lock()  # held while DuckDB runs a statement of this session
        self.catalog_dirty = False  # a USE of the system-column catalog still to undo
        self.cancel_requested = False
        # current_user & co. read this per-connection variable (Engine._create_identity_macros).
        self.cur.execute(f"SET VARIABLE {views.USER_VARIABLE} = {views.sql_str(user)}")
        self.session_id = next(_SESSION_IDS)  # currval / lastval are per session
        sequence_functions.set_session(self.cur, self.session_id)

    @property
    def holds_write_lock(self) -> bool:
        """A transaction of this session has written and holds the write lock until it ends
        (the wire layer times out such a transaction left idle by its client)."""
        return self.tx.holds_lock

    @property
    def is_superuser(self) -> bool:
        """Whether the connected role is a superuser now: read at each use, so ALTER USER ...
        [NO]SUPERUSER applies to open sessions at their next statement."""
        return self.engine.roles.is_superuser(self.user)

    def require_superuser(self, action: str) -> None:
        privileges.require_superuser(self.engine.roles, self.user, action)

    def check_user_scope(self) -> None:
        """Before a statement: the cursor's DuckDB variables say who is asking, for the views of
        USER tables (set once a USER table exists; unset, those views show no rows at all). A
        role's superuser flag may change (ALTER USER): the filter follows."""
        if self._sees_all_users is None and not self.engine.has_user_tables:
            return
        su = self.is_superuser
        if su != self._sees_all_users:
            views.set_session_user(self.cur, self.user, su)
            self._sees_all_users = su

    def split_name(self, qname: str) -> tuple[str, str]:
        return split_qualified(qname, DEFAULT_NAMESPACE)

    def resolve(self, target: dml.Target) -> TableDef:
        ns = target.namespace or DEFAULT_NAMESPACE
        t = self.engine.catalog.find(ns, target.name)
        if t is None:
            raise UndefinedTable(f'relation "{ns}.{target.name}" does not exist')
        return t

    @contextlib.contextmanager
    def system_columns(self, needed: bool = True) -> Iterator[None]:
        """Resolve names in the catalog whose views have _seq, _deleted and the owner column."""
        if not needed:
            yield
            return
        self.cur.execute(f"USE {views.FULL}.{views.q(DEFAULT_NAMESPACE)}")
        try:
            yield
        finally:
            self.restore_catalog()

    def restore_catalog(self) -> None:
        """Back to the catalog without system columns. In an aborted DuckDB transaction this
        fails; ROLLBACK and the next statement try again."""
        try:
            self.cur.execute(f"USE memory.{views.q(DEFAULT_NAMESPACE)}")
            self.cur.execute(SEARCH_PATH)
            self.catalog_dirty = False
        except duckdb.Error:
            self.catalog_dirty = True
