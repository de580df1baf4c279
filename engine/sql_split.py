"""Split a simple-query string into statements and read its leading keywords.

Quotes, dollar quotes, and both comment styles are respected so a ';' inside them
never ends a statement.
"""
from __future__ import annotations

import re

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


def split_statements(sql: str) -> list[str]:
    """Return the non-empty statements of `sql`, without their trailing ';'."""
    out: list[str] = []
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c == "'" or c == '"':
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
        elif c == "$":
            m = _DOLLAR.match(sql, i)
            if m and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
                end = sql.find(m.group(0), m.end())
                i = n if end < 0 else end + len(m.group(0))
            else:
                i += 1
        elif c == ";":
            stmt = sql[start:i]
            if not is_blank(stmt):
                out.append(stmt.strip())
            start = i = i + 1
        else:
            i += 1
    tail = sql[start:]
    if not is_blank(tail):
        out.append(tail.strip())
    return out


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


def is_blank(sql: str) -> bool:
    return strip_comments_head(sql) == ""


_WORD = re.compile(r"[A-Za-z_]+")


def leading_words(sql: str, count: int = 3) -> list[str]:
    """The first `count` keywords, upper-cased ("(SELECT" counts as SELECT)."""
    s = strip_comments_head(sql).lstrip("( \t\r\n")
    return [w.upper() for w in _WORD.findall(s[:200])[:count]]
