-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreSchema.java (IndexCache.fetchObjectRow: an index column's definition; search index file 1473230077)
-- params-sql: SELECT i.indexrelid, 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid WHERE c.relname = 'metrics'
-- expect: id
select pg_catalog.pg_get_indexdef(?, ?, true)
