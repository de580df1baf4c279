"""Values made once per Arrow schema, field metadata included.

pa.Schema hashes and compares without field metadata (a uuid and a json column look like two
strings), so a dict keyed by schemas alone would hand one schema's value to another: entries
under one key are told apart by `equals(check_metadata=True)`. Used on the write path, where
making the value again per statement costs GIL releases (Schema.append, Schema.serialize).
"""
from __future__ import annotations

from typing import Callable, Generic, Hashable, TypeVar

import pyarrow as pa

V = TypeVar("V")


class SchemaMemo(Generic[V]):
    def __init__(self, make: Callable[..., V], limit: int):
        self._make = make  # make(schema, *extra)
        self._limit = limit  # distinct keys kept; past it (dropped or altered tables) all go
        self._entries: dict[tuple, list[tuple[pa.Schema, V]]] = {}

    def get(self, schema: pa.Schema, *extra: Hashable) -> V:
        key = (schema, extra)
        entries = self._entries.get(key)
        if entries is not None:
            for have, value in entries:
                if have.equals(schema, check_metadata=True):
                    return value
        value = self._make(schema, *extra)
        if len(self._entries) > self._limit:
            self._entries.clear()
        self._entries.setdefault(key, []).append((schema, value))
        return value
