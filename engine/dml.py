"""Plans for INSERT, UPDATE and DELETE: the DuckDB SQL that computes the affected rows.

DuckDB evaluates every expression (defaults, casts, SET expressions, WHERE, RETURNING);
the engine only decides which row versions to write. Plans depend on the SQL text alone
and are cached, so a prepared INSERT is parsed once.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from engine.errors import FeatureNotSupported, SyntaxError_

STAGE = "__TIERD_STAGE__"  # replaced by the session's staging table name


@dataclass(frozen=True)
class Target:
    namespace: str | None  # None: the default namespace
    name: str
    alias: str


@dataclass(frozen=True)
class InsertPlan:
    target: Target
    stage_sql: str  # INSERT INTO <stage> ... RETURNING *
    returning: str | None  # SELECT list evaluated over the inserted rows
    on_conflict_nothing: bool
    param_count: int


@dataclass(frozen=True)
class UpdatePlan:
    target: Target
    set_columns: tuple[str, ...]
    select_sql: str  # new values of every SET column + old key columns, per affected row
    returning: str | None
    param_count: int


@dataclass(frozen=True)
class DeletePlan:
    target: Target
    select_sql: str  # every column of each affected row
    returning: str | None
    param_count: int


def _ident(node: exp.Expression | None) -> str | None:
    if node is None:
        return None
    return node.name if isinstance(node, exp.Identifier) else str(node)


def _target(table: exp.Table) -> Target:
    if table.args.get("catalog"):
        raise FeatureNotSupported("cross-database references are not implemented")
    ns = table.db or None
    alias = table.alias or table.name
    return Target(namespace=ns, name=table.name, alias=alias)


def _returning(node: exp.Expression) -> str | None:
    ret = node.args.get("returning")
    if ret is None:
        return None
    return ", ".join(e.sql(dialect="duckdb") for e in ret.expressions)


def _param_count(node: exp.Expression) -> int:
    highest = 0
    for p in node.find_all(exp.Parameter, exp.Placeholder):
        text = p.sql(dialect="postgres").lstrip("$")
        if text.isdigit():
            highest = max(highest, int(text))
    return highest


@functools.lru_cache(maxsize=512)
def plan(sql: str) -> InsertPlan | UpdatePlan | DeletePlan:
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.ParseError as exc:
        raise SyntaxError_(f"syntax error: {str(exc).splitlines()[0]}") from None
    if isinstance(tree, exp.Insert):
        return _plan_insert(tree)
    if isinstance(tree, exp.Update):
        return _plan_update(tree)
    if isinstance(tree, exp.Delete):
        return _plan_delete(tree)
    raise FeatureNotSupported("statement not supported")


def _plan_insert(tree: exp.Insert) -> InsertPlan:
    into = tree.this
    cols = ""
    if isinstance(into, exp.Schema):
        cols = "(" + ", ".join('"' + c.name + '"' for c in into.expressions) + ")"
        table = into.this
    else:
        table = into
        cols = _implicit_columns(tree.args.get("expression"))
    conflict = tree.args.get("conflict")
    nothing = False
    if conflict is not None:
        action = conflict.args.get("action")
        if action is not None and "NOTHING" in action.sql().upper():
            nothing = True
        else:
            raise FeatureNotSupported("ON CONFLICT DO UPDATE is not supported yet")
    source = tree.args.get("expression")
    if source is None:
        body = "DEFAULT VALUES"
    else:
        body = source.sql(dialect="duckdb")
    stage_sql = f"INSERT INTO {STAGE} {cols} {body} RETURNING *"
    return InsertPlan(_target(table), stage_sql, _returning(tree), nothing, _param_count(tree))


def _implicit_columns(source: exp.Expression | None) -> str:
    """Postgres fills the first N columns when INSERT names none; DuckDB wants all of them."""
    width = None
    if isinstance(source, exp.Values) and source.expressions:
        first = source.expressions[0]
        width = len(first.expressions) if isinstance(first, exp.Tuple) else 1
    elif isinstance(source, exp.Select) and not any(isinstance(e, exp.Star) or
                                                    (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
                                                    for e in source.expressions):
        width = len(source.expressions)
    if width is None:
        return ""
    return f"{COLUMNS_PREFIX}{width}"


COLUMNS_PREFIX = "__TIERD_FIRST_COLUMNS__"  # replaced by the table's first N column names


def _plan_update(tree: exp.Update) -> UpdatePlan:
    table = tree.this
    target = _target(table)
    sets: list[str] = []
    exprs: list[str] = []
    for eq in tree.expressions:
        if not isinstance(eq, exp.EQ) or not isinstance(eq.this, exp.Column):
            raise SyntaxError_("syntax error in SET clause")
        sets.append(eq.this.name)
        exprs.append(f'{eq.expression.sql(dialect="duckdb")} AS "__new_{len(exprs)}"')
    from_ = tree.args.get("from_") or tree.args.get("from")
    where = tree.args.get("where")
    src = table.sql(dialect="duckdb")
    extra = ""
    if from_ is not None:
        extra = ", " + ", ".join(e.sql(dialect="duckdb") for e in from_.expressions) if hasattr(from_, "expressions") and from_.expressions else ", " + from_.this.sql(dialect="duckdb")
    sql = f'SELECT "{target.alias}".*, {", ".join(exprs)} FROM {src}{extra}'
    if where is not None:
        sql += " " + where.sql(dialect="duckdb")
    return UpdatePlan(target, tuple(sets), sql, _returning(tree), _param_count(tree))


def _plan_delete(tree: exp.Delete) -> DeletePlan:
    table = tree.this
    target = _target(table)
    using = tree.args.get("using") or []
    src = table.sql(dialect="duckdb")
    extra = "".join(", " + u.sql(dialect="duckdb") for u in using)
    sql = f'SELECT "{target.alias}".* FROM {src}{extra}'
    where = tree.args.get("where")
    if where is not None:
        sql += " " + where.sql(dialect="duckdb")
    return DeletePlan(target, sql, _returning(tree), _param_count(tree))
