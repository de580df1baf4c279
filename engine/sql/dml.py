"""Plans for INSERT, UPDATE and DELETE: the DuckDB SQL that computes the affected rows.

DuckDB evaluates every expression (defaults, casts, SET expressions, WHERE, RETURNING);
the engine only decides which row versions to write. Plans depend on the SQL text alone
and are cached, so a prepared INSERT is parsed once.
"""
from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from engine.errors import FeatureNotSupported, SyntaxError_
from engine.sql import keyed, param_casts
from engine.sql.split import space_params

STAGE = "__TIERD_STAGE__"  # replaced by the session's staging table name


@dataclass(frozen=True)
class Target:
    namespace: str | None  # None: the default namespace
    name: str
    alias: str


EXISTING = "__existing"  # ON CONFLICT DO UPDATE: the conflicting rows, as the target's alias
EXCLUDED = "__excluded"  # the rows proposed for insertion, as `excluded`


@dataclass(frozen=True)
class OnConflict:
    """INSERT's ON CONFLICT clause: its arbiter (checked against the table's key by the
    session) and its action."""
    columns: tuple[str, ...] | None  # ON CONFLICT (cols); None: no column list
    constraint: str | None  # ON CONFLICT ON CONSTRAINT name
    update: bool  # DO UPDATE (else DO NOTHING)
    set_columns: tuple[str, ...] = ()
    # DO UPDATE: per conflicting row, the new value of each SET column (`__new_i`) and whether
    # its WHERE holds (`__pass`), over EXISTING and EXCLUDED joined row by row.
    set_sql: str | None = None
    set_exprs: str | None = None  # set_sql's SELECT list alone (for the sandbox)
    action: keyed.ConflictAction | None = None  # DO UPDATE computable in Python, if it is


@dataclass(frozen=True)
class InsertPlan:
    target: Target
    stage_sql: str  # INSERT INTO <stage> ... RETURNING *
    returning: str | None  # SELECT list evaluated over the inserted rows
    on_conflict_nothing: bool
    param_count: int
    # Fast path for VALUES lists of parameters and plain literals: the named columns (None:
    # the first N) and per row a tuple of ("p", index), ("pc", (index, cast)) (a parameter with
    # a cast engine/sql/param_casts.py checks in Python), ("c", constant) or ("now", None) (the
    # transaction's timestamp). None: use DuckDB.
    columns: tuple[str, ...] | None = None
    fast_values: tuple[tuple[tuple[str, object], ...], ...] | None = None
    reads: tuple[tuple[str | None, str], ...] = ()  # tables read besides the target (privileges)
    source_sql: str | None = None  # the VALUES list or query inserted, DuckDB dialect (sandbox)
    conflict: OnConflict | None = None


@dataclass(frozen=True)
class UpdatePlan:
    target: Target
    set_columns: tuple[str, ...]
    select_sql: str  # new values of every SET column + old key columns, per affected row
    returning: str | None
    param_count: int
    reads: tuple[tuple[str | None, str], ...] = ()


@dataclass(frozen=True)
class DeletePlan:
    target: Target
    select_sql: str  # every column of each affected row
    returning: str | None
    param_count: int
    reads: tuple[tuple[str | None, str], ...] = ()


MERGE_TARGET = "__TIERD_MERGE_TARGET__"  # replaced by the target's rows and a match marker
MERGE_COLUMNS = "__TIERD_MERGE_COLUMNS__"  # replaced by the target's columns as __t_<col>
MERGE_HIT = "__tierd_hit"


@dataclass(frozen=True)
class MergeAction:
    """One WHEN clause of MERGE, in order."""
    matched: bool
    action: str  # "UPDATE" | "DELETE" | "INSERT" | "NOTHING"
    columns: tuple[str, ...] = ()  # UPDATE: the SET columns; INSERT: the named columns (empty: the first N)
    width: int = 0  # INSERT: number of values


