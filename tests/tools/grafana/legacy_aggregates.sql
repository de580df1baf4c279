-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230fd8228b4376f13363058b5bcd2f35 (buildAggregateQuery: the aggregate picker; tierd lists no functions in pg_proc)
-- expect: no rows
SELECT DISTINCT proname FROM pg_aggregate INNER JOIN pg_proc ON pg_aggregate.aggfnoid = pg_proc.oid INNER JOIN pg_type ON pg_type.oid=pg_proc.prorettype WHERE pronargs=1 AND typname IN ('float8') AND aggkind='n' ORDER BY 1
