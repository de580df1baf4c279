"""TRUNCATE of one table: every hot row and every cold segment gone in one commit per scope.

The commit point is the scope's manifest, as for a flush: a new version with no segments
whose watermark covers every hot row written so far. A crash before it leaves the table as
it was; after it, recovery drops the hot rows the watermark covers (flush's recovery half),
so the table is empty. A SHARED table has one scope, so its TRUNCATE is all-or-nothing.
Runs under the write lock, with no flush or compaction of the table running.
"""
from __future__ import annotations

import duckdb

from engine.catalog.tables import TableDef
from engine.storage.manifest import Manifest, TruncateEdit
from engine.storage.reaper import FileReaper
from engine.tiers import views
from engine.tiers.cold import ColdTier
from engine.tiers.hot import HotTier
from engine.failpoints import Failpoints


def truncate_table(admin: duckdb.DuckDBPyConnection, hot: HotTier, cold: ColdTier, reaper: FileReaper,
                   failpoints: Failpoints, t: TableDef) -> None:
    hot.commits.drain()
    watermark = hot.seq
    hot.store.persist_seq(watermark)  # a restart never hands out a _seq the manifest covers
    old: list[tuple[str, Manifest]] = []
    if not t.is_stream:
        storage = cold.storage_for(t)
        scopes = cold.scopes(t)
        for user, manifest in sorted(scopes.items(), key=lambda kv: kv[0] or ""):
            if not manifest.segments and not hot.index.get(t.tid):
                continue
            failpoints.hit("truncate.before_manifest")
            new = manifest.apply(TruncateEdit(watermark))
            cold.commit(t, storage, new)  # the commit point of this scope
            old.append((t.scope(storage, user), manifest))
            scopes[user] = new
        failpoints.hit("truncate.after_manifest")
    with cold.changing(), hot.switching(t.tid, watermark):
        admin.execute("BEGIN")
        if not t.is_stream:
            admin.execute(views.cold_view_sql(t, scopes, storage))
        admin.execute(f"DELETE FROM {views.hot_table(t)} WHERE _seq <= {watermark}")
        admin.execute(views.full_view_sql(t, False))
        admin.execute("COMMIT")
        if not t.is_stream:
            cold.set_scopes(t, scopes, False)
    hot.index[t.tid] = {}
    store = hot.store
    store.delete_keys([k for k, first in store.batch_keys(t.tid) if first <= watermark])
    for scope, manifest in old:
        for seg in manifest.segments:
            rel = f"{scope}/{seg.path}"
            reaper.retire(lambda rel=rel: storage.delete(rel), rel)
