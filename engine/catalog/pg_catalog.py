"""tierd's own `pg_catalog` and `information_schema`, for psql's \\d family and drivers'
metadata calls.

DuckDB's built-in pg_catalog describes DuckDB's objects (tierd's internals included) with
DuckDB's type names and OIDs that change between runs, and its system schemas cannot be
written to. So tierd keeps the catalog in a separate in-memory DuckDB database, `__pg`:
tables in `__pg.main` named as Postgres names them (pg_class, pg_attribute, ...), macros for
the Postgres functions clients call (format_type, pg_get_indexdef, ...), and views in
`__pg.info` for information_schema. Sessions put `__pg.main` on DuckDB's search path after
the user's schema, and engine.sql.pg_compat rewrites `pg_catalog.x` to `x` and
`information_schema.x` to `__pg.info.x`.

The rows are rebuilt from tierd's catalog when it has changed since the last build. OIDs stay
stable for an object's life: namespaces hash their name, a table's relation, primary-key
index and constraint derive from its table id, and the system tables, pg_catalog's own
tables and the built-in types have fixed OIDs. `_seq` and `_deleted` appear as Postgres
shows system columns (attnum < 0), so `attnum > 0` filters hide them.
"""
from __future__ import annotations

import datetime
import re
import threading
import zlib
from typing import Callable

import duckdb
import pyarrow as pa

from engine.catalog import pg_types
from engine.catalog import privileges

CATALOG = "__pg"
PG = f"{CATALOG}.main"  # what clients call pg_catalog
INFO = f"{CATALOG}.info"  # what clients call information_schema
PRIVATE = f"{CATALOG}.tierd"  # texts the macros look up (index and constraint definitions, type names)

PG_CATALOG_OID = 11
PUBLIC_OID = 2200
INFORMATION_SCHEMA_OID = 13000
DATABASE_OID = 16384
SUPERUSER_OID = 10
BTREE_AM = 403
HEAP_AM = 2
FIRST_TABLE_OID = 100000
SYSTEM_VIEW_OID = 90000
SYSTEM_NAMESPACE = "system"
# The DuckDB variable each session sets to its search path's namespaces (a VARCHAR[]).
SCHEMAS_VARIABLE = "tierd_schemas"

TypeOid = Callable[[pa.Field], int]

# Postgres's OIDs for the catalog tables drivers name with ::regclass (pg_description.classoid).
CATALOG_TABLE_OIDS = {
    "pg_type": 1247, "pg_attribute": 1249, "pg_proc": 1255, "pg_class": 1259, "pg_authid": 1260,
    "pg_database": 1262, "pg_am": 2601, "pg_attrdef": 2604, "pg_constraint": 2606,
    "pg_description": 2609, "pg_index": 2610, "pg_namespace": 2615, "pg_inherits": 2611,
}

