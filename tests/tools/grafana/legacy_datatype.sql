-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230fd8228b4376f13363058b5bcd2f35 (buildDatatypeQuery('value') for table shop.orders: the metric column's type)
-- expect: numeric
SELECT udt_name FROM information_schema.columns WHERE table_schema = 'shop' AND table_name = 'orders' AND column_name = 'amount'
