"""Parsing of tierd's own statements and the DDL whose options DuckDB does not know.

Everything else (SELECT and the DML bodies) is left to DuckDB and sqlglot.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import FeatureNotSupported, SyntaxError_

_NAME = r'(?:"[^"]+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QNAME = rf"({_NAME}(?:\s*\.\s*{_NAME})?)"


def unquote(name: str) -> str:
    name = name.strip()
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


def split_qualified(qname: str, default_ns: str) -> tuple[str, str]:
    parts = [unquote(p) for p in re.findall(_NAME, qname)]
    if len(parts) == 1:
        return default_ns, parts[0]
    return parts[0], parts[1]


@dataclass
class CreateTable:
    keyword_type: str | None
    if_not_exists: bool
    namespace: str
    name: str
    body: str  # column and constraint list, DuckDB syntax
    options: dict[str, str]


_CREATE_TABLE = re.compile(
    rf"^\s*CREATE\s+(?:(USER|SHARED|STREAM)\s+)?TABLE\s+(IF\s+NOT\s+EXISTS\s+)?{_QNAME}\s*\(",
    re.I | re.S,
)
_OPTION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*('(?:[^']|'')*'|[^,\s)]+)\s*(,|$)", re.S)


def matching_paren(sql: str, open_at: int, statement: str = "CREATE TABLE") -> int:
    """Index of the ')' closing the '(' at `open_at`, skipping quoted text."""
    depth, i, n = 0, open_at, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = sql.find(c, i + 1)
            while j != -1 and j + 1 < n and sql[j + 1] == c:
                j = sql.find(c, j + 2)
            if j == -1:
                break
            i = j
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise SyntaxError_(f"syntax error: unbalanced parentheses in {statement}")


def split_actions(text: str) -> list[str]:
    """The comma-separated actions of an ALTER TABLE, commas inside parentheses and quotes
    left alone."""
    parts, start, i, n = [], 0, 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            j = text.find(c, i + 1)
            while j != -1 and j + 1 < n and text[j + 1] == c:
                j = text.find(c, j + 2)
            if j == -1:
                raise SyntaxError_("syntax error: unterminated quoted text in ALTER TABLE")
            i = j
        elif c == "(":
            i = matching_paren(text, i, "ALTER TABLE")
        elif c == ",":
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_create_table(sql: str, default_ns: str) -> CreateTable:
    m = _CREATE_TABLE.match(sql)
    if not m:
        raise SyntaxError_("syntax error in CREATE TABLE")
    close = matching_paren(sql, m.end() - 1)
    body = sql[m.end() : close]
    rest = sql[close + 1 :].strip().rstrip(";").strip()
    options: dict[str, str] = {}
    if rest:
        wm = re.match(r"^WITH\s*\((.*)\)$", rest, re.I | re.S)
        if not wm:
            raise SyntaxError_(f"syntax error at or near {rest.split()[0]!r} in CREATE TABLE")
        text = wm.group(1).strip()
        pos = 0
        while pos < len(text):
            om = _OPTION.match(text, pos)
            if not om:
                raise SyntaxError_(f"syntax error in WITH options near {text[pos:pos + 30]!r}")
            value = om.group(2)
            if value.startswith("'"):
                value = value[1:-1].replace("''", "'")
            options[om.group(1).upper()] = value
            pos = om.end()
    ns, name = split_qualified(m.group(3), default_ns)
    return CreateTable(
        keyword_type=m.group(1).upper() if m.group(1) else None,
        if_not_exists=bool(m.group(2)),
        namespace=ns,
        name=name,
        body=body,
        options=options,
    )


# --- tierd's own commands, typed --------------------------------------------------------
@dataclass(frozen=True)
class CreateNamespace:
    name: str
    if_not_exists: bool
    action: str = "CREATE SCHEMA"  # as written, for messages


@dataclass(frozen=True)
class DropNamespace:
    name: str
    if_exists: bool
    cascade: bool
    action: str = "DROP SCHEMA"


@dataclass(frozen=True)
class DropTable:
    name: str  # as written (quoting kept): split_qualified resolves it; the first of `names`
    if_exists: bool
    action: str = "DROP TABLE"
    names: tuple[str, ...] = ()  # DROP TABLE a, b, c: every name
    cascade: bool = False  # DROP TABLE ... CASCADE: referencing foreign keys go too


@dataclass(frozen=True)
class StorageJob:
    """STORAGE FLUSH|COMPACT|PUBLISH TABLE ns.t | ALL [IN ns] [WAIT]."""
    job_type: str  # "flush" | "compact" | "publish"
    table: str | None  # None: ALL
    namespace: str | None  # ALL IN ns
    wait: bool


@dataclass(frozen=True)
class JobCommand:
    """RETRY JOB 'id' | KILL JOB 'id'."""
    action: str  # "retry" | "kill"
    job_id: str


_NAMESPACE_PATTERNS = [
    (CreateNamespace, re.compile(rf"^\s*CREATE\s+(?:NAMESPACE|SCHEMA)\s+(?P<if>IF\s+NOT\s+EXISTS\s+)?(?P<name>{_NAME})\s*;?\s*$", re.I)),
    (DropNamespace, re.compile(rf"^\s*DROP\s+(?:NAMESPACE|SCHEMA)\s+(?P<if>IF\s+EXISTS\s+)?(?P<name>{_NAME})(?P<cascade>\s+CASCADE|\s+RESTRICT)?\s*;?\s*$", re.I)),
    (DropTable, re.compile(rf"^\s*DROP\s+(?:(?:USER|SHARED|STREAM)\s+)?TABLE\s+(?P<if>IF\s+EXISTS\s+)?(?P<name>{_QNAME[1:-1]}(?:\s*,\s*{_QNAME[1:-1]})*)(?P<cascade>\s+CASCADE|\s+RESTRICT)?\s*;?\s*$", re.I)),
]
_STORAGE_JOB = re.compile(rf"^\s*STORAGE\s+(?P<verb>FLUSH|COMPACT|PUBLISH)\s+(?:TABLE\s+(?P<name>{_QNAME[1:-1]})|ALL(?:\s+IN\s+(?P<ns>{_NAME}))?)(?P<wait>\s+WAIT)?\s*;?\s*$", re.I)
_JOB_COMMAND = re.compile(r"^\s*(?P<verb>RETRY|KILL)\s+JOB\s+'(?P<job>[^']*)'\s*;?\s*$", re.I)


def parse_namespace_or_drop(sql: str) -> CreateNamespace | DropNamespace | DropTable | None:
    """CREATE/DROP NAMESPACE (or SCHEMA), DROP TABLE; None for any other CREATE/DROP."""
    for cls, pat in _NAMESPACE_PATTERNS:
        m = pat.match(sql)
        if m:
            if cls is CreateNamespace:
                return CreateNamespace(m.group("name"), bool(m.group("if")))
            if cls is DropNamespace:
                return DropNamespace(m.group("name"), bool(m.group("if")),
                                     (m.group("cascade") or "").strip().upper() == "CASCADE")
            names = tuple(n.strip() for n in re.findall(_QNAME, m.group("name")))
            return DropTable(names[0], bool(m.group("if")), names=names,
                             cascade=(m.group("cascade") or "").strip().upper() == "CASCADE")
    return None


def parse_storage_job(sql: str) -> StorageJob | None:
    m = _STORAGE_JOB.match(sql)
    if not m:
        return None
    job_type = {"FLUSH": "flush", "COMPACT": "compact", "PUBLISH": "publish"}[m.group("verb").upper()]
    return StorageJob(job_type, m.group("name"), m.group("ns"),
                      bool(m.group("wait")))


def parse_job_command(sql: str) -> JobCommand | None:
    m = _JOB_COMMAND.match(sql)
    return JobCommand(m.group("verb").lower(), m.group("job")) if m else None


_PAIR = re.compile(r"\s*,?\s*([A-Za-z_]+)\s+'((?:[^']|'')*)'", re.S)


def parse_pairs(text: str) -> dict[str, str]:
    """`KEY 'value' [,] KEY 'value' ...` as used by CREATE/ALTER STORAGE."""
    out: dict[str, str] = {}
    pos = 0
    text = text.strip().rstrip(";").rstrip()
    while pos < len(text):
        m = _PAIR.match(text, pos)
        if not m:
            raise SyntaxError_(f"syntax error at or near {text[pos:pos + 30].strip()!r}: expected KEY 'value'")
        key = m.group(1).upper()
        if key in out:
            raise SyntaxError_(f"option {key} given twice")
        out[key] = m.group(2).replace("''", "'")
        pos = m.end()
    return out


_STORAGE_ID = r"(?P<id>[A-Za-z_][A-Za-z0-9_\-]*)"


@dataclass(frozen=True)
class CreateStorage:
    storage_id: str
    options: dict
    if_not_exists: bool


@dataclass(frozen=True)
class AlterStorage:
    storage_id: str
    options: dict


@dataclass(frozen=True)
class DropStorage:
    storage_id: str
    if_exists: bool


@dataclass(frozen=True)
class ShowStorages:
    pass


@dataclass(frozen=True)
class CheckStorage:
    storage_id: str


_STORAGE_PATTERNS = [
    (CreateStorage, re.compile(rf"^\s*CREATE\s+STORAGE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?{_STORAGE_ID}\s+(?P<rest>.*)$", re.I | re.S)),
    (AlterStorage, re.compile(rf"^\s*ALTER\s+STORAGE\s+{_STORAGE_ID}\s+SET\s+(?P<rest>.*)$", re.I | re.S)),
    (DropStorage, re.compile(rf"^\s*DROP\s+STORAGE\s+(?P<ie>IF\s+EXISTS\s+)?{_STORAGE_ID}\s*;?\s*$", re.I)),
    (ShowStorages, re.compile(r"^\s*SHOW\s+STORAGES\s*;?\s*$", re.I)),
    (CheckStorage, re.compile(rf"^\s*STORAGE\s+CHECK\s+{_STORAGE_ID}\s*;?\s*$", re.I)),
]
StorageDefinition = CreateStorage | AlterStorage | DropStorage | ShowStorages | CheckStorage


def parse_storage_definition(sql: str) -> StorageDefinition | None:
    for cls, pat in _STORAGE_PATTERNS:
        m = pat.match(sql)
        if not m:
            continue
        if cls is CreateStorage:
            return CreateStorage(m.group("id"), parse_pairs(m.group("rest")), bool(m.group("ine")))
        if cls is AlterStorage:
            return AlterStorage(m.group("id"), parse_pairs(m.group("rest")))
        if cls is DropStorage:
            return DropStorage(m.group("id"), bool(m.group("ie")))
        if cls is ShowStorages:
            return ShowStorages()
        return CheckStorage(m.group("id"))
    return None


# --- roles and privileges ---------------------------------------------------------------
_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*|\d+|\S""")
_ROLE_HEAD = re.compile(r"^\s*(CREATE|ALTER|DROP)\s+(USER|ROLE)\b", re.I)
_UNSUPPORTED_ROLE_OPTIONS = {"CREATEDB", "NOCREATEDB", "CREATEROLE", "NOCREATEROLE", "INHERIT", "NOINHERIT",
                             "REPLICATION", "NOREPLICATION", "BYPASSRLS", "NOBYPASSRLS", "CONNECTION",
                             "VALID", "IN", "ROLE", "ADMIN", "SYSID", "UNENCRYPTED", "RENAME", "SET", "RESET"}
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.strip().rstrip(";"))