# Each table: its columns as Postgres has them (the ones clients read), with defaults so the
# builder fills only what tierd knows. Empty tables exist so client queries that join them run.
TABLES: dict[str, str] = {
    "pg_namespace": "oid BIGINT, nspname VARCHAR, nspowner BIGINT DEFAULT 10, nspacl VARCHAR[]",
    "pg_class": (
        "oid BIGINT, relname VARCHAR, relnamespace BIGINT, reltype BIGINT DEFAULT 0, reloftype BIGINT DEFAULT 0, "
        "relowner BIGINT DEFAULT 10, relam BIGINT DEFAULT 0, relfilenode BIGINT DEFAULT 0, "
        "reltablespace BIGINT DEFAULT 0, relpages INTEGER DEFAULT 0, reltuples REAL DEFAULT -1, "
        "relallvisible INTEGER DEFAULT 0, reltoastrelid BIGINT DEFAULT 0, relhasindex BOOLEAN DEFAULT false, "
        "relisshared BOOLEAN DEFAULT false, relpersistence VARCHAR DEFAULT 'p', relkind VARCHAR, "
        "relnatts SMALLINT DEFAULT 0, relchecks SMALLINT DEFAULT 0, relhasrules BOOLEAN DEFAULT false, "
        "relhastriggers BOOLEAN DEFAULT false, relhassubclass BOOLEAN DEFAULT false, "
        "relrowsecurity BOOLEAN DEFAULT false, relforcerowsecurity BOOLEAN DEFAULT false, "
        "relispopulated BOOLEAN DEFAULT true, relreplident VARCHAR DEFAULT 'd', relispartition BOOLEAN DEFAULT false, "
        "relrewrite BIGINT DEFAULT 0, relfrozenxid BIGINT DEFAULT 0, relminmxid BIGINT DEFAULT 0, "
        "relacl VARCHAR[], reloptions VARCHAR[], relpartbound VARCHAR"
    ),
    "pg_attribute": (
        "attrelid BIGINT, attname VARCHAR, atttypid UINTEGER, attstattarget INTEGER DEFAULT -1, attlen SMALLINT, "
        "attnum SMALLINT, attndims INTEGER DEFAULT 0, attcacheoff INTEGER DEFAULT -1, atttypmod INTEGER DEFAULT -1, "
        "attbyval BOOLEAN DEFAULT false, attalign VARCHAR DEFAULT 'i', attstorage VARCHAR DEFAULT 'p', "
        "attcompression VARCHAR DEFAULT '', attnotnull BOOLEAN DEFAULT false, atthasdef BOOLEAN DEFAULT false, "
        "atthasmissing BOOLEAN DEFAULT false, attidentity VARCHAR DEFAULT '', attgenerated VARCHAR DEFAULT '', "
        "attisdropped BOOLEAN DEFAULT false, attislocal BOOLEAN DEFAULT true, attinhcount INTEGER DEFAULT 0, "
        "attcollation BIGINT DEFAULT 0, attacl VARCHAR[], attoptions VARCHAR[], attfdwoptions VARCHAR[], "
        "attmissingval VARCHAR"
    ),
    "pg_type": (
        "oid BIGINT, typname VARCHAR, typnamespace BIGINT, typowner BIGINT DEFAULT 10, typlen SMALLINT, "
        "typbyval BOOLEAN DEFAULT false, typtype VARCHAR, typcategory VARCHAR, typispreferred BOOLEAN DEFAULT false, "
        "typisdefined BOOLEAN DEFAULT true, typdelim VARCHAR DEFAULT ',', typrelid BIGINT DEFAULT 0, "
        "typsubscript BIGINT DEFAULT 0, typelem BIGINT, typarray BIGINT, typinput VARCHAR, typoutput VARCHAR, "
        "typreceive VARCHAR, typsend VARCHAR, typmodin BIGINT DEFAULT 0, typmodout BIGINT DEFAULT 0, "
        "typanalyze BIGINT DEFAULT 0, typalign VARCHAR DEFAULT 'i', typstorage VARCHAR DEFAULT 'p', "
        "typnotnull BOOLEAN DEFAULT false, typbasetype BIGINT DEFAULT 0, typtypmod INTEGER DEFAULT -1, "
        "typndims INTEGER DEFAULT 0, typcollation BIGINT DEFAULT 0, typdefaultbin VARCHAR, typdefault VARCHAR, "
        "typacl VARCHAR[]"
    ),
    "pg_index": (
        "indexrelid BIGINT, indrelid BIGINT, indnatts SMALLINT, indnkeyatts SMALLINT, indisunique BOOLEAN, "
        "indnullsnotdistinct BOOLEAN DEFAULT false, indisprimary BOOLEAN, indisexclusion BOOLEAN DEFAULT false, "
        "indimmediate BOOLEAN DEFAULT true, indisclustered BOOLEAN DEFAULT false, indisvalid BOOLEAN DEFAULT true, "
        "indcheckxmin BOOLEAN DEFAULT false, indisready BOOLEAN DEFAULT true, indislive BOOLEAN DEFAULT true, "
        "indisreplident BOOLEAN DEFAULT false, indkey SMALLINT[], indcollation BIGINT[], indclass BIGINT[], "
        "indoption VARCHAR, indexprs VARCHAR, indpred VARCHAR"
    ),
    "pg_constraint": (
        "oid BIGINT, conname VARCHAR, connamespace BIGINT, contype VARCHAR, condeferrable BOOLEAN DEFAULT false, "
        "condeferred BOOLEAN DEFAULT false, convalidated BOOLEAN DEFAULT true, conrelid BIGINT, "
        "contypid BIGINT DEFAULT 0, conindid BIGINT, conparentid BIGINT DEFAULT 0, confrelid BIGINT DEFAULT 0, "
        "confupdtype VARCHAR DEFAULT ' ', confdeltype VARCHAR DEFAULT ' ', confmatchtype VARCHAR DEFAULT ' ', "
        "conislocal BOOLEAN DEFAULT true, coninhcount INTEGER DEFAULT 0, connoinherit BOOLEAN DEFAULT true, "
        "conkey SMALLINT[], confkey SMALLINT[], conpfeqop BIGINT[], conppeqop BIGINT[], conffeqop BIGINT[], "
        "confdelsetcols SMALLINT[], conexclop BIGINT[], conbin VARCHAR"
    ),
    "pg_attrdef": "oid BIGINT, adrelid BIGINT, adnum SMALLINT, adbin VARCHAR",
    "pg_database": (
        "oid BIGINT, datname VARCHAR, datdba BIGINT DEFAULT 10, encoding INTEGER DEFAULT 6, "
        "datlocprovider VARCHAR DEFAULT 'c', datistemplate BOOLEAN DEFAULT false, datallowconn BOOLEAN DEFAULT true, "
        "datconnlimit INTEGER DEFAULT -1, datfrozenxid BIGINT DEFAULT 0, datminmxid BIGINT DEFAULT 0, "
        "dattablespace BIGINT DEFAULT 1663, datcollate VARCHAR DEFAULT 'C.UTF-8', datctype VARCHAR DEFAULT 'C.UTF-8', "
        "daticulocale VARCHAR, datcollversion VARCHAR, datacl VARCHAR[]"
    ),
    "pg_roles": (
        "oid BIGINT, rolname VARCHAR, rolsuper BOOLEAN, rolinherit BOOLEAN DEFAULT true, "
        "rolcreaterole BOOLEAN DEFAULT false, rolcreatedb BOOLEAN DEFAULT false, rolcanlogin BOOLEAN DEFAULT true, "
        "rolreplication BOOLEAN DEFAULT false, rolconnlimit INTEGER DEFAULT -1, rolpassword VARCHAR DEFAULT '********', "
        "rolvaliduntil TIMESTAMPTZ, rolbypassrls BOOLEAN DEFAULT false, rolconfig VARCHAR[]"
    ),
    "pg_auth_members": "oid BIGINT, roleid BIGINT, member BIGINT, grantor BIGINT, admin_option BOOLEAN",
    "pg_proc": (
        "oid BIGINT, proname VARCHAR, pronamespace BIGINT, proowner BIGINT, prolang BIGINT, procost REAL, "
        "prorows REAL, provariadic BIGINT, prosupport BIGINT, prokind VARCHAR, prosecdef BOOLEAN, "
        "proleakproof BOOLEAN, proisstrict BOOLEAN, proretset BOOLEAN, provolatile VARCHAR, proparallel VARCHAR, "
        "pronargs SMALLINT, pronargdefaults SMALLINT, prorettype BIGINT, proargtypes BIGINT[], "
        "proallargtypes BIGINT[], proargmodes VARCHAR[], proargnames VARCHAR[], proargdefaults VARCHAR, "
        "protrftypes BIGINT[], prosrc VARCHAR, probin VARCHAR, prosqlbody VARCHAR, proconfig VARCHAR[], "
        "proacl VARCHAR[]"
    ),
    "pg_description": "objoid BIGINT, classoid BIGINT, objsubid INTEGER, description VARCHAR",
    "pg_shdescription": "objoid BIGINT, classoid BIGINT, description VARCHAR",
    "pg_am": "oid BIGINT, amname VARCHAR, amhandler VARCHAR, amtype VARCHAR",
    "pg_tablespace": "oid BIGINT, spcname VARCHAR, spcowner BIGINT, spcacl VARCHAR[], spcoptions VARCHAR[]",
    "pg_collation": (
        "oid BIGINT, collname VARCHAR, collnamespace BIGINT, collowner BIGINT, collprovider VARCHAR, "
        "collisdeterministic BOOLEAN, collencoding INTEGER, collcollate VARCHAR, collctype VARCHAR, "
        "colliculocale VARCHAR, collversion VARCHAR"
    ),
    "pg_inherits": "inhrelid BIGINT, inhparent BIGINT, inhseqno INTEGER, inhdetachpending BOOLEAN",
    "pg_trigger": (
        "oid BIGINT, tgrelid BIGINT, tgparentid BIGINT, tgname VARCHAR, tgfoid BIGINT, tgtype SMALLINT, "
        "tgenabled VARCHAR, tgisinternal BOOLEAN, tgconstrrelid BIGINT, tgconstrindid BIGINT, tgconstraint BIGINT, "
        "tgdeferrable BOOLEAN, tginitdeferred BOOLEAN, tgnargs SMALLINT, tgattr SMALLINT[], tgargs VARCHAR, "
        "tgqual VARCHAR, tgoldtable VARCHAR, tgnewtable VARCHAR"
    ),
    "pg_rewrite": "oid BIGINT, rulename VARCHAR, ev_class BIGINT, ev_type VARCHAR, ev_enabled VARCHAR, is_instead BOOLEAN",
    "pg_policy": (
        "oid BIGINT, polname VARCHAR, polrelid BIGINT, polcmd VARCHAR, polpermissive BOOLEAN, polroles BIGINT[], "
        "polqual VARCHAR, polwithcheck VARCHAR"
    ),
    "pg_statistic_ext": (
        "oid BIGINT, stxrelid BIGINT, stxname VARCHAR, stxnamespace BIGINT, stxowner BIGINT, "
        "stxstattarget INTEGER, stxkeys SMALLINT[], stxkind VARCHAR[], stxexprs VARCHAR"
    ),
    "pg_publication": (
        "oid BIGINT, pubname VARCHAR, pubowner BIGINT, puballtables BOOLEAN, pubinsert BOOLEAN, "
        "pubupdate BOOLEAN, pubdelete BOOLEAN, pubtruncate BOOLEAN, pubviaroot BOOLEAN"
    ),
    "pg_publication_rel": "oid BIGINT, prpubid BIGINT, prrelid BIGINT, prqual VARCHAR, prattrs SMALLINT[]",
    "pg_publication_namespace": "oid BIGINT, pnpubid BIGINT, pnnspid BIGINT",
    "pg_partitioned_table": "partrelid BIGINT, partstrat VARCHAR, partnatts SMALLINT, partdefid BIGINT",
    "pg_foreign_table": "ftrelid BIGINT, ftserver BIGINT, ftoptions VARCHAR[]",
    "pg_sequence": "seqrelid BIGINT, seqtypid BIGINT, seqstart BIGINT, seqincrement BIGINT, seqmax BIGINT, seqmin BIGINT, seqcache BIGINT, seqcycle BOOLEAN",
    "pg_depend": "classid BIGINT, objid BIGINT, objsubid INTEGER, refclassid BIGINT, refobjid BIGINT, refobjsubid INTEGER, deptype VARCHAR",
    "pg_enum": "oid BIGINT, enumtypid BIGINT, enumsortorder REAL, enumlabel VARCHAR",
    "pg_range": "rngtypid BIGINT, rngsubtype BIGINT, rngmultitypid BIGINT, rngcollation BIGINT, rngsubopc BIGINT",
    "pg_extension": "oid BIGINT, extname VARCHAR, extowner BIGINT, extnamespace BIGINT, extrelocatable BOOLEAN, extversion VARCHAR",
    "pg_operator": (
        "oid BIGINT, oprname VARCHAR, oprnamespace BIGINT, oprowner BIGINT, oprkind VARCHAR, oprcanmerge BOOLEAN, "
        "oprcanhash BOOLEAN, oprleft BIGINT, oprright BIGINT, oprresult BIGINT, oprcom BIGINT, oprnegate BIGINT, "
        "oprcode BIGINT, oprrest BIGINT, oprjoin BIGINT"
    ),
    "pg_conversion": (
        "oid BIGINT, conname VARCHAR, connamespace BIGINT, conowner BIGINT, conforencoding INTEGER, "
        "contoencoding INTEGER, conproc BIGINT, condefault BOOLEAN"
    ),
    "pg_cast": "oid BIGINT, castsource BIGINT, casttarget BIGINT, castfunc BIGINT, castcontext VARCHAR, castmethod VARCHAR",
    "pg_event_trigger": (
        "oid BIGINT, evtname VARCHAR, evtevent VARCHAR, evtowner BIGINT, evtfoid BIGINT, evtenabled VARCHAR, "
        "evttags VARCHAR[]"
    ),
    "pg_db_role_setting": "setdatabase BIGINT, setrole BIGINT, setconfig VARCHAR[]",
    "pg_language": (
        "oid BIGINT, lanname VARCHAR, lanowner BIGINT, lanispl BOOLEAN, lanpltrusted BOOLEAN, lanplcallfoid BIGINT, "
        "laninline BIGINT, lanvalidator BIGINT, lanacl VARCHAR[]"
    ),
    "pg_aggregate": (
        "aggfnoid BIGINT, aggkind VARCHAR, aggnumdirectargs SMALLINT, aggtransfn BIGINT, aggfinalfn BIGINT, "
        "aggcombinefn BIGINT, aggtranstype BIGINT, agginitval VARCHAR"
    ),
    "pg_opclass": "oid BIGINT, opcmethod BIGINT, opcname VARCHAR, opcnamespace BIGINT, opcowner BIGINT, opcfamily BIGINT, opcintype BIGINT, opcdefault BOOLEAN, opckeytype BIGINT",
}

