"""SQL case files: every tests/sql/**/*.test runs against its own daemon, over the wire.

The format follows DuckDB's test/sql `.test` files. A file is a list of records separated by
empty lines; `#` starts a comment line between records; a record's SQL runs to the next empty
line (or to `----`). Each file gets a fresh daemon (and data dir); files are independent.

    statement ok                 the SQL must succeed
    <SQL>
    ----                         optional: the command tag, e.g. INSERT 0 3
    <tag>

    statement error <SQLSTATE>   the SQL must fail with this SQLSTATE (severity ERROR)
    <SQL>
    ----                         optional: one or more lines the error text must hold; the text
    <line>                       is shaped as psql prints it (ERROR:  / DETAIL:  / HINT:  /
                                 CONTEXT:  lines); an expected line starting with such a prefix
                                 must equal that line, any other must be a substring of one

    query <types> [rowsort]      the SQL's result: one type letter per column, then the rows
    <SQL>
    ----
    <rows, tab-separated>

    flush <ns.table> [<status>]    STORAGE FLUSH TABLE ns.table WAIT, status `completed` unless
                                 given; then the table's cold files on the local storage must
                                 hold each row version once, all listed in the manifest
    compact <ns.table> [<status>]  STORAGE COMPACT TABLE ns.table WAIT, likewise
    restart                      stop the daemon cleanly and start it on the same data dir
    kill -9                      SIGKILL the daemon, then start it on the same data dir
    connection <name> [<role> [<password>]]
                                 switch to the session <name>, opened on first use as <role>
                                 (default: the superuser tierd); the first session is `default`
    user <role> [<password>]     the same as `connection <role> <role> [<password>]`; a session
                                 keeps its login, so later switches may leave the password out
    protocol simple|extended     how the following records are sent: one simple Query, or
                                 Parse/Bind/Describe/Execute/Sync with no parameters (sticky;
                                 simple by default). `protocol both` as a file's first record
                                 runs the whole file twice, once per protocol, each on its own
                                 daemon.
    config                       TOML config for the file's daemon, to the next empty line; only
    <toml>                       before the first statement. With [auth] the superuser logs in
                                 with its password.
    timezones <zone> ...         as a file's first record: run the whole file once per zone,
                                 every session opened with that TimeZone (startup option
                                 `-c TimeZone=<zone>`), each run on its own daemon
    onlyif timezone=<zone>       the next record runs only in the run of that zone

Values are compared as psql shows them: the server's text format, exactly (booleans t/f,
timestamps and numbers as Postgres prints them), NULL for a null, (empty) for an empty string,
and tab, newline and carriage return inside a value written as \\t, \\n, \\r. Type letters are
checked against the column's type OID: I int2/int4/int8, R float4/float8/numeric, T text/
varchar/char/name, B bool, D date/time/timestamp/timestamptz/interval, ? any type. An R value
also matches a number within a relative 1e-9 of it. Rows keep the server's order unless the
query says rowsort. A record holding several `;`-separated statements (simple protocol only)
is judged by its last result.

`__TEST_DIR__` in SQL, expected text and config stands for an empty directory of the file's
own (outside the data dir), `__DATA_DIR__` for the daemon's data dir, `__ZONE__` (in a
`timezones` file) for the zone of the run.

Every session is autocommit: a transaction is BEGIN ... COMMIT in the SQL. After an error the
driver also checks the session's transaction state is what Postgres gives (idle outside a
transaction block, failed inside one).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg.adapt import AdaptersMap
from psycopg.pq import TransactionStatus
from psycopg.types.string import TextLoader

from tests.daemon import ROOT as ROOT_DIR
from tests.daemon import SUPERUSER, Tierd, wait_for
from tests.helpers import assert_cold_consistent, scope_dir

SQL_DIR = Path(__file__).parent / "sql"
ROOT = Path(ROOT_DIR)
TYPE_OIDS = {
    "I": {20, 21, 23},
    "R": {700, 701, 1700},
    "T": {25, 1043, 1042, 19},
    "B": {16},
    "D": {1082, 1083, 1114, 1184, 1186, 1266},
}
ERROR_PREFIXES = ("ERROR:  ", "DETAIL:  ", "HINT:  ", "CONTEXT:  ", "POSITION:  ")


@dataclass
class Record:
    line: int              # 1-based line of the record's first line
    kind: str              # statement, query, flush, compact, restart, kill9, connection, protocol
    args: list[str]
    sql: str = ""
    expected: list[str] = field(default_factory=list)
    has_expected: bool = False
    only_zone: str | None = None   # onlyif timezone=<zone>: runs only in that zone's run


@dataclass
class CaseFile:
    path: Path
    records: list[Record]
    config: str | None
    protocols: list[str]
    zones: list[str | None] = field(default_factory=lambda: [None])


class CaseFileError(Exception):
    pass


# ------------------------------------------------------------------ parsing

def parse(path: Path) -> CaseFile:
    lines = path.read_text().split("\n")
    records: list[Record] = []
    config: str | None = None
    protocols = ["simple"]
    zones: list[str | None] = [None]
    only_zone: str | None = None
    i = 0

    def block(start: int) -> tuple[list[str], int]:
        """Lines from `start` to the next empty line (or end); returns them and the index after."""
        out = []
        j = start
        while j < len(lines) and lines[j].strip() != "":
            out.append(lines[j])
            j += 1
        return out, j

    while i < len(lines):
        text = lines[i].strip()
        if text == "" or text.startswith("#"):
            i += 1
            continue
        where = f"{path}:{i + 1}"
        words = text.split()
        head = words[0]
        if head == "config":
            if records:
                raise CaseFileError(f"{where}: config must come before every other record")
            body, i = block(i + 1)
            config = "\n".join(body) + "\n"
            continue
        if head == "timezones" and len(words) > 1:
            if records or zones != [None]:
                raise CaseFileError(f"{where}: timezones must be the file's first record")
            zones = words[1:]
            i += 1
            continue
        if head == "onlyif":
            if len(words) != 2 or not words[1].startswith("timezone="):
                raise CaseFileError(f"{where}: onlyif timezone=<zone>")
            only_zone = words[1].split("=", 1)[1]
            i += 1
            continue
        if head in ("statement", "query"):
            body, end = block(i + 1)
            if "----" in body:
                split = body.index("----")
                sql_lines, expected = body[:split], body[split + 1:]
                has_expected = True
            else:
                sql_lines, expected, has_expected = body, [], False
            if head == "query" and not has_expected:
                # rows follow `----`; an empty result is `----` then an empty line
                raise CaseFileError(f"{where}: query without ---- and expected rows")
            if not sql_lines:
                raise CaseFileError(f"{where}: {head} without SQL")
            if head == "statement" and (len(words) < 2 or words[1] not in ("ok", "error")):
                raise CaseFileError(f"{where}: statement ok | statement error <SQLSTATE>")
            if head == "statement" and words[1] == "error" and (len(words) != 3 or len(words[2]) != 5):
                raise CaseFileError(f"{where}: statement error needs a five-character SQLSTATE")
            if head == "statement" and words[1] == "ok" and len(expected) > 1:
                raise CaseFileError(f"{where}: statement ok expects one command tag line")
            if head == "query":
                if len(words) < 2 or any(c not in TYPE_OIDS and c != "?" for c in words[1]):
                    raise CaseFileError(f"{where}: query needs type letters from {''.join(TYPE_OIDS)}?")
                if len(words) > 3 or (len(words) == 3 and words[2] != "rowsort"):
                    raise CaseFileError(f"{where}: query <types> [rowsort]")
            records.append(Record(i + 1, head, words[1:], "\n".join(sql_lines), expected, has_expected,
                                  only_zone))
            only_zone = None
            i = end
            continue
        if head in ("flush", "compact") and len(words) in (2, 3):
            records.append(Record(i + 1, head, words[1:]))
        elif text == "restart":
            records.append(Record(i + 1, "restart", []))
        elif text == "kill -9":
            records.append(Record(i + 1, "kill9", []))
        elif head == "connection" and 2 <= len(words) <= 4:
            records.append(Record(i + 1, "connection", words[1:]))
        elif head == "user" and 2 <= len(words) <= 3:
            records.append(Record(i + 1, "connection", [words[1]] + words[1:]))
        elif head == "protocol" and len(words) == 2 and words[1] in ("simple", "extended", "both"):
            if words[1] == "both":
                if records:
                    raise CaseFileError(f"{where}: protocol both must be the file's first record")
                protocols = ["simple", "extended"]
            else:
                records.append(Record(i + 1, "protocol", words[1:]))
        else:
            raise CaseFileError(f"{where}: unknown directive {text!r}")
        i += 1
    if only_zone is not None:
        raise CaseFileError(f"{path}: onlyif at the end of the file")
    return CaseFile(path, records, config, protocols, zones)


# ------------------------------------------------------------------ running

class ExtendedCursor(psycopg.Cursor):
    """Sends every statement with the extended protocol, as psycopg does one with parameters."""

    def _execute_send(self, query, *, force_extended: bool = False, binary=None):
        super()._execute_send(query, force_extended=True, binary=binary)


assert hasattr(psycopg.Cursor, "_execute_send"), "psycopg changed: ExtendedCursor needs a new hook"


class TextResults:
    """An adapt context whose only loader hands every value over as the server's text."""

    def __init__(self):
        self.adapters = AdaptersMap()
        self.adapters.register_loader(0, TextLoader)  # oid 0: the fallback for every type
        self.connection = None