def _literal(token: str) -> str:
    if not (len(token) >= 2 and token.startswith("'") and token.endswith("'")):
        raise SyntaxError_(f"syntax error at or near {token!r}: expected a quoted string")
    return token[1:-1].replace("''", "'")


def _is_name(token: str) -> bool:
    return bool(re.fullmatch(_NAME, token)) or (token.startswith('"') and token.endswith('"') and len(token) > 2)


def _name_list(tokens: list[str], what: str) -> list[str]:
    """`a, b, "C"` -> ["a", "b", "C"]; the whole token list must be such a list."""
    names = []
    for i, token in enumerate(tokens):
        if i % 2 == 1:
            if token != ",":
                raise SyntaxError_(f"syntax error at or near {token!r}")
            continue
        if not _is_name(token):
            raise SyntaxError_(f"syntax error at or near {token!r}: expected a {what} name")
        names.append(unquote(token))
    if not names or len(tokens) % 2 == 0:
        raise SyntaxError_(f"syntax error: expected a {what} name")
    return names


@dataclass(frozen=True)
class CreateRole:
    name: str
    superuser: bool
    login: bool
    password: str | None
    noun: str = "ROLE"  # USER or ROLE, as written (the command tag repeats it)


@dataclass(frozen=True)
class AlterRole:
    name: str
    superuser: bool | None  # None: unchanged
    login: bool | None
    password: str | None
    sets_password: bool  # PASSWORD given (PASSWORD NULL clears it)
    noun: str = "ROLE"

    @property
    def only_password(self) -> bool:
        """A role may change its own password, nothing else, without being a superuser."""
        return self.sets_password and self.superuser is None and self.login is None


