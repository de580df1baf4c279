"""Primary-key uniqueness for the write path: which keys are live and their current rows (this
transaction's writes, then the hot key index, then the cold tier), and the one wording of a
unique violation."""
from __future__ import annotations

import pyarrow as pa

from engine.catalog.tables import OWNER, TableDef
from engine.errors import CardinalityViolation, UniqueViolation
from engine.tiers.hot import KeyState, versions_at
from engine.session.state import SessionState
from engine.session.transactions import own_writes_visible


def unique_violation(t: TableDef, key) -> UniqueViolation:
    """Postgres's message and detail for a duplicate `key` (never showing a USER table's owner)."""
    parts = key if isinstance(key, tuple) else (key,)
    values = ", ".join(str(v) for v in (parts[1:] if t.is_user else parts))
    return UniqueViolation(f'duplicate key value violates unique constraint "{t.name}_pkey"',
                           detail=f"Key ({', '.join(t.primary_key)})=({values}) already exists.")


def alive(st: KeyState, expired_seq: int) -> bool:
    """Live: not deleted, and (STREAM tables) newer than the table's newest expired _seq."""
    return not st.deleted and st.seq > expired_seq


def first_per_key(rows: pa.Table, keys: list) -> tuple[pa.Table, list]:
    """Each key's first row (a join may match a row twice; ON CONFLICT DO NOTHING keeps the first)."""
    seen, mask = set(), []
    for k in keys:
        mask.append(k not in seen)
        seen.add(k)
    return rows.filter(pa.array(mask, pa.bool_())), [k for k, m in zip(keys, mask) if m]


def refuse_repeats(t: TableDef, keys: list) -> None:
    """One statement writing the same key twice."""
    seen = set()
    for k in keys:
        if k in seen:
            raise unique_violation(t, k)
        seen.add(k)


def refuse_second_touch(keys: list, message: str, hint: str | None = None) -> None:
    """One statement updating the same row twice (ON CONFLICT DO UPDATE, MERGE): 21000."""
    if len(set(keys)) != len(keys):
        raise CardinalityViolation(message, hint=hint)


def hot_state(s: SessionState, t: TableDef, key) -> KeyState | None:
    """The newest hot version of `key` this session sees: its own pending write first."""
    st = s.tx.pending_index.get(t.tid, {}).get(key)
    return st if st is not None else s.engine.hot.index[t.tid].get(key)


def own_version(s: SessionState, t: TableDef, key) -> tuple[bool, pa.Table | None]:
    """This transaction's newest version of `key`: (False, None) if it has not written the key,
    (True, None) if it deleted it, else (True, the row with _seq/_deleted)."""
    st = s.tx.pending_index.get(t.tid, {}).get(key)
    if st is None:
        return False, None
    if st.deleted:
        return True, None
    for tid, first, batch in reversed(s.tx.pending):
        if tid == t.tid and first <= st.seq < first + batch.num_rows:
            return True, batch.slice(st.seq - first, 1)
    raise LookupError(f"version {st.seq} of a key is not among the transaction's writes")


def current_version(s: SessionState, t: TableDef, key) -> tuple[bool, pa.Table | None]:
    """(found out, the key's newest version this session sees, or None if it has none), without
    a DuckDB query: this transaction's writes, the hot key index and its LevelDB batch, the
    cold tier's point read. Not found out: the caller's general path must look. For tables
    with one key column and no USER, STREAM or TTL rules (the key-addressed writes' tables)."""
    mine, row = own_version(s, t, key)
    if mine:
        return True, row
    hot = s.engine.hot
    st = hot.index[t.tid].get(key)
    if st is not None and st.seq > hot.visible_seq:
        # queued by the previous writer and not durable yet (its fsync may still fail): this
        # write must not build on it before it is, as a row lock in Postgres waits for COMMIT
        hot.commits.drain()
        st = hot.index[t.tid].get(key)
    if st is not None:
        if st.deleted:
            return True, None
        row = s.engine.point_lookups.hot_row(t, key, st.seq)
        return row is not None, row
    return s.engine.point_lookups.cold_row(t, key)


def live_keys(s: SessionState, t: TableDef, keys: list) -> set:
    live, unknown = set(), []
    expired = s.engine.hot.expired_seq(t)
    for k in keys:
        st = hot_state(s, t, k)
        if st is None:
            unknown.append(k)
        elif alive(st, expired):
            live.add(k)
    if unknown:
        live |= s.engine.cold.live_keys(s.check_cur, t, unknown)
    return live


def live_rows(s: SessionState, t: TableDef, keys: list) -> pa.Table:
    """The current version of each of `keys` that is live, as this session sees it (the
    table's columns and a USER table's owner; order not kept): keys the hot key index knows
    are read by their `_seq` from the hot table, only the others from the cold tier (one
    semi join pruned by segment key ranges); never a scan of the hot ∪ cold view."""
    hot_seqs, unknown = [], []
    expired = s.engine.hot.expired_seq(t)
    for k in keys:
        st = hot_state(s, t, k)
        if st is None:
            unknown.append(k)
        elif alive(st, expired):
            hot_seqs.append(st.seq)
    parts = []
    if hot_seqs:
        if s.tx.pending:  # the messages up to Sync: this segment's writes into DuckDB first
            own_writes_visible(s)
        s.engine.hot.settle()
        parts.append(versions_at(s.cur, t, hot_seqs))
    if unknown:
        cold = s.engine.cold.live_rows(s.check_cur, t, unknown)
        if cold is not None:
            parts.append(cold if not parts else cold.cast(parts[0].schema))
    if not parts:
        schema = s.engine.visible_schema(t)
        if t.is_user:
            schema = schema.append(pa.field(OWNER, pa.string()))
        return schema.empty_table()
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)
