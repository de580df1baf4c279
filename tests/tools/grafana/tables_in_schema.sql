-- source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts @ 12f912ab8d010f4d95a4043a0efaa20fc4ca0100 (showTables('shop'): the table picker once a dataset is chosen)
-- expect: orders
-- pending: quote_ident() (helper types)
SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'shop'
      ORDER BY 1