@dataclass(frozen=True)
class DropRole:
    names: list[str]
    if_exists: bool
    noun: str = "ROLE"


@dataclass(frozen=True)
class Grant:
    """GRANT (grant=True) or REVOKE of table privileges."""
    grant: bool
    privileges: list[str]
    tables: list[str]  # qualified name texts, quoting kept
    roles: list[str]


RoleCommand = CreateRole | AlterRole | DropRole


def parse_role_command(sql: str) -> RoleCommand | None:
    """CREATE|ALTER USER|ROLE name [WITH] option..., DROP USER|ROLE [IF EXISTS] name[, ...].

    Options: SUPERUSER | NOSUPERUSER | LOGIN | NOLOGIN | [ENCRYPTED] PASSWORD 'secret' | PASSWORD NULL.
    CREATE USER implies LOGIN, CREATE ROLE NOLOGIN (as in Postgres)."""
    m = _ROLE_HEAD.match(sql)
    if not m:
        return None
    verb, noun = m.group(1).upper(), m.group(2).upper()
    tokens = _tokens(sql[m.end():])
    if verb == "DROP":
        if_exists = [t.upper() for t in tokens[:2]] == ["IF", "EXISTS"]
        names = _name_list(tokens[2:] if if_exists else tokens, "role")
        return DropRole(names, if_exists, noun)
    if not tokens or not _is_name(tokens[0]):
        raise SyntaxError_(f"syntax error: expected a role name after {verb} {noun}")
    name = unquote(tokens[0])
    rest = tokens[1:]
    if rest and rest[0].upper() == "WITH":
        rest = rest[1:]
    opts: dict = {}
    i = 0
    while i < len(rest):
        word = rest[i].upper()
        if word in ("SUPERUSER", "NOSUPERUSER", "LOGIN", "NOLOGIN"):
            key = "superuser" if word.endswith("SUPERUSER") else "login"
            value = not word.startswith("NO")
            if key in opts:
                raise SyntaxError_("conflicting or redundant options")
            opts[key] = value
            i += 1
            continue
        if word == "ENCRYPTED" and i + 1 < len(rest) and rest[i + 1].upper() == "PASSWORD":
            i += 1
            word = "PASSWORD"
        if word == "PASSWORD":
            if i + 1 >= len(rest):
                raise SyntaxError_("syntax error: PASSWORD needs a quoted string or NULL")
            if "password" in opts:
                raise SyntaxError_("conflicting or redundant options")
            value = rest[i + 1]
            opts["password"] = None if value.upper() == "NULL" else _literal(value)
            i += 2
            continue
        if word in _UNSUPPORTED_ROLE_OPTIONS:
            raise FeatureNotSupported(f"role option {word} is not supported by tierd",
                                      hint="Supported: SUPERUSER, NOSUPERUSER, LOGIN, NOLOGIN, PASSWORD.")
        raise SyntaxError_(f"syntax error at or near {rest[i]!r} in {verb} {noun}")
    if verb == "CREATE":
        return CreateRole(name, opts.get("superuser", False), opts.get("login", noun == "USER"), opts.get("password"),
                          noun)
    if not opts:
        raise SyntaxError_(f"syntax error: ALTER {noun} {name} needs an option "
                           "(SUPERUSER, NOSUPERUSER, LOGIN, NOLOGIN or PASSWORD)")
    return AlterRole(name, opts.get("superuser"), opts.get("login"), opts.get("password"), "password" in opts, noun)


