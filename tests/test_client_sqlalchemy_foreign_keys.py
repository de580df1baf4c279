"""SQLAlchemy 2 ORM models with ForeignKey against a real tierd: create_all, a relationship
that finds its join through the foreign key, ON DELETE CASCADE done by the database, 23503 as
IntegrityError, drop_all in dependency order; COPY into a child is checked too."""
from __future__ import annotations

import psycopg
import pytest

sqlalchemy = pytest.importorskip("sqlalchemy", reason="SQLAlchemy is in the test extra: make install")

from sqlalchemy import BigInteger, ForeignKey, Integer, String, create_engine, inspect, select  # noqa: E402
from sqlalchemy.exc import IntegrityError  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship  # noqa: E402


class Base(DeclarativeBase):
    pass


class Owner(Base):
    __tablename__ = "fk_owners"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(40))
    pets: Mapped[list["Pet"]] = relationship(back_populates="owner", order_by="Pet.id",
                                             cascade="all, delete-orphan", passive_deletes=True)


class Pet(Base):
    __tablename__ = "fk_pets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # SERIAL
    owner_id: Mapped[int] = mapped_column(ForeignKey("fk_owners.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(40))
    owner: Mapped[Owner] = relationship(back_populates="pets")


@pytest.fixture(scope="module")
def engine(module_tierd):
    eng = create_engine(f"postgresql+psycopg://tierd@127.0.0.1:{module_tierd.port}/tierd")
    Base.metadata.create_all(eng)
    yield eng
    Base.metadata.drop_all(eng)  # the child first: the parent is referenced
    assert not inspect(eng).has_table("fk_owners")
    eng.dispose()


def test_relationship_through_the_foreign_key_and_cascade_delete(engine, module_tierd):
    with Session(engine) as s:
        ann = Owner(id=1, name="Ann", pets=[Pet(name="Rex"), Pet(name="Tom")])
        s.add_all([ann, Owner(id=2, name="Bob", pets=[Pet(name="Kit")])])
        s.commit()
    with Session(engine) as s:
        ann = s.get(Owner, 1)
        assert [p.name for p in ann.pets] == ["Rex", "Tom"]  # the join comes from the foreign key
        rex = s.scalars(select(Pet).where(Pet.name == "Rex")).one()
        assert rex.owner.name == "Ann"
    with module_tierd.connect() as c:  # the children are cold now
        c.execute("STORAGE FLUSH TABLE public.fk_pets WAIT")
    with Session(engine) as s:
        s.delete(s.get(Owner, 1))  # passive_deletes: the database's ON DELETE CASCADE removes the pets
        s.commit()
    with Session(engine) as s:
        assert sorted(s.scalars(select(Pet.name))) == ["Kit"]
    fks = inspect(engine).get_foreign_keys("fk_pets")
    assert [(f["constrained_columns"], f["referred_table"], f["referred_columns"], f["options"]) for f in fks] == [
        (["owner_id"], "fk_owners", ["id"], {"ondelete": "CASCADE"})]


def test_a_missing_parent_is_an_integrity_error(engine):
    with Session(engine) as s:
        s.add(Pet(owner_id=99, name="Stray"))
        with pytest.raises(IntegrityError) as info:
            s.commit()
        assert info.value.orig.sqlstate == "23503"
        assert info.value.orig.diag.message_primary == (
            'insert or update on table "fk_pets" violates foreign key constraint "fk_pets_owner_id_fkey"')
        assert info.value.orig.diag.message_detail == 'Key (owner_id)=(99) is not present in table "fk_owners".'
        s.rollback()
        assert s.scalars(select(Pet).where(Pet.name == "Stray")).all() == []


def test_copy_into_a_child_is_checked(module_tierd, engine):
    with module_tierd.connect(autocommit=True) as c:
        c.execute("INSERT INTO fk_owners VALUES (7, 'Cy')")
        with c.cursor().copy("COPY fk_pets (id, owner_id, name) FROM STDIN") as cp:
            for i in range(100, 1100):
                cp.write_row((i, 7, f"p{i}"))
        assert c.execute("SELECT count(*) FROM fk_pets WHERE owner_id = 7").fetchone() == (1000,)
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as info:
            with c.cursor().copy("COPY fk_pets (id, owner_id, name) FROM STDIN") as cp:
                cp.write_row((2000, 7, "ok"))
                cp.write_row((2001, 8, "no owner"))
        assert info.value.diag.message_detail == 'Key (owner_id)=(8) is not present in table "fk_owners".'
        assert c.execute("SELECT count(*) FROM fk_pets WHERE id >= 2000").fetchone() == (0,)
        c.execute("DELETE FROM fk_owners WHERE id = 7")  # ON DELETE CASCADE: a thousand children
        assert c.execute("SELECT count(*) FROM fk_pets WHERE owner_id = 7").fetchone() == (0,)
