-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230fd8228b4376f13363058b5bcd2f35 (buildColumnQuery('time') for table metrics: the time-column picker)
-- expect: ts
-- expect: id
-- pending: quote_ident() (helper types)
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'metrics' AND data_type IN ('timestamp without time zone','timestamp with time zone','bigint','integer','double precision','real') ORDER BY column_name
