-- source: metabase/metabase src/metabase/driver/postgres.clj @ 008fd6675457cdd62da2265628bed3b725a607ea
--   (db-default-timezone; verbatim)
-- expect: UTC
show timezone;