# What the macros look up. DuckDB substitutes a macro's arguments into its body, so a column
# an argument names (say `pg_class.oid`) would bind to the macro's own subquery if that read
# the same table: these tables' column names start with `__` so that cannot happen.
PRIVATE_TABLES: dict[str, str] = {
    "indexdef": "__oid BIGINT, __def VARCHAR",
    "constraintdef": "__oid BIGINT, __def VARCHAR",
    "type_names": "__oid BIGINT, __typname VARCHAR, __sql_name VARCHAR",
    "relations": "__oid BIGINT, __name VARCHAR, __nspname VARCHAR, __visible BOOLEAN",
    "namespaces": "__oid BIGINT, __name VARCHAR",
    "roles": "__oid BIGINT, __name VARCHAR, __super BOOLEAN",
    "indexcols": "__oid BIGINT, __pos INTEGER, __col VARCHAR",
    # Running COPYs (engine.session.copy.CopyProgress), written just before a query reads them.
    "progress_copy": (
        "__pid INTEGER, __relid BIGINT, __command VARCHAR, __type VARCHAR, __bytes_processed BIGINT, "
        "__bytes_total BIGINT, __tuples_processed BIGINT, __tuples_excluded BIGINT"
    ),
    # (relation, role, privilege): what has_table_privilege answers for tierd's tables.
    "table_privileges": "__rel BIGINT, __role VARCHAR, __priv VARCHAR",
    # The registered settings (engine.session.settings.SETTINGS), for pg_settings.
    "settings": (
        "__key VARCHAR, __name VARCHAR, __unit VARCHAR, __category VARCHAR, __short_desc VARCHAR, "
        "__context VARCHAR, __vartype VARCHAR, __min_val VARCHAR, __max_val VARCHAR, __enumvals VARCHAR[], "
        "__boot_val VARCHAR"
    ),
}

# Views Postgres has on top of its tables.
VIEWS: dict[str, str] = {
    "pg_authid": f"SELECT * FROM {PG}.pg_roles",
    "pg_user": (
        f"SELECT rolname AS usename, oid AS usesysid, rolcreatedb AS usecreatedb, rolsuper AS usesuper, "
        f"rolreplication AS userepl, rolbypassrls AS usebypassrls, '********' AS passwd, "
        f"rolvaliduntil AS valuntil, rolconfig AS useconfig FROM {PG}.pg_roles WHERE rolcanlogin"
    ),
    "pg_tables": (
        f"SELECT n.nspname AS schemaname, c.relname AS tablename, {PG}.pg_get_userbyid(c.relowner) AS tableowner, "
        f"NULL::VARCHAR AS tablespace, c.relhasindex AS hasindexes, c.relhasrules AS hasrules, "
        f"c.relhastriggers AS hastriggers, c.relrowsecurity AS rowsecurity "
        f"FROM {PG}.pg_class c JOIN {PG}.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')"
    ),
    "pg_views": (
        f"SELECT n.nspname AS schemaname, c.relname AS viewname, {PG}.pg_get_userbyid(c.relowner) AS viewowner, "
        f"NULL::VARCHAR AS definition "
        f"FROM {PG}.pg_class c JOIN {PG}.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'v'"
    ),
    "pg_indexes": (
        f"SELECT n.nspname AS schemaname, c.relname AS tablename, i.relname AS indexname, "
        f"NULL::VARCHAR AS tablespace, {PG}.pg_get_indexdef(i.oid) AS indexdef "
        f"FROM {PG}.pg_index x JOIN {PG}.pg_class c ON c.oid = x.indrelid JOIN {PG}.pg_class i ON i.oid = x.indexrelid "
        f"JOIN {PG}.pg_namespace n ON n.oid = c.relnamespace"
    ),
    "pg_matviews": "SELECT NULL::VARCHAR AS schemaname, NULL::VARCHAR AS matviewname, NULL::VARCHAR AS definition WHERE false",
    "pg_sequences": (
        f"SELECT n.nspname AS schemaname, c.relname AS sequencename, 'tierd' AS sequenceowner, "
        f"CASE s.seqtypid WHEN 21 THEN 'smallint' WHEN 23 THEN 'integer' ELSE 'bigint' END AS data_type, "
        f"s.seqstart AS start_value, s.seqmin AS min_value, s.seqmax AS max_value, s.seqincrement AS increment_by, "
        f"s.seqcycle AS cycle, s.seqcache AS cache_size, NULL::BIGINT AS last_value "
        f"FROM {PG}.pg_sequence s JOIN {PG}.pg_class c ON c.oid = s.seqrelid "
        f"JOIN {PG}.pg_namespace n ON n.oid = c.relnamespace"
    ),
    # Activity counters tierd does not keep (scans, tuples read, vacuums) are NULL; n_live_tup is
    # the live keys in hot plus the rows of the cold segments (an estimate, as in Postgres: a key
    # updated since its flush counts twice until the next flush).
    "pg_stat_user_tables": (
        "SELECT c.oid AS relid, n.nspname AS schemaname, c.relname AS relname, NULL::BIGINT AS seq_scan, "
        "NULL::TIMESTAMPTZ AS last_seq_scan, NULL::BIGINT AS seq_tup_read, NULL::BIGINT AS idx_scan, "
        "NULL::TIMESTAMPTZ AS last_idx_scan, NULL::BIGINT AS idx_tup_fetch, NULL::BIGINT AS n_tup_ins, "
        "NULL::BIGINT AS n_tup_upd, NULL::BIGINT AS n_tup_del, NULL::BIGINT AS n_tup_hot_upd, "
        "coalesce(st.hot_rows + st.cold_rows, 0)::BIGINT AS n_live_tup, NULL::BIGINT AS n_dead_tup, "
        "NULL::BIGINT AS n_mod_since_analyze, NULL::BIGINT AS n_ins_since_vacuum, "
        "NULL::TIMESTAMPTZ AS last_vacuum, NULL::TIMESTAMPTZ AS last_autovacuum, NULL::TIMESTAMPTZ AS last_analyze, "
        "NULL::TIMESTAMPTZ AS last_autoanalyze, 0::BIGINT AS vacuum_count, 0::BIGINT AS autovacuum_count, "
        "0::BIGINT AS analyze_count, 0::BIGINT AS autoanalyze_count "
        f"FROM {PG}.pg_class c JOIN {PG}.pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN memory.system.tables st ON st.namespace = n.nspname AND st.table_name = c.relname "
        f"WHERE c.relkind = 'r' AND c.oid >= {FIRST_TABLE_OID}"
    ),
    "pg_stat_all_tables": "SELECT * FROM {PG}.pg_stat_user_tables".replace("{PG}", PG),
    "pg_statio_user_tables": (
        "SELECT relid, schemaname, relname, NULL::BIGINT AS heap_blks_read, NULL::BIGINT AS heap_blks_hit, "
        "NULL::BIGINT AS idx_blks_read, NULL::BIGINT AS idx_blks_hit, NULL::BIGINT AS toast_blks_read, "
        "NULL::BIGINT AS toast_blks_hit, NULL::BIGINT AS tidx_blks_read, NULL::BIGINT AS tidx_blks_hit "
        f"FROM {PG}.pg_stat_user_tables"
    ),
    "pg_statio_all_tables": "SELECT * FROM {PG}.pg_statio_user_tables".replace("{PG}", PG),
    "pg_stat_user_indexes": (
        "SELECT x.indrelid AS relid, x.indexrelid AS indexrelid, s.schemaname, s.relname, i.relname AS indexrelname, "
        "NULL::BIGINT AS idx_scan, NULL::TIMESTAMPTZ AS last_idx_scan, NULL::BIGINT AS idx_tup_read, "
        f"NULL::BIGINT AS idx_tup_fetch FROM {PG}.pg_index x JOIN {PG}.pg_stat_user_tables s ON s.relid = x.indrelid "
        f"JOIN {PG}.pg_class i ON i.oid = x.indexrelid"
    ),
    "pg_stat_all_indexes": "SELECT * FROM {PG}.pg_stat_user_indexes".replace("{PG}", PG),
    "pg_stat_progress_copy": (
        f"SELECT __pid AS pid, {DATABASE_OID}::BIGINT AS datid, 'tierd' AS datname, __relid AS relid, "
        "__command AS command, __type AS type, __bytes_processed AS bytes_processed, __bytes_total AS bytes_total, "
        f"__tuples_processed AS tuples_processed, __tuples_excluded AS tuples_excluded FROM {PRIVATE}.progress_copy"
    ),
}

