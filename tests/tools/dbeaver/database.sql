-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDatabase.java (readDatabaseInfo; stored version, search index file 1490086417)
--   JDBC's ? is sent as $1, as pgJDBC does
-- params: ["tierd"]
-- expect: tierd
SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname=?