@dataclass(frozen=True)
class MergePlan:
    """MERGE INTO target USING source ON cond WHEN ...: one query over the source LEFT JOIN the
    target gives, per source row, the matched target row (`__t_<col>`), the first WHEN clause
    whose conditions hold (`__clause`, NULL: none) and every clause's values (`__w<i>_<j>`)."""
    target: Target
    whens: tuple[MergeAction, ...]
    select_sql: str  # with MERGE_TARGET standing for the target relation
    check_sql: str  # the same query over the target as the client named it (for the sandbox)
    param_count: int
    reads: tuple[tuple[str | None, str], ...] = ()
    returning: None = None  # PostgreSQL 15's MERGE has no RETURNING


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


def _reads(tree: exp.Expression, target: exp.Table) -> tuple[tuple[str | None, str], ...]:
    """(namespace or None, name) of every table the statement reads other than its target
    node: FROM/USING lists and subqueries anywhere; CTE names are not tables."""
    ctes = {c.alias_or_name.casefold() for c in tree.find_all(exp.CTE)}
    out = []
    for t in tree.find_all(exp.Table):
        if t is target or not isinstance(t.this, exp.Identifier):
            continue  # the target itself, or a table function
        if not t.db and not t.catalog and t.name.casefold() in ctes:
            continue
        ref = (t.db or None, t.name)
        if ref not in out:
            out.append(ref)
    return tuple(out)


def _as_alias(node: exp.Expression, table: exp.Table) -> exp.Expression:
    """`ns.t.col` and `t.col` (what SQLAlchemy writes in WHERE and RETURNING) as `alias.col`:
    DuckDB resolves a column by the name its relation has in the query, never by its schema."""
    alias = table.alias or table.name
    ns = table.db or None

    def rewrite(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Column) and n.table and n.args.get("db") is not None \
                and n.table == table.name and (ns is None or n.db == ns) and not n.args.get("catalog"):
            return exp.column(n.this.copy(), table=exp.to_identifier(alias, quoted=True))
        return n
    return node.transform(rewrite, copy=True)


def _returning(node: exp.Expression, table: exp.Table) -> str | None:
    ret = node.args.get("returning")
    if ret is None:
        return None
    return ", ".join(_as_alias(e, table).sql(dialect="duckdb") for e in ret.expressions)


def _param_count(node: exp.Expression) -> int:
    highest = 0
    for p in node.find_all(exp.Parameter, exp.Placeholder):
        text = p.sql(dialect="postgres").lstrip("$")
        if text.isdigit():
            highest = max(highest, int(text))
    return highest


_BULK_INSERT = re.compile(
    r'^\s*INSERT\s+INTO\s+(?:("[^"]+"|[A-Za-z_]\w*)\s*\.\s*)?("[^"]+"|[A-Za-z_]\w*)\s*'
    r'(\((?:\s*(?:"[^"]+"|[A-Za-z_]\w*)\s*,?)+\))?\s*(VALUES\b.*)$', re.I | re.S)
_OUTSIDE_QUOTES = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
BULK_THRESHOLD = 4096  # characters; sqlglot takes ~seconds on a 5,000-row VALUES list


def _bulk_insert_plan(sql: str) -> InsertPlan | None:
    """A big `INSERT INTO t [(cols)] VALUES ...` goes straight to DuckDB, unparsed by sqlglot."""
    m = _BULK_INSERT.match(sql)
    if not m:
        return None
    bare = _OUTSIDE_QUOTES.sub("''", m.group(4))
    if re.search(r"\b(RETURNING|ON\s+CONFLICT|SELECT|FROM|TABLE)\b|\$\d", bare, re.I):  # subqueries: parsed
        return None
    unq = lambda n: n[1:-1] if n and n.startswith('"') else (n.lower() if n else None)
    name = unq(m.group(2))
    cols = m.group(3) or ""
    body = m.group(4).rstrip().rstrip(";")
    if not cols:
        first = re.match(r"VALUES\s*\(", body, re.I)
        if not first:
            return None
        cols = f"{COLUMNS_PREFIX}{_tuple_width(body, first.end())}"
    return InsertPlan(Target(unq(m.group(1)), name, name), f"INSERT INTO {STAGE} {cols} {body} RETURNING *",
                      None, False, 0, source_sql=body)