# Postgres functions as DuckDB macros (overloads separated by commas, as DuckDB spells them).
MACROS: dict[str, str] = {
    "format_type": (
        "(t, m) AS CASE WHEN t IS NULL THEN NULL WHEN t = 0 THEN '-' "
        "WHEN t = 1700 AND m >= 4 THEN 'numeric(' || ((m - 4) >> 16) || ',' || ((m - 4) & 65535) || ')' "
        "WHEN t IN (1042, 1043) AND m >= 4 THEN "
        f"(SELECT __sql_name FROM {PRIVATE}.type_names WHERE __oid = t) || '(' || (m - 4) || ')' "
        f"ELSE coalesce((SELECT __sql_name FROM {PRIVATE}.type_names WHERE __oid = t), '???') END"
    ),
    "pg_get_userbyid": (
        f"(r) AS coalesce((SELECT __name FROM {PRIVATE}.roles WHERE __oid = r), 'unknown (OID=' || r || ')')"
    ),
    # Visible: in pg_catalog or on the session's search path (the variable each session sets).
    "pg_table_is_visible": (
        f"(r) AS coalesce((SELECT __nspname = 'pg_catalog' OR list_contains(getvariable('{SCHEMAS_VARIABLE}'), "
        f"__nspname) FROM {PRIVATE}.relations WHERE __oid = r), false)"
    ),
    "pg_type_is_visible": "(t) AS true",
    "pg_function_is_visible": "(f) AS true",
    "pg_is_other_temp_schema": "(n) AS false",
    "pg_my_temp_schema": "() AS 0",
    "pg_encoding_to_char": "(e) AS CASE e WHEN 6 THEN 'UTF8' WHEN 0 THEN 'SQL_ASCII' ELSE '' END",
    "pg_char_to_encoding": "(s) AS CASE upper(s) WHEN 'UTF8' THEN 6 WHEN 'SQL_ASCII' THEN 0 ELSE -1 END",
    "pg_get_expr": "(e, r) AS e, (e, r, p) AS e",
    # Column c (1-based) of the index, or the whole definition for c = 0, as in Postgres.
    "pg_get_indexdef": (
        f"(i) AS (SELECT __def FROM {PRIVATE}.indexdef WHERE __oid = i), "
        f"(i, c, p) AS CASE WHEN coalesce(c, 0) = 0 THEN (SELECT __def FROM {PRIVATE}.indexdef WHERE __oid = i) "
        f"ELSE (SELECT __col FROM {PRIVATE}.indexcols WHERE __oid = i AND __pos = c) END"
    ),
    # COMMENT ON TABLE / COLUMN: pg_description rows of tierd's tables (classoid pg_class).
    "obj_description": (
        f"(o) AS (SELECT description FROM {PG}.pg_description WHERE objoid = o AND objsubid = 0 LIMIT 1), "
        f"(o, c) AS (SELECT description FROM {PG}.pg_description WHERE objoid = o AND objsubid = 0 "
        f"AND classoid = CASE c WHEN 'pg_class' THEN 1259 ELSE -1 END LIMIT 1)"
    ),
    "col_description": (
        f"(r, n) AS (SELECT description FROM {PG}.pg_description WHERE objoid = r AND objsubid = n "
        f"AND classoid = 1259 LIMIT 1)"
    ),
    "shobj_description": "(o, c) AS NULL::VARCHAR",
    "pg_get_function_result": "(f) AS NULL::VARCHAR",
    "pg_get_function_arguments": "(f) AS NULL::VARCHAR",
    "pg_get_function_identity_arguments": "(f) AS NULL::VARCHAR",
    "pg_tablespace_location": "(t) AS ''",
    "pg_get_functiondef": "(f) AS NULL::VARCHAR",
    "pg_get_serial_sequence": "(t, c) AS NULL::VARCHAR",
    "pg_get_statisticsobjdef_columns": "(o) AS NULL::VARCHAR",
    "pg_relation_is_publishable": "(r) AS false",
    "pg_is_in_recovery": "() AS false",  # a primary (pg_dump asks first)
    "array_upper": "(a, d) AS CASE WHEN d = 1 AND len(a) > 0 THEN len(a) END",
    "array_lower": "(a, d) AS CASE WHEN d = 1 AND len(a) > 0 THEN 1 END",
    "version": "() AS 'PostgreSQL 15.0 (tierd) on x86_64-pc-linux-gnu, compiled by tierd, 64-bit'",
    "current_schema": f"() AS getvariable('{SCHEMAS_VARIABLE}')[1]",
    "current_schemas": (
        f"(b) AS CASE WHEN b THEN list_prepend('pg_catalog', list_filter(getvariable('{SCHEMAS_VARIABLE}'), "
        f"x -> x <> 'pg_catalog')) ELSE getvariable('{SCHEMAS_VARIABLE}') END"
    ),
    "current_database": "() AS 'tierd'",
    "to_regclass": (
        f"(s) AS (SELECT __oid FROM {PRIVATE}.relations WHERE "
        f"CASE WHEN contains(s::VARCHAR, '.') THEN __nspname = trim(split_part(s::VARCHAR, '.', 1), '\"') "
        f"AND __name = trim(split_part(s::VARCHAR, '.', 2), '\"') ELSE __name = trim(s::VARCHAR, '\"') "
        f"AND __visible END ORDER BY __nspname = 'public' DESC LIMIT 1)"
    ),
    "to_regtype": (
        f"(s) AS (SELECT __oid FROM {PRIVATE}.type_names WHERE __sql_name = lower(trim(s::VARCHAR)) "
        f"OR __typname = lower(trim(s::VARCHAR)) OR __typname = lower(trim(split_part(s::VARCHAR, '.', 2))) LIMIT 1)"
    ),
    "to_regnamespace": f"(s) AS (SELECT __oid FROM {PRIVATE}.namespaces WHERE __name = trim(s::VARCHAR, '\"'))",
    # Targets of engine.sql.pg_compat's rewrite of reg-type casts: an OID (a number passes, a name
    # is looked up), or the name when the cast goes on to text.
    "tierd_regclass_oid": (
        f"(s) AS CASE WHEN s IS NOT NULL THEN coalesce(TRY_CAST(s AS BIGINT), {PG}.to_regclass(s), "
        f"error('relation \"' || s::VARCHAR || '\" does not exist')) END"
    ),
    "tierd_regclass_name": (
        f"(s) AS (SELECT coalesce(max(__name), any_value(__o)::VARCHAR) FROM (SELECT {PG}.tierd_regclass_oid(s) AS __o) "
        f"LEFT JOIN {PRIVATE}.relations ON __oid = __o)"
    ),
    "tierd_regtype_oid": (
        f"(s) AS CASE WHEN s IS NOT NULL THEN coalesce(TRY_CAST(s AS BIGINT), {PG}.to_regtype(s), "
        f"error('type \"' || s::VARCHAR || '\" does not exist')) END"
    ),
    "tierd_regtype_name": f"(s) AS {PG}.format_type({PG}.tierd_regtype_oid(s), NULL)",
    "tierd_regnamespace_oid": (
        f"(s) AS CASE WHEN s IS NOT NULL THEN coalesce(TRY_CAST(s AS BIGINT), {PG}.to_regnamespace(s), "
        f"error('schema \"' || s::VARCHAR || '\" does not exist')) END"
    ),
    "tierd_regnamespace_name": (
        f"(s) AS (SELECT coalesce(max(__name), any_value(__o)::VARCHAR) FROM "
        f"(SELECT {PG}.tierd_regnamespace_oid(s) AS __o) LEFT JOIN {PRIVATE}.namespaces ON __oid = __o)"
    ),
    "tierd_regproc_oid": "(s) AS TRY_CAST(s AS BIGINT)",
    "tierd_regproc_name": "(s) AS s::VARCHAR",
    # Below: macros that use the ones above.
    # tierd has no partitioned tables and no view definitions in SQL: NULL, as Postgres answers
    # for a relation that is not one.
    "pg_get_partkeydef": "(r) AS NULL::VARCHAR",
    "pg_get_viewdef": "(v) AS NULL::VARCHAR, (v, p) AS NULL::VARCHAR",
    "pg_stat_get_numscans": "(r) AS NULL::BIGINT",
    # Privileges as tierd checks them (engine.catalog.privileges, rows rebuilt with the catalog).
    # Catalog and system relations (OIDs below the first table's) are readable by everyone.
    "tierd_role_name": f"(u) AS coalesce((SELECT max(__name) FROM {PRIVATE}.roles WHERE __oid::VARCHAR = u::VARCHAR), "
                       "u::VARCHAR)",
    "tierd_privs": "(p) AS list_transform(string_split(lower(p::VARCHAR), ','), "
                   "x -> trim(replace(x, 'with grant option', '')))",
    "tierd_has_table_privilege": (
        f"(u, r, p) AS CASE WHEN r < {FIRST_TABLE_OID} THEN list_contains({PG}.tierd_privs(p), 'select') ELSE EXISTS (SELECT 1 FROM {PRIVATE}.table_privileges "
        f"WHERE __rel = r AND __role = {PG}.tierd_role_name(u) AND list_contains({PG}.tierd_privs(p), __priv)) END"
    ),
    "has_table_privilege": (
        f"(t, p) AS {PG}.tierd_has_table_privilege(current_user, {PG}.tierd_regclass_oid(t), p), "
        f"(u, t, p) AS {PG}.tierd_has_table_privilege(u, {PG}.tierd_regclass_oid(t), p)"
    ),
    "has_any_column_privilege": (
        f"(t, p) AS {PG}.tierd_has_table_privilege(current_user, {PG}.tierd_regclass_oid(t), p), "
        f"(u, t, p) AS {PG}.tierd_has_table_privilege(u, {PG}.tierd_regclass_oid(t), p)"
    ),
    "has_column_privilege": (
        f"(t, c, p) AS {PG}.tierd_has_table_privilege(current_user, {PG}.tierd_regclass_oid(t), p), "
        f"(u, t, c, p) AS {PG}.tierd_has_table_privilege(u, {PG}.tierd_regclass_oid(t), p)"
    ),
    "tierd_is_superuser": f"(u) AS coalesce((SELECT bool_or(__super) FROM {PRIVATE}.roles "
                          f"WHERE __name = {PG}.tierd_role_name(u)), false)",
    # USAGE of every schema; CREATE needs a superuser (DDL does in tierd).
    "tierd_has_schema_privilege": (
        f"(u, s, p) AS CASE WHEN {PG}.tierd_regnamespace_oid(s) IS NULL THEN NULL "
        f"WHEN list_contains({PG}.tierd_privs(p), 'create') THEN {PG}.tierd_is_superuser(u) ELSE true END"
    ),
    "has_schema_privilege": (
        f"(s, p) AS {PG}.tierd_has_schema_privilege(current_user, s, p), "
        f"(u, s, p) AS {PG}.tierd_has_schema_privilege(u, s, p)"
    ),
    "tierd_has_database_privilege": (
        f"(u, d, p) AS CASE WHEN d::VARCHAR NOT IN ('tierd', '{DATABASE_OID}') "
        "THEN error('database \"' || d::VARCHAR || '\" does not exist') "
        f"WHEN list_contains({PG}.tierd_privs(p), 'connect') THEN true ELSE {PG}.tierd_is_superuser(u) END"
    ),
    "has_database_privilege": (
        f"(d, p) AS {PG}.tierd_has_database_privilege(current_user, d, p), "
        f"(u, d, p) AS {PG}.tierd_has_database_privilege(u, d, p)"
    ),
    # current_setting() and pg_settings read the session's settings, which engine.sql.pg_compat
    # passes in as a MAP (the catalog is shared by all sessions).
    "tierd_current_setting": (
        "(m, n) AS CASE WHEN m[lower(n)] IS NOT NULL THEN m[lower(n)] "
        "ELSE error('unrecognized configuration parameter \"' || n || '\"') END, "
        "(m, n, ok) AS CASE WHEN m[lower(n)] IS NOT NULL THEN m[lower(n)] WHEN ok THEN NULL "
        "ELSE error('unrecognized configuration parameter \"' || n || '\"') END"
    ),
    "tierd_pg_settings": (
        "(m) AS TABLE SELECT __name AS name, coalesce(m[__key], __boot_val) AS setting, __unit AS unit, "
        "__category AS category, __short_desc AS short_desc, NULL::VARCHAR AS extra_desc, __context AS context, "
        "__vartype AS vartype, CASE WHEN m[__key] IS DISTINCT FROM __boot_val THEN 'session' ELSE 'default' END "
        "AS source, __min_val AS min_val, __max_val AS max_val, __enumvals AS enumvals, __boot_val AS boot_val, "
        "__boot_val AS reset_val, NULL::VARCHAR AS sourcefile, NULL::INTEGER AS sourceline, "
        f"false AS pending_restart FROM {PRIVATE}.settings ORDER BY __name"
    ),
    # a table that is no partition is its own only ancestor: psql's \d calls it in the SELECT
    # list ("Referenced by:") and in FROM ("Foreign-key constraints:", the table macro below)
    "pg_partition_ancestors": "(r) AS CAST(r AS BIGINT)",
    "pg_get_triggerdef": "(t) AS NULL::VARCHAR, (t, p) AS NULL::VARCHAR",  # pg_trigger is empty
    "pg_get_constraintdef": (
        f"(c) AS (SELECT __def FROM {PRIVATE}.constraintdef WHERE __oid = c), "
        f"(c, p) AS (SELECT __def FROM {PRIVATE}.constraintdef WHERE __oid = c)"
    ),
    # tierd has no COMMENT: every object is undescribed.
    # A table's size is the bytes of its cold segments (system.manifest); hot rows live in
    # LevelDB, shared by all tables, and are not counted. The key index is in memory: 0 bytes.
    "tierd_relation_bytes": (
        f"(r) AS (SELECT coalesce(sum(m.size_bytes), 0)::BIGINT FROM {PRIVATE}.relations rel "
        f"JOIN memory.system.manifest m ON m.namespace = rel.__nspname AND m.table_name = rel.__name "
        f"WHERE rel.__oid = {PG}.tierd_regclass_oid(r))"
    ),
    "pg_table_size": f"(r) AS {PG}.tierd_relation_bytes(r)",
    "pg_relation_size": f"(r) AS {PG}.tierd_relation_bytes(r), "
                        f"(r, f) AS CASE WHEN f = 'main' THEN {PG}.tierd_relation_bytes(r) ELSE 0::BIGINT END",
    "pg_total_relation_size": f"(r) AS {PG}.tierd_relation_bytes(r)",
    "pg_indexes_size": "(r) AS 0::BIGINT",
    "pg_database_size": (
        "(d) AS CASE WHEN d::VARCHAR IN ('tierd', '" + str(DATABASE_OID) + "') THEN "
        "(SELECT coalesce(sum(size_bytes), 0)::BIGINT FROM memory.system.manifest) "
        "ELSE error('database \"' || d::VARCHAR || '\" does not exist') END"
    ),
    # Postgres's rounding: bytes below 10 kB, then the first unit whose value stays below 10240.
    "pg_size_pretty": (
        "(b) AS CASE WHEN b IS NULL THEN NULL WHEN abs(b::BIGINT) < 10240 THEN b::BIGINT || ' bytes' "
        "WHEN abs(b::BIGINT >> 9) < 20479 THEN ((b::BIGINT >> 9) + 1) // 2 || ' kB' "
        "WHEN abs(b::BIGINT >> 19) < 20479 THEN ((b::BIGINT >> 19) + 1) // 2 || ' MB' "
        "WHEN abs(b::BIGINT >> 29) < 20479 THEN ((b::BIGINT >> 29) + 1) // 2 || ' GB' "
        "WHEN abs(b::BIGINT >> 39) < 20479 THEN ((b::BIGINT >> 39) + 1) // 2 || ' TB' "
        "ELSE ((b::BIGINT >> 49) + 1) // 2 || ' PB' END"
    ),
}