def parse_grant(sql: str) -> Grant | None:
    """GRANT priv[, ...] | ALL [PRIVILEGES] ON [TABLE] t[, ...] TO role[, ...] and the REVOKE
    counterpart (… FROM role[, ...] [CASCADE | RESTRICT]). Privileges: SELECT, INSERT, UPDATE,
    DELETE."""
    tokens = _tokens(sql)
    if not tokens or tokens[0].upper() not in ("GRANT", "REVOKE"):
        return None
    verb = tokens[0].upper()
    upper = [t.upper() for t in tokens]
    if verb == "REVOKE" and upper[1:4] == ["GRANT", "OPTION", "FOR"]:
        raise FeatureNotSupported("GRANT OPTION is not supported by tierd")
    if "ON" not in upper:
        raise FeatureNotSupported("granting role membership is not supported by tierd",
                                  hint="GRANT SELECT|INSERT|UPDATE|DELETE|ALL ON [TABLE] ns.t TO role")
    on = upper.index("ON")
    privileges = _privileges(tokens[1:on])
    target = "TO" if verb == "GRANT" else "FROM"
    if target not in upper[on:]:
        raise SyntaxError_(f"syntax error: {verb} ... ON ... needs {target} role")
    to = on + upper[on:].index(target)
    objects = tokens[on + 1:to]
    if objects and objects[0].upper() == "TABLE":
        objects = objects[1:]
    if objects and objects[0].upper() in ("SCHEMA", "DATABASE", "FUNCTION", "SEQUENCE", "ALL", "FOREIGN",
                                          "LANGUAGE", "LARGE", "TABLESPACE", "TYPE", "DOMAIN", "PROCEDURE"):
        raise FeatureNotSupported(f"GRANT/REVOKE ON {objects[0].upper()} is not supported by tierd: "
                                  "privileges are per table")
    roles = tokens[to + 1:]
    if verb == "GRANT" and [t.upper() for t in roles[-3:]] == ["WITH", "GRANT", "OPTION"]:
        raise FeatureNotSupported("WITH GRANT OPTION is not supported by tierd")
    if verb == "REVOKE" and roles and roles[-1].upper() in ("CASCADE", "RESTRICT"):
        roles = roles[:-1]
    if any(r.upper() == "PUBLIC" for r in roles):
        raise FeatureNotSupported("GRANT/REVOKE to PUBLIC is not supported by tierd: name the roles")
    return Grant(verb == "GRANT", privileges, _table_list(objects), _name_list(roles, "role"))


