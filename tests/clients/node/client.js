// node-postgres against tierd: everyday features, printed as one JSON object that
// tests/test_client_node.py asserts. Usage: node client.js <port>
const { Client } = require("pg");

async function main() {
  const out = {};
  const c = new Client({ host: "127.0.0.1", port: Number(process.argv[2]), user: "tierd", database: "tierd" });
  await c.connect();
  out.version = (await c.query("SHOW server_version")).rows[0].server_version;
  await c.query(
    "CREATE TABLE public.node_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, " +
      "price NUMERIC(10,2), ratio DOUBLE PRECISION, flag BOOLEAN, day DATE, seen TIMESTAMPTZ, " +
      "tag UUID, doc JSON, nums INTEGER[], data BYTEA)"
  );
  // Every parameter goes as text of unknown type (OID 0): the server types it from its column.
  const ins = "INSERT INTO public.node_items VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
  const first = await c.query(ins, [1, "one", 7, "12.50", 0.25, true, "2024-05-01",
    new Date(Date.UTC(2024, 4, 1, 12, 30)), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    JSON.stringify({ a: 1 }), [1, 2, 3], Buffer.from([1, 2, 3])]);
  out.insert = [first.command, first.rowCount];
  await c.query(ins, [2, "two", null, null, null, false, null, null, null, null, null, null]);
  const row = (await c.query("SELECT * FROM public.node_items WHERE id = $1", [1])).rows[0];
  out.row = {
    id: row.id, name: row.name, qty: row.qty, price: row.price, ratio: row.ratio, flag: row.flag,
    seen: row.seen instanceof Date ? row.seen.toISOString() : String(row.seen), tag: row.tag,
    doc: typeof row.doc === "string" ? JSON.parse(row.doc) : row.doc, nums: row.nums,
    data: row.data ? Array.from(row.data) : null,
  };
  out.nulls = (await c.query("SELECT qty, price, day FROM public.node_items WHERE id = $1", [2])).rows[0];
  const ret = await c.query("UPDATE public.node_items SET qty = qty + $1 WHERE id = $2 RETURNING id, qty", [5, 1]);
  out.returning = [ret.command, ret.rows];
  out.untyped = [
    (await c.query("SELECT qty * $1 AS x FROM public.node_items WHERE id = $2", [2, "1"])).rows[0].x,
    (await c.query("SELECT id FROM public.node_items WHERE id = ANY($1) ORDER BY id", [[1, 2, 9]])).rows.map((r) => r.id),
  ];
  await c.query("BEGIN");
  await c.query("INSERT INTO public.node_items (id, name) VALUES ($1, $2)", [3, "three"]);
  await c.query("ROLLBACK");
  await c.query("BEGIN");
  await c.query("INSERT INTO public.node_items (id, name) VALUES ($1, $2)", [4, "four"]);
  await c.query("COMMIT");
  out.ids = (await c.query("SELECT id FROM public.node_items ORDER BY id")).rows.map((r) => r.id);
  try {
    await c.query("INSERT INTO public.node_items (id, name) VALUES ($1, $2)", [1, "dup"]);
    out.duplicate = "no error";
  } catch (e) {
    out.duplicate = { code: e.code, message: e.message, detail: e.detail };
  }
  try {
    await c.query("SELECT * FROM public.node_missing");
  } catch (e) {
    out.missing = e.code;
  }
  out.after_error = (await c.query("SELECT 1 AS one")).rows[0].one;
  const named = await c.query({ name: "by-name", text: "SELECT name FROM public.node_items WHERE id = $1", values: [4] });
  const again = await c.query({ name: "by-name", text: "SELECT name FROM public.node_items WHERE id = $1", values: [2] });
  out.prepared = [named.rows[0].name, again.rows[0].name];
  out.fields = (await c.query("SELECT id, name FROM public.node_items LIMIT 0")).fields.map((f) => [f.name, f.dataTypeID]);
  await c.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