# Postgres type names DuckDB lacks, as DuckDB types (regclass and friends are rewritten).
TYPE_ALIASES = {"name": "VARCHAR", "int2vector": "SMALLINT[]", "oidvector": "BIGINT[]", "regproc": "BIGINT",
                "xid": "BIGINT", "aclitem": "VARCHAR", "pg_node_tree": "VARCHAR"}

# information_schema's update_rule / delete_rule of a pg_constraint action code
_RULE = ("CASE con.{} WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' "
         "WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END")
INFORMATION_SCHEMA: dict[str, str] = {
    "schemata": (
        f"SELECT 'tierd' AS catalog_name, nspname AS schema_name, {PG}.pg_get_userbyid(nspowner) AS schema_owner, "
        f"NULL::VARCHAR AS default_character_set_catalog, NULL::VARCHAR AS default_character_set_schema, "
        f"NULL::VARCHAR AS default_character_set_name, NULL::VARCHAR AS sql_path FROM {PG}.pg_namespace"
    ),
    "tables": (
        f"SELECT 'tierd' AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, "
        f"CASE WHEN n.oid = {PG_CATALOG_OID} AND c.relkind = 'r' THEN 'BASE TABLE' "
        f"WHEN c.relkind = 'r' THEN 'BASE TABLE' WHEN c.relkind = 'v' THEN 'VIEW' ELSE 'LOCAL TEMPORARY' END "
        f"AS table_type, NULL::VARCHAR AS self_referencing_column_name, NULL::VARCHAR AS reference_generation, "
        f"NULL::VARCHAR AS user_defined_type_catalog, NULL::VARCHAR AS user_defined_type_schema, "
        f"NULL::VARCHAR AS user_defined_type_name, CASE WHEN c.relkind = 'r' THEN 'YES' ELSE 'NO' END "
        f"AS is_insertable_into, 'NO' AS is_typed, NULL::VARCHAR AS commit_action "
        f"FROM {PG}.pg_class c JOIN {PG}.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'v')"
    ),
    "sequences": (
        f"SELECT 'tierd' AS sequence_catalog, n.nspname AS sequence_schema, c.relname AS sequence_name, "
        f"CASE s.seqtypid WHEN 21 THEN 'smallint' WHEN 23 THEN 'integer' ELSE 'bigint' END AS data_type, "
        f"CASE s.seqtypid WHEN 21 THEN 16 WHEN 23 THEN 32 ELSE 64 END AS numeric_precision, "
        f"2 AS numeric_precision_radix, 0 AS numeric_scale, s.seqstart::VARCHAR AS start_value, "
        f"s.seqmin::VARCHAR AS minimum_value, s.seqmax::VARCHAR AS maximum_value, "
        f"s.seqincrement::VARCHAR AS increment, CASE WHEN s.seqcycle THEN 'YES' ELSE 'NO' END AS cycle_option "
        f"FROM {PG}.pg_sequence s JOIN {PG}.pg_class c ON c.oid = s.seqrelid "
        f"JOIN {PG}.pg_namespace n ON n.oid = c.relnamespace"
    ),
    "columns": (
        f"SELECT 'tierd' AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, "
        f"a.attname AS column_name, a.attnum::INTEGER AS ordinal_position, d.adbin AS column_default, "
        f"CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable, "
        f"CASE WHEN t.typcategory = 'A' THEN 'ARRAY' ELSE tn.__sql_name END AS data_type, "
        f"CASE WHEN a.atttypid IN (1042, 1043) AND a.atttypmod >= 4 THEN a.atttypmod - 4 END::INTEGER "
        f"AS character_maximum_length, CASE WHEN a.atttypid IN (1042, 1043) AND a.atttypmod >= 4 THEN (a.atttypmod - 4) * 4 "
        f"WHEN a.atttypid IN (25, 1042, 1043) THEN 1073741824 END::INTEGER "
        f"AS character_octet_length, "
        f"CASE WHEN a.atttypid = 1700 AND a.atttypmod >= 4 THEN ((a.atttypmod - 4) >> 16) "
        f"WHEN a.atttypid IN (20, 21, 23) THEN a.attlen * 8 - 1 WHEN a.atttypid = 700 THEN 24 "
        f"WHEN a.atttypid = 701 THEN 53 END::INTEGER AS numeric_precision, "
        f"CASE WHEN a.atttypid IN (20, 21, 23, 700, 701, 1700) THEN 2 END::INTEGER AS numeric_precision_radix, "
        f"CASE WHEN a.atttypid = 1700 AND a.atttypmod >= 4 THEN ((a.atttypmod - 4) & 65535) "
        f"WHEN a.atttypid IN (20, 21, 23) THEN 0 END::INTEGER AS numeric_scale, "
        f"CASE WHEN a.atttypid IN (1082) THEN 0 WHEN a.atttypid IN (1083, 1114, 1184, 1266, 1186) THEN 6 END::INTEGER "
        f"AS datetime_precision, NULL::VARCHAR AS interval_type, NULL::INTEGER AS interval_precision, "
        f"'tierd' AS udt_catalog, 'pg_catalog' AS udt_schema, t.typname AS udt_name, "
        f"NULL::VARCHAR AS collation_name, a.attnum::INTEGER AS dtd_identifier, 'NO' AS is_self_referencing, "
        f"'NO' AS is_identity, NULL::VARCHAR AS identity_generation, 'NEVER' AS is_generated, "
        f"NULL::VARCHAR AS generation_expression, CASE WHEN c.relkind = 'r' THEN 'YES' ELSE 'NO' END AS is_updatable "
        f"FROM {PG}.pg_attribute a JOIN {PG}.pg_class c ON c.oid = a.attrelid "
        f"JOIN {PG}.pg_namespace n ON n.oid = c.relnamespace JOIN {PG}.pg_type t ON t.oid = a.atttypid "
        f"LEFT JOIN {PRIVATE}.type_names tn ON tn.__oid = a.atttypid "
        f"LEFT JOIN {PG}.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        f"WHERE a.attnum > 0 AND NOT a.attisdropped"
    ),
    "table_constraints": (
        f"SELECT 'tierd' AS constraint_catalog, n.nspname AS constraint_schema, con.conname AS constraint_name, "
        f"'tierd' AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, "
        f"CASE con.contype WHEN 'p' THEN 'PRIMARY KEY' WHEN 'u' THEN 'UNIQUE' WHEN 'f' THEN 'FOREIGN KEY' "
        f"WHEN 'c' THEN 'CHECK' END AS constraint_type, CASE WHEN con.condeferrable THEN 'YES' ELSE 'NO' END "
        f"AS is_deferrable, CASE WHEN con.condeferred THEN 'YES' ELSE 'NO' END AS initially_deferred, "
        f"'YES' AS enforced, NULL::VARCHAR AS nulls_distinct "
        f"FROM {PG}.pg_constraint con JOIN {PG}.pg_class c ON c.oid = con.conrelid "
        f"JOIN {PG}.pg_namespace n ON n.oid = con.connamespace"
    ),
    "key_column_usage": (
        f"SELECT 'tierd' AS constraint_catalog, n.nspname AS constraint_schema, k.conname AS constraint_name, "
        f"'tierd' AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, a.attname AS column_name, "
        f"k.pos::INTEGER AS ordinal_position, "
        f"CASE WHEN k.contype = 'f' THEN list_position(u.conkey, k.confkey[k.pos])::INTEGER END "
        f"AS position_in_unique_constraint "
        f"FROM (SELECT conname, connamespace, conrelid, contype, confrelid, confkey, unnest(conkey) AS attnum, "
        f"generate_subscripts(conkey, 1) AS pos FROM {PG}.pg_constraint) k "
        f"JOIN {PG}.pg_class c ON c.oid = k.conrelid JOIN {PG}.pg_namespace n ON n.oid = k.connamespace "
        f"JOIN {PG}.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.attnum "
        f"LEFT JOIN {PG}.pg_constraint u ON k.contype = 'f' AND u.conrelid = k.confrelid AND u.contype = 'p'"
    ),
    "referential_constraints": (
        f"SELECT 'tierd' AS constraint_catalog, n.nspname AS constraint_schema, con.conname AS constraint_name, "
        f"'tierd' AS unique_constraint_catalog, un.nspname AS unique_constraint_schema, "
        f"u.conname AS unique_constraint_name, "
        f"CASE con.confmatchtype WHEN 'f' THEN 'FULL' WHEN 'p' THEN 'PARTIAL' ELSE 'NONE' END AS match_option, "
        f"{_RULE.format('confupdtype')} AS update_rule, {_RULE.format('confdeltype')} AS delete_rule "
        f"FROM {PG}.pg_constraint con JOIN {PG}.pg_namespace n ON n.oid = con.connamespace "
        f"LEFT JOIN {PG}.pg_constraint u ON u.conrelid = con.confrelid AND u.contype = 'p' "
        f"LEFT JOIN {PG}.pg_namespace un ON un.oid = u.connamespace WHERE con.contype = 'f'"
    ),
    "constraint_column_usage": (
        f"SELECT 'tierd' AS table_catalog, tn.nspname AS table_schema, c.relname AS table_name, "
        f"a.attname AS column_name, 'tierd' AS constraint_catalog, n.nspname AS constraint_schema, "
        f"k.conname AS constraint_name "
        f"FROM (SELECT conname, connamespace, CASE WHEN contype = 'f' THEN confrelid ELSE conrelid END AS rel, "
        f"unnest(CASE WHEN contype = 'f' THEN confkey ELSE conkey END) AS attnum FROM {PG}.pg_constraint) k "
        f"JOIN {PG}.pg_class c ON c.oid = k.rel JOIN {PG}.pg_namespace tn ON tn.oid = c.relnamespace "
        f"JOIN {PG}.pg_namespace n ON n.oid = k.connamespace "
        f"JOIN {PG}.pg_attribute a ON a.attrelid = k.rel AND a.attnum = k.attnum"
    ),
    "views": (
        "SELECT 'tierd' AS table_catalog, schemaname AS table_schema, viewname AS table_name, "
        f"definition AS view_definition FROM {PG}.pg_views"
    ),
    "routines": "SELECT NULL::VARCHAR AS routine_schema, NULL::VARCHAR AS routine_name WHERE false",
}