def _tuple_width(body: str, start: int) -> int:
    """Number of top-level items in the first VALUES tuple (starting after its '(')."""
    depth, width = 0, 1
    text = _OUTSIDE_QUOTES.sub("''", body[start:])
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            width += 1
    return width


# One planning at a time (each plan is cached per text; sqlglot holds the GIL anyway). The plans
# with param_count 0 once seen here came from sqlglot's lazy dialect loading, which
# engine/sql/dialects.py now does at engine start.
_planning = threading.Lock()


def plan(sql: str) -> InsertPlan | UpdatePlan | DeletePlan | MergePlan:
    listed = param_casts.values_list(sql)
    if listed is not None:
        return _values_plan(*listed)
    with _planning:
        if len(sql) > BULK_THRESHOLD:
            bulk = _bulk_insert_plan(sql)
            if bulk is not None:
                return bulk
        return _cached_plan(sql)


def _values_plan(ns: str | None, name: str, columns: tuple[str, ...], rows: tuple, body: str) -> InsertPlan:
    """The plan of a VALUES list read by engine/sql/param_casts.py (no sqlglot)."""
    cols = "(" + ", ".join('"' + c.replace('"', '""') + '"' for c in columns) + ")"
    highest = max((v if kind == "p" else v[0] for row in rows for kind, v in row if kind in ("p", "pc")), default=-1)
    return InsertPlan(Target(ns, name, name), f"INSERT INTO {STAGE} {cols} {body} RETURNING *", None, False,
                      highest + 1, columns=columns, fast_values=rows, source_sql=body)


@functools.lru_cache(maxsize=512)
def _cached_plan(sql: str) -> InsertPlan | UpdatePlan | DeletePlan | MergePlan:
    try:
        tree = sqlglot.parse_one(space_params(sql), read="postgres")
    except sqlglot.errors.ParseError as exc:
        raise SyntaxError_(f"syntax error: {str(exc).splitlines()[0]}") from None
    if isinstance(tree, exp.Insert):
        return _plan_insert(tree)
    if isinstance(tree, exp.Update):
        return _plan_update(tree)
    if isinstance(tree, exp.Delete):
        return _plan_delete(tree)
    if isinstance(tree, exp.Merge):
        return _plan_merge(tree)
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
    conflict = _on_conflict(tree.args.get("conflict"), table)
    nothing = conflict is not None and not conflict.update
    source = tree.args.get("expression")
    if source is None:
        body = "DEFAULT VALUES"
    else:
        body = source.sql(dialect="duckdb")
    stage_sql = f"INSERT INTO {STAGE} {cols} {body} RETURNING *"
    names = tuple(c.name for c in into.expressions) if isinstance(into, exp.Schema) else None
    return InsertPlan(_target(table), stage_sql, _returning(tree, table), nothing, _param_count(tree),
                      columns=names, fast_values=_fast_values(source), reads=_reads(tree, table),
                      source_sql=None if source is None else body, conflict=conflict)


