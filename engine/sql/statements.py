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
_OPTION = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^']|'')*'|[^,\s)]+)\s*(,|$)", re.S)


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


@dataclass
class Command:
    """A parsed tierd command: `kind` plus its arguments."""

    kind: str
    args: dict


_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("create_namespace", re.compile(rf"^\s*CREATE\s+(?:NAMESPACE|SCHEMA)\s+(IF\s+NOT\s+EXISTS\s+)?(?P<name>{_NAME})\s*;?\s*$", re.I)),
    ("drop_namespace", re.compile(rf"^\s*DROP\s+(?:NAMESPACE|SCHEMA)\s+(IF\s+EXISTS\s+)?(?P<name>{_NAME})(?P<cascade>\s+CASCADE|\s+RESTRICT)?\s*;?\s*$", re.I)),
    ("drop_table", re.compile(rf"^\s*DROP\s+(?:(?:USER|SHARED|STREAM)\s+)?TABLE\s+(IF\s+EXISTS\s+)?(?P<name>{_QNAME[1:-1]})(?P<cascade>\s+CASCADE|\s+RESTRICT)?\s*;?\s*$", re.I)),
    ("flush_table", re.compile(rf"^\s*STORAGE\s+FLUSH\s+TABLE\s+(?P<name>{_QNAME[1:-1]})(?P<wait>\s+WAIT)?\s*;?\s*$", re.I)),
    ("flush_all", re.compile(rf"^\s*STORAGE\s+FLUSH\s+ALL(?:\s+IN\s+(?P<ns>{_NAME}))?(?P<wait>\s+WAIT)?\s*;?\s*$", re.I)),
    ("compact_table", re.compile(rf"^\s*STORAGE\s+COMPACT\s+TABLE\s+(?P<name>{_QNAME[1:-1]})(?P<wait>\s+WAIT)?\s*;?\s*$", re.I)),
    ("compact_all", re.compile(rf"^\s*STORAGE\s+COMPACT\s+ALL(?:\s+IN\s+(?P<ns>{_NAME}))?(?P<wait>\s+WAIT)?\s*;?\s*$", re.I)),
    ("retry_job", re.compile(r"^\s*RETRY\s+JOB\s+'(?P<job>[^']*)'\s*;?\s*$", re.I)),
    ("kill_job", re.compile(r"^\s*KILL\s+JOB\s+'(?P<job>[^']*)'\s*;?\s*$", re.I)),
]


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
_STORAGE_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("create_storage", re.compile(rf"^\s*CREATE\s+STORAGE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?{_STORAGE_ID}\s+(?P<rest>.*)$", re.I | re.S)),
    ("alter_storage", re.compile(rf"^\s*ALTER\s+STORAGE\s+{_STORAGE_ID}\s+SET\s+(?P<rest>.*)$", re.I | re.S)),
    ("drop_storage", re.compile(rf"^\s*DROP\s+STORAGE\s+(?P<ie>IF\s+EXISTS\s+)?{_STORAGE_ID}\s*;?\s*$", re.I)),
    ("show_storages", re.compile(r"^\s*SHOW\s+STORAGES\s*;?\s*$", re.I)),
    ("check_storage", re.compile(rf"^\s*STORAGE\s+CHECK\s+{_STORAGE_ID}\s*;?\s*$", re.I)),
]


def parse_storage_command(sql: str) -> Command | None:
    for kind, pat in _STORAGE_PATTERNS:
        m = pat.match(sql)
        if m:
            args = m.groupdict()
            if "rest" in args:
                args["options"] = parse_pairs(args.pop("rest"))
            return Command(kind, args)
    return None


def parse_command(sql: str) -> Command | None:
    for kind, pat in _PATTERNS:
        m = pat.match(sql)
        if m:
            args = {k: v for k, v in m.groupdict().items()}
            args["if"] = bool(m.group(1)) if kind in ("create_namespace", "drop_namespace", "drop_table") else False
            return Command(kind, args)
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


def parse_role_command(sql: str) -> Command | None:
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
        return Command("drop_role", {"names": names, "if": if_exists})
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
        opts.setdefault("login", noun == "USER")
        opts.setdefault("superuser", False)
    elif not opts:
        raise SyntaxError_(f"syntax error: ALTER {noun} {name} needs an option "
                           "(SUPERUSER, NOSUPERUSER, LOGIN, NOLOGIN or PASSWORD)")
    return Command(f"{verb.lower()}_role", {"name": name, **opts})


def parse_grant(sql: str) -> Command | None:
    """GRANT priv[, ...] | ALL [PRIVILEGES] ON [TABLE] t[, ...] TO role[, ...] and the REVOKE
    counterpart (… FROM role[, ...] [CASCADE | RESTRICT]). Privileges: SELECT, INSERT, UPDATE,
    DELETE. Returns Command(grant|revoke, privileges, tables (qualified name texts), roles)."""
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
    return Command(verb.lower(), {"privileges": privileges, "tables": _table_list(objects),
                                  "roles": _name_list(roles, "role")})


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