INFO_MACROS = {
    # pgJDBC's getPrimaryKeys: one (x = element, n = position) record per array element.
    "_pg_expandarray": "(arr) AS unnest(list_transform(range(1, len(arr) + 1), i -> {'x': arr[i], 'n': i}))",
}


def namespace_oid(name: str) -> int:
    """Fixed OIDs for Postgres's own schemas; a stable hash of the name for the others."""
    fixed = {"pg_catalog": PG_CATALOG_OID, "public": PUBLIC_OID, "information_schema": INFORMATION_SCHEMA_OID}
    return fixed.get(name) or (0x40000000 | (zlib.crc32(name.encode()) & 0x3FFFFFFF))


def role_oid(name: str, bootstrap: bool) -> int:
    """10 for the bootstrap superuser, as in Postgres; a stable hash of the name for others."""
    return SUPERUSER_OID if bootstrap else 0x40000000 | (zlib.crc32(b"role:" + name.encode()) & 0x3FFFFFFF)


# CREATE INDEX indexes: OID INDEX_OID_BASE + 1000 * table id + the index's ordinal.
INDEX_OID_BASE = 1_000_000_000
# FOREIGN KEY constraints: OID FOREIGN_KEY_OID_BASE + 1000 * table id + the constraint's ordinal.
FOREIGN_KEY_OID_BASE = 1_500_000_000
_FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def relation_oids(tid: int) -> tuple[int, int, int]:
    """(table, primary-key index, primary-key constraint) OIDs of table id `tid`."""
    base = FIRST_TABLE_OID + 3 * tid
    return base, base + 1, base + 2


def install(con: duckdb.DuckDBPyConnection, settings: list[tuple], started_at: datetime.datetime) -> None:
    """Create the catalog database, its (empty) tables, macros and views. `settings` are
    pg_settings' fixed columns (engine.session.settings.pg_settings_rows); `started_at` is what
    pg_postmaster_start_time() answers."""
    con.execute(f"ATTACH ':memory:' AS {CATALOG}")
    con.execute(f"CREATE SCHEMA {INFO}")
    con.execute(f"CREATE SCHEMA {PRIVATE}")
    objects = (("CREATE TYPE {}.\"{}\" AS {}", PG, TYPE_ALIASES), ("CREATE TABLE {}.{} ({})", PG, TABLES),
               ("CREATE TABLE {}.{} ({})", PRIVATE, PRIVATE_TABLES), ("CREATE MACRO {}.{}{}", PG, MACROS),
               ("CREATE MACRO {}.{}{}", INFO, INFO_MACROS), ("CREATE VIEW {}.{} AS {}", PG, VIEWS),
               ("CREATE VIEW {}.{} AS {}", INFO, INFORMATION_SCHEMA))
    for template, schema, items in objects:  # in this order: later ones use earlier ones
        for name, body in items.items():
            con.execute(template.format(schema, name, body))
    con.execute(f"CREATE MACRO {PG}.pg_partition_ancestors(r) AS TABLE SELECT CAST(r AS BIGINT) AS relid, 1 AS depth")
    con.execute(f"CREATE MACRO {PG}.pg_postmaster_start_time() AS TIMESTAMPTZ '{started_at.isoformat()}'")
    con.execute(f"CREATE MACRO {PG}.pg_conf_load_time() AS TIMESTAMPTZ '{started_at.isoformat()}'")
    _fill_fixed(con)
    _insert(con, f"{PRIVATE}.settings", "__key, __name, __unit, __category, __short_desc, __context, __vartype, "
            "__min_val, __max_val, __enumvals, __boot_val", settings)


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: str, rows: list[tuple]) -> None:
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        con.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def _fill_fixed(con: duckdb.DuckDBPyConnection) -> None:
    """Rows that never change: types, access methods, the database, pg_catalog's own tables."""
    types = pg_types.pg_type_rows(PG_CATALOG_OID)
    _insert(con, f"{PG}.pg_type", "oid, typname, typnamespace, typlen, typtype, typcategory, typelem, typarray",
            [r[:8] for r in types])
    _insert(con, f"{PRIVATE}.type_names", "__oid, __typname, __sql_name", [(r[0], r[1], r[8]) for r in types])
    _insert(con, f"{PG}.pg_am", "oid, amname, amhandler, amtype",
            [(HEAP_AM, "heap", "heap_tableam_handler", "t"), (BTREE_AM, "btree", "bthandler", "i")])
    _insert(con, f"{PG}.pg_database", "oid, datname", [(DATABASE_OID, "tierd")])
    _insert(con, f"{PG}.pg_tablespace", "oid, spcname, spcowner", [(1663, "pg_default", SUPERUSER_OID)])
    _insert(con, f"{PG}.pg_collation", "oid, collname, collnamespace, collowner, collprovider, collisdeterministic, "
            "collencoding", [(100, "default", PG_CATALOG_OID, SUPERUSER_OID, "d", True, -1)])
    other = 3000
    catalog_tables = []
    for name in list(TABLES) + list(VIEWS):
        oid = CATALOG_TABLE_OIDS.get(name)
        if oid is None:
            other += 1
            oid = other
        catalog_tables.append((oid, name, PG_CATALOG_OID, "r" if name in TABLES else "v"))
    _insert(con, f"{PG}.pg_class", "oid, relname, relnamespace, relkind", catalog_tables)