def _on_conflict(node: exp.OnConflict | None, table: exp.Table) -> OnConflict | None:
    """The ON CONFLICT clause as a plan. An index predicate (`ON CONFLICT (cols) WHERE p`)
    only helps infer a partial unique index; the primary key satisfies any, so it is ignored,
    as PostgreSQL does for a non-partial index."""
    if node is None:
        return None
    if node.args.get("duplicate"):
        raise FeatureNotSupported("ON DUPLICATE KEY is not supported", hint="use ON CONFLICT")
    keys = node.args.get("conflict_keys")
    columns = None
    if keys:
        columns = tuple((k.this if isinstance(k, exp.Ordered) else k).name for k in keys)
    constraint = node.args.get("constraint")
    constraint = constraint.name if constraint is not None else None
    action = (node.args.get("action").sql() if node.args.get("action") is not None else "").upper()
    if "NOTHING" in action:
        return OnConflict(columns, constraint, update=False)
    if columns is None and constraint is None:
        raise SyntaxError_("ON CONFLICT DO UPDATE requires inference specification or constraint name",
                           hint="For example, ON CONFLICT (column_name).")
    alias = table.alias or table.name
    sets, exprs = [], []
    for eq in node.expressions:
        if not isinstance(eq, exp.EQ) or not isinstance(eq.this, exp.Column):
            raise SyntaxError_("syntax error in SET clause")
        sets.append(eq.this.name)
        value = _own_columns(_as_alias(eq.expression, table), alias)
        exprs.append(f'{value.sql(dialect="duckdb")} AS "__new_{len(exprs)}"')
    where = node.args.get("where")
    cond = "true" if where is None else _own_columns(_as_alias(where.this, table), alias).sql(dialect="duckdb")
    exprs.append(f'coalesce(({cond}), false) AS "__pass"')
    sql = (f'SELECT {", ".join(exprs)} FROM {EXISTING} AS "{alias}" '
           f'POSITIONAL JOIN {EXCLUDED} AS "excluded"')
    return OnConflict(columns, constraint, update=True, set_columns=tuple(sets), set_sql=sql,
                      set_exprs=", ".join(exprs), action=keyed.conflict_action(node, table))


def _own_columns(node: exp.Expression, alias: str) -> exp.Expression:
    """An unqualified column in DO UPDATE's SET and WHERE is the existing row's (qualified
    with the target's alias: `excluded` has the same column names); subqueries keep theirs."""
    def qualify(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Column) and not n.table and not isinstance(n.this, exp.Star) \
                and n.find_ancestor(exp.Select) is None:
            return exp.column(n.this.copy(), table=exp.to_identifier(alias, quoted=True))
        return n
    return node.transform(qualify, copy=True)


class _NotSimple(Exception):
    pass


def _simple_value(node: exp.Expression) -> tuple[str, object]:
    if isinstance(node, exp.Parameter):
        text = node.sql(dialect="postgres").lstrip("$")
        if text.isdigit():
            return ("p", int(text) - 1)
    elif isinstance(node, exp.Null):
        return ("c", None)
    elif isinstance(node, exp.Boolean):
        return ("c", bool(node.this))
    elif isinstance(node, exp.Literal):
        if node.is_string:
            return ("c", node.this)
        text = node.this
        if text.isdigit():
            return ("c", int(text))
    elif isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and node.this.this.isdigit():
        return ("c", -int(node.this.this))
    raise _NotSimple


def _fast_values(source: exp.Expression | None):
    if not isinstance(source, exp.Values):
        return None
    try:
        rows = []
        for tup in source.expressions:
            items = tup.expressions if isinstance(tup, exp.Tuple) else [tup]
            rows.append(tuple(_simple_value(v) for v in items))
    except _NotSimple:
        return None
    if len({len(r) for r in rows}) != 1:
        return None
    return tuple(rows)


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
        exprs.append(f'{_as_alias(eq.expression, table).sql(dialect="duckdb")} AS "__new_{len(exprs)}"')
    from_ = tree.args.get("from_") or tree.args.get("from")
    where = tree.args.get("where")
    src = table.sql(dialect="duckdb")
    extra = ""
    if from_ is not None:
        extra = ", " + ", ".join(e.sql(dialect="duckdb") for e in from_.expressions) if hasattr(from_, "expressions") and from_.expressions else ", " + from_.this.sql(dialect="duckdb")
    sql = f'SELECT "{target.alias}".*, {", ".join(exprs)} FROM {src}{extra}'
    if where is not None:
        sql += " " + _as_alias(where, table).sql(dialect="duckdb")
    return UpdatePlan(target, tuple(sets), sql, _returning(tree, table), _param_count(tree), _reads(tree, table))


