// pgJDBC against tierd: everyday features, printed as "key: value" lines that
// tests/test_client_jdbc.py asserts. Usage: java -cp postgresql.jar:. JdbcClient <port>
import java.math.BigDecimal;
import java.sql.*;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.UUID;

public class JdbcClient {
    static void out(String key, Object value) {
        System.out.println(key + ": " + value);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/tierd?user=tierd";
        try (Connection c = DriverManager.getConnection(url)) {
            DatabaseMetaData md = c.getMetaData();
            out("product", md.getDatabaseProductName() + " " + md.getDatabaseMajorVersion());
            try (Statement st = c.createStatement()) {
                st.execute("CREATE TABLE public.jdbc_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
                        + "qty INTEGER, price NUMERIC(10,2), ratio DOUBLE PRECISION, flag BOOLEAN, "
                        + "day DATE, seen TIMESTAMPTZ, tag UUID, data BYTEA)");
            }
            String ins = "INSERT INTO public.jdbc_items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
            try (PreparedStatement ps = c.prepareStatement(ins)) {
                ps.setLong(1, 1);
                ps.setString(2, "one");
                ps.setInt(3, 7);
                ps.setBigDecimal(4, new BigDecimal("12.50"));
                ps.setDouble(5, 0.25);
                ps.setBoolean(6, true);
                ps.setObject(7, LocalDate.of(2024, 5, 1));
                ps.setObject(8, OffsetDateTime.of(2024, 5, 1, 12, 30, 0, 0, ZoneOffset.UTC));
                ps.setObject(9, UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
                ps.setBytes(10, new byte[] {1, 2, 3});
                out("insert", ps.executeUpdate());
                ps.setLong(1, 2);
                ps.setString(2, "two");
                ps.setNull(3, Types.INTEGER);
                ps.setNull(4, Types.NUMERIC);
                ps.setNull(5, Types.DOUBLE);
                ps.setBoolean(6, false);
                ps.setNull(7, Types.DATE);
                ps.setNull(8, Types.TIMESTAMP_WITH_TIMEZONE);
                ps.setNull(9, Types.OTHER);
                ps.setNull(10, Types.BINARY);
                out("insert", ps.executeUpdate());
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT id, name, qty, price, ratio, flag, day, seen, tag, data FROM public.jdbc_items WHERE id = ?")) {
                ps.setLong(1, 1);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    out("row", rs.getLong(1) + "|" + rs.getString(2) + "|" + rs.getInt(3) + "|" + rs.getBigDecimal(4)
                            + "|" + rs.getDouble(5) + "|" + rs.getBoolean(6) + "|" + rs.getObject(7, LocalDate.class)
                            + "|" + rs.getObject(8, OffsetDateTime.class).toInstant() + "|" + rs.getString(9)
                            + "|" + java.util.Arrays.toString(rs.getBytes(10)));
                }
                ps.setLong(1, 2);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    rs.getInt(3);
                    out("null_qty_was_null", rs.wasNull());
                    out("null_price", rs.getBigDecimal(4));
                }
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "UPDATE public.jdbc_items SET qty = qty + ? WHERE id = ? RETURNING id, qty")) {
                ps.setInt(1, 5);
                ps.setLong(2, 1);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    out("returning", rs.getLong(1) + "|" + rs.getInt(2));
                }
            }
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                st.executeUpdate("INSERT INTO public.jdbc_items (id, name) VALUES (3, 'three')");
                c.rollback();
                st.executeUpdate("INSERT INTO public.jdbc_items (id, name) VALUES (4, 'four')");
                c.commit();
            }
            c.setAutoCommit(true);
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(
                    "SELECT string_agg(id::text, ',' ORDER BY id) FROM public.jdbc_items")) {
                rs.next();
                out("ids", rs.getString(1));
            }
            try (Statement st = c.createStatement()) {
                st.executeUpdate("INSERT INTO public.jdbc_items (id, name) VALUES (1, 'dup')");
                out("duplicate", "no error");
            } catch (SQLException e) {
                out("duplicate_sqlstate", e.getSQLState());
            }
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT 1")) {
                rs.next();
                out("after_error", rs.getInt(1));
            }
            try (ResultSet rs = md.getTables(null, "public", "jdbc%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    out("table", rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME") + " "
                            + rs.getString("TABLE_TYPE"));
                }
            }
            try (ResultSet rs = md.getColumns(null, "public", "jdbc_items", "%")) {
                while (rs.next()) {
                    out("column", rs.getString("COLUMN_NAME") + " " + rs.getString("TYPE_NAME") + " "
                            + rs.getInt("DATA_TYPE") + " " + rs.getString("IS_NULLABLE") + " "
                            + rs.getInt("ORDINAL_POSITION"));
                }
            }
            try (ResultSet rs = md.getPrimaryKeys(null, "public", "jdbc_items")) {
                while (rs.next()) {
                    out("pk", rs.getString("COLUMN_NAME") + " " + rs.getInt("KEY_SEQ") + " " + rs.getString("PK_NAME"));
                }
            }
            try (Statement st = c.createStatement()) {
                st.execute("CREATE TABLE public.jdbc_lines (id BIGINT PRIMARY KEY, "
                        + "item_id BIGINT REFERENCES public.jdbc_items ON DELETE CASCADE)");
                try {
                    st.executeUpdate("INSERT INTO public.jdbc_lines VALUES (1, 404)");
                } catch (SQLException e) {
                    out("fk violation", e.getSQLState());
                }
            }
            try (ResultSet rs = md.getImportedKeys(null, "public", "jdbc_lines")) {
                while (rs.next()) {
                    out("imported", rs.getString("PKTABLE_NAME") + "." + rs.getString("PKCOLUMN_NAME") + " <- "
                            + rs.getString("FKTABLE_NAME") + "." + rs.getString("FKCOLUMN_NAME") + " "
                            + rs.getInt("KEY_SEQ") + " " + rs.getString("FK_NAME") + " " + rs.getString("PK_NAME")
                            + " delete=" + rs.getInt("DELETE_RULE"));
                }
            }
            try (ResultSet rs = md.getExportedKeys(null, "public", "jdbc_items")) {
                while (rs.next()) {
                    out("exported", rs.getString("FKTABLE_NAME") + "." + rs.getString("FKCOLUMN_NAME"));
                }
            }
            try (ResultSet rs = md.getSchemas()) {
                StringBuilder names = new StringBuilder();
                while (rs.next()) {
                    names.append(rs.getString("TABLE_SCHEM")).append(",");
                }
                out("schemas", names);
            }
        }
    }
}