def _privileges(tokens: list[str]) -> list[str]:
    upper = [t.upper() for t in tokens]
    if upper in (["ALL"], ["ALL", "PRIVILEGES"]):
        return list(PRIVILEGES)
    out = []
    for i, word in enumerate(upper):
        if i % 2 == 1:
            if word != ",":
                raise SyntaxError_(f"syntax error at or near {tokens[i]!r}" +
                                   (": column privileges are not supported" if word == "(" else ""))
            continue
        if word not in PRIVILEGES:
            if word in ("TRUNCATE", "REFERENCES", "TRIGGER", "USAGE", "CREATE", "CONNECT", "TEMPORARY",
                        "TEMP", "EXECUTE", "MAINTAIN"):
                raise FeatureNotSupported(f"privilege {word} is not supported by tierd",
                                          hint="Supported: SELECT, INSERT, UPDATE, DELETE, ALL.")
            raise SyntaxError_(f"syntax error at or near {tokens[i]!r}: expected a privilege")
        if word not in out:
            out.append(word)
    if not out or len(upper) % 2 == 0:
        raise SyntaxError_("syntax error: expected SELECT, INSERT, UPDATE, DELETE or ALL")
    return out


def _table_list(tokens: list[str]) -> list[str]:
    """`ns.t, u` -> ["ns.t", "u"] (name texts, quoting kept, for split_qualified)."""
    out, current = [], []
    for token in tokens + [","]:
        if token == ",":
            text = "".join(current)
            if not re.fullmatch(_QNAME, text):
                raise SyntaxError_(f"syntax error: expected a table name, got {text or 'nothing'!r}")
            out.append(text)
            current = []
        else:
            current.append(token)
    return out