def _plan_delete(tree: exp.Delete) -> DeletePlan:
    table = tree.this
    target = _target(table)
    using = tree.args.get("using") or []
    src = table.sql(dialect="duckdb")
    extra = "".join(", " + u.sql(dialect="duckdb") for u in using)
    sql = f'SELECT "{target.alias}".* FROM {src}{extra}'
    where = tree.args.get("where")
    if where is not None:
        sql += " " + _as_alias(where, table).sql(dialect="duckdb")
    return DeletePlan(target, sql, _returning(tree, table), _param_count(tree), _reads(tree, table))


def _plan_merge(tree: exp.Merge) -> MergePlan:
    table = tree.this
    target = _target(table)
    if tree.args.get("returning") is not None:
        raise SyntaxError_('syntax error at or near "RETURNING"')
    source = tree.args.get("using")
    on = tree.args.get("on")
    if source is None or on is None:
        raise SyntaxError_("syntax error in MERGE: expected USING source ON condition")
    alias = exp.to_identifier(target.alias, quoted=True).sql(dialect="duckdb")
    hit = f"{alias}.{MERGE_HIT}"
    whens, cases, values = [], [], []
    for i, w in enumerate(tree.args["whens"].expressions):
        if w.args.get("source"):
            raise FeatureNotSupported("MERGE ... WHEN NOT MATCHED BY SOURCE is not supported",
                                      hint="PostgreSQL 15's MERGE has WHEN MATCHED and WHEN NOT MATCHED")
        matched = bool(w.args.get("matched"))
        then = w.args.get("then")
        cond = w.args.get("condition")
        test = f"{hit} IS {'NOT ' if matched else ''}NULL"
        if cond is not None:
            test += f" AND ({_as_alias(cond, table).sql(dialect='duckdb')})"
        cases.append(f"WHEN {test} THEN {i}")
        if isinstance(then, exp.Update):
            if not matched:
                raise SyntaxError_('syntax error at or near "UPDATE"')
            cols = []
            for j, eq in enumerate(then.expressions):
                if not isinstance(eq, exp.EQ) or not isinstance(eq.this, exp.Column):
                    raise SyntaxError_("syntax error in SET clause")
                cols.append(eq.this.name)
                values.append(f'{_as_alias(eq.expression, table).sql(dialect="duckdb")} AS "__w{i}_{j}"')
            whens.append(MergeAction(True, "UPDATE", tuple(cols)))
        elif isinstance(then, exp.Insert):
            if matched:
                raise SyntaxError_('syntax error at or near "INSERT"')
            names = then.this.expressions if isinstance(then.this, exp.Tuple) else []
            row = then.args.get("expression")
            if row is None:
                raise FeatureNotSupported("MERGE ... INSERT DEFAULT VALUES is not supported",
                                          hint="name the columns and their values")
            items = row.expressions if isinstance(row, exp.Tuple) else [row]
            for j, v in enumerate(items):
                values.append(f'{_as_alias(v, table).sql(dialect="duckdb")} AS "__w{i}_{j}"')
            whens.append(MergeAction(False, "INSERT", tuple(c.name for c in names), len(items)))
        else:
            word = (then.sql() if then is not None else "").upper()
            if word == "DELETE" and matched:
                whens.append(MergeAction(True, "DELETE"))
            elif word == "DO NOTHING":
                whens.append(MergeAction(matched, "NOTHING"))
            else:
                raise SyntaxError_(f'syntax error at or near "{word or "THEN"}"')
    clause = f"CASE {' '.join(cases)} END AS \"__clause\""
    src = source.sql(dialect="duckdb")
    select = (f"SELECT {MERGE_COLUMNS}, {clause}{''.join(', ' + v for v in values)} "
              f"FROM {src} LEFT JOIN {MERGE_TARGET} AS {alias} ON {_as_alias(on, table).sql(dialect='duckdb')}")
    plain = exp.table_(table.name, db=table.db or None).sql(dialect="duckdb")
    check = select.replace(MERGE_COLUMNS, "1").replace(MERGE_TARGET, f"(SELECT *, true AS {MERGE_HIT} FROM {plain})")
    return MergePlan(target, tuple(whens), select, check, _param_count(tree), _reads(tree, table))
