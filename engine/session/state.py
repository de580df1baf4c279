"""What one client session holds: its role, its DuckDB cursors, its settings and its
transaction; plus the small checks every statement handler shares.

Isolation, honestly: a transaction that writes holds the engine's write lock from its first
write until COMMIT/ROLLBACK: shared, with a row lock on each key it writes, while its writes
address rows by key (so writers of distinct keys run together and a writer of a held key
waits, then reads the committed version: READ COMMITTED); exclusive once it writes or reads
through DuckDB, and then writing transactions are serialized and see a snapshot that includes
their own writes. Writes become durable (one fsync'd LevelDB batch) and visible to others
atomically at COMMIT.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
from typing import Callable, Iterator

import duckdb
import pyarrow as pa

from engine.activity import Activity
from engine.catalog import pg_catalog, privileges, sequence_functions
from engine.catalog.tables import DEFAULT_NAMESPACE, TableDef
from engine.core import EngineCore
from engine.errors import EngineError, InvalidParameterValue, InvalidSchemaName, UndefinedTable
from engine.tiers import views
from engine.session.settings import SETTINGS_DEFAULTS, search_path_list, timeout_ms
from engine.catalog.pg_session import PID_VARIABLE
from engine.sql import division, dml
from engine.sql.statements import split_qualified

SCHEMAS_VARIABLE = pg_catalog.SCHEMAS_VARIABLE  # current_schema(), pg_table_is_visible read it
_SESSION_IDS = itertools.count(1)


class Transaction:
    """The session's transaction: explicit (BEGIN) or implicit (one statement, or the
    extended-protocol messages up to Sync), and the writes it has made but not committed."""

    def __init__(self):
        self.explicit = False  # inside BEGIN ... COMMIT
        self.segment = False  # inside an extended-protocol implicit transaction (until Sync)
        self.savepoints: list[tuple[str, int, int]] = []  # (name, writes before it, tables changed by DDL)
        self.failed = False
        self.holds_lock = False
        # Holding the write lock shared, with row locks (engine/tiers/write_locks.py): the
        # writes' _seq numbers are this transaction's own (1, 2, ...) until COMMIT numbers them.
        self.shared = False
        self.next_seq = 1
        self.in_duck_txn = False  # explicit transaction whose writes sit in a DuckDB transaction
        self.pending_shadow: set[int] = set()  # tables whose views shadow cold rows at COMMIT
        self.pending: list[tuple[int, int, pa.Table]] = []  # (table id, first _seq, rows)
        self.pending_index: dict[int, dict] = {}  # table id -> key -> KeyState, not yet committed
        # After DDL in an explicit transaction (engine/session/transaction_ddl.py): writes go
        # straight into the hot tables, and each table the DDL changed, as it was before.
        self.applied = False
        self.ddl_before: dict[int, object] = {}  # table id -> TableDef before, None if created
        # first _seq of a tombstone batch an UPDATE of keys wrote -> {old key: new key}, for
        # the ON UPDATE actions of foreign keys (engine/session/foreign_keys.py)
        self.key_updates: dict[int, dict] = {}

    def clear_writes(self) -> None:
        self.pending, self.pending_index = [], {}
        self.key_updates = {}
        self.applied = False
        self.ddl_before = {}
        self.pending_shadow = set()
        self.in_duck_txn = False
        self.holds_lock = False
        self.shared = False
        self.next_seq = 1


class SessionState:
    def __init__(self, engine: EngineCore, user: str):
        self.engine = engine
        self.user = user
        self.cur = engine.db.cursor()
        self._sees_all_users: bool | None = None  # what this cursor's USER-table filter says
        self.check_cur = engine.db.cursor()  # always sees the latest committed state
        for macro in division.MACROS:
            self.cur.execute(macro)
        self.settings = dict(SETTINGS_DEFAULTS)
        self.reset_settings = dict(SETTINGS_DEFAULTS)  # RESET's values: startup options change them
        self.schemas: list[str] = [DEFAULT_NAMESPACE]  # the search path's namespaces that exist
        self._applied: dict[str, object] = {}  # what apply_settings last gave DuckDB
        self.statement_timeout_ms = 0
        self.lock_timeout_ms = 0
        self.apply_settings()
        self.tx = Transaction()
        self.stages: dict[int, int] = {}  # table id -> revision of its typing stage table in this session
        self.point_plans: dict[str, object] = {}  # statement text -> its point-lookup analysis (session/reads.py)
        # write statements analysed (engine/session/writes.py, keyed_writes.py): (text or shape,
        # role, search path) -> ((catalog generation, roles generation), the analysis)
        self.write_analyses: dict[tuple, tuple] = {}
        self.running = threading.Lock()  # held while DuckDB runs a statement of this session
        self.catalog_dirty = False  # a USE of the system-column catalog still to undo
        self.cancel_requested = False
        self.cancel_reason = "user request"  # or "statement timeout": the 57014 message
        self.statement_lock = threading.Lock()  # a timeout never cancels the next statement
        self.statement_number = 0
        # current_user & co. read this per-connection variable (Engine._create_identity_macros).
        self.cur.execute(f"SET VARIABLE {views.USER_VARIABLE} = {views.sql_str(user)}")
        self.session_id = next(_SESSION_IDS)  # currval / lastval are per session
        sequence_functions.set_session(self.cur, self.session_id)
        # Who this session is to others: pg_stat_activity, pg_backend_pid(), signals.
        self.pid = engine.sessions.new_pid()
        self.cur.execute(f"SET VARIABLE {PID_VARIABLE} = {self.pid}")
        self.activity = Activity(self.pid, user, lambda: self.settings["application_name"], self.cancel,
                                 self.terminate, owner=self)
        self.on_terminate: Callable[[], None] | None = None  # the front end's: close the connection
        self.notifications: list[tuple[str, str]] = []  # NOTIFYs of the open transaction
        self.listen_changes: list[tuple[str, str | None]] = []  # LISTEN/UNLISTEN, applied at commit
        self.udf_error: EngineError | None = None  # an error a session function raised inside DuckDB
        self.holds_xact_locks = False
        self.local_settings: dict[str, str | None] = {}  # SET LOCAL: the values to restore at transaction end
        self.describing = False  # Describe binds a statement: its session functions must not act
        self.cursors: dict[str, object] = {}  # DECLAREd cursors by name (engine/session/cursors.py)
        self.fetching: duckdb.DuckDBPyConnection | None = None  # a FETCH's cursor connection, while it reads
        engine.sessions.add(self.activity)

    # ------------------------------------------------------------------ other sessions
    def cancel(self, reason: str = "user request") -> None:
        """From another thread: interrupt what this session is running (the statement fails
        with 57014 `canceling statement due to <reason>`)."""
        self.cancel_reason = reason
        self.cancel_requested = True
        try:
            self.cur.interrupt()
            self.check_cur.interrupt()
            fetching = self.fetching
            if fetching is not None:
                fetching.interrupt()
        except duckdb.Error:
            pass

    def terminate(self) -> None:
        """pg_terminate_backend: stop what runs and have the front end close the connection."""
        self.cancel("administrator command")
        if self.on_terminate is not None:
            self.on_terminate()

    def queue_notification(self, channel: str, payload: str) -> None:
        """NOTIFY / pg_notify(): sent when the transaction commits (each pair once)."""
        if (channel, payload) not in self.notifications:
            self.notifications.append((channel, payload))

    def advisory(self, op: str, key: tuple, shared: bool, xact: bool) -> bool | None:
        """An advisory lock function of this session (engine/session/functions.py)."""
        locks = self.engine.advisory_locks
        if op == "unlock_all":
            locks.release_all(self.pid)
            return None
        if op == "unlock":
            return locks.release(self.pid, key, shared)

        def waiting(on: bool) -> None:
            self.activity.wait_event_type, self.activity.wait_event = ("Lock", "advisory") if on else (None, None)

        self.holds_xact_locks = self.holds_xact_locks or xact
        granted = locks.acquire(self.pid, key, shared, xact, wait=op == "lock", cancelled=lambda: self.cancel_requested,
                                timeout_s=self.lock_timeout_ms / 1000, waiting=waiting)
        return granted if op == "try" else None

    def end_transaction(self, committed: bool) -> None:
        """The transaction (explicit, or the implicit one of a statement or a Sync segment)
        ended: its NOTIFYs go out and its LISTENs apply if it committed; its
        transaction-level advisory locks are released either way."""
        hub = self.engine.notifications
        if committed:
            for channel, op in self.listen_changes:
                if op == "listen":
                    hub.listen(self.pid, channel)
                else:
                    hub.unlisten(self.pid, channel or None)
            if self.notifications:
                hub.publish(self.pid, self.notifications)
        self.listen_changes, self.notifications = [], []
        for name, value in self.local_settings.items():
            if value is None:
                self.settings.pop(name, None)
            else:
                self.settings[name] = value
        self.local_settings = {}
        if self.holds_xact_locks:
            self.engine.advisory_locks.release_all(self.pid, ("xact",))
            self.holds_xact_locks = False
        for name, cursor in list(self.cursors.items()):  # cursors WITHOUT HOLD end with it
            if not cursor.hold:
                cursor.close()
                del self.cursors[name]

    def leave(self) -> None:
        """The session closes: others stop seeing it; its locks, LISTENs and cursors go."""
        for cursor in self.cursors.values():
            cursor.close()
        self.cursors.clear()
        self.engine.sessions.remove(self.pid)
        self.engine.notifications.detach(self.pid)
        self.engine.advisory_locks.release_all(self.pid, ("session", "xact"))

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

    # ------------------------------------------------------------------ settings applied
    def check_zone(self, value: str) -> str:
        """Apply a TimeZone name to this session's DuckDB connection (ICU: literals, casts to
        text, date_trunc, extract and interval arithmetic follow it); the name SHOW prints."""
        zone = value.strip()
        try:
            self.cur.execute(f"SET TimeZone = {views.sql_str(zone)}")
            known = self.cur.execute("SELECT current_setting('TimeZone')").fetchone()[0]
        except duckdb.Error:
            raise InvalidParameterValue(f'invalid value for parameter "TimeZone": "{value}"') from None
        self._applied["timezone"] = known if known.lower() == zone.lower() else zone
        return self._applied["timezone"]

    def apply_settings(self) -> None:
        """Before each statement: the settings DuckDB or the session acts on, brought in step
        with `settings` (changed by SET, startup options or set_config()). Cheap when nothing
        changed: a few dictionary and set lookups."""
        zone = self.settings["timezone"]
        if zone != self._applied.get("timezone"):
            try:
                self.settings["timezone"] = self.check_zone(zone)
            except InvalidParameterValue:
                self.settings["timezone"] = str(self._applied.get("timezone", "UTC"))
        path = self.settings["search_path"]
        seen = (path, self.engine.catalog.generation)
        if seen != self._applied.get("search_path_seen"):  # the path or the namespaces may have changed
            names = self.engine.catalog.namespaces
            key = (path, self.user in names, tuple(n in names for n in search_path_list(path)))
            if key != self._applied.get("search_path"):
                self.schemas = self.resolve_path(path)
                self._applied["search_path"] = key
                self.restore_catalog()
            self._applied["search_path_seen"] = seen
        for name in ("statement_timeout", "lock_timeout"):
            value = self.settings[name]
            if value != self._applied.get(name):
                try:
                    setattr(self, f"{name}_ms", timeout_ms(value))
                except InvalidParameterValue:
                    self.settings[name] = str(self._applied.get(name, "0"))
                self._applied[name] = self.settings[name]

    def resolve_path(self, path: str) -> list[str]:
        """The namespaces of a search_path value that exist, in order (`$user`: the role's
        own namespace, if there is one), as Postgres skips the missing ones."""
        names = self.engine.catalog.namespaces
        out = []
        for n in search_path_list(path):
            n = self.user if n == "$user" else n
            if n in names and n not in out:
                out.append(n)
        return out

    @property
    def creation_namespace(self) -> str:
        """Where an unqualified CREATE TABLE goes: the first namespace on the path."""
        if not self.schemas:
            raise InvalidSchemaName("no schema has been selected to create in")
        return self.schemas[0]

    def find_table(self, name: str) -> TableDef | None:
        """An unqualified table name looked up along the search path."""
        for ns in self.schemas:
            t = self.engine.catalog.find(ns, name)
            if t is not None:
                return t
        return None

    def split_name(self, qname: str) -> tuple[str, str]:
        ns, name = split_qualified(qname, "")
        if ns == "":
            t = self.find_table(name)
            ns = t.namespace if t is not None else (self.schemas[0] if self.schemas else DEFAULT_NAMESPACE)
        return ns, name

    def resolve(self, target: dml.Target) -> TableDef:
        if target.namespace:
            t = self.engine.catalog.find(target.namespace, target.name)
            if t is None:
                raise UndefinedTable(f'relation "{target.namespace}.{target.name}" does not exist')
            return t
        t = self.find_table(target.name)
        if t is None:
            raise UndefinedTable(f'relation "{target.name}" does not exist')
        return t

    @contextlib.contextmanager
    def system_columns(self, needed: bool = True) -> Iterator[None]:
        """Resolve names in the catalog whose views have _seq, _deleted and the owner column."""
        if not needed:
            yield
            return
        self.use_catalog(views.FULL)
        try:
            yield
        finally:
            self.restore_catalog()

    def use_catalog(self, catalog: str, con: duckdb.DuckDBPyConnection | None = None) -> None:
        """DuckDB resolves client names in `catalog` along the session's search path, then
        in tierd's pg_catalog (and `memory.main`, where the identity macros live)."""
        con = con or self.cur
        first = self.schemas[0] if self.schemas else DEFAULT_NAMESPACE
        con.execute(f"USE {catalog}.{views.q(first)}")
        path = [f"{catalog}.{views.q(n)}" for n in self.schemas] + [f"{catalog}.main", pg_catalog.PG]
        con.execute(f"SET search_path = {views.sql_str(','.join(path))}")
        listed = ", ".join(views.sql_str(n) for n in self.schemas)
        con.execute(f"SET VARIABLE {SCHEMAS_VARIABLE} = [{listed}]::VARCHAR[]")

    def reader_connection(self, system_columns: bool = False) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection of its own (a cursor's stream) that reads as this session:
        its role, pid, TimeZone, search path and SQL macros."""
        con = self.engine.db.cursor()
        try:
            for macro in division.MACROS:
                con.execute(macro)
            con.execute(f"SET VARIABLE {views.USER_VARIABLE} = {views.sql_str(self.user)}")
            if self._sees_all_users is not None:
                views.set_session_user(con, self.user, self._sees_all_users)
            con.execute(f"SET VARIABLE {PID_VARIABLE} = {self.pid}")
            con.execute(f"SET TimeZone = {views.sql_str(self.settings['timezone'])}")
            self.use_catalog(views.FULL if system_columns else "memory", con)
        except BaseException:
            con.close()
            raise
        return con

    def restore_catalog(self) -> None:
        """Back to the catalog without system columns. In an aborted DuckDB transaction this
        fails; ROLLBACK and the next statement try again."""
        try:
            self.use_catalog("memory")
            self.catalog_dirty = False
        except duckdb.Error:
            self.catalog_dirty = True
