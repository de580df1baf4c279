"""Assertions over a table's raw cold files, read with pyarrow, not through tierd."""
from __future__ import annotations

import json
import os
from collections import Counter

import pyarrow.parquet as pq


def scope_dir(data_dir: str, ns: str, table: str) -> str:
    return os.path.join(data_dir, "storage", ns, table)


def manifest(data_dir: str, ns: str, table: str) -> dict | None:
    path = os.path.join(scope_dir(data_dir, ns, table), "manifest.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def parquet_versions(data_dir: str, ns: str, table: str, pk: str | None = "id") -> list[tuple]:
    """(pk, _seq, _deleted) of every row in every Parquet file of the scope directory; with
    pk=None the key is _seq itself (a row version's own id), for tables of any key."""
    d = scope_dir(data_dir, ns, table)
    out = []
    if not os.path.isdir(d):
        return out
    key = pk or "_seq"
    for name in sorted(os.listdir(d)):
        if name.endswith(".parquet"):
            t = pq.read_table(os.path.join(d, name), columns=list(dict.fromkeys([key, "_seq", "_deleted"])))
            out += list(zip(t.column(key).to_pylist(), t.column("_seq").to_pylist(), t.column("_deleted").to_pylist()))
    return out


def assert_cold_consistent(data_dir: str, ns: str, table: str, pk: str | None = "id") -> None:
    """No PK version twice in the raw files; every file is listed in the manifest; counts add up."""
    versions = parquet_versions(data_dir, ns, table, pk)
    dup = [v for v, n in Counter((k, s) for k, s, _ in versions).items() if n > 1]
    assert not dup, f"row versions stored twice in Parquet: {dup[:5]}"
    m = manifest(data_dir, ns, table)
    files = sorted(f for f in os.listdir(scope_dir(data_dir, ns, table)) if f.endswith(".parquet")) if m else []
    if m:
        listed = sorted(s["path"] for s in m["segments"])
        assert files == listed, f"files on disk {files} != manifest {listed}"
        assert sum(s["row_count"] for s in m["segments"]) == len(versions)
    else:
        assert not versions
