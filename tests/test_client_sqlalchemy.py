"""SQLAlchemy 2 (postgresql+psycopg) against a real tierd: Core, ORM, reflection, and the
savepoint probe the psycopg dialect runs inside its first transaction.

Most tables here declare their ids with autoincrement=False (client-chosen ids); the ORM's
own ways of getting ids from the database (SERIAL, Identity(), Sequence) have their own test."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest

sqlalchemy = pytest.importorskip("sqlalchemy", reason="SQLAlchemy is in the test extra: make install")

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Identity, Integer, MetaData, Numeric,  # noqa: E402
                        Sequence, String, Table, Text, create_engine, delete, func, insert, inspect, select,
                        update)
from sqlalchemy.exc import IntegrityError  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship  # noqa: E402


@pytest.fixture(scope="module")
def engine(module_tierd):
    eng = create_engine(f"postgresql+psycopg://tierd@127.0.0.1:{module_tierd.port}/tierd")
    yield eng
    eng.dispose()


def items_table(md: MetaData) -> Table:
    return Table("sa_items", md,
                 Column("id", BigInteger, primary_key=True, autoincrement=False),
                 Column("name", Text, nullable=False),
                 Column("price", Numeric(10, 2)),
                 Column("flag", Boolean),
                 Column("seen", DateTime(timezone=True)))


def test_core_create_all_crud_and_transactions(engine):
    md = MetaData()
    t = items_table(md)
    md.create_all(engine)  # has_table first, then CREATE TABLE without tierd's WITH options
    md.create_all(engine)  # the second time has_table says it exists: nothing to do
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)
    with engine.begin() as c:
        c.execute(insert(t), [{"id": 1, "name": "a", "price": Decimal("1.50"), "flag": True, "seen": when},
                              {"id": 2, "name": "b", "price": None, "flag": False, "seen": None}])
    with engine.connect() as c:
        rows = c.execute(select(t).order_by(t.c.id)).all()
        assert rows == [(1, "a", Decimal("1.50"), True, when), (2, "b", None, False, None)]
        got = c.execute(insert(t).values(id=3, name="c").returning(t.c.id, t.c.name)).all()
        assert got == [(3, "c")]
        c.commit()
        c.execute(update(t).where(t.c.id == 2).values(name="bb"))
        c.execute(delete(t).where(t.c.id == 1))
        c.rollback()  # neither happened
        assert c.execute(select(t.c.name).order_by(t.c.id)).scalars().all() == ["a", "b", "c"]
        c.execute(update(t).where(t.c.id == 2).values(name="bb"))
        c.execute(delete(t).where(t.c.id == 1))
        c.commit()
        assert c.execute(select(t.c.id, t.c.name).order_by(t.c.id)).all() == [(2, "bb"), (3, "c")]
    with pytest.raises(IntegrityError) as err, engine.begin() as c:
        c.execute(insert(t).values(id=2, name="dup"))
    assert err.value.orig.sqlstate == "23505"
    md.drop_all(engine)
    assert not inspect(engine).has_table("sa_items")


def test_reflection(engine):
    md = MetaData()
    items_table(md)
    md.create_all(engine)
    try:
        insp = inspect(engine)
        assert "sa_items" in insp.get_table_names()
        assert insp.has_table("sa_items") and not insp.has_table("sa_nope")
        assert {"public", "system"} <= set(insp.get_schema_names())
        cols = {c["name"]: c for c in insp.get_columns("sa_items")}
        assert list(cols) == ["id", "name", "price", "flag", "seen"]
        assert isinstance(cols["id"]["type"], sqlalchemy.BIGINT) and cols["id"]["nullable"] is False
        assert isinstance(cols["name"]["type"], sqlalchemy.TEXT) and cols["name"]["nullable"] is False
        assert (cols["price"]["type"].precision, cols["price"]["type"].scale) == (10, 2)
        assert isinstance(cols["flag"]["type"], sqlalchemy.BOOLEAN)
        assert cols["seen"]["type"].timezone is True
        pk = insp.get_pk_constraint("sa_items")
        assert pk["constrained_columns"] == ["id"] and pk["name"] == "sa_items_pkey"
        reflected = Table("sa_items", MetaData(), autoload_with=engine)
        assert reflected.c.keys() == ["id", "name", "price", "flag", "seen"]
        assert reflected.primary_key.columns.keys() == ["id"]
        with engine.connect() as c:  # the reflected table is usable as is
            c.execute(insert(reflected).values(id=9, name="r"))
            c.commit()
            assert c.execute(select(reflected.c.name)).scalar_one() == "r"
    finally:
        md.drop_all(engine)


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "sa_authors"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(50))
    # no ForeignKey here: the join condition is declared on the relationship (see
    # tests/test_client_sqlalchemy_foreign_keys.py for the ForeignKey way).
    books: Mapped[list["Book"]] = relationship(back_populates="author", order_by="Book.id",
                                               primaryjoin="Book.author_id == Author.id",
                                               foreign_keys="Book.author_id")


class Book(Base):
    __tablename__ = "sa_books"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int] = mapped_column(BigInteger)
    author: Mapped[Author] = relationship(back_populates="books",
                                          primaryjoin="Book.author_id == Author.id",
                                          foreign_keys="Book.author_id")


def test_orm_round_trip_with_a_relationship(engine):
    Base.metadata.create_all(engine)
    try:
        with Session(engine) as s:
            ann = Author(id=1, name="Ann")
            ann.books = [Book(id=10, title="One"), Book(id=11, title="Two")]
            s.add(ann)
            s.add(Author(id=2, name="Bob"))
            s.commit()
        with Session(engine) as s:
            assert [a.name for a in s.query(Author).order_by(Author.id)] == ["Ann", "Bob"]
            ann = s.get(Author, 1)
            assert [b.title for b in ann.books] == ["One", "Two"]
            ann.name = "Anne"
            s.delete(s.get(Book, 11))
            s.commit()
        with Session(engine) as s:
            assert s.scalars(select(Author.name).order_by(Author.id)).all() == ["Anne", "Bob"]
            assert [b.title for b in s.get(Author, 1).books] == ["One"]
            assert s.get(Book, 10).author.name == "Anne"
            s.add(Author(id=2, name="again"))
            with pytest.raises(IntegrityError):
                s.commit()
            s.rollback()
            assert s.get(Author, 2).name == "Bob"
    finally:
        Base.metadata.drop_all(engine)


def test_savepoints_release_and_rollback_to_without_writes(module_tierd):
    with psycopg.connect(module_tierd.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS public.sa_sp (id INT PRIMARY KEY)")
        with c.transaction():  # BEGIN ... COMMIT
            c.execute("INSERT INTO public.sa_sp VALUES (1)")
            with pytest.raises(psycopg.errors.UndefinedTable):
                with c.transaction():  # SAVEPOINT ... ROLLBACK TO SAVEPOINT: no writes since
                    c.execute("SELECT * FROM public.sa_missing")
            with c.transaction():  # SAVEPOINT ... RELEASE SAVEPOINT
                c.execute("INSERT INTO public.sa_sp VALUES (2)")
        assert c.execute("SELECT id FROM public.sa_sp ORDER BY id").fetchall() == [(1,), (2,)]
        c.execute("BEGIN")
        c.execute("SAVEPOINT a")
        c.execute("INSERT INTO public.sa_sp VALUES (3)")
        with pytest.raises(psycopg.errors.FeatureNotSupported):  # a write since cannot be undone alone
            c.execute("ROLLBACK TO SAVEPOINT a")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("SELECT 1")
        c.execute("ROLLBACK")
        assert c.execute("SELECT count(*) FROM public.sa_sp").fetchone() == (2,)
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction):
            c.execute("SAVEPOINT outside")


class AutoBase(DeclarativeBase):
    pass


class SerialNote(AutoBase):
    """Integer primary key, autoincrement: SQLAlchemy emits SERIAL and reads the id back."""
    __tablename__ = "sa_serial_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(Text)


class IdentityNote(AutoBase):
    __tablename__ = "sa_identity_notes"
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True, start=100), primary_key=True)
    body: Mapped[str] = mapped_column(Text)


NOTE_SEQ = Sequence("sa_note_seq", start=1000, increment=5)


class SequenceNote(AutoBase):
    __tablename__ = "sa_sequence_notes"
    id: Mapped[int] = mapped_column(BigInteger, NOTE_SEQ, primary_key=True)
    body: Mapped[str] = mapped_column(Text)


def test_orm_autoincrement_identity_and_sequence(engine):
    """The three ways an ORM model gets its ids from the database."""
    AutoBase.metadata.drop_all(engine)
    AutoBase.metadata.create_all(engine)
    with Session(engine) as s:
        notes = [SerialNote(body="a"), SerialNote(body="b"), IdentityNote(body="x"), IdentityNote(body="y"),
                 SequenceNote(body="p"), SequenceNote(body="q")]
        s.add_all(notes)
        s.commit()
        assert [n.id for n in notes] == [1, 2, 100, 101, 1000, 1005]
    with Session(engine) as s:
        assert s.scalars(select(SerialNote.body).order_by(SerialNote.id)).all() == ["a", "b"]
        assert s.get(IdentityNote, 101).body == "y"
        assert s.get(SequenceNote, 1005).body == "q"
        s.add(SerialNote(id=50, body="explicit"))  # a serial column takes an explicit value
        s.commit()
    with engine.connect() as c:
        assert c.scalar(select(func.pg_get_serial_sequence("sa_serial_notes", "id"))) == \
            "public.sa_serial_notes_id_seq"
        with pytest.raises(sqlalchemy.exc.ProgrammingError) as err:  # GENERATED ALWAYS: 428C9
            c.execute(insert(IdentityNote.__table__).values(id=5, body="no"))
        assert err.value.orig.sqlstate == "428C9"
    AutoBase.metadata.drop_all(engine)
    with engine.connect() as c:  # DROP TABLE took the owned sequences along; DROP SEQUENCE the other
        left = c.execute(sqlalchemy.text("SELECT sequence_name FROM information_schema.sequences "
                                         "WHERE sequence_name LIKE 'sa\\_%'")).all()
        assert left == []


def test_create_all_with_index_true_and_an_explicit_index(engine):
    """`index=True` columns and `Index(...)` become CREATE INDEX (catalog records; DuckDB scans),
    reflected by get_indexes; drop_all drops them with their table."""
    from sqlalchemy import Index

    md = MetaData()
    t = Table("sa_indexed", md,
              Column("id", BigInteger, primary_key=True, autoincrement=False),
              Column("email", Text, index=True),
              Column("org", Integer),
              Column("name", Text))
    Index("ix_sa_indexed_org_name", t.c.org, t.c.name)
    md.create_all(engine)
    try:
        indexes = sorted(inspect(engine).get_indexes("sa_indexed"), key=lambda i: i["name"])
        assert [(i["name"], i["column_names"], i["unique"]) for i in indexes] == [
            ("ix_sa_indexed_email", ["email"], False), ("ix_sa_indexed_org_name", ["org", "name"], False)]
        with engine.begin() as c:
            c.execute(insert(t), [{"id": 1, "email": "a@x", "org": 1, "name": "a"}])
            assert c.execute(select(t.c.id).where(t.c.email == "a@x")).scalar_one() == 1
    finally:
        md.drop_all(engine)
    assert not inspect(engine).has_table("sa_indexed")
