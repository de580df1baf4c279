"""One client session: statement dispatch, transactions and the write path.

Isolation, honestly: a transaction that writes holds the engine's single write lock from
its first write until COMMIT/ROLLBACK, so writing transactions are serialized and see a
snapshot that includes their own writes; reads before a transaction's first write see the
latest committed data as of each statement. Writes become durable (one fsync'd LevelDB
batch) and visible to others atomically at COMMIT.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterator, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine.sql import copy
from engine.sql import division
from engine.sql import dml
from engine.catalog import pg_catalog
from engine.sql import pg_compat
from engine.read import point_lookup
from engine.catalog import privileges
from engine.read import views
from engine.sql import sandbox
from engine.sql import refs
from engine.catalog.tables import OWNER, SYSTEM_COLUMNS, WRITTEN_AT, TableDef, check_identifier, parse_table_options
from engine.engine import (DEFAULT_NAMESPACE, IDENTITY_VARIABLE, NO_FAST_DEFAULT, NOW, STREAM_FLUSH_REFUSED,
                           Engine, KeyState, Tombstone, key_list)
from engine.errors import (
    ActiveSqlTransaction,
    DuplicateTable,
    EngineError,
    FeatureNotSupported,
    InFailedSqlTransaction,
    InsufficientPrivilege,
    InternalError,
    InvalidSchemaName,
    InvalidTableDefinition,
    NoActiveSqlTransaction,
    NotNullViolation,
    ObjectInUse,
    QueryCanceled,
    SyntaxError_,
    UndefinedObject,
    UndefinedParameter,
    UndefinedTable,
    UniqueViolation,
    from_duckdb,
)
from engine.sql.bytea import bytea_from_text
from engine.sql.division import checked_division
from engine.sql.error_position import locate
from engine.sql.param_types import infer_param_types
from engine.results import StatementResult, schema_with_sql_types, with_sql_types
from engine.sql.split import leading_words, max_placeholder, split_statements
from engine.sql.statements import parse_command, parse_create_table, parse_grant, parse_role_command, \
    parse_storage_command, unquote

log = logging.getLogger("tierd.session")
T = TypeVar("T")

_HIDDEN = re.compile(r"\b_(seq|deleted|user_id)\b", re.I)
_INTERNAL = re.compile(r"__tierd", re.I)
# DuckDB has a catalog named "system" too; client SQL means tierd's schema.
_SYSTEM = re.compile(r'(?<![.\w"])system\s*\.(?=\s*"?[A-Za-z_])', re.I)
READ_STATEMENTS = {"SELECT", "WITH", "VALUES", "TABLE", "EXPLAIN", "SHOW", "DESCRIBE", "SUMMARIZE", "FROM"}

# Postgres commands tierd does not run (yet): 0A000 rather than a syntax error.
KNOWN_COMMANDS = {
    "ALTER", "ANALYZE", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER", "COMMENT", "COPY", "DEALLOCATE",
    "DECLARE", "DISCARD", "DO", "EXECUTE", "FETCH", "GRANT", "IMPORT", "LISTEN", "LOAD", "LOCK",
    "MERGE", "MOVE", "NOTIFY", "PREPARE", "REASSIGN", "REFRESH", "REINDEX", "REVOKE",
    "SECURITY", "TRUNCATE", "UNLISTEN", "VACUUM", "ATTACH", "DETACH", "INSTALL",
    "PRAGMA", "EXPORT", "USE", "CHECKPOINT", "RETRY", "KILL",
}

SETTINGS_DEFAULTS = {
    "server_version": "15.0",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "datestyle": "ISO, MDY",
    "intervalstyle": "postgres",
    "timezone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "transaction_isolation": "serializable",
    "application_name": "",
    "search_path": DEFAULT_NAMESPACE,
    "server_version_num": "150000",
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "default_transaction_isolation": "serializable",
    "default_transaction_read_only": "off",
    "transaction_read_only": "off",
    "extra_float_digits": "1",
    "max_identifier_length": "63",
    "lc_collate": "C.UTF-8",
    "lc_ctype": "C.UTF-8",
    "lc_messages": "C.UTF-8",
    "max_connections": "100",
}
# SHOW's multi-word spellings.
_SHOW_ALIASES = {"transaction isolation level": "transaction_isolation", "time zone": "timezone"}
# Client SQL resolves names in the table's namespace first, then in tierd's pg_catalog.
_SEARCH_PATH = f"SET search_path = 'memory.{DEFAULT_NAMESPACE},memory.main,{pg_catalog.PG}'"


JOB_SCHEMA = pa.schema([("job_id", pa.string()), ("status", pa.string()), ("message", pa.string())])

_SIMPLE_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_large_string,
                 pa.types.is_boolean, pa.types.is_date32, pa.types.is_timestamp, pa.types.is_decimal)


def _to_arrow(values: list, typ: pa.DataType) -> pa.Array | None:
    """Python values as an Arrow array of `typ`, or None if that needs DuckDB's casts."""
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        # Postgres reads a string as bytea text (hex or escape format), DuckDB as escapes
        values = [bytea_from_text(v) if isinstance(v, str) else v for v in values]
    elif not any(check(typ) for check in _SIMPLE_TYPES):
        return None
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        return None


def _first_per_key(rows: pa.Table, keys: list) -> tuple[pa.Table, list]:
    seen, mask = set(), []
    for k in keys:
        mask.append(k not in seen)
        seen.add(k)
    return rows.filter(pa.array(mask, pa.bool_())), [k for k, m in zip(keys, mask) if m]


def _alive(st: KeyState, expired_seq: int) -> bool:
    """Live: not deleted, and (STREAM tables) newer than the table's newest expired _seq."""
    return not st.deleted and st.seq > expired_seq


def _pk_text(t: TableDef, key) -> str:
    cols = ", ".join(t.primary_key)
    parts = key if isinstance(key, tuple) else (key,)
    vals = ", ".join(str(v) for v in (parts[1:] if t.is_user else parts))  # never the owner
    return f"Key ({cols})=({vals}) already exists."