def show(value: str | None) -> str:
    if value is None:
        return "NULL"
    if value == "":
        return "(empty)"
    return value.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def same_value(letter: str, expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    if letter != "R":
        return False
    try:
        e, a = float(expected), float(actual)
    except ValueError:
        return False
    return math.isclose(e, a, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(e) and math.isnan(a))


def error_text(exc: psycopg.Error) -> str:
    """An error as psql prints it."""
    diag = exc.diag
    out = [f"ERROR:  {diag.message_primary}"]
    for prefix, value in (("DETAIL", diag.message_detail), ("HINT", diag.message_hint),
                          ("CONTEXT", diag.context), ("POSITION", diag.statement_position)):
        if value:
            out.append(f"{prefix}:  {value}")
    return "\n".join(out)


def substitute(text: str, scratch: Path, data_dir: str) -> str:
    return text.replace("__TEST_DIR__", str(scratch)).replace("__DATA_DIR__", data_dir)


class Session:
    def __init__(self, name: str, user: str, password: str | None):
        self.name, self.user, self.password = name, user, password
        self.conn: psycopg.Connection | None = None


class Runner:
    """Runs one case file's records against a started daemon, in one protocol."""

    def __init__(self, case: CaseFile, protocol: str, daemon: Tierd, scratch: Path, zone: str | None = None):
        self.case = case
        self.protocol = protocol
        self.zone = zone
        self.daemon = daemon
        self.scratch = scratch
        self.sessions: dict[str, Session] = {}
        self.current = "default"

    def substitute(self, text: str) -> str:
        text = substitute(text, self.scratch, self.daemon.data_dir)
        return text.replace("__ZONE__", self.zone) if self.zone else text

    def fail(self, record: Record, message: str) -> None:
        path = self.case.path
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{record.line}"
        sql = f"\n  SQL: {record.sql}" if record.sql else ""
        zone = f", TimeZone {self.zone}" if self.zone else ""
        text = f"{where} [{self.protocol}{zone}, session {self.current}]: {message}{sql}"
        raise pytest.fail.Exception(text, pytrace=False) from None  # no chained psycopg error

    # --- sessions

    def connection(self) -> psycopg.Connection:
        s = self.sessions.get(self.current)
        if s is None:
            s = self.sessions[self.current] = Session(self.current, SUPERUSER, None)
        if s.conn is None or s.conn.closed:
            password = self.daemon.password if s.user == SUPERUSER and s.password is None else s.password
            zone = {"options": f"-c TimeZone={self.zone}"} if self.zone else {}
            s.conn = self.daemon.connect_as(s.user, password, prepare_threshold=None, context=TextResults(), **zone)
        return s.conn

    def close_sessions(self) -> None:
        for s in self.sessions.values():
            if s.conn is not None:
                s.conn.close()
                s.conn = None

    def cursor(self, record: Record) -> psycopg.Cursor:
        try:
            conn = self.connection()
        except psycopg.Error as exc:
            self.fail(record, f"cannot connect: {exc}")
        return ExtendedCursor(conn) if self.protocol == "extended" else conn.cursor()

    # --- records

    def run(self) -> None:
        try:
            for record in self.case.records:
                if record.only_zone is None or record.only_zone == self.zone:
                    getattr(self, f"do_{record.kind}")(record)
        finally:
            self.close_sessions()

    def do_protocol(self, record: Record) -> None:
        self.protocol = record.args[0]

    def do_connection(self, record: Record) -> None:
        name, *login = record.args
        user, password = (login + [None, None])[:2] if login else (SUPERUSER, None)
        s = self.sessions.get(name)
        if s is None:
            self.sessions[name] = Session(name, user, password)
        elif s.user != user or (password is not None and password != s.password):
            self.fail(record, f"session {name} is {s.user}'s: a session keeps the login it was opened with")
        self.current = name

    def do_restart(self, record: Record) -> None:
        self.close_sessions()
        self.daemon.restart()

    def do_kill9(self, record: Record) -> None:
        self.close_sessions()
        self.daemon.restart(kill9=True)

    def do_flush(self, record: Record) -> None:
        self.storage_job(record, "FLUSH")

    def do_compact(self, record: Record) -> None:
        self.storage_job(record, "COMPACT")

    def storage_job(self, record: Record, verb: str) -> None:
        table, *status = record.args
        want = status[0] if status else "completed"
        record.sql = f"STORAGE {verb} TABLE {table} WAIT"
        cur = self.cursor(record)
        try:
            job_id, got, message = cur.execute(record.sql).fetchone()
        except psycopg.Error as exc:
            self.fail(record, f"failed with {exc.sqlstate}:\n{error_text(exc)}")
        if got != want:
            self.fail(record, f"job {job_id} ended {got}, expected {want}: {message}")
        self.check_cold_files(record, table, wait=verb == "COMPACT")

    def check_cold_files(self, record: Record, table: str, wait: bool) -> None:
        """Invariant 3 on the table's local cold files: each row version once, every file in the
        manifest. A USER table has one scope directory per user; compaction deletes the files it
        replaced a moment after its commit, hence the wait."""
        ns, _, name = table.rpartition(".")
        ns = ns or "public"
        base = scope_dir(self.daemon.data_dir, ns, name)
        scopes = [name]
        if os.path.isdir(base) and not os.path.exists(os.path.join(base, "manifest.json")):
            scopes += [f"{name}/{d}" for d in sorted(os.listdir(base)) if os.path.isdir(os.path.join(base, d))]

        def problem() -> str | None:
            for scope in scopes:
                try:
                    assert_cold_consistent(self.daemon.data_dir, ns, scope, pk=None)
                except AssertionError as exc:
                    return f"cold files of {ns}.{scope}: {exc}"
            return None

        if wait:
            try:
                wait_for(lambda: problem() is None, timeout=30, what="replaced segment files to go")
            except AssertionError:
                pass
        if (message := problem()) is not None:
            self.fail(record, message)

    def do_statement(self, record: Record) -> None:
        sql = self.substitute(record.sql)
        cur = self.cursor(record)
        before = cur.connection.info.transaction_status
        if record.args[0] == "ok":
            try:
                cur.execute(sql)
            except psycopg.Error as exc:
                self.fail(record, f"expected success, got {exc.sqlstate}:\n{error_text(exc)}")
            while cur.nextset():
                pass
            if record.has_expected:
                want = self.substitute(record.expected[0]) if record.expected else ""
                if cur.statusmessage != want:
                    self.fail(record, f"command tag {cur.statusmessage!r}, expected {want!r}")
            return
        sqlstate = record.args[1]
        try:
            cur.execute(sql)
        except psycopg.Error as exc:
            text = error_text(exc)
            if exc.sqlstate != sqlstate:
                self.fail(record, f"expected error {sqlstate}, got {exc.sqlstate}:\n{text}")
            if exc.diag.severity != "ERROR" or not exc.diag.message_primary:
                self.fail(record, f"error without severity ERROR and a message: {exc.diag.severity!r}")
            lines = text.split("\n")
            for want in (self.substitute(e) for e in record.expected):
                ok = want in lines if want.startswith(ERROR_PREFIXES) else any(want in line for line in lines)
                if not ok:
                    self.fail(record, f"error text lacks {want!r}; it is:\n{text}")
            self.check_state_after_error(record, cur.connection, before)
            return
        self.fail(record, f"expected error {sqlstate}, but it succeeded ({cur.statusmessage})")

    def check_state_after_error(self, record: Record, conn: psycopg.Connection, before) -> None:
        after = conn.info.transaction_status
        want = TransactionStatus.IDLE if before == TransactionStatus.IDLE else TransactionStatus.INERROR
        if after != want:
            self.fail(record, f"after the error the session is {after.name}, expected {want.name}")

    def do_query(self, record: Record) -> None:
        letters = record.args[0]
        sql = self.substitute(record.sql)
        cur = self.cursor(record)
        try:
            cur.execute(sql)
            while cur.nextset():
                pass
        except psycopg.Error as exc:
            self.fail(record, f"expected rows, got {exc.sqlstate}:\n{error_text(exc)}")
        if cur.description is None:
            self.fail(record, f"expected rows, got no result set ({cur.statusmessage})")
        oids = [d.type_code for d in cur.description]
        if len(oids) != len(letters):
            self.fail(record, f"{len(oids)} columns, expected {len(letters)} ({letters})")
        for n, (letter, oid) in enumerate(zip(letters, oids)):
            if letter != "?" and oid not in TYPE_OIDS[letter]:
                self.fail(record, f"column {n + 1} ({cur.description[n].name}) has type oid {oid}, not {letter}")
        actual = [[show(v) for v in row] for row in cur.fetchall()]
        expected = [self.substitute(line).split("\t") for line in record.expected]
        if "rowsort" in record.args:
            actual.sort()
            expected.sort()
        bad_width = [row for row in expected if len(row) != len(letters)]
        if bad_width:
            self.fail(record, f"expected row {bad_width[0]!r} has {len(bad_width[0])} values for "
                              f"{len(letters)} columns (values are tab-separated)")
        same = len(actual) == len(expected) and all(
            same_value(letter, e, a) for exp, act in zip(expected, actual) for letter, e, a in zip(letters, exp, act))
        if not same:
            def fmt(rows):
                return "\n".join("    " + "\t".join(r) for r in rows) or "    (no rows)"
            self.fail(record, f"result differs\n  expected ({len(expected)} rows):\n{fmt(expected)}\n"
                              f"  actual ({len(actual)} rows):\n{fmt(actual)}")


# ------------------------------------------------------------------ pytest

def case_params() -> list:
    params = []
    for path in sorted(SQL_DIR.rglob("*.test")):
        name = str(path.relative_to(SQL_DIR))
        try:
            case = parse(path)
        except CaseFileError as exc:  # reported by the test, not at collection
            params.append(pytest.param(path, "simple", exc, None, id=name))
            continue
        for protocol in case.protocols:
            for zone in case.zones:
                tags = ([protocol] if len(case.protocols) > 1 else []) + ([zone] if zone else [])
                params.append(pytest.param(path, protocol, case, zone,
                                           id=f"{name}[{','.join(tags)}]" if tags else name))
    return params


@pytest.mark.parametrize("path, protocol, case, zone", case_params())
def test_sql_case_file(path, protocol, case, zone, make_tierd, tmp_path):
    if isinstance(case, CaseFileError):
        pytest.fail(str(case), pytrace=False)
    scratch, data = tmp_path / "files", str(tmp_path / "data")
    scratch.mkdir()
    config = substitute(case.config, scratch, data) if case.config else None
    Runner(case, protocol, make_tierd(config, data_dir=data).start(), scratch, zone).run()


def test_case_files_exist_and_parse():
    """A directory of case files that silently stopped being collected would test nothing."""
    files = sorted(SQL_DIR.rglob("*.test"))
    assert len(files) >= 10, files
    records = [r for f in files for r in parse(f).records if r.kind in ("statement", "query")]
    assert len(records) >= 100, len(records)


WRONG = """\
statement ok
CREATE TABLE public.t (id INT PRIMARY KEY, v TEXT)

statement ok
INSERT INTO public.t VALUES (1, 'a')
----
INSERT 0 1

query IT
SELECT id, v FROM public.t
----
1\tb
"""


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_a_wrong_expectation_fails_naming_file_line_and_difference(tmp_path, tierd, protocol):
    bad = tmp_path / "wrong.test"
    bad.write_text(WRONG)
    with pytest.raises(pytest.fail.Exception) as info:
        Runner(parse(bad), protocol, tierd, tmp_path).run()
    message = str(info.value)
    assert f"wrong.test:9 [{protocol}, session default]: result differs" in message, message
    assert "expected (1 rows):\n    1\tb\n  actual (1 rows):\n    1\ta" in message, message
