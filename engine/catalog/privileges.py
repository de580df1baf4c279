"""Who may do what: superuser-only commands and per-table privileges.

Superusers may do everything. A SHARED (or STREAM) table's owner has every privilege on it;
other roles have what was granted to them (GRANT SELECT|INSERT|UPDATE|DELETE ON t TO role).
USER tables are open to every role: their rows are private per role, which the USER-table
read and write paths enforce. Checks read the role and table catalogs at every statement, so
GRANT, REVOKE and ALTER USER ... [NO]SUPERUSER take effect on the next statement of sessions
that are already open.
"""
from __future__ import annotations

from engine.catalog.tables import TableDef
from engine.errors import InsufficientPrivilege
from engine.catalog.roles import RoleCatalog

# Table types whose rows are filtered per role instead of guarded by grants.
OPEN_TABLE_TYPES = frozenset({"USER"})


def resolve(catalog, refs, default_ns: str | list[str],
            catalogs: frozenset[str] = frozenset({"", "memory"})) -> list[TableDef]:
    """The catalog tables among `refs`: (catalog, schema, name) triples as sql_refs gives
    them, or (schema, name) pairs. DuckDB binds names case-insensitively, so matching is too;
    unqualified names resolve in the default namespace (the first of a search path's
    namespaces that has the table); names in other DuckDB catalogs (and CTEs, system tables)
    are no tierd table and are skipped."""
    path = [default_ns] if isinstance(default_ns, str) else default_ns
    by_name = {(t.namespace.casefold(), t.name.casefold()): t for t in list(catalog.tables.values())}
    found: list[TableDef] = []
    for ref in refs:
        cat, schema, name = ref if len(ref) == 3 else ("", *ref)
        if (cat or "").casefold() not in catalogs:
            continue
        t = None
        for ns in ([schema] if schema else path):
            t = by_name.get((ns.casefold(), name.casefold()))
            if t is not None:
                break
        if t is not None and t not in found:
            found.append(t)
    return found


def require_superuser(roles: RoleCatalog, user: str, action: str) -> None:
    """Refuse `action` (e.g. "CREATE TABLE") unless `user` is a superuser."""
    if not roles.is_superuser(user):
        raise InsufficientPrivilege(f"permission denied: {action} requires superuser",
                                    hint="Ask a superuser to run it, or to make you one "
                                         "(ALTER USER name SUPERUSER).")


def owner_of(t: TableDef, roles: RoleCatalog) -> str:
    """Tables from before owners were recorded belong to the configured superuser."""
    return t.owner or roles.bootstrap


def has_privilege(roles: RoleCatalog, user: str, t: TableDef, privilege: str) -> bool:
    if t.table_type in OPEN_TABLE_TYPES or roles.is_superuser(user):
        return True
    if owner_of(t, roles) == user and roles.exists(user):
        return True
    return privilege in t.grants.get(user, ())


def check_table(roles: RoleCatalog, user: str, t: TableDef, *privileges: str) -> None:
    """Raise 42501 `permission denied for table t` unless `user` has every one of `privileges`."""
    for privilege in privileges:
        if not has_privilege(roles, user, t, privilege):
            raise InsufficientPrivilege(f"permission denied for table {t.name}",
                                        detail=f'{privilege} on table {t.qualified} was not granted '
                                               f'to role "{user}".')


def change_grants(catalog, tables: list[TableDef], roles: list[str], privileges: list[str],
                  grant: bool) -> None:
    """GRANT (or REVOKE) `privileges` on `tables` to (from) `roles`, persisted at once. The
    grants dict is replaced, never mutated, so a concurrent check sees before or after."""
    with catalog.lock:
        for t in tables:
            grants = {r: list(p) for r, p in t.grants.items()}
            for role in roles:
                held = grants.get(role, [])
                held = sorted(set(held) | set(privileges)) if grant else [p for p in held if p not in privileges]
                if held:
                    grants[role] = held
                else:
                    grants.pop(role, None)
            t.grants = grants
            catalog.save_table(t)


def set_owner(catalog, t: TableDef, role: str) -> None:
    with catalog.lock:
        t.owner = role
        catalog.save_table(t)


def forget_role(catalog, role: str) -> None:
    """A dropped role's grants go with it (a later role of the same name starts with none)."""
    with catalog.lock:
        for t in list(catalog.tables.values()):
            if role in t.grants:
                t.grants = {r: p for r, p in t.grants.items() if r != role}
                catalog.save_table(t)