class PgCatalog:
    """Keeps the `__pg` rows in step with tierd's catalog."""

    def __init__(self, type_oid: TypeOid | None):
        self.type_oid = type_oid
        self.lock = threading.Lock()
        self.built_for: object = None

    def refresh(self, con: duckdb.DuckDBPyConnection, engine) -> None:
        """Rebuild the rows of tierd's namespaces, tables and roles if any of them changed."""
        tables = sorted(list(engine.catalog.tables.values()), key=lambda t: t.tid)
        namespaces = sorted(list(engine.catalog.namespaces))
        roles = sorted((r.name, r.superuser, r.login) for r in engine.roles.all())
        seqs = sorted(engine.sequences.defs.values(), key=lambda d: d.sid)
        key = (tuple(namespaces), tuple((t.tid, t.owner, repr(sorted(t.grants.items())), tuple(t.primary_key))
                                        for t in tables), tuple(roles),
               tuple((d.sid, d.data_type, d.increment, d.start, d.min_value, d.max_value, d.cache, d.cycle)
                     for d in seqs), engine.catalog.generation)
        with self.lock:
            if key == self.built_for:
                return
            cur = con.cursor()
            try:
                rows = _Rows(self.type_oid)
                for ns in namespaces:
                    rows.namespace(ns)
                rows.namespace(SYSTEM_NAMESPACE)
                by_tid = {t.tid: t for t in tables}
                for t in tables:
                    owner = privileges.owner_of(t, engine.roles)
                    rows.table(t, engine.visible_schema(t), role_oid(owner, owner == engine.roles.bootstrap))
                    rows.foreign_key_rows(t, by_tid)
                    rows.privileges(t, engine.roles, [r[0] for r in roles])
                for d in seqs:
                    rows.sequence(d, SUPERUSER_OID)
                for i, (view, schema) in enumerate(_system_views(cur)):
                    rows.view(SYSTEM_VIEW_OID + i, SYSTEM_NAMESPACE, view, schema)
                for name, superuser, login in roles:
                    oid = role_oid(name, name == engine.roles.bootstrap)
                    rows.roles.append((oid, name, superuser, superuser, superuser, login))
                cur.execute("BEGIN")
                rows.write(cur)
                with_fks = [relation_oids(tid)[0] for tid in engine.catalog.foreign_key_tids()]
                if with_fks:  # Postgres's RI triggers: psql's \d lists foreign keys only then
                    cur.execute(f"UPDATE {PG}.pg_class SET relhastriggers = true "
                                f"WHERE oid IN ({', '.join(map(str, with_fks))})")
                cur.execute("COMMIT")
                self.built_for = key
            finally:
                cur.close()


    def refresh_progress(self, con: duckdb.DuckDBPyConnection, copies: list) -> None:
        """Write the running COPYs (engine.session.copy.CopyProgress) for pg_stat_progress_copy."""
        rows = [(c.pid, c.relid, c.command, c.type, c.bytes_processed, c.bytes_total, c.tuples_processed,
                 c.tuples_excluded) for c in copies]
        with self.lock:
            cur = con.cursor()
            try:
                cur.execute("BEGIN")
                cur.execute(f"DELETE FROM {PRIVATE}.progress_copy")
                _insert(cur, f"{PRIVATE}.progress_copy", "__pid, __relid, __command, __type, __bytes_processed, "
                        "__bytes_total, __tuples_processed, __tuples_excluded", rows)
                cur.execute("COMMIT")
            finally:
                cur.close()


def _system_views(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, pa.Schema]]:
    names = [r[0] for r in cur.execute(
        "SELECT view_name FROM duckdb_views() WHERE database_name = 'memory' AND schema_name = ? "
        "ORDER BY view_name", [SYSTEM_NAMESPACE]).fetchall()]
    return [(n, cur.execute(f'SELECT * FROM memory.{SYSTEM_NAMESPACE}."{n}" LIMIT 0').to_arrow_table().schema)
            for n in names]


def _declared(t) -> dict[str, str]:
    return {c.name: c.declared for c in t.columns if c.declared}


