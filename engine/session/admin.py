"""Administration from a session: roles, table privileges and owners, storages, and the
STORAGE FLUSH / COMPACT, RETRY JOB and KILL JOB commands. Each checks who may run it
(engine/catalog/privileges.py) before it changes anything."""
from __future__ import annotations

import pyarrow as pa

from engine.catalog import privileges
from engine.errors import ActiveSqlTransaction, FeatureNotSupported, InsufficientPrivilege
from engine.results import StatementResult
from engine.session.reads import JOB_SCHEMA
from engine.session.state import SessionState
from engine.sql.parse import AlterTableOwner
from engine.sql.statements import (AlterRole, CheckStorage, CreateRole, CreateStorage, DropRole, DropStorage, Grant,
                                   JobCommand, RoleCommand, ShowStorages, StorageDefinition, StorageJob, unquote)
from engine.tiering.compaction.task import STREAM_COMPACT_REFUSED
from engine.tiering.flush import STREAM_FLUSH_REFUSED
from engine.tiering.publish import STREAM_PUBLISH_REFUSED


# ---------------------------------------------------------------------- roles and privileges
def role_command(s: SessionState, stmt: RoleCommand, params: list) -> StatementResult:
    """CREATE / ALTER / DROP USER|ROLE: superusers only, except a role changing its own
    password (as Postgres allows)."""
    roles = s.engine.roles
    what = {CreateRole: "CREATE", AlterRole: "ALTER", DropRole: "DROP"}[type(stmt)] + " " + stmt.noun
    if not (isinstance(stmt, AlterRole) and stmt.name == s.user and stmt.only_password):
        s.require_superuser(what)
    if isinstance(stmt, CreateRole):
        roles.create(stmt.name, superuser=stmt.superuser, login=stmt.login, password=stmt.password)
    elif isinstance(stmt, AlterRole):
        roles.alter(stmt.name, superuser=stmt.superuser, login=stmt.login, password=stmt.password,
                    clear_password=stmt.sets_password and stmt.password is None)
    else:
        with s.engine.ddl_lock:
            for name in stmt.names:
                owned = [t.qualified for t in s.engine.catalog.tables.values()
                         if privileges.owner_of(t, roles) == name]
                if roles.drop(name, s.user, if_exists=stmt.if_exists, owned=owned):
                    privileges.forget_role(s.engine.catalog, name)
    return StatementResult(what)


def grant(s: SessionState, stmt: Grant, params: list) -> StatementResult:
    """GRANT / REVOKE table privileges: by a superuser or the table's owner."""
    eng = s.engine
    tables = [eng.catalog.get(*s.split_name(name)) for name in stmt.tables]
    for role in stmt.roles:
        eng.roles.require(role)
    for t in tables:
        if not s.is_superuser and privileges.owner_of(t, eng.roles) != s.user:
            raise InsufficientPrivilege(f"permission denied for table {t.name}",
                                        detail="Only its owner or a superuser may grant or revoke privileges.")
    with eng.ddl_lock:
        privileges.change_grants(eng.catalog, tables, stmt.roles, stmt.privileges, grant=stmt.grant)
    return StatementResult("GRANT" if stmt.grant else "REVOKE")


def alter_table_owner(s: SessionState, stmt: AlterTableOwner, params: list) -> StatementResult:
    """ALTER TABLE ns.t OWNER TO role (superusers only)."""
    s.require_superuser("ALTER TABLE")
    eng = s.engine
    t = eng.catalog.get(*s.split_name(stmt.table))
    role = eng.roles.require(stmt.role).name
    with eng.ddl_lock:
        privileges.set_owner(eng.catalog, t, role)
    return StatementResult("ALTER TABLE")


