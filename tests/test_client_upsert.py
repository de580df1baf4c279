"""Upserts from real clients: psycopg's pipelined executemany, SQLAlchemy 2.0's
`postgresql.insert(...).on_conflict_do_update/do_nothing` (Core and ORM, with RETURNING) and
asyncpg's executemany, over rows that are hot, flushed, and updated after their flush."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest

sqlalchemy = pytest.importorskip("sqlalchemy", reason="SQLAlchemy is in the test extra: make install")

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text, create_engine, select  # noqa: E402
from sqlalchemy.dialects.postgresql import insert as pg_insert  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402


def flush(conn, table: str) -> None:
    status = conn.execute(f"STORAGE FLUSH TABLE {table} WAIT").fetchone()[1]
    assert status == "completed"


def test_psycopg_pipelined_executemany_upsert(module_tierd):
    with module_tierd.connect() as c:
        c.execute("CREATE TABLE public.pm (id BIGINT PRIMARY KEY, v TEXT, hits INT)")
        c.execute("INSERT INTO pm SELECT i, 'cold', 1 FROM range(0, 50) t(i)")
        flush(c, "public.pm")
        c.execute("UPDATE pm SET v = 'updated' WHERE id < 10")  # updated after its flush
        sql = ("INSERT INTO pm (id, v, hits) VALUES (%s, %s, 1) "
               "ON CONFLICT (id) DO UPDATE SET v = excluded.v, hits = pm.hits + 1")
        rows = [(i, f"up{i}") for i in range(0, 100, 2)]  # even keys: 25 existing, 25 new
        with c.cursor() as cur:
            with c.pipeline():
                cur.executemany(sql, rows)
        # the same key twice in one executemany: each Execute is its own statement
        with c.cursor() as cur:
            with c.pipeline():
                cur.executemany(sql, [(1, "a"), (1, "b"), (101, "x"), (101, "y")])
        got = dict(((i, (v, h)) for i, v, h in c.execute("SELECT id, v, hits FROM pm").fetchall()))
        assert len(got) == 50 + 25 + 1
        assert got[0] == ("up0", 2) and got[2] == ("up2", 2) and got[60] == ("up60", 1)
        assert got[3] == ("updated", 1) and got[11] == ("cold", 1)
        assert got[1] == ("b", 3) and got[101] == ("y", 2)
        with c.cursor() as cur:
            cur.executemany("INSERT INTO pm VALUES (%s, 'n', 0) ON CONFLICT (id) DO NOTHING RETURNING id",
                            [(4,), (500,)], returning=True)
            returned = []
            while True:
                returned += cur.fetchall()
                if not cur.nextset():
                    break
        assert returned == [(500,)]
        flush(c, "public.pm")
        assert c.execute("SELECT v, hits FROM pm WHERE id = 1").fetchone() == ("b", 3)


class Base(DeclarativeBase):
    pass


class Counter(Base):
    __tablename__ = "sa_counters"
    __table_args__ = {"schema": "public"}
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


def test_sqlalchemy_core_and_orm_upsert(module_tierd):
    eng = create_engine(f"postgresql+psycopg://tierd@127.0.0.1:{module_tierd.port}/tierd")
    try:
        md = MetaData()
        t = Table("sa_kv", md, Column("id", BigInteger, primary_key=True, autoincrement=False),
                  Column("v", Text), schema="public")
        md.create_all(eng)
        Base.metadata.create_all(eng)
        with eng.begin() as c:
            c.execute(t.insert(), [{"id": i, "v": "old"} for i in range(5)])
        with module_tierd.connect() as raw:
            flush(raw, "public.sa_kv")
        with eng.begin() as c:
            stmt = pg_insert(t).values([{"id": 1, "v": "new1"}, {"id": 7, "v": "new7"}])
            stmt = stmt.on_conflict_do_update(index_elements=[t.c.id], set_={"v": stmt.excluded.v + "!"})
            got = c.execute(stmt.returning(t.c.id, t.c.v)).all()  # RETURNING public.sa_kv.id, ...
            assert got == [(1, "new1!"), (7, "new7")]
            nothing = pg_insert(t).values([{"id": 2, "v": "x"}, {"id": 8, "v": "eight"}]).on_conflict_do_nothing()
            assert c.execute(nothing.returning(t.c.id)).all() == [(8,)]
            named = pg_insert(t).values(id=3, v="c").on_conflict_do_update(
                constraint="sa_kv_pkey", set_={"v": "by-constraint"}, where=t.c.v == "old")
            c.execute(named)
        with eng.connect() as c:
            assert c.execute(select(t.c.id, t.c.v).order_by(t.c.id)).all() == [
                (0, "old"), (1, "new1!"), (2, "old"), (3, "by-constraint"), (4, "old"), (7, "new7"), (8, "eight")]

        with Session(eng) as s:  # ORM: upsert statements returning mapped objects
            s.add_all([Counter(name="a", n=1), Counter(name="b", n=1)])
            s.commit()
            for _ in range(2):
                stmt = pg_insert(Counter).values([{"name": "a", "n": 1}, {"name": "c", "n": 1}])
                stmt = stmt.on_conflict_do_update(index_elements=[Counter.name],
                                                  set_={"n": Counter.n + stmt.excluded.n})
                got = s.scalars(stmt.returning(Counter), execution_options={"populate_existing": True}).all()
                assert sorted(c.name for c in got) == ["a", "c"]
                s.commit()
            assert {c.name: c.n for c in s.scalars(select(Counter))} == {"a": 3, "b": 1, "c": 2}
            stmt = pg_insert(Counter).values(name="b", n=9).on_conflict_do_nothing(index_elements=["name"])
            assert s.scalars(stmt.returning(Counter)).all() == []
            s.commit()
            # ORM bulk upsert: a list of parameter sets (insertmanyvalues), RETURNING the objects
            stmt = pg_insert(Counter)
            stmt = stmt.on_conflict_do_update(index_elements=[Counter.name], set_={"n": stmt.excluded.n * 10})
            got = s.scalars(stmt.returning(Counter, sort_by_parameter_order=True),
                            [{"name": "b", "n": 2}, {"name": "d", "n": 4}, {"name": "a", "n": 5}],
                            execution_options={"populate_existing": True}).all()
            assert [(c.name, c.n) for c in got] == [("b", 20), ("d", 4), ("a", 50)]
            s.commit()
    finally:
        eng.dispose()


def test_asyncpg_executemany_upsert(module_tierd):
    async def body():
        conn = await asyncpg.connect(host="127.0.0.1", port=module_tierd.port, user="tierd",
                                     database="tierd", timeout=10)
        try:
            await conn.execute("CREATE TABLE public.ap (id INT PRIMARY KEY, total BIGINT)")
            await conn.executemany("INSERT INTO ap VALUES ($1, $2)", [(i, 10) for i in range(20)])
            assert (await conn.fetchval("STORAGE FLUSH TABLE public.ap WAIT", column=1)) == "completed"
            sql = "INSERT INTO ap VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET total = ap.total + excluded.total"
            await conn.executemany(sql, [(i, 1) for i in range(10, 30)])
            await conn.executemany(sql, [(25, 100), (25, 1000)])
            rows = dict(await conn.fetch("SELECT id, total FROM ap"))
            assert len(rows) == 30
            assert rows[0] == 10 and rows[15] == 11 and rows[25] == 1101
            row = await conn.fetchrow("INSERT INTO ap VALUES ($1, $2) ON CONFLICT (id) DO UPDATE "
                                      "SET total = excluded.total * 2 RETURNING id, total", 0, 21)
            assert tuple(row) == (0, 42)
        finally:
            await conn.close()
    asyncio.run(body())
