"""One client session, as the wire front end sees it: statements in, results or a SQLSTATE out.

Every statement goes the same way: split (simple query), refused by the sandbox if it
reaches outside tierd, parsed into a typed statement (engine/sql/parse.py), run by its
handler (engine/session/dispatch.py), all inside `guarded`, which turns any failure into a
Postgres error and never leaves a transaction half-open or the write lock held.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Iterator, TypeVar

import duckdb
import pyarrow as pa

from engine.core import EngineCore
from engine import metrics
from engine.errors import (EngineError, InFailedSqlTransaction, InternalError, LockNotAvailable, QueryCanceled,
                           from_duckdb)
from engine.results import StatementResult
from engine.session import copy, cursors, discard, reads, transactions, writes
from engine.session.dispatch import dispatch
from engine.session.settings import SETTINGS, normalize
from engine.session.state import SessionState
from engine.sql import pg_compat, sandbox
from engine.sql.copy import CopyCommand, TargetColumn
from engine.sql.copy_input import RawBlock
from engine.sql.error_position import function_arg_types, locate
from engine.sql.parse import parse
from engine.sql.reserved_words import quote_reserved
from engine.sql.split import leading_words, split_statements

log = logging.getLogger("tierd.session")
T = TypeVar("T")

_ENDS_FAILED_TRANSACTION = ("ROLLBACK", "ABORT", "COMMIT", "END")


class EngineSession(SessionState):
    def __init__(self, engine: EngineCore, user: str):
        super().__init__(engine, user)
        self._closed = False

    # ------------------------------------------------------------------ transaction status
    @property
    def in_transaction(self) -> bool:
        return self.tx.explicit

    @property
    def failed(self) -> bool:
        return self.tx.failed

    # ------------------------------------------------------------------ statements
    def execute(self, sql: str, params: list | None = None) -> list[StatementResult]:
        """A simple query (0..n statements), or one statement with $1..$n `params`."""
        if params is None:
            return [self._one(s, None) for s in split_statements(sql)]
        return [self._one(sql, list(params))]

    def pool_reset(self, sql: str) -> list[StatementResult] | None:
        """asyncpg's pool reset script (`discard.POOL_RESET`) run as one statement wrapper,
        its four results in order; None when `sql` is something else or a transaction block
        is open (then its statements run one by one, as any script's)."""
        if self.tx.explicit or not discard.POOL_RESET.fullmatch(sql):
            return None
        return self.guarded("SELECT", sql, lambda: discard.pool_reset(self))

    def _one(self, sql: str, params: list | None) -> StatementResult:
        words = leading_words(sql, 3) or [""]

        def run() -> StatementResult:
            text = quote_reserved(sql)
            sandbox.check_command(text)  # ATTACH, LOAD, COPY to a file, SET of engine settings...
            return dispatch(self, parse(text, words), params or [])

        return self.guarded(words[0], sql, run)

    def batchable(self, sql: str) -> bool:
        """Whether `execute_batch` can append many parameter rows of `sql` at once."""
        return writes.batchable(quote_reserved(sql))

    def execute_batch(self, sql: str, param_rows: list[list]) -> tuple[list[StatementResult], EngineError | None]:
        """Run `sql` once per parameter row, with the outcome of that many `execute` calls:
        the results of the rows that ran and the error of the row that failed (None: all ran).
        A `batchable` INSERT whose rows all type in Python and violate no key is appended as
        one Arrow batch (a pipelined executemany: one plan, one append); any doubt about a
        row (a NULL in a NOT NULL column, a duplicate key, a value only DuckDB can cast)
        runs the rows one by one instead, so errors name the right row."""
        sql = quote_reserved(sql)
        if len(param_rows) > 1 and self.batchable(sql):
            try:   # an error here (no such table, no privilege) is the first row's
                done = self.guarded("INSERT", sql, lambda: writes.insert_batch(self, sql, param_rows))
            except EngineError as exc:
                return [], exc
            metrics.inc("tierd_fast_path_total", path="insert_batch", outcome="fallback" if done is None else "used")
            if done is not None:
                return done, None
        results: list[StatementResult] = []
        for params in param_rows:
            try:
                results.append(self._one(sql, list(params)))
            except EngineError as exc:
                return results, exc
        return results, None

    def front_end_error(self) -> None:
        """An error the front end raised outside any statement (Parse, or a Bind value its
        type cannot read): as in Postgres it fails the transaction block, or rolls back the
        implicit transaction, as a failing statement's error does."""
        self._failed()

    def analysis_version(self) -> tuple:
        """What the front end's analysis of a statement text (parameter types read off the
        catalog's columns, result columns) depends on: the catalog and the search path."""
        return self.engine.catalog.generation, self.settings["search_path"]

    def param_types(self, sql: str) -> list[str | None]:
        """Parameter types (DuckDB type names, None if unknown) read off the SQL (no DuckDB)."""
        return reads.param_types(self, quote_reserved(sql))

    def describe(self, sql: str) -> tuple[list[str | None], pa.Schema | None]:
        """Parameter types (DuckDB type names, None if unknown) and the result schema (None:
        no rows) of one statement, without running it: Describe of a prepared statement."""
        words = leading_words(sql, 3) or [""]

        def run() -> tuple[list[str | None], pa.Schema | None]:
            with self.running:
                self.describing = True   # DuckDB may call session functions: they do nothing now
                try:
                    return reads.describe(self, quote_reserved(sql), words)
                finally:
                    self.describing = False

        return self.guarded(words[0], sql, run)

    # ------------------------------------------------------------------ COPY
    def copy_target(self, command: CopyCommand) -> list[TargetColumn]:
        """Check COPY FROM before any data flows: the columns it reads, in input order."""
        return self.guarded("COPY", "COPY", lambda: copy.target(self, command))

    def copy_from(self, command: CopyCommand, blocks: Iterator[RawBlock]) -> StatementResult:
        """COPY ... FROM STDIN: every block of `blocks` typed, key-checked and staged in this
        write transaction; all rows commit together (one fsync'd batch) or none do."""
        return self.guarded("COPY", "COPY", lambda: copy.copy_from(self, command, blocks))

    def copy_to(self, command: CopyCommand, emit: Callable[[pa.Table], None] | None = None) -> StatementResult:
        """COPY ... TO STDOUT: the rows to send (the front end encodes them, a batch at a time
        through `emit` if given); tag `COPY n`."""
        return self.guarded("COPY", "COPY", lambda: copy.copy_to(self, command, emit))

    # ------------------------------------------------------------------ extended protocol
    def begin_segment(self) -> None:
        """The wire's messages up to Sync form one implicit transaction: writes commit at
        `end_segment`, and an error rolls back every write of the segment (as Postgres)."""
        self.tx.segment = True

    def end_segment(self) -> None:
        if not self.tx.segment:
            return
        self.tx.segment = False
        try:
            if not self.tx.explicit:
                transactions.commit_write(self)
                self.end_transaction(committed=True)
        finally:   # the segment's transaction start (now(), pg_stat_activity) ends with it
            self.activity.finished(self.tx.explicit, self.tx.failed)

    # ------------------------------------------------------------------ the front end's hooks
    def connected_from(self, addr: str, port: int) -> None:
        """The client's address (pg_stat_activity.client_addr / client_port)."""
        self.activity.client_addr, self.activity.client_port = addr, port

    def attach_front_end(self, notify: Callable[[int, str, str], None], terminate: Callable[[], None]) -> None:
        """How this session reaches its client unasked: `notify(sender pid, channel, payload)`
        for each notification of a LISTENed channel, `terminate()` for pg_terminate_backend."""
        self.engine.notifications.attach(self.pid, notify)
        self.on_terminate = terminate

    def cursor_schema(self, name: str) -> pa.Schema:
        """Describe of a DECLAREd cursor's portal: the columns FETCH returns."""
        return self.guarded("DESCRIBE", name, lambda: cursors.schema_of(self, name))

    def startup_setting(self, name: str, value: str) -> None:
        """A setting from the startup packet (22023 for a bad value, FATAL at startup as in
        Postgres); names that are no session setting are ignored."""
        name = name.lower()
        if name in SETTINGS and SETTINGS[name].context == "user":
            self.settings[name] = self.reset_settings[name] = normalize(name, value, self.check_zone)
            self.apply_settings()

    def _start_timer(self) -> threading.Timer | None:
        """statement_timeout: a timer that cancels this statement (and only this one: it
        checks the statement it was started for is still running)."""
        if not self.statement_timeout_ms:
            return None
        number = self.statement_number

        def expire() -> None:
            with self.statement_lock:
                if self.statement_number == number:
                    self.cancel("statement timeout")

        timer = threading.Timer(self.statement_timeout_ms / 1000, expire)
        timer.daemon = True
        timer.start()
        return timer

    def _stop_timer(self, timer: threading.Timer | None) -> None:
        with self.statement_lock:
            self.statement_number += 1
        if timer is not None:
            timer.cancel()

    def _canceled(self, err: EngineError) -> EngineError:
        """A cancelled statement's error says why, as Postgres words it."""
        if self.cancel_requested and not isinstance(err, LockNotAvailable):
            return QueryCanceled(f"canceling statement due to {self.cancel_reason}")
        return err

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        transactions.rollback_write(self)
        self.leave()
        self.engine.sequences.forget_session(self.session_id)
        for c in (self.cur, self.check_cur):
            try:
                c.close()
            except duckdb.Error:
                pass

    # ------------------------------------------------------------------ errors
    def _bound_types(self, select_sql: str) -> list[str]:
        """DuckDB's types of a SELECT's columns, bound but not run (for error wording)."""
        sandbox.check_query(select_sql)  # client SQL's own FROM clause, judged again
        return [str(t) for t in self.check_cur.sql(pg_compat.rewrite(select_sql, self.settings).sql).types]

    def guarded(self, first: str, sql: str, run: Callable[[], T]) -> T:
        """Run one statement: refused in a failed transaction; any error fails the
        transaction (or rolls back an implicit one) and never leaves the write lock held."""
        self.cancel_requested = False
        self.cancel_reason = "user request"
        if self.catalog_dirty:
            self.restore_catalog()
        if self.tx.failed and first not in _ENDS_FAILED_TRANSACTION:
            raise InFailedSqlTransaction(
                "current transaction is aborted, commands ignored until end of transaction block"
            )
        timer = None
        self.udf_error = None
        self.activity.started(sql, self.tx.explicit or self.tx.segment)  # a Sync segment is one transaction
        try:
            self.apply_settings()
            timer = self._start_timer()
            with self.engine.reaper.reading():
                result = run()
            if not self.tx.explicit and not self.tx.segment:
                self.end_transaction(committed=True)
            return result
        except duckdb.Error as exc:
            err = locate(self._canceled(self.udf_error or from_duckdb(
                exc, lambda name: function_arg_types(sql, name, self._bound_types))), sql)
            self._failed()
            raise err from None
        except QueryCanceled as err:
            err = locate(self._canceled(err), sql)
            self._failed()
            raise err from None
        except EngineError as err:
            locate(err, sql)
            self._failed()
            raise
        except ConnectionError:  # the client went away in the middle (a COPY's data)
            self._failed()
            raise
        except Exception as exc:  # never leave the write lock or a transaction behind
            log.exception("statement failed: %s", sql[:200])
            self._failed()
            raise InternalError(f"internal error: {type(exc).__name__}: {exc}") from None
        finally:
            self._stop_timer(timer)
            self.activity.finished(self.tx.explicit or self.tx.segment, self.tx.failed)

    def _failed(self) -> None:
        """A statement failed: its transaction fails (explicit) or ends rolled back."""
        transactions.statement_failed(self)
        if not self.tx.explicit:
            self.end_transaction(committed=False)