# ---------------------------------------------------------------------- storages
def storage_definition(s: SessionState, stmt: StorageDefinition, params: list) -> StatementResult:
    """CREATE / ALTER / DROP STORAGE, SHOW STORAGES, STORAGE CHECK."""
    if s.tx.holds_lock:
        raise ActiveSqlTransaction("storage commands inside a transaction that has written are not supported")
    eng = s.engine
    catalog = eng.storages
    if isinstance(stmt, ShowStorages):
        eng.system_tables.refresh()
        table = s.cur.execute("SELECT * FROM memory.system.storages ORDER BY storage_id").to_arrow_table()
        return StatementResult(f"SELECT {table.num_rows}", table)
    s.require_superuser({CreateStorage: "CREATE STORAGE", DropStorage: "DROP STORAGE",
                         CheckStorage: "CHECK STORAGE"}.get(type(stmt), "ALTER STORAGE"))
    if isinstance(stmt, CreateStorage):
        d = catalog.from_options(stmt.storage_id, stmt.options)
        with eng.ddl_lock:
            catalog.create(d, if_not_exists=stmt.if_not_exists)
        return StatementResult("CREATE STORAGE")
    if isinstance(stmt, DropStorage):
        with eng.ddl_lock:
            catalog.drop(stmt.storage_id, eng.tables_using(stmt.storage_id), if_exists=stmt.if_exists)
        return StatementResult("DROP STORAGE")
    if not isinstance(stmt, CheckStorage):  # AlterStorage
        with eng.ddl_lock:
            catalog.alter(stmt.storage_id, stmt.options)
        return StatementResult("ALTER STORAGE")
    check = catalog.get(stmt.storage_id).check()
    table = pa.table({
        "storage_id": [stmt.storage_id], "status": [check.status], "readable": [check.readable],
        "writable": [check.writable], "listable": [check.listable], "deletable": [check.deletable],
        "latency_ms": [check.latency_ms], "error": pa.array([check.error], pa.string()),
    })
    return StatementResult("SELECT 1", table)


# ---------------------------------------------------------------------- jobs
def storage_job(s: SessionState, stmt: StorageJob, params: list) -> StatementResult:
    """STORAGE FLUSH|COMPACT|PUBLISH TABLE ns.t | ALL [IN ns] [WAIT]: one row per table, its job."""
    eng = s.engine
    s.require_superuser(f"STORAGE {stmt.job_type.upper()}")
    if stmt.table is not None:
        tables = [eng.catalog.get(*s.split_name(stmt.table))]
        if tables[0].is_stream:
            raise FeatureNotSupported({"flush": STREAM_FLUSH_REFUSED, "compact": STREAM_COMPACT_REFUSED,
                                       "publish": STREAM_PUBLISH_REFUSED}[stmt.job_type])
    else:
        ns = unquote(stmt.namespace) if stmt.namespace else None
        if ns is not None:
            eng.catalog.require_namespace(ns)
        tables = sorted((t for t in eng.catalog.tables.values()
                         if (ns is None or t.namespace == ns) and not t.is_stream),  # hot only
                        key=lambda t: t.qualified)
    started = {"flush": "flush", "compact": "compaction", "publish": "publish"}[stmt.job_type]
    rows = []
    for t in tables:
        job = eng.tiering.request(stmt.job_type, t, stmt.wait, lambda: s.cancel_requested)
        if job.status in ("skipped", "failed", "cancelled"):
            message = job.message
        else:
            message = f"Storage {started} started for table '{t.qualified}'. Job ID: {job.job_id}"
        rows.append((job.job_id, job.status, message))
    return _job_rows(rows)


def job_command(s: SessionState, stmt: JobCommand, params: list) -> StatementResult:
    s.require_superuser(f"{stmt.action.upper()} JOB")
    jobs = s.engine.tiering.jobs
    if stmt.action == "retry":
        job = jobs.retry(stmt.job_id)
        message = f"Job {job.job_id} queued for retry (attempt {job.retry_count + 1})"
    else:
        job = jobs.kill(stmt.job_id)
        message = (f"Job {job.job_id} cancelled" if job.status == "cancelled"
                   else f"Job {job.job_id} will be cancelled at its next step")
    return _job_rows([(job.job_id, job.status, message)])


def _job_rows(rows: list[tuple[str, str, str]]) -> StatementResult:
    table = pa.table({"job_id": [r[0] for r in rows], "status": [r[1] for r in rows],
                      "message": [r[2] for r in rows]}, schema=JOB_SCHEMA)
    return StatementResult(f"SELECT {table.num_rows}", table)