class _Rows:
    """The changing rows of one rebuild, per table."""

    def __init__(self, type_oid: TypeOid | None):
        self.type_oid = type_oid
        self.namespaces: list[tuple] = [(PG_CATALOG_OID, "pg_catalog"), (INFORMATION_SCHEMA_OID, "information_schema")]
        self.classes: list[tuple] = []
        self.attributes: list[tuple] = []
        self.attrdefs: list[tuple] = []
        self.indexes: list[tuple] = []
        self.constraints: list[tuple] = []
        self.foreign_keys: list[tuple] = []
        self.indexdefs: list[tuple] = []
        self.constraintdefs: list[tuple] = []
        self.roles: list[tuple] = []
        self.sequences: list[tuple] = []
        self.identities: list[tuple] = []  # (attrelid, attnum, attidentity)
        self.descriptions: list[tuple] = []
        self.indexcols: list[tuple] = []
        self.table_privileges: list[tuple] = []

    def namespace(self, name: str) -> None:
        self.namespaces.append((namespace_oid(name), name))

    def _type(self, f: pa.Field) -> tuple[int, int]:
        """(atttypid, atttypmod) of a column, by the type the wire reports for it."""
        oid = self.type_oid(f) if self.type_oid else pg_types.TEXT_OID
        if oid == pg_types.NUMERIC_OID and pa.types.is_decimal(f.type):
            return oid, pg_types.numeric_typmod(f.type.precision, f.type.scale)
        return oid, -1

    def _columns(self, rel: int, schema: pa.Schema, not_null: set[str], defaulted: set[str],
                 declared: dict[str, str] | None = None) -> None:
        for num, f in enumerate(schema, start=1):
            spelling = (declared or {}).get(f.name)
            oid, typmod = pg_types.declared_oid(spelling) if spelling else self._type(f)
            known = pg_types.BY_OID.get(oid)
            self.attributes.append((rel, f.name, oid, known.typlen if known else -1, num, typmod,
                                    f.name in not_null, 1 if oid in pg_types.ARRAY_ELEMENT else 0,
                                    f.name in defaulted))

    def view(self, oid: int, ns: str, name: str, schema: pa.Schema) -> None:
        self.classes.append((oid, name, namespace_oid(ns), "v", len(schema), False, 0, SUPERUSER_OID))
        self._columns(oid, schema, set(), set())

    def sequence(self, d, owner: int) -> None:
        """A sequence: relkind 'S' and its pg_sequence row."""
        rel = relation_oids(d.sid)[0]
        self.classes.append((rel, d.name, namespace_oid(d.namespace), "S", 3, False, 0, owner))
        typ = {"smallint": 21, "integer": 23, "bigint": 20}[d.data_type]
        self.sequences.append((rel, typ, d.start, d.increment, d.max_value, d.min_value, d.cache, d.cycle))

    def table(self, t, schema: pa.Schema, owner: int) -> None:
        rel, index, constraint = relation_oids(t.tid)
        ns = namespace_oid(t.namespace)
        self.classes.append((rel, t.name, ns, "r", len(schema), bool(t.primary_key or t.indexes), HEAP_AM, owner))
        not_null = set(t.primary_key) | {c.name for c in t.columns if not c.nullable}
        self._created_indexes(t, rel, ns, owner)
        if not t.primary_key:
            self._columns(rel, schema, not_null, {c.name for c in t.columns if c.default is not None},
                          _declared(t))
            self._defaults(rel, t)
            return
        self.classes.append((index, f"{t.name}_pkey", ns, "i", len(t.primary_key), False, BTREE_AM, owner))
        not_null = set(t.primary_key) | {c.name for c in t.columns if not c.nullable}
        self._columns(rel, schema, not_null, {c.name for c in t.columns if c.default is not None},
                      _declared(t))
        for num, name in ((-1, "_seq"), (-2, "_deleted")):
            self.attributes.append((rel, name, 20 if name == "_seq" else 16, 8 if name == "_seq" else 1,
                                    num, -1, True, 0, False))
        self._defaults(rel, t)
        for num, c in enumerate(t.columns, start=1):
            if c.comment is not None:
                self.descriptions.append((rel, CATALOG_TABLE_OIDS["pg_class"], num, c.comment))
        if t.comment is not None:
            self.descriptions.append((rel, CATALOG_TABLE_OIDS["pg_class"], 0, t.comment))
        keys = [t.column_names.index(k) + 1 for k in t.primary_key]
        self.indexes.append((index, rel, len(keys), len(keys), True, True, keys))
        self.constraints.append((constraint, f"{t.name}_pkey", ns, "p", rel, index, keys))
        cols = ", ".join(_ident(k) for k in t.primary_key)
        self.indexdefs.append((index, f"CREATE UNIQUE INDEX {_ident(t.name + '_pkey')} ON "
                                      f"{_ident(t.namespace)}.{_ident(t.name)} USING btree ({cols})"))
        self.constraintdefs.append((constraint, f"PRIMARY KEY ({cols})"))
        self.indexcols.extend((index, pos, _ident(k)) for pos, k in enumerate(t.primary_key, start=1))

    def foreign_key_rows(self, t, by_tid: dict) -> None:
        """pg_constraint rows (contype 'f') of t's foreign keys and their definitions."""
        for fk in t.foreign_keys:
            parent = by_tid.get(fk["ref_tid"])
            if parent is None:
                continue
            oid = FOREIGN_KEY_OID_BASE + 1000 * t.tid + fk.get("ordinal", 0)
            cols, ref = t.names_of(fk["columns"]), parent.names_of(fk["ref_columns"])
            keys = [t.column_names.index(c) + 1 for c in cols]
            fkeys = [parent.column_names.index(c) + 1 for c in ref]
            prel, pindex, _ = relation_oids(parent.tid)
            self.foreign_keys.append((oid, fk["name"], namespace_oid(t.namespace), "f", fk["deferrable"], False,
                                      relation_oids(t.tid)[0], pindex, prel, fk["on_update"], fk["on_delete"],
                                      fk["match"], keys, fkeys))
            text = (f"FOREIGN KEY ({', '.join(_ident(c) for c in cols)}) REFERENCES "
                    f"{'' if parent.namespace == 'public' else _ident(parent.namespace) + '.'}{_ident(parent.name)}"
                    f"({', '.join(_ident(c) for c in ref)})")
            if fk["match"] == "f":
                text += " MATCH FULL"
            if fk["on_update"] != "a":
                text += f" ON UPDATE {_FK_ACTIONS[fk['on_update']]}"
            if fk["on_delete"] != "a":
                text += f" ON DELETE {_FK_ACTIONS[fk['on_delete']]}"
            if fk["deferrable"]:
                text += " DEFERRABLE"
            self.constraintdefs.append((oid, text))

    def _created_indexes(self, t, rel: int, ns: int, owner: int) -> None:
        """CREATE INDEX records: pg_class (relkind 'i'), pg_index and their definitions."""
        for ix in t.indexes:
            oid = INDEX_OID_BASE + 1000 * t.tid + ix.get("ordinal", 0)
            cols = ix["columns"]
            self.classes.append((oid, ix["name"], ns, "i", len(cols), False, BTREE_AM, owner))
            keys = [t.column_names.index(c) + 1 for c in cols]
            self.indexes.append((oid, rel, len(keys), len(keys), ix["unique"], False, keys))
            unique = "UNIQUE " if ix["unique"] else ""
            self.indexdefs.append((oid, f"CREATE {unique}INDEX {_ident(ix['name'])} ON {_ident(t.namespace)}."
                                        f"{_ident(t.name)} USING btree ({', '.join(_ident(c) for c in cols)})"))
            self.indexcols.extend((oid, pos, _ident(c)) for pos, c in enumerate(cols, start=1))

    def privileges(self, t, roles, names: list[str]) -> None:
        """What each role may do with table t, as the statement checks decide it."""
        rel = relation_oids(t.tid)[0]
        for name in names:
            owner = roles.is_superuser(name) or privileges.owner_of(t, roles) == name
            for priv in ("SELECT", "INSERT", "UPDATE", "DELETE"):
                if privileges.has_privilege(roles, name, t, priv):
                    self.table_privileges.append((rel, name, priv.lower()))
            if owner:
                self.table_privileges.extend((rel, name, p) for p in ("truncate", "references", "trigger"))

    def _defaults(self, rel: int, t) -> None:
        """Column defaults; an identity column has none (psql shows it by attidentity)."""
        for num, c in enumerate(t.columns, start=1):
            if c.default is not None and not c.identity:
                self.attrdefs.append((rel * 1000 + num, rel, num, pg_default(c.default, t.namespace)))
        for num, c in enumerate(t.columns, start=1):
            if c.identity:
                self.identities.append((rel, num, "a" if c.identity == "ALWAYS" else "d"))

    def write(self, cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute(f"DELETE FROM {PG}.pg_namespace")
        cur.execute(f"DELETE FROM {PG}.pg_class WHERE relnamespace <> {PG_CATALOG_OID}")
        for table in ("pg_attribute", "pg_attrdef", "pg_index", "pg_constraint", "pg_roles", "pg_sequence",
                      "pg_description"):
            cur.execute(f"DELETE FROM {PG}.{table}")
        for table in ("indexdef", "constraintdef", "relations", "namespaces", "roles", "indexcols",
                      "table_privileges"):
            cur.execute(f"DELETE FROM {PRIVATE}.{table}")
        _insert(cur, f"{PG}.pg_namespace", "oid, nspname", self.namespaces)
        _insert(cur, f"{PG}.pg_class", "oid, relname, relnamespace, relkind, relnatts, relhasindex, relam, relowner",
                self.classes)
        _insert(cur, f"{PG}.pg_attribute", "attrelid, attname, atttypid, attlen, attnum, atttypmod, attnotnull, "
                "attndims, atthasdef", self.attributes)
        _insert(cur, f"{PG}.pg_attrdef", "oid, adrelid, adnum, adbin", self.attrdefs)
        _insert(cur, f"{PG}.pg_description", "objoid, classoid, objsubid, description", self.descriptions)
        _insert(cur, f"{PG}.pg_index", "indexrelid, indrelid, indnatts, indnkeyatts, indisunique, indisprimary, "
                "indkey, indoption", [(*row, " ".join("0" * len(row[-1]))) for row in self.indexes])
        _insert(cur, f"{PG}.pg_constraint", "oid, conname, connamespace, contype, conrelid, conindid, conkey",
                self.constraints)
        _insert(cur, f"{PG}.pg_constraint", "oid, conname, connamespace, contype, condeferrable, condeferred, conrelid, "
                "conindid, confrelid, confupdtype, confdeltype, confmatchtype, conkey, confkey", self.foreign_keys)
        for rel, num, kind in self.identities:
            cur.execute(f"UPDATE {PG}.pg_attribute SET attidentity = ?, atthasdef = false "
                        f"WHERE attrelid = ? AND attnum = ?", [kind, rel, num])
        _insert(cur, f"{PG}.pg_sequence", "seqrelid, seqtypid, seqstart, seqincrement, seqmax, seqmin, seqcache, "
                "seqcycle", self.sequences)
        _insert(cur, f"{PRIVATE}.indexdef", "__oid, __def", self.indexdefs)
        _insert(cur, f"{PRIVATE}.constraintdef", "__oid, __def", self.constraintdefs)
        _insert(cur, f"{PG}.pg_roles", "oid, rolname, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin", self.roles)
        _insert(cur, f"{PRIVATE}.roles", "__oid, __name, __super", [r[:3] for r in self.roles])
        _insert(cur, f"{PRIVATE}.indexcols", "__oid, __pos, __col", self.indexcols)
        _insert(cur, f"{PRIVATE}.table_privileges", "__rel, __role, __priv", self.table_privileges)
        _insert(cur, f"{PRIVATE}.namespaces", "__oid, __name", self.namespaces)
        cur.execute(f"INSERT INTO {PRIVATE}.relations SELECT c.oid, c.relname, n.nspname, "
                    f"c.relnamespace IN ({PG_CATALOG_OID}, {PUBLIC_OID}) FROM {PG}.pg_class c "
                    f"JOIN {PG}.pg_namespace n ON n.oid = c.relnamespace")


_NEXTVAL = re.compile(r"^nextval\('((?:[^']|'')+)'\)$", re.I)


def pg_default(text: str, namespace: str) -> str:
    """A column default as Postgres prints it: nextval('t_id_seq'::regclass), the sequence
    named as search_path needs it (tierd stores it qualified)."""
    m = _NEXTVAL.match(text.strip())
    if not m:
        return text
    name = m.group(1)
    if name.startswith("public.") and namespace == "public":
        name = name[len("public."):]
    return f"nextval('{name}'::regclass)"


def _ident(name: str) -> str:
    """An identifier as Postgres prints it: quoted only when it has to be."""
    if name.isidentifier() and name == name.lower() and name.isascii():
        return name
    return '"' + name.replace('"', '""') + '"'
