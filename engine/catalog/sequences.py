"""Sequences: definitions and their values, persisted in the hot store's LevelDB.

A value handed out is never handed out again, across kill -9: values are reserved in blocks
(at least LOG_AHEAD, as Postgres logs 32 ahead) whose end is written, synced, before the
first value of the block is handed out; after a restart a sequence continues past the last
reserved value. Within a block nextval is a lock and an addition, so concurrent sessions
never see the same value and a LevelDB write happens once per block.

currval and lastval are per session (a session id each DuckDB cursor carries in a variable).
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

from engine.errors import (DuplicateTable, InvalidParameterValue, NumericValueOutOfRange,
                           ObjectNotInPrerequisiteState, SequenceGeneratorLimitExceeded, UndefinedTable)
from engine.storage.hot_store import HotStore

LOG_AHEAD = 32
TYPE_RANGES = {"smallint": (-(2 ** 15), 2 ** 15 - 1), "integer": (-(2 ** 31), 2 ** 31 - 1),
               "bigint": (-(2 ** 63), 2 ** 63 - 1)}
TYPE_ALIASES = {"int2": "smallint", "int4": "integer", "int": "integer", "int8": "bigint",
                "smallint": "smallint", "integer": "integer", "bigint": "bigint"}


@dataclass
class SequenceDef:
    sid: int  # from the catalog's table ids: its relation OID is derived from it
    namespace: str
    name: str
    data_type: str = "bigint"
    increment: int = 1
    start: int = 1
    min_value: int = 1
    max_value: int = 2 ** 63 - 1
    cache: int = 1
    cycle: bool = False
    owned_by: list[str] | None = None  # [table name (same namespace), column]
    identity: str | None = None  # "ALWAYS" | "BY DEFAULT": the sequence of an identity column

    @property
    def qualified(self) -> str:
        return f"{self.namespace}.{self.name}"


@dataclass
class SequenceOptions:
    """The options a CREATE / ALTER SEQUENCE (or an identity column) gave; None: not given."""
    data_type: str | None = None
    increment: int | None = None
    start: int | None = None
    restart: int | bool | None = None  # ALTER ... RESTART [WITH n]: True means the start
    min_value: int | bool | None = None  # False: NO MINVALUE
    max_value: int | bool | None = None
    cache: int | None = None
    cycle: bool | None = None
    owned_by: list[str] | bool | None = None  # False: OWNED BY NONE


def apply_options(d: SequenceDef, o: SequenceOptions, creating: bool) -> None:
    """Validate and apply `o` to `d` (Postgres's rules and messages for bounds)."""
    if o.data_type is not None:
        d.data_type = o.data_type
    lo, hi = TYPE_RANGES[d.data_type]
    if o.increment is not None:
        if o.increment == 0:
            raise InvalidParameterValue("INCREMENT must not be zero")
        d.increment = o.increment
    asc = d.increment > 0
    if o.min_value is not None or creating or o.data_type is not None:
        d.min_value = o.min_value if isinstance(o.min_value, int) and o.min_value is not True \
            and o.min_value is not False else (1 if asc else lo)
    if o.max_value is not None or creating or o.data_type is not None:
        d.max_value = o.max_value if isinstance(o.max_value, int) and o.max_value is not True \
            and o.max_value is not False else (hi if asc else -1)
    for what, v in (("MINVALUE", d.min_value), ("MAXVALUE", d.max_value)):
        if not lo <= v <= hi:
            raise InvalidParameterValue(f"{what} ({v}) is out of range for sequence data type {d.data_type}")
    if d.min_value >= d.max_value:
        raise InvalidParameterValue(f"MINVALUE ({d.min_value}) must be less than MAXVALUE ({d.max_value})")
    if o.start is not None:
        d.start = o.start
    elif creating:
        d.start = d.min_value if asc else d.max_value
    if d.start < d.min_value:
        raise InvalidParameterValue(f"START value ({d.start}) cannot be less than MINVALUE ({d.min_value})")
    if d.start > d.max_value:
        raise InvalidParameterValue(f"START value ({d.start}) cannot be greater than MAXVALUE ({d.max_value})")
    if o.cache is not None:
        if o.cache < 1:
            raise InvalidParameterValue(f"CACHE ({o.cache}) must be greater than zero")
        d.cache = o.cache
    if o.cycle is not None:
        d.cycle = o.cycle
    if o.owned_by is not None:
        d.owned_by = o.owned_by or None


@dataclass
class _State:
    last: int | None  # the last value handed out (None: nextval not called yet)
    reserved: int | None  # values up to this one may have been handed out before a crash


class Sequences:
    """Every sequence of the database; thread-safe."""

    def __init__(self, store: HotStore):
        self.store = store
        self.lock = threading.Lock()
        self.defs: dict[tuple[str, str], SequenceDef] = {}
        self._state: dict[int, _State] = {}
        self._current: dict[int, dict[int, int]] = {}  # session -> sequence id -> its currval
        self._lastval: dict[int, int] = {}  # session -> sequence id of its last nextval
        for _, raw in store.scan_json("c/seq/"):
            d = SequenceDef(**raw)
            self.defs[(d.namespace, d.name)] = d
            value = store.get_json(f"c/seqv/{d.sid:08d}") or {}
            # After a restart, continue past everything reserved, as Postgres does after a crash.
            self._state[d.sid] = _State(value.get("reserved"), value.get("reserved"))

    # ------------------------------------------------------------------ definitions
    def add(self, d: SequenceDef) -> None:
        with self.lock:
            if (d.namespace, d.name) in self.defs:
                raise DuplicateTable(f'relation "{d.name}" already exists')
            self._save(d)
            self.store.delete(f"c/seqv/{d.sid:08d}")
            self.defs[(d.namespace, d.name)] = d
            self._state[d.sid] = _State(None, None)

    def _save(self, d: SequenceDef) -> None:
        self.store.put_json(f"c/seq/{d.sid:08d}", asdict(d))

    def save(self, d: SequenceDef, restart: int | None = None) -> None:
        """Persist a changed definition; `restart`: the next nextval returns this value."""
        with self.lock:
            self._save(d)
            if restart is not None:
                self._set(d, restart, called=False)

    def drop(self, d: SequenceDef) -> None:
        with self.lock:
            self.store.delete(f"c/seq/{d.sid:08d}")
            self.store.delete(f"c/seqv/{d.sid:08d}")
            self.defs.pop((d.namespace, d.name), None)
            self._state.pop(d.sid, None)

    def find(self, namespace: str, name: str) -> SequenceDef | None:
        return self.defs.get((namespace, name))

    def get(self, namespace: str, name: str) -> SequenceDef:
        d = self.defs.get((namespace, name))
        if d is None:
            raise UndefinedTable(f'relation "{name}" does not exist')
        return d

    def by_sid(self, sid: int) -> SequenceDef | None:
        return next((d for d in self.defs.values() if d.sid == sid), None)

    def owned_by(self, namespace: str, table: str) -> list[SequenceDef]:
        return [d for d in self.defs.values()
                if d.namespace == namespace and d.owned_by and d.owned_by[0] == table]

    def for_column(self, namespace: str, table: str, column: str) -> SequenceDef | None:
        return next((d for d in self.owned_by(namespace, table) if d.owned_by[1] == column), None)

    # ------------------------------------------------------------------ values
    def nextval(self, d: SequenceDef, session: int | None, n: int = 1) -> list[int]:
        """`n` new values of `d`, in order."""
        out = []
        with self.lock:
            st = self._state[d.sid]
            for _ in range(n):
                value = d.start if st.last is None else st.last + d.increment
                if value > d.max_value or value < d.min_value:
                    if not d.cycle:
                        limit, which = (d.max_value, "maximum") if d.increment > 0 else (d.min_value, "minimum")
                        raise SequenceGeneratorLimitExceeded(
                            f'nextval: reached {which} value of sequence "{d.name}" ({limit})')
                    value = d.min_value if d.increment > 0 else d.max_value
                if st.reserved is None or (value > st.reserved if d.increment > 0 else value < st.reserved) \
                        or (d.cycle and st.last is not None and (value < st.last if d.increment > 0 else value > st.last)):
                    ahead = value + d.increment * (max(LOG_AHEAD, d.cache, n - len(out)) - 1)
                    st.reserved = min(ahead, d.max_value) if d.increment > 0 else max(ahead, d.min_value)
                    self.store.put_json(f"c/seqv/{d.sid:08d}", {"reserved": st.reserved})
                st.last = value
                out.append(value)
            if session is not None:
                self._current.setdefault(session, {})[d.sid] = out[-1]
                self._lastval[session] = d.sid
        return out

    def currval(self, d: SequenceDef, session: int | None) -> int:
        value = self._current.get(session, {}).get(d.sid)
        if value is None:
            raise ObjectNotInPrerequisiteState(f'currval of sequence "{d.name}" is not yet defined in this session')
        return value

    def lastval(self, session: int | None) -> int:
        sid = self._lastval.get(session)
        if sid is None or self.by_sid(sid) is None:
            raise ObjectNotInPrerequisiteState("lastval is not yet defined in this session")
        return self._current[session][sid]

    def setval(self, d: SequenceDef, value: int, called: bool, session: int | None) -> int:
        if not d.min_value <= value <= d.max_value:
            raise NumericValueOutOfRange(
                f'setval: value {value} is out of bounds for sequence "{d.name}" ({d.min_value}..{d.max_value})')
        with self.lock:
            self._set(d, value, called)
            if called and session is not None:
                self._current.setdefault(session, {})[d.sid] = value
                self._lastval[session] = d.sid
        return value

    def _set(self, d: SequenceDef, value: int, called: bool) -> None:
        last = value if called else value - d.increment
        self._state[d.sid] = _State(last, last)
        self.store.put_json(f"c/seqv/{d.sid:08d}", {"reserved": last})

    def state(self, d: SequenceDef) -> tuple[int, bool]:
        """(last_value, is_called) as Postgres's sequence relation shows them."""
        st = self._state.get(d.sid)
        return (d.start, False) if st is None or st.last is None else (st.last, True)

    def forget_session(self, session: int) -> None:
        self._current.pop(session, None)
        self._lastval.pop(session, None)


__all__ = ["Sequences", "SequenceDef", "SequenceOptions", "apply_options", "TYPE_ALIASES", "TYPE_RANGES"]
