"""Roles: who exists, who is a superuser, and each role's SCRAM-SHA-256 verifier.

Persisted in the hot store's LevelDB under `c/role/<name>`. A password is never stored: only
its SCRAM verifier, in Postgres's own text form `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`
(base64 parts), so a verifier copied from Postgres's pg_authid works here and vice versa.

The configured superuser (`auth.superuser`) always exists: it is created at start-up if
missing, keeps SUPERUSER and LOGIN, and cannot be dropped. When `auth.password` is configured
it is that role's password (re-applied at start and on reload when it no longer matches).
"""
from __future__ import annotations

import base64
import hmac
import re
import threading
from dataclasses import asdict, dataclass

from scramp import ScramMechanism

from engine.errors import DuplicateObject, InsufficientPrivilege, InvalidParameterValue, \
    DependentObjectsStillExist, ObjectInUse, UndefinedObject
from engine.storage.hot_store import HotStore
from engine.storage.manifest import now_iso

SCRAM = "SCRAM-SHA-256"
ITERATIONS = 4096  # Postgres's default scram_iterations
_VERIFIER = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")
_PREFIX = "c/role/"
MAX_NAME = 63  # Postgres's NAMEDATALEN - 1
# Names Postgres keeps for itself: PUBLIC in GRANT, CURRENT_USER & co. in role specs.
RESERVED_NAMES = frozenset({"public", "none", "current_user", "session_user", "current_role"})