class EngineSession:
    def __init__(self, engine: Engine, user: str):
        self.engine = engine
        self.user = user
        self.cur = engine.db.cursor()
        self.cur.execute(f"USE memory.{views.q(DEFAULT_NAMESPACE)}")
        self._sees_all_users: bool | None = None  # what this cursor's USER-table filter says
        self.cur.execute(_SEARCH_PATH)
        self.check_cur = engine.db.cursor()  # always sees the latest committed state
        for macro in division.MACROS:
            self.cur.execute(macro)
        self.settings = dict(SETTINGS_DEFAULTS)
        self.explicit = False  # inside BEGIN ... COMMIT
        self.segment = False  # inside an extended-protocol implicit transaction (until Sync)
        self.savepoints: list[tuple[str, int]] = []  # (name, writes before it)
        self.failed = False
        self.holds_lock = False
        self.in_duck_txn = False  # explicit transaction whose writes sit in a DuckDB transaction
        self.pending_shadow: set[int] = set()
        self.pending: list[tuple[int, int, pa.Table]] = []
        self.pending_index: dict[int, dict] = {}
        self.stages: set[int] = set()
        self._running = threading.Lock()
        self._catalog_dirty = False  # a USE of the system-column catalog still to undo
        self.cancel_requested = False
        self._closed = False
        # current_user & co. read this per-connection variable (Engine._create_identity_macros).
        self.cur.execute(f"SET VARIABLE {IDENTITY_VARIABLE} = {views.sql_str(user)}")

    # ------------------------------------------------------------------ public
    @property
    def in_transaction(self) -> bool:
        return self.explicit

    @property
    def is_superuser(self) -> bool:
        """Whether the connected role (`self.user`) is a superuser now: read at each use, so
        ALTER USER ... [NO]SUPERUSER applies to open sessions at their next statement."""
        return self.engine.roles.is_superuser(self.user)

    def _require_superuser(self, action: str) -> None:
        privileges.require_superuser(self.engine.roles, self.user, action)

    def _check_user_scope(self) -> None:
        """Before a statement: the cursor's DuckDB variables say who is asking, for the views of
        USER tables (set once a USER table exists; unset, those views show no rows at all). A
        role's superuser flag may change (ALTER USER): the filter follows."""
        if self._sees_all_users is None and not self.engine.has_user_tables:
            return
        su = self.is_superuser
        if su != self._sees_all_users:
            views.set_session_user(self.cur, self.user, su)
            self._sees_all_users = su

    def execute(self, sql: str, params: list | None = None) -> list[StatementResult]:
        if params is None:
            return [self._one(s, None) for s in split_statements(sql)]
        return [self._one(sql, list(params))]

    def batchable(self, sql: str) -> bool:
        """Whether `execute_batch` can append many parameter rows of `sql` at once: a
        one-row INSERT ... VALUES typed in Python, without RETURNING or ON CONFLICT."""
        if (leading_words(sql, 1) or [""])[0] != "INSERT":
            return False
        try:
            p = dml.plan(sql)
        except EngineError:
            return False
        return (isinstance(p, dml.InsertPlan) and p.returning is None and not p.on_conflict_nothing
                and p.fast_values is not None and len(p.fast_values) == 1)

    def execute_batch(self, sql: str, param_rows: list[list]) -> tuple[list[StatementResult], EngineError | None]:
        """Run `sql` once per parameter row, with the outcome of that many `execute` calls:
        the results of the rows that ran and the error of the row that failed (None: all ran).
        A `batchable` INSERT whose rows all type in Python and violate no key is appended as
        one Arrow batch (a pipelined executemany: one plan, one append); any doubt about a
        row (a NULL in a NOT NULL column, a duplicate key, a value only DuckDB can cast)
        runs the rows one by one instead, so errors name the right row."""
        if len(param_rows) > 1 and self.batchable(sql):
            try:   # an error here (no such table, no privilege) is the first row's
                done = self._guarded("INSERT", sql, lambda: self._insert_batch(sql, param_rows))
            except EngineError as exc:
                return [], exc
            if done is not None:
                return done, None
        results: list[StatementResult] = []
        for params in param_rows:
            try:
                results.append(self._one(sql, list(params)))
            except EngineError as exc:
                return results, exc
        return results, None

    def describe(self, sql: str) -> tuple[list[str | None], pa.Schema | None]:
        """Parameter types (DuckDB type names, None if unknown) and the result schema (None:
        no rows) of one statement, without running it: Describe of a prepared statement.
        Errors are handled as a statement's are (`_guarded`)."""
        words = leading_words(sql, 3) or [""]

        def run() -> tuple[list[str | None], pa.Schema | None]:
            with self._running:
                return self._describe(sql, words)

        return self._guarded(words[0], sql, run)

    def begin_segment(self) -> None:
        """The wire's messages up to Sync form one implicit transaction: writes commit at
        `end_segment`, and an error rolls back every write of the segment (as Postgres)."""
        self.segment = True

    def end_segment(self) -> None:
        if not self.segment:
            return
        self.segment = False
        if not self.explicit:
            self._commit_write()

    def cancel(self) -> None:
        self.cancel_requested = True
        try:
            self.cur.interrupt()
            self.check_cur.interrupt()
        except duckdb.Error:
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._rollback_write()
        for c in (self.cur, self.check_cur):
            try:
                c.close()
            except duckdb.Error:
                pass

    # ------------------------------------------------------------------ dispatch
    def _one(self, sql: str, params: list | None) -> StatementResult:
        words = leading_words(sql, 3) or [""]
        return self._guarded(words[0], sql, lambda: self._dispatch(sql, words, params or []))

    def _guarded(self, first: str, sql: str, run: Callable[[], T]) -> T:
        """Run one statement: refused in a failed transaction; any error fails the
        transaction (or rolls back an implicit one) and never leaves the write lock held."""
        self.cancel_requested = False
        if self._catalog_dirty:
            self._restore_catalog()
        if self.failed and first not in ("ROLLBACK", "ABORT", "COMMIT", "END"):
            raise InFailedSqlTransaction(
                "current transaction is aborted, commands ignored until end of transaction block"
            )
        try:
            with self.engine.reaper.reading():
                return run()
        except duckdb.Error as exc:
            err = locate(from_duckdb(exc), sql)
            self._statement_failed()
            raise err from None
        except EngineError as err:
            locate(err, sql)
            self._statement_failed()
            raise
        except ConnectionError:  # the client went away in the middle (a COPY's data)
            self._statement_failed()
            raise
        except Exception as exc:  # never leave the write lock or a transaction behind
            log.exception("statement failed: %s", sql[:200])
            self._statement_failed()
            raise InternalError(f"internal error: {type(exc).__name__}: {exc}") from None

    def _statement_failed(self) -> None:
        if self.explicit:
            self.failed = True
        else:
            self._rollback_write()

    def _dispatch(self, sql: str, words: list[str], params: list) -> StatementResult:
        sandbox.check_command(sql)  # ATTACH, LOAD, COPY to a file, SET of engine settings...
        first = words[0]
        if first in ("BEGIN", "START"):
            self._own_writes_visible()
            self.explicit = True
            self.savepoints = []
            return StatementResult("BEGIN")
        if first in ("COMMIT", "END"):
            failed = self.failed
            if failed:
                self._rollback_write()
            else:
                self._commit_write()
            self.explicit = self.failed = False
            return StatementResult("ROLLBACK" if failed else "COMMIT")
        if first in ("SAVEPOINT", "RELEASE") or (first == "ROLLBACK" and words[1:2] == ["TO"]):
            return self._savepoint(sql)
        if first in ("ROLLBACK", "ABORT"):
            self._rollback_write()
            self.explicit = self.failed = False
            return StatementResult("ROLLBACK")
        if first in ("INSERT", "UPDATE", "DELETE"):
            return self._write_statement(sql, params)
        if first in ("CREATE", "DROP", "ALTER") and words[1:2] in (["USER"], ["ROLE"]) and \
                words[2:3] != ["TABLE"]:  # CREATE USER TABLE is a table
            return self._role_command(sql, f"{first} {words[1]}")
        if first in ("GRANT", "REVOKE"):
            return self._grant(sql)
        if first == "ALTER" and words[1:2] == ["TABLE"]:
            return self._alter_table(sql)
        if (first in ("CREATE", "DROP", "ALTER") and len(words) > 1 and words[1] == "STORAGE") or \
                (first == "SHOW" and words[1:2] == ["STORAGES"]) or (first == "STORAGE" and words[1:2] == ["CHECK"]):
            return self._storage_definition(sql)
        if first == "SET" or first == "RESET":
            return self._set(sql, words)
        if first == "SHOW":
            shown = self._show(sql)
            if shown is not None:
                return shown
        if first in READ_STATEMENTS:
            return self._query(sql, params)
        if first == "STORAGE":
            return self._storage_command(sql)
        if first in ("RETRY", "KILL") and len(words) > 1 and words[1] == "JOB":
            return self._job_command(sql)
        if first in ("CREATE", "DROP"):
            return self._ddl(sql, words)
        if first == "":
            return StatementResult("")
        if first in KNOWN_COMMANDS:
            raise FeatureNotSupported(f'statement "{first}" is not supported by tierd')
        raise SyntaxError_(f'syntax error at or near "{sql.split()[0]}"')

    # ------------------------------------------------------------------ savepoints
    def _savepoint(self, sql: str) -> StatementResult:
        """SAVEPOINT, RELEASE and ROLLBACK TO, as far as tierd can honour them: a savepoint
        marks how many writes the transaction has made, and ROLLBACK TO works when none were
        made since (it clears an error, as drivers' probes inside a transaction need); undoing
        writes back to a savepoint is not supported (0A000), the whole transaction can be."""
        m = re.match(r"^\s*(SAVEPOINT|RELEASE(?:\s+SAVEPOINT)?|ROLLBACK\s+TO(?:\s+SAVEPOINT)?)\s+"
                     r"(\"[^\"]+\"|\w+)\s*;?\s*$", sql, re.I)
        if not m:
            raise SyntaxError_("syntax error in savepoint statement")
        verb = m.group(1).split()[0].upper()
        name = unquote(m.group(2)) if m.group(2).startswith('"') else m.group(2).lower()
        if not self.explicit:
            raise NoActiveSqlTransaction(f"{verb} can only be used in transaction blocks")
        if verb == "SAVEPOINT":
            self.savepoints.append((name, len(self.pending)))
            return StatementResult("SAVEPOINT")
        at = next((i for i in range(len(self.savepoints) - 1, -1, -1) if self.savepoints[i][0] == name), None)
        if at is None:
            raise UndefinedObject(f'savepoint "{name}" does not exist')
        if verb == "RELEASE":
            del self.savepoints[at:]
            return StatementResult("RELEASE")
        if len(self.pending) != self.savepoints[at][1] or not self._duck_txn_usable():
            raise FeatureNotSupported("ROLLBACK TO SAVEPOINT after writes is not supported by tierd",
                                      hint="ROLLBACK the whole transaction")
        del self.savepoints[at + 1:]
        self.failed = False
        return StatementResult("ROLLBACK")

    def _duck_txn_usable(self) -> bool:
        if not self.in_duck_txn:
            return True
        try:
            self.cur.execute("SELECT 1")
            return True
        except duckdb.Error:
            return False

    # ------------------------------------------------------------------ reads
    def _check_read_only(self, sql: str) -> refs.SqlRefs:
        """Client SQL reaching DuckDB directly must only read, never tierd's internals (a write
        there would bypass LevelDB and the key index) and nothing outside the sandbox."""
        if _INTERNAL.search(sql):
            raise InsufficientPrivilege("permission denied: tierd's internal catalog __tierd is not accessible")
        return sandbox.check_query(sql)  # only queries, and nothing outside the sandbox

    def _show(self, sql: str) -> StatementResult | None:
        """SHOW of a Postgres setting (None: not one, DuckDB's SHOW may know the name)."""
        name = re.sub(r"\s+", " ", re.sub(r"^\s*SHOW\s+|\s*;?\s*$", "", sql, flags=re.I)).strip('"').lower()
        name = _SHOW_ALIASES.get(name, name)
        derived = {"is_superuser": "on" if self.is_superuser else "off", "session_authorization": self.user}
        value = self.settings.get(name, derived.get(name))
        if value is None:
            return None
        return StatementResult("SHOW", pa.table({name: [value]}))

    def _read_sql(self, sql: str) -> tuple[str, bool]:
        """Client read SQL as DuckDB runs it, and whether it needs the system-column catalog."""
        compat = pg_compat.rewrite(sql, self.settings)
        sql = compat.sql
        if compat.uses_catalog:
            self.engine.pg_catalog.refresh(self.engine.db, self.engine)
        self._check_select(self._check_read_only(compat.checked_sql).tables)
        if _SYSTEM.search(sql):
            self.engine.refresh_system_tables()
            sql = _SYSTEM.sub("memory.system.", sql)
        return checked_division(sql), bool(_HIDDEN.search(sql))

    def _query(self, sql: str, params: list) -> StatementResult:
        point = point_lookup.match(sql)
        sql, hidden = self._read_sql(sql)
        if point is not None and not self.holds_lock:  # after the privilege checks; a writing
            table = self.engine.point_lookups.run(self, point, params, DEFAULT_NAMESPACE)  # transaction
            if table is not None:  # reads its own snapshot
                return StatementResult(f"SELECT {table.num_rows}", table)
        self._own_writes_visible()
        self._check_user_scope()
        self.engine.materialize()
        with self._running:
            if hidden:
                self.cur.execute(f"USE {views.FULL}.{views.q(DEFAULT_NAMESPACE)}")
            try:
                self.cur.execute(sql, params)
                types = [d[1] for d in self.cur.description]
                table = with_sql_types(self.cur.to_arrow_table(), types)
            finally:
                if hidden:
                    self._restore_catalog()
        return StatementResult(f"SELECT {table.num_rows}", table)

    def _own_writes_visible(self) -> None:
        """An implicit transaction's writes wait for Sync outside DuckDB; before anything
        reads, move them into a DuckDB transaction so the segment sees its own writes."""
        if not self.holds_lock or self.in_duck_txn:
            return
        self.engine.settle()
        self.cur.execute("BEGIN")
        self.in_duck_txn = True
        for tid, _first, batch in self.pending:
            t = self.engine.catalog.by_tid(tid)
            self.cur.register("__batch", batch)
            try:
                self.cur.execute(f"INSERT INTO {views.hot_table(t)} SELECT * FROM __batch")
            finally:
                self.cur.unregister("__batch")

    # ------------------------------------------------------------------ describe
    def _describe(self, sql: str, words: list[str]) -> tuple[list[str | None], pa.Schema | None]:
        first = words[0]
        params = infer_param_types(sql, max_placeholder(sql), self._column_types)
        if first == "SHOW" and len(words) > 1 and words[1].lower() in self.settings:
            return params, pa.schema([(words[1].lower(), pa.string())])
        if first in READ_STATEMENTS:
            sql, hidden = self._read_sql(sql)
            if hidden:
                self.cur.execute(f"USE {views.FULL}.{views.q(DEFAULT_NAMESPACE)}")
            try:
                return params, self._schema_of(sql, params)
            finally:
                if hidden:
                    self._restore_catalog()
        if first in ("INSERT", "UPDATE", "DELETE"):
            p = dml.plan(sql)
            sandbox.check_write(p)  # binding may already touch files (a table function's glob)
            if p.returning is None:
                return params, None
            t = self._resolve(p.target)
            returning = f"SELECT {p.returning} FROM {views.visible_view(t)} AS {views.q(p.target.alias)}"
            used = max_placeholder(p.returning)
            return params, self._schema_of(returning, params[:used] + [None] * (used - len(params)))
        if first in ("RETRY", "KILL") or (first == "STORAGE" and words[1:2] != ["CHECK"]):
            return params, JOB_SCHEMA
        return params, None

    def _schema_of(self, sql: str, param_types: list[str | None]) -> pa.Schema:
        """The Arrow schema `sql` would produce, from DuckDB's binder (LIMIT 0, no rows read).
        Parameters of unknown type are bound as text, as they are at Bind."""
        values = ["" if typ is None or typ == "VARCHAR" else None for typ in param_types]
        rel = self.cur.sql(sql, params=values or None)
        return schema_with_sql_types(rel.limit(0).to_arrow_table().schema, rel.types)

    def _column_types(self, table) -> dict[str, str]:
        """Column name -> DuckDB type of a table named in client SQL (for parameter types)."""
        t = self.engine.catalog.find(table.db or DEFAULT_NAMESPACE, table.name)
        if t is not None:
            return {c.name: c.type for c in t.columns}
        name = ".".join(views.q(part) for part in (table.catalog, table.db, table.name) if part)
        sql, _ = self._read_sql(f"SELECT * FROM {name}")
        rel = self.cur.sql(sql)
        return {n: str(typ) for n, typ in zip(rel.columns, rel.types)}

    def _restore_catalog(self) -> None:
        """Back to the catalog without system columns. In an aborted DuckDB transaction this
        fails; ROLLBACK and the next statement try again."""
        try:
            self.cur.execute(f"USE memory.{views.q(DEFAULT_NAMESPACE)}")
            self.cur.execute(_SEARCH_PATH)
            self._catalog_dirty = False
        except duckdb.Error:
            self._catalog_dirty = True

    def _set(self, sql: str, words: list[str]) -> StatementResult:
        m = re.match(r"^\s*SET\s+(?:SESSION\s+|LOCAL\s+)?([A-Za-z_.]+)\s*(?:=|\s+TO\s+)\s*(.+?)\s*;?\s*$", sql, re.I | re.S)
        if words[0] == "RESET":
            name = words[1].lower() if len(words) > 1 else ""
            if name == "ALL".lower():
                self.settings = dict(SETTINGS_DEFAULTS)
            elif name in SETTINGS_DEFAULTS:
                self.settings[name] = SETTINGS_DEFAULTS[name]
            return StatementResult("RESET")
        tz = re.match(r"^\s*SET\s+(?:SESSION\s+)?TIME\s+ZONE\s+(.+?)\s*;?\s*$", sql, re.I | re.S)
        if tz:
            self.settings["timezone"] = tz.group(1).strip("'\"")
            return StatementResult("SET")
        if not m:
            raise FeatureNotSupported("unsupported SET statement")
        name, value = m.group(1).lower(), m.group(2).strip()
        if value.startswith("'") and value.endswith("'"):
            value = value[1:-1]
        self.settings[name] = value
        return StatementResult("SET")

    # ------------------------------------------------------------------ DDL
    def _ddl(self, sql: str, words: list[str]) -> StatementResult:
        self._require_superuser(" ".join(words[:2]))
        if self.holds_lock and not self.explicit:
            self._commit_write()  # DDL is not transactional: it ends an implicit transaction
        if self.holds_lock:
            raise ActiveSqlTransaction("DDL inside a transaction that has already written is not supported")
        eng = self.engine
        if words[0] == "CREATE" and "TABLE" in words[1:3]:
            return self._create_table(sql)
        cmd = parse_command(sql)
        if cmd is None:
            raise FeatureNotSupported(f'statement "{" ".join(words[:2])}" is not supported by tierd')
        with eng.ddl_lock:
            if cmd.kind == "create_namespace":
                name = unquote(cmd.args["name"])
                if eng.catalog.create_namespace(name, if_not_exists=cmd.args["if"]):
                    views.create_namespace(eng.admin, name)
                return StatementResult("CREATE SCHEMA")
            if cmd.kind == "drop_namespace":
                name = unquote(cmd.args["name"])
                if name not in eng.catalog.namespaces:
                    if cmd.args["if"]:
                        return StatementResult("DROP SCHEMA")
                    raise InvalidSchemaName(f'namespace "{name}" does not exist')
                tables = eng.catalog.tables_in(name)
                if tables and not (cmd.args.get("cascade") or "").strip().upper() == "CASCADE":
                    raise ObjectInUse(
                        f'cannot drop namespace "{name}" because {len(tables)} table(s) depend on it',
                        hint="Use DROP NAMESPACE ... CASCADE to drop the tables too.",
                    )
                for t in tables:
                    eng.stop_table_job(t)
                self._locked(lambda: [eng.drop_table(t) for t in tables])
                views.drop_namespace(eng.admin, name)
                eng.catalog.drop_namespace(name)
                return StatementResult("DROP SCHEMA")
            if cmd.kind == "drop_table":
                ns, name = self._split_name(cmd.args["name"])
                t = eng.catalog.find(ns, name)
                if t is None:
                    if cmd.args["if"]:
                        return StatementResult("DROP TABLE")
                    raise UndefinedTable(f'table "{ns}.{name}" does not exist')
                eng.stop_table_job(t)
                self._locked(lambda: eng.drop_table(t))
                self.stages.discard(t.tid)
                return StatementResult("DROP TABLE")
        raise FeatureNotSupported("statement not supported")

    def _locked(self, fn):
        self.engine.acquire_write_lock()
        try:
            return fn()
        finally:
            self.engine.write_lock.release()

    def _split_name(self, qname: str) -> tuple[str, str]:
        from engine.sql.statements import split_qualified

        return split_qualified(qname, DEFAULT_NAMESPACE)

    def _create_table(self, sql: str) -> StatementResult:
        eng = self.engine
        ct = parse_create_table(sql, DEFAULT_NAMESPACE)
        check_identifier(ct.name, "table")
        with eng.ddl_lock:
            eng.catalog.require_namespace(ct.namespace)
            if eng.catalog.find(ct.namespace, ct.name):
                if ct.if_not_exists:
                    return StatementResult("CREATE TABLE")
                raise DuplicateTable(f'relation "{ct.namespace}.{ct.name}" already exists')
            opts = parse_table_options(ct.options, ct.keyword_type)
            eng.require_storage(opts.storage_id)
            columns, pk = eng.probe_columns(ct.body)
            if not pk:
                raise InvalidTableDefinition(
                    f'table "{ct.namespace}.{ct.name}" needs a PRIMARY KEY',
                    hint="tierd keeps the newest version of each primary key; declare one, e.g. id BIGINT PRIMARY KEY",
                )
            for c in columns:
                if c.name.lower() in SYSTEM_COLUMNS:
                    raise InvalidTableDefinition(f'column name "{c.name}" is reserved for a system column')
            t = TableDef(tid=0, namespace=ct.namespace, name=ct.name, columns=columns, primary_key=pk,
                         table_type=opts.table_type, storage_id=opts.storage_id,
                         flush_policy=opts.flush_policy, ttl_seconds=opts.ttl_seconds, owner=self.user)
            self._locked(lambda: eng.create_table(t))
        return StatementResult("CREATE TABLE")

    # ------------------------------------------------------------------ roles and grants
    def _role_command(self, sql: str, what: str) -> StatementResult:
        """CREATE / ALTER / DROP USER|ROLE: superusers only, except a role changing its own
        password (as Postgres allows)."""
        cmd = parse_role_command(sql)
        roles, a = self.engine.roles, cmd.args
        own_password = cmd.kind == "alter_role" and a["name"] == self.user and set(a) == {"name", "password"}
        if not own_password:
            self._require_superuser(what)
        noun = what.split()[1]
        if cmd.kind == "create_role":
            roles.create(a["name"], superuser=a["superuser"], login=a["login"], password=a.get("password"))
            return StatementResult(f"CREATE {noun}")
        if cmd.kind == "alter_role":
            roles.alter(a["name"], superuser=a.get("superuser"), login=a.get("login"),
                        password=a.get("password"), clear_password="password" in a and a["password"] is None)
            return StatementResult(f"ALTER {noun}")
        with self.engine.ddl_lock:
            for name in a["names"]:
                owned = [t.qualified for t in self.engine.catalog.tables.values()
                         if privileges.owner_of(t, roles) == name]
                if roles.drop(name, self.user, if_exists=a["if"], owned=owned):
                    privileges.forget_role(self.engine.catalog, name)
        return StatementResult(f"DROP {noun}")

    def _grant(self, sql: str) -> StatementResult:
        """GRANT / REVOKE table privileges: by a superuser or the table's owner."""
        cmd = parse_grant(sql)
        eng = self.engine
        tables = [eng.catalog.get(*self._split_name(name)) for name in cmd.args["tables"]]
        for role in cmd.args["roles"]:
            eng.roles.require(role)
        for t in tables:
            if not self.is_superuser and privileges.owner_of(t, eng.roles) != self.user:
                raise InsufficientPrivilege(f"permission denied for table {t.name}",
                                            detail="Only its owner or a superuser may grant or revoke privileges.")
        with eng.ddl_lock:
            privileges.change_grants(eng.catalog, tables, cmd.args["roles"], cmd.args["privileges"],
                                     grant=cmd.kind == "grant")
        return StatementResult(cmd.kind.upper())

    def _alter_table(self, sql: str) -> StatementResult:
        """ALTER TABLE ns.t OWNER TO role (superusers only); other ALTER TABLE forms are not
        supported."""
        m = re.match(r"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(.+?)\s+OWNER\s+TO\s+(\S+?)\s*;?\s*$", sql, re.I | re.S)
        if not m:
            raise FeatureNotSupported("ALTER TABLE is not supported by tierd except ALTER TABLE t OWNER TO role")
        self._require_superuser("ALTER TABLE")
        eng = self.engine
        t = eng.catalog.get(*self._split_name(m.group(1)))
        role = eng.roles.require(unquote(m.group(2))).name
        with eng.ddl_lock:
            privileges.set_owner(eng.catalog, t, role)
        return StatementResult("ALTER TABLE")

    # ------------------------------------------------------------------ storage commands
    def _storage_command(self, sql: str) -> StatementResult:
        eng = self.engine
        cmd = parse_command(sql)
        if cmd is None or cmd.kind not in ("flush_table", "flush_all", "compact_table", "compact_all"):
            raise SyntaxError_(
                "unknown STORAGE command; expected STORAGE FLUSH|COMPACT TABLE ns.t [WAIT] "
                "or STORAGE FLUSH|COMPACT ALL [IN ns] [WAIT]")
        job_type = "flush" if cmd.kind.startswith("flush") else "compact"
        self._require_superuser(f"STORAGE {job_type.upper()}")
        wait = bool(cmd.args.get("wait"))
        if cmd.kind.endswith("_table"):
            ns, name = self._split_name(cmd.args["name"])
            tables = [eng.catalog.get(ns, name)]
            if tables[0].is_stream:
                raise FeatureNotSupported(STREAM_FLUSH_REFUSED if job_type == "flush" else
                                          "STORAGE COMPACT TABLE is not supported for STREAM tables")
        else:
            ns = unquote(cmd.args["ns"]) if cmd.args.get("ns") else None
            if ns is not None:
                eng.catalog.require_namespace(ns)
            tables = sorted((t for t in eng.catalog.tables.values()
                             if (ns is None or t.namespace == ns) and not t.is_stream),  # hot only
                            key=lambda t: t.qualified)
        started = "flush" if job_type == "flush" else "compaction"
        rows = []
        for t in tables:
            job = eng.request_job(job_type, t, wait, lambda: self.cancel_requested)
            if job.status in ("skipped", "failed", "cancelled"):
                message = job.message
            else:
                message = f"Storage {started} started for table '{t.qualified}'. Job ID: {job.job_id}"
            rows.append((job.job_id, job.status, message))
        return self._job_rows(rows)

    def _storage_definition(self, sql: str) -> StatementResult:
        """CREATE / ALTER / DROP STORAGE, SHOW STORAGES, STORAGE CHECK."""
        if self.holds_lock:
            raise ActiveSqlTransaction("storage commands inside a transaction that has written are not supported")
        eng = self.engine
        cmd = parse_storage_command(sql)
        if cmd is None:
            raise SyntaxError_("syntax error in storage command")
        if cmd.kind != "show_storages":
            self._require_superuser(cmd.kind.replace("_", " ").upper())
        catalog = eng.storages
        if cmd.kind == "create_storage":
            d = catalog.from_options(cmd.args["id"], cmd.args["options"])
            with eng.ddl_lock:
                catalog.create(d, if_not_exists=bool(cmd.args.get("ine")))
            return StatementResult("CREATE STORAGE")
        if cmd.kind == "alter_storage":
            with eng.ddl_lock:
                catalog.alter(cmd.args["id"], cmd.args["options"])
            return StatementResult("ALTER STORAGE")
        if cmd.kind == "drop_storage":
            with eng.ddl_lock:
                catalog.drop(cmd.args["id"], eng.tables_using(cmd.args["id"]), if_exists=bool(cmd.args.get("ie")))
            return StatementResult("DROP STORAGE")
        if cmd.kind == "show_storages":
            eng.refresh_system_tables()
            table = self.cur.execute("SELECT * FROM memory.system.storages ORDER BY storage_id").to_arrow_table()
            return StatementResult(f"SELECT {table.num_rows}", table)
        check = catalog.get(cmd.args["id"]).check()
        table = pa.table({
            "storage_id": [cmd.args["id"]], "status": [check.status], "readable": [check.readable],
            "writable": [check.writable], "listable": [check.listable], "deletable": [check.deletable],
            "latency_ms": [check.latency_ms], "error": pa.array([check.error], pa.string()),
        })
        return StatementResult("SELECT 1", table)

    def _job_rows(self, rows: list[tuple[str, str, str]]) -> StatementResult:
        table = pa.table({"job_id": [r[0] for r in rows], "status": [r[1] for r in rows],
                          "message": [r[2] for r in rows]}, schema=JOB_SCHEMA)
        return StatementResult(f"SELECT {table.num_rows}", table)

    def _job_command(self, sql: str) -> StatementResult:
        cmd = parse_command(sql)
        if cmd is None or cmd.kind not in ("retry_job", "kill_job"):
            raise SyntaxError_("syntax error: expected RETRY JOB 'id' or KILL JOB 'id'")
        self._require_superuser(cmd.kind.replace("_", " ").upper())
        jobs = self.engine.jobs
        if cmd.kind == "retry_job":
            job = jobs.retry(cmd.args["job"])
            message = f"Job {job.job_id} queued for retry (attempt {job.retry_count + 1})"
        else:
            job = jobs.kill(cmd.args["job"])
            message = (f"Job {job.job_id} cancelled" if job.status == "cancelled"
                       else f"Job {job.job_id} will be cancelled at its next step")
        return self._job_rows([(job.job_id, job.status, message)])

    # ------------------------------------------------------------------ write path
    def _resolve(self, target: dml.Target) -> TableDef:
        ns = target.namespace or DEFAULT_NAMESPACE
        t = self.engine.catalog.find(ns, target.name)
        if t is None:
            raise UndefinedTable(f'relation "{ns}.{target.name}" does not exist')
        return t

    def _check_select(self, refs) -> None:
        """SELECT privilege on every tierd table a statement reads (sql_refs / dml plan refs)."""
        for t in privileges.resolve(self.engine.catalog, refs, DEFAULT_NAMESPACE):
            privileges.check_table(self.engine.roles, self.user, t, "SELECT")

    def _check_write(self, t: TableDef, p) -> None:
        """The privileges a write needs, as in Postgres: INSERT/UPDATE/DELETE on its target,
        SELECT on it too when it reads the target's rows (a WHERE clause, RETURNING), and
        SELECT on every other table it reads (INSERT ... SELECT, FROM, USING, subqueries)."""
        needed = ["INSERT" if isinstance(p, dml.InsertPlan) else
                  "UPDATE" if isinstance(p, dml.UpdatePlan) else "DELETE"]
        if p.returning is not None or (not isinstance(p, dml.InsertPlan) and re.search(r"\bWHERE\b", p.select_sql)):
            needed.append("SELECT")
        privileges.check_table(self.engine.roles, self.user, t, *needed)
        self._check_select(p.reads)

    def _begin_write(self) -> None:
        """Take the write lock; an explicit transaction also opens its DuckDB snapshot now."""
        if self.holds_lock:
            return
        eng = self.engine
        eng.acquire_write_lock()
        self.holds_lock = True
        try:
            if self.explicit:
                eng.settle()  # the snapshot must hold every committed row
                self.cur.execute("BEGIN")
                self.in_duck_txn = True
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        self.pending, self.pending_index = [], {}
        self.pending_shadow = set()
        self.in_duck_txn = False
        self.holds_lock = False
        self.engine.write_lock.release()

    def _commit_write(self) -> None:
        if not self.holds_lock:
            return
        if not self.in_duck_txn:
            self._group_commit()
            return
        eng = self.engine
        written = list(self.pending_index)
        try:
            if self.pending:  # the queue was drained when this transaction began
                eng.store.commit(self.pending, eng.seq)
        except BaseException:
            self._rollback_write()
            raise
        try:
            self.cur.execute("COMMIT")
            eng.visible_seq = max(eng.visible_seq, eng.seq)
            eng.shadowing |= self.pending_shadow
            self._update_hot_index()
        finally:
            self._release()
        if written:
            eng.policies.on_commit(written)

    def _group_commit(self) -> None:
        """Autocommit: queue the batches, let the next writer in, and return once they are
        durable (engine/storage/group_commit.py). The key index is updated before the lock goes, so
        the next writer's uniqueness check already sees these keys."""
        eng = self.engine
        written = list(self.pending_index)
        if not self.pending:
            self._release()
            return
        undo = self._update_hot_index()
        ticket = eng.commits.enqueue(self.pending, eng.seq, undo)
        self._release()
        eng.commits.wait(ticket)
        eng.policies.on_commit(written)

    def _update_hot_index(self):
        """Apply this transaction's key states to the engine's index; returns an undo that
        restores the previous states of keys still holding ours (a failed group write)."""
        eng = self.engine
        applied: list[tuple[dict, dict, dict]] = []  # (index, our changes, states they replaced)
        for tid, changes in self.pending_index.items():
            index = eng.hot_index.get(tid)
            if index is None:
                continue
            replaced = {k: index[k] for k in changes if k in index}
            index.update(changes)
            applied.append((index, changes, replaced))

        def undo() -> None:
            for index, changes, replaced in reversed(applied):
                for k, ours in changes.items():
                    if index.get(k) is ours:
                        if k in replaced:
                            index[k] = replaced[k]
                        else:
                            index.pop(k, None)
        return undo

    def _rollback_write(self) -> None:
        if not self.holds_lock:
            return
        try:
            if self.in_duck_txn:
                self.cur.execute("ROLLBACK")
        except duckdb.Error:
            pass
        finally:
            self.stages.clear()  # temp tables created inside the transaction are gone
            if self._catalog_dirty:
                self._restore_catalog()
            self._release()

    def _write_statement(self, sql: str, params: list) -> StatementResult:
        p = dml.plan(sql)
        sandbox.check_write(p)  # its source, FROM, WHERE and RETURNING run in DuckDB too
        t = self._resolve(p.target)
        self._check_write(t, p)
        if p.param_count > len(params):
            raise UndefinedParameter(f"there is no parameter ${len(params) + 1}")
        params = params[: p.param_count]
        self._check_user_scope()
        self._begin_write()
        with self._running:
            if isinstance(p, dml.InsertPlan):
                result = self._insert(t, p, params)
            elif isinstance(p, dml.UpdatePlan):
                result = self._update(t, p, params)
            else:
                result = self._delete(t, p, params)
        if not self.explicit and not self.segment:
            self._commit_write()
        return result

    def _insert_batch(self, sql: str, param_rows: list[list]) -> list[StatementResult] | None:
        """The rows of a `batchable` INSERT as one multi-row VALUES typed in Python and one
        append; None, before any write, when a row needs the one-by-one path."""
        sandbox.check_command(sql)
        p = dml.plan(sql)
        sandbox.check_write(p)
        t = self._resolve(p.target)
        self._check_write(t, p)
        k = p.param_count
        if any(len(params) < k for params in param_rows):
            return None
        row = p.fast_values[0]
        values = tuple(tuple(("p", j * k + v) if kind == "p" else (kind, v) for kind, v in row)
                       for j in range(len(param_rows)))
        flat = [v for params in param_rows for v in params[:k]]
        try:
            rows = self._fast_rows(t, dataclasses.replace(p, fast_values=values), flat)
        except NotNullViolation:
            return None
        if rows is None:
            return None
        rows = self._owned(t, rows)   # as _insert_rows: a USER table's rows get their owner
        keys = key_list(t, rows)
        if len(set(keys)) != len(keys):
            return None
        self._check_user_scope()
        self._begin_write()
        with self._running:
            if self._live_keys(t, keys):
                return None
            self._append(t, rows, deleted=False, keys=keys)
        if not self.explicit and not self.segment:
            self._commit_write()
        return [StatementResult("INSERT 0 1") for _ in param_rows]

    def _stage(self, t: TableDef) -> str:
        """A per-session temp table with the table's defaults and NOT NULLs, to type rows."""
        name = f"temp.main.__stage_{t.tid}"
        if t.tid not in self.stages:
            cols = []
            for c in t.columns:
                spec = f"{views.q(c.name)} {c.type}"
                if c.default is not None:
                    spec += f" DEFAULT {c.default}"
                if not c.nullable:
                    spec += " NOT NULL"
                cols.append(spec)
            self.cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS __stage_{t.tid} ({', '.join(cols)})")
            self.stages.add(t.tid)
        return name

    def _typed(self, t: TableDef, sql: str, params: list, source: pa.Table | None = None) -> pa.Table:
        stage = self._stage(t)
        if source is not None:
            self.cur.register("__source", source)
        try:
            return self.cur.execute(sql.replace(dml.STAGE, stage), params).to_arrow_table()
        finally:
            if source is not None:
                self.cur.unregister("__source")
            try:
                self.cur.execute(f"DELETE FROM {stage}")
            except duckdb.Error:
                pass  # an aborted transaction: its rollback empties the stage

    def _hot_state(self, t: TableDef, key) -> KeyState | None:
        st = self.pending_index.get(t.tid, {}).get(key)
        return st if st is not None else self.engine.hot_index[t.tid].get(key)

    def _live_keys(self, t: TableDef, keys: list) -> set:
        live, unknown = set(), []
        expired = self.engine.expired_seq(t)
        for k in keys:
            st = self._hot_state(t, k)
            if st is None:
                unknown.append(k)
            elif _alive(st, expired):
                live.add(k)
        if unknown:
            live |= self.engine.cold_live_keys(self.check_cur, t, unknown)
        return live

    def _owned(self, t: TableDef, rows: pa.Table, owners: pa.ChunkedArray | None = None) -> pa.Table:
        """A USER table's rows with their owner: given (an UPDATE keeps each row's), else the
        writer. A superuser's INSERT goes to the superuser's own scope, as in Postgres RLS."""
        if not t.is_user:
            return rows
        if owners is None:
            owners = pa.array([self.user] * rows.num_rows, pa.string())
        return rows.append_column(OWNER, owners)

    def _append(self, t: TableDef, rows: pa.Table, deleted: bool, keys: list | None = None) -> None:
        """Write new versions of `rows` (visible columns plus a USER table's owner, table
        types) into the hot tier; `keys`: their key_list, if the caller has it."""
        n = rows.num_rows
        if n == 0:
            return
        eng = self.engine
        first = eng.seq + 1
        eng.seq += n
        seqs = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n), start=first - 1)
        batch = rows.append_column("_seq", seqs)
        batch = batch.append_column("_deleted", pa.repeat(pa.scalar(deleted, pa.bool_()), n))
        if t.is_stream:  # never behind an earlier write: versions expire in _seq order
            written = eng.stream_clock = max(time.time(), eng.stream_clock)
            stamp = pa.scalar(datetime.fromtimestamp(written, timezone.utc), pa.timestamp("us", tz="UTC"))
            batch = batch.append_column(WRITTEN_AT, pa.repeat(stamp, n))
            eng.note_stream_write(t, written, first + n - 1)
        if self.in_duck_txn:  # visible to this transaction at once, to others at COMMIT
            self.cur.register("__batch", batch)
            try:
                self.cur.execute(f"INSERT INTO {views.hot_table(t)} SELECT * FROM __batch")
            finally:
                self.cur.unregister("__batch")
        self.pending.append((t.tid, first, batch))
        index = self.pending_index.setdefault(t.tid, {})
        index.update(zip(keys if keys is not None else key_list(t, rows),
                         map(Tombstone if deleted else KeyState, range(first, first + n))))

    def _shadow(self, t: TableDef) -> None:
        """UPDATE/DELETE may supersede cold rows: switch the view before writing."""
        eng = self.engine
        if not self.in_duck_txn:
            eng.ensure_shadowing(t)
        elif t.tid not in eng.shadowing and t.tid not in self.pending_shadow and eng.has_cold(t):
            # Inside this transaction's snapshot; takes effect for others at COMMIT.
            self.cur.execute(views.full_view_sql(t, shadowing=True))
            self.pending_shadow.add(t.tid)

    def _tombstones(self, t: TableDef, rows: pa.Table) -> pa.Table:
        schema = self.engine.visible_schema(t)
        cols = [rows.column(f.name) if f.name in t.primary_key else pa.nulls(rows.num_rows, f.type)
                for f in schema]
        return self._owned(t, pa.table(cols, schema=schema), rows.column(OWNER) if t.is_user else None)

    def _returning(self, t: TableDef, alias: str, expr: str | None, rows: pa.Table, params: list) -> pa.Table | None:
        if expr is None:
            return None
        used = max((int(n) for n in re.findall(r"\$(\d+)", expr)), default=0)
        self.cur.register("__ret", rows)
        try:
            self.cur.execute(f"SELECT {expr} FROM __ret AS {views.q(alias)}", params[:used])
            return with_sql_types(self.cur.to_arrow_table(), [d[1] for d in self.cur.description])
        finally:
            self.cur.unregister("__ret")

    def _duplicate_in(self, t: TableDef, keys: list) -> None:
        seen = set()
        for k in keys:
            if k in seen:
                raise UniqueViolation(f'duplicate key value violates unique constraint "{t.name}_pkey"',
                                      detail=_pk_text(t, k))
            seen.add(k)

    def _fast_rows(self, t: TableDef, p: dml.InsertPlan, params: list) -> pa.Table | None:
        """Type a VALUES list in Python, without DuckDB; None when only DuckDB can (or must
        produce the error)."""
        eng = self.engine
        width = len(p.fast_values[0])
        names = list(p.columns) if p.columns is not None else t.column_names[:width]
        if len(names) != width or len(set(names)) != width or not set(names) <= set(t.column_names):
            return None
        position = {n: i for i, n in enumerate(names)}
        schema = eng.visible_schema(t)
        arrays = []
        n = len(p.fast_values)
        for c, f in zip(t.columns, schema):
            i = position.get(c.name)
            if i is not None:
                values = [params[v] if kind == "p" else v for kind, v in (row[i] for row in p.fast_values)]
            elif c.default is None:
                values = [None] * n
            else:
                d = eng.default_value(t, c)
                if d is NO_FAST_DEFAULT:
                    return None
                values = [datetime.now(timezone.utc) if d is NOW else d] * n
            if pa.types.is_string(f.type) and c.type.upper() != "VARCHAR":
                return None  # UUID, JSON, ENUM...: DuckDB's cast canonicalises the text
            arr = _to_arrow(values, f.type)
            if arr is None:
                return None
            if not c.nullable and arr.null_count:
                raise NotNullViolation(
                    f'null value in column "{c.name}" of relation "{t.name}" violates not-null constraint')
            arrays.append(arr)
        return pa.table(arrays, schema=schema)

    def _insert(self, t: TableDef, p: dml.InsertPlan, params: list) -> StatementResult:
        rows = None
        if p.fast_values is not None:
            rows = self._fast_rows(t, p, params)
        if rows is None:
            rows = self._slow_rows(t, p, params)
        return self._insert_rows(t, p, rows, params)

    def _slow_rows(self, t: TableDef, p: dml.InsertPlan, params: list) -> pa.Table:
        self._own_writes_visible()
        self.engine.settle()  # INSERT ... SELECT may read any table
        sql = p.stage_sql
        if dml.COLUMNS_PREFIX in sql:
            sql = re.sub(re.escape(dml.COLUMNS_PREFIX) + r"(\d+)",
                         lambda m: "(" + ", ".join(views.q(c) for c in t.column_names[: int(m.group(1))]) + ")",
                         sql, count=1)
        return self._typed(t, sql, params)

    def _insert_rows(self, t: TableDef, p: dml.InsertPlan, rows: pa.Table, params: list) -> StatementResult:
        rows = self._owned(t, rows)
        keys = key_list(t, rows)
        if p.on_conflict_nothing and len(set(keys)) != len(keys):  # the first of each key wins
            rows, keys = _first_per_key(rows, keys)
        self._duplicate_in(t, keys)
        live = self._live_keys(t, keys)
        if live:
            if not p.on_conflict_nothing:
                k = next(k for k in keys if k in live)
                raise UniqueViolation(f'duplicate key value violates unique constraint "{t.name}_pkey"',
                                      detail=_pk_text(t, k))
            rows = rows.filter(pa.array([k not in live for k in keys], pa.bool_()))
        self._append(t, rows, deleted=False)
        ret = self._returning(t, p.target.alias, p.returning, rows.select(t.column_names), params)
        return StatementResult(f"INSERT 0 {rows.num_rows}", ret)

    def _affected(self, t: TableDef, select_sql: str, params: list) -> tuple[pa.Table, list]:
        """The rows an UPDATE/DELETE touches, once per key (a join may match a row twice:
        the first match wins), and their keys."""
        self._own_writes_visible()
        self._shadow(t)
        self.engine.settle()
        if t.is_user:  # the owner of each row comes along: the full view has it
            self.cur.execute(f"USE {views.FULL}.{views.q(DEFAULT_NAMESPACE)}")
            try:
                sel = self.cur.execute(select_sql, params).to_arrow_table()
            finally:
                self._restore_catalog()
        else:
            sel = self.cur.execute(select_sql, params).to_arrow_table()
        keys = key_list(t, sel)
        if len(set(keys)) != len(keys):
            sel, keys = _first_per_key(sel, keys)
        return sel, keys

    def _update(self, t: TableDef, p: dml.UpdatePlan, params: list) -> StatementResult:
        sel, old_keys = self._affected(t, p.select_sql, params)
        unknown = [c for c in p.set_columns if c not in t.column_names]
        if unknown:
            raise from_duckdb(duckdb.BinderException(f'column "{unknown[0]}" of relation "{t.name}" does not exist'))
        cols = []
        for c in t.column_names:
            if c in p.set_columns:
                idx = len(p.set_columns) - 1 - list(reversed(p.set_columns)).index(c)
                cols.append(sel.column(f"__new_{idx}"))
            else:
                cols.append(sel.column(c))
        new = pa.table(cols, names=t.column_names)
        typed = self._typed(t, f"INSERT INTO {dml.STAGE} SELECT * FROM __source RETURNING *", [], new)
        typed = self._owned(t, typed, sel.column(OWNER) if t.is_user else None)
        new_keys = key_list(t, typed)
        old_set = set(old_keys)
        if new_keys != old_keys:
            self._duplicate_in(t, new_keys)
            moved_in = [k for k in new_keys if k not in old_set]
            live = self._live_keys(t, moved_in)
            if live:
                raise UniqueViolation(f'duplicate key value violates unique constraint "{t.name}_pkey"',
                                      detail=_pk_text(t, next(iter(live))))
            new_set = set(new_keys)
            gone = sel.filter(pa.array([k not in new_set for k in old_keys], pa.bool_()))
            self._append(t, self._tombstones(t, gone), deleted=True)
        self._append(t, typed, deleted=False)
        ret = self._returning(t, p.target.alias, p.returning, typed.select(t.column_names), params)
        return StatementResult(f"UPDATE {typed.num_rows}", ret)

    def _delete(self, t: TableDef, p: dml.DeletePlan, params: list) -> StatementResult:
        sel, _ = self._affected(t, p.select_sql, params)
        self._append(t, self._tombstones(t, sel), deleted=True)
        ret = self._returning(t, p.target.alias, p.returning, sel.select(t.column_names), params)
        return StatementResult(f"DELETE {sel.num_rows}", ret)

    # ------------------------------------------------------------------ COPY
    def copy_target(self, command: copy.CopyCommand) -> list[copy.TargetColumn]:
        """Check COPY FROM before any data flows: the columns it reads, in input order."""
        def check() -> list[copy.TargetColumn]:
            t = self._copy_into(command)
            schema = self.engine.visible_schema(t)
            return [copy.TargetColumn(c.name, schema.field(c.name).type, c.type)
                    for c in copy.target_columns(t, command)]
        return self._guarded("COPY", "COPY", check)

    def copy_from(self, command: copy.CopyCommand, blocks: Iterator[copy.RawBlock]) -> StatementResult:
        """COPY ... FROM STDIN: every block of `blocks` typed, key-checked and staged in this
        write transaction; all rows commit together (one fsync'd batch) or none do."""
        return self._guarded("COPY", "COPY", lambda: self._copy_from(command, blocks))

    def copy_to(self, command: copy.CopyCommand) -> StatementResult:
        """COPY ... TO STDOUT: the rows to send (the front end encodes them); tag `COPY n`."""
        return self._guarded("COPY", "COPY", lambda: self._copy_to(command))

    def _copy_into(self, command: copy.CopyCommand) -> TableDef:
        t = self._resolve(dml.Target(command.namespace, command.table, command.table))
        privileges.check_table(self.engine.roles, self.user, t, "INSERT")
        return t

    def _copy_from(self, command: copy.CopyCommand, blocks: Iterator[copy.RawBlock]) -> StatementResult:
        t = self._copy_into(command)
        targets = copy.target_columns(t, command)
        schema = self.engine.visible_schema(t)
        self._begin_write()
        count = 0
        with self._running:
            for block in blocks:
                if self.cancel_requested:
                    raise QueryCanceled("canceling statement due to user request")
                # check_cur: a failed cast must not abort this transaction's DuckDB snapshot
                rows = self._owned(t, copy.typed_rows(self.check_cur, t, schema, targets, block.rows,
                                                      block.first_line, t.name))
                keys = self._copy_check_keys(t, rows, block.first_line)
                self._append(t, rows, deleted=False, keys=keys)
                count += rows.num_rows
        if not self.explicit:
            self._commit_write()
        return StatementResult(f"COPY {count}")

    def _copy_check_keys(self, t: TableDef, rows: pa.Table, first_line: int) -> list:
        """`_insert_rows`' uniqueness check without a Python call per row; returns the keys."""
        keys = key_list(t, rows)
        if len(t.primary_key) == 1:
            repeated = len(pc.unique(rows.column(t.primary_key[0]))) != len(keys)
        else:
            repeated = len(set(keys)) != len(keys)
        if repeated:
            seen: set = set()
            for i, k in enumerate(keys):
                if k in seen:
                    self._copy_duplicate(t, k, first_line + i)
                seen.add(k)
        unknown = keys
        pending, hot = self.pending_index.get(t.tid, {}), self.engine.hot_index[t.tid]
        if pending or hot:
            known = [k for k in keys if k in pending or k in hot]
            expired = self.engine.expired_seq(t)
            for k in known:
                if _alive(self._hot_state(t, k), expired):
                    self._copy_duplicate(t, k, first_line + keys.index(k))
            if known:
                known_set = set(known)
                unknown = [k for k in keys if k not in known_set]
        live = self.engine.cold_live_keys(self.check_cur, t, unknown)
        if live:
            i = next(i for i, k in enumerate(keys) if k in live)
            self._copy_duplicate(t, keys[i], first_line + i)
        return keys

    @staticmethod
    def _copy_duplicate(t: TableDef, key, line: int) -> None:
        raise copy.with_context(
            UniqueViolation(f'duplicate key value violates unique constraint "{t.name}_pkey"', detail=_pk_text(t, key)),
            f"COPY {t.name}, line {line}")

    def _copy_to(self, command: copy.CopyCommand) -> StatementResult:
        if command.query is not None:
            sql = command.query
        else:
            t = self._resolve(dml.Target(command.namespace, command.table, command.table))
            cols = ", ".join(views.q(c.name) for c in copy.target_columns(t, command))
            sql = f"SELECT {cols} FROM {views.q(t.namespace)}.{views.q(t.name)}"
        table = self._query(sql, []).table
        return StatementResult(f"COPY {table.num_rows}", table)

