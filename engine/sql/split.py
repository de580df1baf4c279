"""Split a simple-query string into statements, count its placeholders, read its keywords.

Quotes (including E'' escapes), dollar quotes and nested comments are respected, so a ';'
or a '$1' inside them never counts.
"""
from __future__ import annotations

import functools
import re
from typing import Iterator

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")
_PLACEHOLDER = re.compile(r"\$(\d+)")
_QUOTES_OR_COMMENTS = ("'", '"', "$", "--", "/*")
_LITERAL_OR_PARAM = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$\d+")


def space_params(sql: str) -> str:
    """sqlglot's tokenizer reads `$1,$2` as a dollar quote; give placeholders room."""
    return _LITERAL_OR_PARAM.sub(lambda m: f" {m.group(0)} " if m.group(0)[0] == "$" else m.group(0), sql)


def scan(sql: str) -> Iterator[tuple[str, int, int]]:
    """Yield (kind, start, end) spans: 'code', 'quoted', 'comment', or ';'."""
    i, n, start = 0, len(sql), 0
    while i < n:
        ch = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        if ch == ";":
            if start < i:
                yield "code", start, i
            yield ";", i, i + 1
            i = start = i + 1
            continue
        end = None
        kind = "quoted"
        if ch == "-" and nxt == "-":
            kind = "comment"
            end = sql.find("\n", i)
            end = n if end < 0 else end + 1
        elif ch == "/" and nxt == "*":
            kind, depth, end = "comment", 1, i + 2
            while end < n and depth:
                if sql.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif sql.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                else:
                    end += 1
        elif ch == "'":
            backslash = i > 0 and sql[i - 1] in "eE" and (i < 2 or not sql[i - 2].isalnum())
            end = i + 1
            while end < n:
                if backslash and sql[end] == "\\":
                    end += 2
                elif sql[end] == "'":
                    if end + 1 < n and sql[end + 1] == "'":
                        end += 2
                    else:
                        end += 1
                        break
                else:
                    end += 1
        elif ch == '"':
            end = sql.find('"', i + 1)
            end = n if end < 0 else end + 1
        elif ch == "$" and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            tag = _DOLLAR_TAG.match(sql, i)
            if tag:
                close = sql.find(tag.group(0), tag.end())
                end = n if close < 0 else close + len(tag.group(0))
        if end is None:
            i += 1
            continue
        if start < i:
            yield "code", start, i
        yield kind, i, min(end, n)
        i = start = min(end, n)
    if start < n:
        yield "code", start, n


def fold_case(sql: str) -> str:
    """Lower-case every unquoted identifier and keyword, as Postgres's lexer does, leaving
    quoted identifiers, string literals and comments as written. DuckDB keeps the case of
    an unquoted name (`CREATE TABLE t (UserId int)` names it "UserId"); Postgres folds it."""
    return "".join(sql[a:b].lower() if kind == "code" else sql[a:b] for kind, a, b in scan(sql))


def split_statements(sql: str) -> list[str]:
    """Non-empty statements of `sql`, without their terminating semicolons."""
    if not any(c in sql for c in _QUOTES_OR_COMMENTS):  # nothing but code: ';' ends a statement
        return [part.strip() for part in sql.split(";") if part.strip()]
    statements, current, meaningful = [], [], False
    for kind, start, end in scan(sql):
        if kind == ";":
            if meaningful:
                statements.append("".join(current).strip())
            current, meaningful = [], False
            continue
        current.append(sql[start:end])
        if kind == "quoted" or (kind == "code" and sql[start:end].strip()):
            meaningful = True
    if meaningful:
        statements.append("".join(current).strip())
    return statements


def max_placeholder(sql: str) -> int:
    """Highest $n used outside quotes and comments (the statement's parameter count)."""
    highest = 0
    for kind, start, end in scan(sql):
        if kind == "code":
            for match in _PLACEHOLDER.finditer(sql, start, end):
                highest = max(highest, int(match.group(1)))
    return highest


def strip_comments_head(sql: str) -> str:
    """Drop leading whitespace and comments so the first keyword can be read."""
    s = sql.lstrip()
    while True:
        if s.startswith("--"):
            j = s.find("\n")
            s = "" if j < 0 else s[j + 1 :].lstrip()
        elif s.startswith("/*"):
            j = s.find("*/")
            s = "" if j < 0 else s[j + 2 :].lstrip()
        else:
            return s


_WORD = re.compile(r"[A-Za-z_]+")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|\S")


def code_tokens(sql: str) -> list[str]:
    """Upper-cased words and symbols outside comments; a string literal is the one token "'"
    and a quoted identifier is '"' plus its name, so keywords inside either never count."""
    out: list[str] = []
    for kind, start, end in scan(sql):
        text = sql[start:end]
        if kind == "code":
            out.extend(w.upper() for w in _TOKEN.findall(text))
        elif kind == "quoted":
            out.append('"' + text[1:-1].replace('""', '"') if text.startswith('"') else "'")
    return out


def leading_words(sql: str, count: int = 3) -> list[str]:
    """The first `count` keywords, upper-cased ("(SELECT" counts as SELECT). A prepared
    statement's text is asked several times per execution: short texts are read once."""
    if len(sql) > _REMEMBERED_TEXT:
        return _leading_words(sql, count)
    return list(_remembered_leading_words(sql, count))


_REMEMBERED_TEXT = 2000


def _leading_words(sql: str, count: int) -> list[str]:
    s = strip_comments_head(sql).lstrip("( \t\r\n")
    return [w.upper() for w in _WORD.findall(s[:200])[:count]]


@functools.lru_cache(maxsize=2048)
def _remembered_leading_words(sql: str, count: int) -> tuple[str, ...]:
    return tuple(_leading_words(sql, count))