@dataclass(frozen=True)
class ScramKeys:
    """What scramp's server needs for one role: (salt, stored key, server key, iterations)."""

    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def as_auth_info(self) -> tuple[bytes, bytes, bytes, int]:
        return self.salt, self.stored_key, self.server_key, self.iterations

    def text(self) -> str:
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        return f"{SCRAM}${self.iterations}:{b64(self.salt)}${b64(self.stored_key)}:{b64(self.server_key)}"

    @classmethod
    def parse(cls, text: str) -> "ScramKeys | None":
        m = _VERIFIER.match(text)
        if not m:
            return None
        try:
            salt, stored, server = (base64.b64decode(g, validate=True) for g in m.group(2, 3, 4))
        except ValueError:
            return None
        if len(stored) != 32 or len(server) != 32 or int(m.group(1)) < 1:
            return None
        return cls(salt, stored, server, int(m.group(1)))

    @classmethod
    def derive(cls, password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> "ScramKeys":
        """PBKDF2 on purpose slow: derive once per password change, never per login."""
        salt_, stored, server, iters = ScramMechanism(SCRAM).make_auth_info(
            password, iteration_count=iterations, salt=salt)
        return cls(salt_, stored, server, iters)

    def matches(self, password: str) -> bool:
        other = ScramKeys.derive(password, self.salt, self.iterations)
        return hmac.compare_digest(other.stored_key, self.stored_key)


def verifier_for(password: str) -> str:
    """The stored form of a password given in CREATE/ALTER USER: a SCRAM verifier passes
    through unchanged (as Postgres does), anything else is hashed."""
    if password == "":
        raise InvalidParameterValue("empty password: use PASSWORD NULL to remove a password")
    keys = ScramKeys.parse(password)
    return (keys or ScramKeys.derive(password)).text()


@dataclass
class Role:
    name: str
    superuser: bool = False
    login: bool = True
    verifier: str | None = None  # SCRAM verifier text, None: no password (cannot use SCRAM)
    created_at: str = ""

    def scram_keys(self) -> ScramKeys | None:
        return ScramKeys.parse(self.verifier) if self.verifier else None


def check_role_name(name: str) -> str:
    if not name or len(name) > MAX_NAME:
        raise InvalidParameterValue(f'invalid role name "{name}": 1 to {MAX_NAME} characters')
    if name.lower() in RESERVED_NAMES:
        raise InvalidParameterValue(f'role name "{name}" is reserved')
    if name.lower().startswith("pg_") or name.startswith("__"):
        raise InvalidParameterValue(f'role name "{name}" is reserved',
                                    detail='Role names starting with "pg_" or "__" are reserved.')
    return name


class RoleCatalog:
    """The roles; every change is written through to LevelDB at once. Thread-safe."""

    def __init__(self, store: HotStore, superuser: str, password: str | None = None):
        self.store = store
        self.lock = threading.RLock()
        self.roles: dict[str, Role] = {}
        self.generation = 0  # bumped by every change: what cached privilege verdicts key on
        for key, raw in store.scan_json(_PREFIX):
            role = Role(**raw)
            self.roles[role.name] = role
        self.bootstrap = superuser
        self.set_bootstrap(superuser, password)

    def set_bootstrap(self, superuser: str, password: str | None) -> None:
        """Make sure the configured superuser exists, is a superuser that may log in, and has
        the configured password (when one is configured)."""
        with self.lock:
            self.bootstrap = superuser
            role = self.roles.get(superuser)
            changed = role is None
            if role is None:
                role = Role(name=superuser, superuser=True, created_at=now_iso())
            if not role.superuser or not role.login:
                role.superuser = role.login = True
                changed = True
            if password is not None:
                keys = role.scram_keys()
                if keys is None or not keys.matches(password):
                    role.verifier = ScramKeys.derive(password).text()
                    changed = True
            if changed:
                self._save(role)

    # ------------------------------------------------------------------ queries
    def get(self, name: str) -> Role | None:
        return self.roles.get(name)

    def exists(self, name: str) -> bool:
        return name in self.roles

    def is_superuser(self, name: str) -> bool:
        role = self.roles.get(name)
        return role is not None and role.superuser

    def require(self, name: str) -> Role:
        role = self.roles.get(name)
        if role is None:
            raise UndefinedObject(f'role "{name}" does not exist')
        return role

    def all(self) -> list[Role]:
        with self.lock:
            return sorted(self.roles.values(), key=lambda r: r.name)

    # ------------------------------------------------------------------ changes
    def create(self, name: str, *, superuser: bool = False, login: bool = True,
               password: str | None = None, if_not_exists: bool = False) -> bool:
        check_role_name(name)
        verifier = verifier_for(password) if password is not None else None
        with self.lock:
            if name in self.roles:
                if if_not_exists:
                    return False
                raise DuplicateObject(f'role "{name}" already exists')
            self._save(Role(name=name, superuser=superuser, login=login, verifier=verifier,
                            created_at=now_iso()))
            return True

    def alter(self, name: str, *, superuser: bool | None = None, login: bool | None = None,
              password: str | None = None, clear_password: bool = False) -> None:
        with self.lock:
            role = self.require(name)
            if name == self.bootstrap and (superuser is False or login is False):
                raise InsufficientPrivilege(f'permission denied to alter role "{name}"',
                                            detail="The configured superuser (auth.superuser) must keep "
                                                   "SUPERUSER and LOGIN.")
            updated = Role(**asdict(role))
            if superuser is not None:
                updated.superuser = superuser
            if login is not None:
                updated.login = login
            if clear_password:
                updated.verifier = None
            elif password is not None:
                updated.verifier = verifier_for(password)
            self._save(updated)

    def drop(self, name: str, current: str, if_exists: bool = False,
             owned: list[str] | None = None) -> bool:
        """Drop a role; `owned` names the tables it still owns (which block the drop, as in
        Postgres). Returns False when it did not exist and `if_exists` was given."""
        with self.lock:
            if name not in self.roles:
                if if_exists:
                    return False
                raise UndefinedObject(f'role "{name}" does not exist')
            if name == current:
                raise ObjectInUse("current user cannot be dropped")
            if name == self.bootstrap:
                raise ObjectInUse(f'cannot drop role "{name}": it is the configured superuser '
                                  "(auth.superuser)")
            if owned:
                shown = ", ".join(owned[:10]) + (", ..." if len(owned) > 10 else "")
                raise DependentObjectsStillExist(
                    f'role "{name}" cannot be dropped because some objects depend on it',
                    detail=f"owner of table(s) {shown}")
            self.store.delete(_PREFIX + name)
            del self.roles[name]
            self.generation += 1
            return True

    def _save(self, role: Role) -> None:
        self.store.put_json(_PREFIX + role.name, asdict(role))
        self.roles[role.name] = role
        self.generation += 1
