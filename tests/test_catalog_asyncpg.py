"""asyncpg's catalog introspection against tierd's pg_catalog: set_type_codec looks the type
up by name (TYPE_BY_NAME) and then runs asyncpg's type-introspection query on its OID."""
from __future__ import annotations

import asyncio
import json

import pytest

asyncpg = pytest.importorskip("asyncpg", reason="asyncpg is in the test extra: make install")


def test_set_type_codec_introspects_through_pg_catalog(tierd):
    async def run():
        c = await asyncpg.connect(host="127.0.0.1", port=tierd.port, user="tierd", database="tierd")
        try:
            await c.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
            assert await c.fetchval("SELECT '{\"a\": [1, 2]}'::json") == {"a": [1, 2]}
            await c.execute("CREATE TABLE public.apg_docs (id BIGINT PRIMARY KEY, doc JSON)")
            await c.execute("INSERT INTO public.apg_docs VALUES ($1, $2)", 1, {"k": "v"})
            assert await c.fetchval("SELECT doc FROM public.apg_docs WHERE id = $1", 1) == {"k": "v"}
            rows = await c.fetch("SELECT t.typname, t.typarray FROM pg_catalog.pg_type t WHERE t.oid = $1", 114)
            assert [tuple(r) for r in rows] == [("json", 199)]
        finally:
            await c.close()

    asyncio.run(run())
