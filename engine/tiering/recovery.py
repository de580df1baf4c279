"""Start-up recovery of one table: its hot rows back into DuckDB from LevelDB, its cold tier
from the manifests (orphan files removed), a flush that crashed after its commit point
finished, and the key index rebuilt. A storage that is down at start-up does not keep the
table from coming up: its cold view says why, and `retry_unavailable` brings it back later.
"""
from __future__ import annotations

import logging

import duckdb
import pyarrow as pa

from engine.catalog.tables import Catalog, TableDef
from engine.tiers.cold import ColdTier
from engine.tiers.hot import HotTier
from engine.tiers import views
from engine.tiering.flush import finish_interrupted_flush

log = logging.getLogger("tierd.recovery")


def recover_table(admin: duckdb.DuckDBPyConnection, hot: HotTier, cold: ColdTier, t: TableDef) -> None:
    storage = cold.storage_for(t)
    views.create_hot_table(admin, t)
    tables = load_hot_rows(admin, t, hot)
    if t.is_stream:  # hot only: no storage, no manifest
        cold.set_scopes(t, {})
        marks = admin.execute(f"SELECT epoch(_written_at) AS w, max(_seq) FROM {views.hot_table(t)} "
                              "GROUP BY w ORDER BY w").fetchall()
        hot.recovered_stream_marks(t, [(float(w), int(s)) for w, s in marks])
        views.create_views(admin, t, views.cold_view_sql(t, {}, storage), shadowing=False)
        hot.build_index(admin, t)
        return
    try:
        scopes = cold.load(t, storage)
    except Exception as exc:  # storage down: the table comes up, its cold tier later
        reason = f"cold tier of table '{t.qualified}' is unavailable: storage '{t.storage_id}' failed: " \
                 f"{getattr(exc, 'message', None) or exc}"
        log.error("recovery: %s; retrying in the background", reason)
        cold.set_unavailable(t, reason)
        views.create_views(admin, t, views.unavailable_cold_view_sql(t, reason), shadowing=True)
    else:
        for m in scopes.values():
            hot.recovered_seq(m.flushed_seq)  # start-up is single-threaded
        # Hot rows after a restart may be updates of cold keys (not told apart here), or
        # hold superseded versions and tombstones of their own.
        shadowing = bool(tables) and (cold.has_cold(t) or hot_supersedes(admin, t))
        views.create_views(admin, t, views.cold_view_sql(t, scopes, storage), shadowing)
        cold.set_scopes(t, scopes, shadowing)
        finish_interrupted_flush(admin, hot, t, scopes)
    hot.build_index(admin, t)


def hot_supersedes(admin: duckdb.DuckDBPyConnection, t: TableDef) -> bool:
    """Whether the table's hot rows hold a tombstone or more than one version of a key."""
    hot, key = views.hot_table(t), ", ".join(views.q(c) for c in t.key_columns)
    return bool(admin.execute(
        f"SELECT EXISTS (SELECT 1 FROM {hot} WHERE _deleted) "
        f"OR EXISTS (SELECT 1 FROM {hot} GROUP BY {key} HAVING count(*) > 1)").fetchone()[0])


def load_hot_rows(admin: duckdb.DuckDBPyConnection, t: TableDef, hot: HotTier) -> list[pa.Table]:
    """The table's LevelDB batches into its DuckDB hot table. Batches written before an
    ALTER TABLE (told apart by _seq) are read through the schema they were written under."""
    groups: list[tuple[int, list[pa.Table]]] = []  # (schema version, consecutive batches)
    for _, rows in hot.store.batches(t.tid):
        version = t.version_at_seq(rows.column("_seq")[0].as_py()) if rows.num_rows else t.schema_version
        if groups and groups[-1][0] == version:
            groups[-1][1].append(rows)
        else:
            groups.append((version, [rows]))
    for version, tables in groups:
        admin.register("__recovered", pa.concat_tables(tables, promote_options="permissive"))
        try:
            if version == t.schema_version:
                admin.execute(f"INSERT INTO {views.hot_table(t)} SELECT * FROM __recovered")
            else:
                admin.execute(f"INSERT INTO {views.hot_table(t)} "
                              f"{views.converted_rows_sql(t, t.stored_names(version), '__recovered')}")
        finally:
            admin.unregister("__recovered")
    return [b for _, tables in groups for b in tables]


def retry_unavailable(admin: duckdb.DuckDBPyConnection, catalog: Catalog, hot: HotTier, cold: ColdTier) -> None:
    """Periodically: bring back the cold tier of tables whose storage was down at start-up."""
    for tid in list(cold.unavailable):
        t = catalog.by_tid(tid)
        if t is None:
            cold.available_again(tid)
            continue
        storage = cold.storage_for(t)
        try:
            scopes = cold.load(t, storage)
        except Exception:
            continue
        with hot.locked(), cold.changing():
            hot.settle()
            finish_interrupted_flush(admin, hot, t, scopes)
            admin.execute(views.cold_view_sql(t, scopes, storage))
            hot.build_index(admin, t)
            cold.available_again(tid)
        log.info("cold tier of table '%s' is available again", t.qualified)
